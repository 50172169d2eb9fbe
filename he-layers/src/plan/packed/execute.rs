//! Running a packed program on the ciphertexts of one image group, through any backend with
//! linear operations, products, plaintexts and rotations (BFV, or the noise estimator).

use super::program::{Bias, Giant, LinearStep, PackedStep, Weight};
use crate::layers::{LayerError, PackedBackend};
use rayon::prelude::*;

/// Runs `steps` on one group's ciphertexts, each after switching its inputs down to the level
/// it names.
pub(crate) fn run_steps<'a, B: PackedBackend>(
    steps: impl IntoIterator<Item = (&'a PackedStep, Option<usize>, &'a str)>,
    mut cts: Vec<B::Ciphertext>,
    width: usize,
    backend: &B,
) -> Result<Vec<B::Ciphertext>, LayerError> {
    for (step, level, name) in steps {
        if let Some(level) = level {
            cts = switch_all(cts, level, backend).map_err(|e| e.in_layer(name))?;
        }
        cts = run_step(step, &cts, width, backend).map_err(|e| e.in_layer(name))?;
    }
    Ok(cts)
}

/// Every ciphertext above `level` switched down to it.
pub(crate) fn switch_all<B: PackedBackend>(
    cts: Vec<B::Ciphertext>,
    level: usize,
    backend: &B,
) -> Result<Vec<B::Ciphertext>, LayerError> {
    cts.into_par_iter()
        .map(|c| {
            if backend.level(&c) > level {
                backend.switch_level(&c, level)
            } else {
                Ok(c)
            }
        })
        .collect()
}

fn run_step<B: PackedBackend>(
    step: &PackedStep,
    x: &[B::Ciphertext],
    width: usize,
    backend: &B,
) -> Result<Vec<B::Ciphertext>, LayerError> {
    match step {
        PackedStep::Linear(l) => run_linear(l, x, width, backend),
        PackedStep::Square => x.par_iter().map(|c| backend.square(c)).collect(),
        PackedStep::Rename => Ok(x.to_vec()),
    }
}

/// A slot vector with `entries` (column, value) in both rows.
pub(crate) fn both_rows<T: Copy + Into<i128>>(entries: &[(u32, T)], width: usize) -> Vec<i128> {
    let mut v = vec![0i128; 2 * width];
    for &(col, w) in entries {
        let c = col as usize;
        if c < width {
            v[c] = w.into();
            v[c + width] = w.into();
        }
    }
    v
}

fn run_linear<B: PackedBackend>(
    l: &LinearStep,
    x: &[B::Ciphertext],
    width: usize,
    backend: &B,
) -> Result<Vec<B::Ciphertext>, LayerError> {
    let babies = baby_rotations(l, x, backend)?;
    l.outputs
        .par_iter()
        .map(|o| {
            let mut acc = horner(&o.giants, &babies, width, backend)?;
            for &f in &l.folds {
                let r = backend.rotate(&acc, f)?;
                backend.add_assign(&mut acc, &r)?;
            }
            if let Some(m) = &l.mask {
                let pt = backend.prepare_plaintext(&both_rows(m, width))?;
                acc = backend.multiply_plain(&acc, &pt)?;
            }
            match &o.bias {
                Bias::None => {}
                Bias::Constant(c) => backend.add_constant(&mut acc, *c)?,
                Bias::Columns(cols) => backend.add_plain(&mut acc, &both_rows(cols, width))?,
            }
            Ok(acc)
        })
        .collect()
}

/// The baby rotations, in the order of `l.babies`: per input, a chain from the input itself.
fn baby_rotations<B: PackedBackend>(
    l: &LinearStep,
    x: &[B::Ciphertext],
    backend: &B,
) -> Result<Vec<B::Ciphertext>, LayerError> {
    // Runs of the same input ciphertext, each rotated along its chain; runs in parallel.
    let mut runs: Vec<(usize, Vec<i64>)> = Vec::new();
    for &(ct, s) in &l.babies {
        match runs.last_mut() {
            Some((c, steps)) if *c == ct => steps.push(s),
            _ => runs.push((ct, vec![s])),
        }
    }
    let chains = runs
        .par_iter()
        .map(|(ct, steps)| {
            let src = x.get(*ct).ok_or(LayerError::Inconsistent {
                layer: String::new(),
                what: "a baby step reads a ciphertext the input does not have",
            })?;
            let mut out: Vec<B::Ciphertext> = Vec::with_capacity(steps.len());
            let mut prev = 0i64;
            for &s in steps {
                let next = if s == 0 {
                    src.clone()
                } else {
                    let from = out.last().unwrap_or(src);
                    backend.rotate(from, s - prev)?
                };
                prev = s;
                out.push(next);
            }
            Ok(out)
        })
        .collect::<Result<Vec<_>, LayerError>>()?;
    Ok(chains.into_iter().flatten().collect())
}

/// Σ_g rot(u_g, g) by Horner, from the largest giant down; u_g = Σ_terms w ⊙ baby.
fn horner<B: PackedBackend>(
    giants: &[Giant],
    babies: &[B::Ciphertext],
    width: usize,
    backend: &B,
) -> Result<B::Ciphertext, LayerError> {
    let mut order: Vec<&Giant> = giants.iter().collect();
    order.sort_by_key(|g| std::cmp::Reverse(g.step));
    let mut acc: Option<(B::Ciphertext, i64)> = None;
    for g in order {
        let inner = inner_sum(g, babies, width, backend)?;
        acc = Some(match acc {
            None => (inner, g.step),
            Some((a, prev)) => {
                let mut r = backend.rotate(&a, prev - g.step)?;
                backend.add_assign(&mut r, &inner)?;
                (r, g.step)
            }
        });
    }
    match acc {
        None => backend.encrypt_constant(0),
        Some((a, 0)) => Ok(a),
        Some((a, lowest)) => backend.rotate(&a, lowest),
    }
}

/// One giant's terms: the scalar ones as one dot product, the diagonals as plaintext
/// products, summed.
fn inner_sum<B: PackedBackend>(
    g: &Giant,
    babies: &[B::Ciphertext],
    width: usize,
    backend: &B,
) -> Result<B::Ciphertext, LayerError> {
    let missing = || LayerError::Inconsistent {
        layer: String::new(),
        what: "a term reads a baby step that was not computed",
    };
    let mut refs = Vec::new();
    let mut weights = Vec::new();
    let mut diagonals = Vec::new();
    for t in &g.terms {
        let baby = babies.get(t.baby).ok_or_else(missing)?;
        match &t.weight {
            Weight::Scalar(w) => {
                refs.push(baby);
                weights.push(*w);
            }
            Weight::Diagonal(d) => diagonals.push((baby, d)),
        }
    }
    let scalar = if refs.is_empty() {
        None
    } else {
        backend.dot(&refs, &weights)?
    };
    let products = diagonals
        .par_iter()
        .map(|(baby, d)| {
            let pt = backend.prepare_plaintext(&both_rows(d, width))?;
            backend.multiply_plain(baby, &pt)
        })
        .try_reduce_with(|mut a, b| {
            backend.add_assign(&mut a, &b)?;
            Ok(a)
        })
        .transpose()?;
    match (scalar, products) {
        (Some(mut a), Some(b)) => {
            backend.add_assign(&mut a, &b)?;
            Ok(a)
        }
        (Some(a), None) | (None, Some(a)) => Ok(a),
        (None, None) => backend.encrypt_constant(0),
    }
}
