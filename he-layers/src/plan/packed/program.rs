//! What the packed layout compiles a segment into: per layer a step over the ciphertexts of one
//! image group, and the placement it leaves. Compiled from the public model and the parameter
//! set only; the same program runs on ciphertexts and on the noise estimator.

use super::placement::Placement;
use crate::plan::StepOps;

/// A weight applied to one rotated input: one integer for every slot (a scalar product,
/// leaving the unread columns dirty), or a diagonal of the layer's matrix (a plaintext product;
/// only the listed columns are nonzero).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Weight {
    /// ct · w in every slot.
    Scalar(i64),
    /// ct ⊙ d: (column, weight) pairs, repeated in both rows.
    Diagonal(Vec<(u32, i64)>),
}

/// One term of an inner sum: a baby-step rotation of an input and its weight.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Term {
    /// Index into [`LinearStep::babies`].
    pub(crate) baby: usize,
    /// Its weight.
    pub(crate) weight: Weight,
}

/// The terms rotated together by one giant step.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Giant {
    /// Rotation applied to their sum (a multiple of the baby-step size; may be negative).
    pub(crate) step: i64,
    /// The terms.
    pub(crate) terms: Vec<Term>,
}

/// How the bias reaches an output ciphertext.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Bias {
    /// No bias.
    None,
    /// The same integer in every slot (the ciphertext is dirty anyway).
    Constant(i128),
    /// (column, bias) pairs in both rows.
    Columns(Vec<(u32, i128)>),
}

/// One output ciphertext of a linear step: Σ_g rot(Σ_terms w ⊙ baby, g), folded, plus bias.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OutputCt {
    /// Giant steps, sorted by step.
    pub(crate) giants: Vec<Giant>,
    /// Bias.
    pub(crate) bias: Bias,
}

/// A Conv2d, Linear or AvgPool2d in the packed layout: the diagonal method with baby-step /
/// giant-step rotations (Halevi–Shoup), optionally folding partial sums (the hybrid method).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LinearStep {
    /// The rotations of the inputs the terms read: (input ciphertext, step), steps in
    /// [0, baby size), sorted; step 0 is the input itself.
    pub(crate) babies: Vec<(usize, i64)>,
    /// One entry per output ciphertext.
    pub(crate) outputs: Vec<OutputCt>,
    /// After the giant steps: y += rot(y, f) for each f in order (sums the replicas of each
    /// output into its column).
    pub(crate) folds: Vec<i64>,
    /// After the folds: y ⊙ this 0/1 vector (column, 1), clearing the partial sums the folds
    /// leave beside the outputs (a returned answer holds nothing else).
    pub(crate) mask: Option<Vec<(u32, i64)>>,
}

/// One layer of a packed program.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PackedStep {
    /// An affine map or a window sum.
    Linear(LinearStep),
    /// Every ciphertext squared.
    Square,
    /// Values unchanged (Flatten).
    Rename,
}

/// A segment compiled by the packed layout.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PackedProgram {
    /// First layer of the segment.
    pub(crate) start: usize,
    /// How the client arranges the segment's input.
    pub(crate) input: Placement,
    /// Per layer of the segment: its step and the placement it leaves.
    pub(crate) steps: Vec<(PackedStep, Placement)>,
    /// Per layer of the segment: the level (ciphertext primes) its inputs are switched down
    /// to first, if any (what budget the rest does not need is dropped, and every later
    /// operation costs less).
    pub(crate) levels: Vec<Option<usize>>,
}

impl PackedProgram {
    /// The placement after the first `done` layers of the segment (the input's for 0).
    pub(crate) fn placement_after(&self, done: usize) -> Option<&Placement> {
        match done {
            0 => Some(&self.input),
            d => self.steps.get(d - 1).map(|(_, p)| p),
        }
    }

    /// Every rotation step the program performs (what Galois keys are needed for).
    pub(crate) fn rotation_steps(&self) -> Vec<i64> {
        let mut out = Vec::new();
        for (step, _) in &self.steps {
            if let PackedStep::Linear(l) = step {
                out.extend(l.rotation_steps());
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl LinearStep {
    /// The rotation steps this step performs: consecutive baby differences per input, the
    /// giant chain's differences per output (Horner: from the largest giant down), and the folds.
    pub(crate) fn rotation_steps(&self) -> Vec<i64> {
        let mut out = Vec::new();
        let mut prev: Option<(usize, i64)> = None;
        for &(ct, s) in &self.babies {
            let from = match prev {
                Some((c, p)) if c == ct => p,
                _ => 0,
            };
            if s != from {
                out.push(s - from);
            }
            prev = Some((ct, s));
        }
        for o in &self.outputs {
            out.extend(giant_chain(&o.giants));
        }
        out.extend(self.folds.iter().copied());
        out.retain(|&s| s != 0);
        out
    }

    /// Operations per image group.
    pub(crate) fn ops(&self) -> StepOps {
        let mut ops = StepOps {
            ciphertexts_out: self.outputs.len() as u64,
            ..StepOps::default()
        };
        let rotations = self.rotation_steps().len() as u64;
        // rotation_steps dedups nothing; count every rotation performed.
        ops.rotations = rotations;
        ops.key_switches = rotations;
        if self.mask.is_some() {
            ops.plaintext_products += self.outputs.len() as u64;
        }
        for o in &self.outputs {
            for g in &o.giants {
                for t in &g.terms {
                    match t.weight {
                        Weight::Scalar(_) => ops.scalar_products += 1,
                        Weight::Diagonal(_) => ops.plaintext_products += 1,
                    }
                }
            }
        }
        ops
    }
}

/// The rotations of the Horner evaluation Σ_g rot(u_g, g): from the largest step down, each
/// difference, then the smallest step itself.
pub(crate) fn giant_chain(giants: &[Giant]) -> Vec<i64> {
    let mut out = Vec::new();
    let mut steps: Vec<i64> = giants.iter().map(|g| g.step).collect();
    steps.sort_unstable();
    for w in steps.windows(2).rev() {
        out.push(w[1] - w[0]);
    }
    if let Some(&lowest) = steps.first() {
        if lowest != 0 {
            out.push(lowest);
        }
    }
    out
}
