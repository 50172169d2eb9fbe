//! Compiling a segment into a packed program: choosing where each layer's outputs sit, which
//! copy of an input each term reads, which weights stay scalars, and the baby-step size.
//!
//! Every affine layer (and every window sum) is a sparse matrix M. With inputs and outputs
//! placed at columns, term M[o][i] reads input column s_i for output column p_o: it belongs to
//! the diagonal of offset r = s_i − p_o, and y = Σ_r d_r ⊙ rot(x, r). Grouping offsets as
//! r = g·b + s (baby s, giant g·b) needs one rotation per distinct (input, s) and per distinct
//! (output, g) instead of one per offset.

use super::placement::{Grid, Placement, Spot};
use super::program::{Bias, Giant, LinearStep, OutputCt, PackedProgram, PackedStep, Term, Weight};
use crate::layers::{Affine, EncodedLayer, LayerError};
use crate::model::{EncodedModel, ModelError};
use crate::tensor::ValueInfo;
// The compiler hashes millions of small integer keys (a deep network's convolutions have
// ~10⁶ terms): a fast non-cryptographic hash, nothing here is attacker-keyed for HashDoS
// beyond the public model's own shape.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::collections::BTreeMap;
use std::ops::Range;

/// Relative cost of a rotation (a key switch) against a plaintext product, for choosing
/// between packings of one layer (measured at N = 8192: ≈ 1.3 ms against ≈ 0.12 ms with its
/// encoding).
const ROTATION_COST: f64 = 10.0;

/// Whether a convolution leaves its output channels sharing ciphertexts (plaintext products
/// that mix channels instead of integer scalars: about log2(t) + log2(N)/2 bits of budget
/// instead of a few).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mixing {
    /// Wherever fewer ciphertexts result: what they save the rest of the segment and the
    /// answer on the wire is counted by the whole segment's cost, not layer by layer.
    Always,
    /// Where the layer and the next two cost less that way.
    WhenCheaper,
    /// Never: one ciphertext per output channel.
    Never,
}

/// The choices that trade noise budget for speed, so that a layout can fall back to the
/// cheaper in noise when the faster leaves no room for sanitization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Choices {
    /// The last layer may fold its partial sums and mask them off (one plaintext product
    /// more, far fewer diagonals).
    pub(crate) mask_last: bool,
    /// Whether convolutions mix channels into shared ciphertexts.
    pub(crate) mix_channels: Mixing,
}

impl Choices {
    /// Every combination, the most frugal in noise last.
    pub(crate) const ALL: [Choices; 6] = [
        Choices {
            mask_last: true,
            mix_channels: Mixing::Always,
        },
        Choices {
            mask_last: true,
            mix_channels: Mixing::WhenCheaper,
        },
        Choices {
            mask_last: false,
            mix_channels: Mixing::Always,
        },
        Choices {
            mask_last: false,
            mix_channels: Mixing::WhenCheaper,
        },
        Choices {
            mask_last: true,
            mix_channels: Mixing::Never,
        },
        Choices {
            mask_last: false,
            mix_channels: Mixing::Never,
        },
    ];
}

/// Which of the [`Choices`] a compilation had to make: the others give the same program
/// whatever they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Consulted {
    /// A convolution could have mixed its channels into fewer ciphertexts.
    pub(crate) mixing: bool,
    /// The last layer is a linear one that may fold and mask.
    pub(crate) mask: bool,
}

/// Compiles the segment `range` for rows of `width` columns with `choices`; says which choices
/// mattered.
pub(crate) fn compile_segment(
    model: &EncodedModel,
    range: Range<usize>,
    width: usize,
    choices: Choices,
) -> Result<(PackedProgram, Consulted), ModelError> {
    let mut consulted = Consulted::default();
    let layers = model.layers();
    let first_info = model.info_before(range.start);
    // The client's arrangement of a convolution's input saves the server its rotations, but
    // only where it costs no upload: every ciphertext more is a whole seeded ciphertext on
    // the wire for every plaintext modulus, against a few rotations here.
    let compact = Placement::compact(&first_info.shape, width);
    let input = match layers.get(range.start) {
        Some(EncodedLayer::Conv2d(c)) => c
            .taps(&first_info.shape)
            .and_then(|taps| Placement::im2col(first_info.len(), &taps, width, compact.cts)),
        _ => None,
    }
    .unwrap_or(compact);
    let mut steps = Vec::with_capacity(range.len());
    let mut cur = input.clone();
    for index in range.clone() {
        let layer = &layers[index];
        let last = index + 1 == range.end;
        let info = model.info_before(index);
        let (step, next) = compile_layer(layer, info, &cur, last, choices, width, &mut consulted)
            .map_err(|e| ModelError::from(e.in_layer(layer.name())))?;
        steps.push((step, next.clone()));
        cur = next;
    }
    let program = PackedProgram {
        start: range.start,
        input,
        levels: vec![None; steps.len()],
        steps,
    };
    Ok((program, consulted))
}

fn inconsistent(layer: &str, what: &'static str) -> LayerError {
    LayerError::Inconsistent {
        layer: layer.to_string(),
        what,
    }
}

/// One layer: its step and the placement it leaves. `last`: the segment's last layer, whose
/// output must be clean (it is returned to the client).
fn compile_layer(
    layer: &EncodedLayer,
    info: &ValueInfo,
    input: &Placement,
    last: bool,
    choices: Choices,
    width: usize,
    consulted: &mut Consulted,
) -> Result<(PackedStep, Placement), LayerError> {
    let name = layer.name();
    let shape = &info.shape[..];
    if input.len() != info.len() {
        return Err(inconsistent(name, "input placement size"));
    }
    let out_shape = layer.output_info(info)?.shape;
    match layer {
        EncodedLayer::Conv2d(c) => {
            let mut matrix = affine_matrix(c, shape)?;
            if let Some(positions) = input.im2col {
                matrix.spots = Some(im2col_spots(c, shape, positions, width)?);
            }
            let out = window_output(input, &out_shape, [c.stride, c.padding], false, width);
            // The output channels can also share ciphertexts (diagonals that mix channels:
            // plaintext products, not scalars), which every later layer pays for once per
            // ciphertext instead of once per channel: compact after the client's arrangement,
            // each on the input's frame at its own offset after a grid.
            let candidate = match (&input.im2col, &input.grid) {
                (Some(_), _) => Some(chunked_channels(&out_shape, width)),
                (None, Some(g)) => mixed_grid_output(g, &out_shape, [c.stride, c.padding], width),
                (None, None) => None,
            }
            .filter(|m| m.cts < out.cts);
            consulted.mixing |= candidate.is_some();
            let mixed = match (candidate, choices.mix_channels) {
                (Some(m), Mixing::Always | Mixing::WhenCheaper) => m,
                _ => return linear(name, &matrix, input, OutputPlan::Placed(out), !last),
            };
            let packed = linear(name, &matrix, input, OutputPlan::Placed(mixed), !last)?;
            if choices.mix_channels == Mixing::Always {
                return Ok(packed);
            }
            let spread = linear(name, &matrix, input, OutputPlan::Placed(out), !last)?;
            Ok(if downstream_cost(&packed) < downstream_cost(&spread) {
                packed
            } else {
                spread
            })
        }
        EncodedLayer::Linear(l) => {
            let matrix = affine_matrix(l, shape)?;
            let placed = linear(
                name,
                &matrix,
                input,
                OutputPlan::Placed(Placement::compact(&out_shape, width)),
                !last,
            )?;
            consulted.mask |= last;
            if last && !choices.mask_last {
                return Ok(placed);
            }
            // Folding leaves partial sums beside the outputs: the last layer masks them off.
            match fold_plan(&matrix, input, width, last) {
                Some(plan) => {
                    let folded = linear(name, &matrix, input, plan, !last)?;
                    Ok(if cost(&folded.0) < cost(&placed.0) {
                        folded
                    } else {
                        placed
                    })
                }
                None => Ok(placed),
            }
        }
        EncodedLayer::AvgPool2d(p) => {
            let windows = p.windows(shape)?;
            let matrix = Matrix {
                rows: windows
                    .into_iter()
                    .map(|w| w.into_iter().map(|i| (i, 1)).collect())
                    .collect(),
                bias: Vec::new(),
                spots: None,
            };
            let out = window_output(input, &out_shape, [p.stride, p.padding], true, width);
            linear(name, &matrix, input, OutputPlan::Placed(out), !last)
        }
        EncodedLayer::Square(_) => Ok((PackedStep::Square, input.clone())),
        EncodedLayer::Flatten(_) => Ok((
            PackedStep::Rename,
            Placement {
                grid: None,
                ..input.clone()
            },
        )),
        EncodedLayer::Reencrypt(l) => Err(LayerError::ClientOnly {
            layer: l.name.clone(),
        }),
        EncodedLayer::PlaintextOnly(l) => Err(LayerError::PlaintextOnly {
            layer: l.name.clone(),
            kind: l.kind.to_string(),
        }),
    }
}

fn cost(step: &PackedStep) -> f64 {
    match step {
        PackedStep::Linear(l) => {
            let ops = l.ops();
            ROTATION_COST * ops.rotations as f64
                + ops.plaintext_products as f64
                + 0.1 * ops.scalar_products as f64
        }
        _ => 0.0,
    }
}

/// A step's cost plus what its output's ciphertexts cost the layers after it: about one
/// rotation per ciphertext and per later layer that touches it (a square's relinearization,
/// a linear layer's baby steps); two later layers are counted.
fn downstream_cost((step, out): &(PackedStep, Placement)) -> f64 {
    cost(step) + 2.0 * ROTATION_COST * out.cts as f64
}

/// A layer's sparse matrix: per output, its (input, weight) pairs (zero weights dropped), and
/// per output its bias (empty: none). `spots`, when the input's arrangement says which copy
/// each term reads, gives it per term.
struct Matrix {
    rows: Vec<Vec<(usize, i64)>>,
    bias: Vec<i128>,
    spots: Option<Vec<Vec<Spot>>>,
}

/// The copy each term of a convolution reads from its im2col arrangement: tap k of position p
/// at flat k·P + p.
fn im2col_spots(
    c: &crate::layers::EncodedConv2d,
    shape: &[usize],
    positions: usize,
    width: usize,
) -> Result<Vec<Vec<Spot>>, LayerError> {
    let taps = c
        .taps(shape)
        .filter(|t| t.len() == positions)
        .ok_or_else(|| inconsistent(&c.name, "an im2col arrangement for another shape"))?;
    let per = c.taps_per_output();
    let mut out = Vec::with_capacity(c.out_channels * positions);
    for oc in 0..c.out_channels {
        for (p, row) in taps.iter().enumerate() {
            out.push(
                row.iter()
                    .enumerate()
                    .filter(|&(k, tap)| tap.is_some() && c.weights[oc * per + k] != 0)
                    .map(|(k, _)| super::placement::spot_at(k * positions + p, width))
                    .collect(),
            );
        }
    }
    Ok(out)
}

fn affine_matrix(a: &dyn Affine, shape: &[usize]) -> Result<Matrix, LayerError> {
    let out_len: usize = a.out_shape(shape)?.iter().product();
    let mut conns = Vec::new();
    let mut rows = Vec::with_capacity(out_len);
    let mut bias = Vec::with_capacity(out_len);
    for o in 0..out_len {
        conns.clear();
        a.connections(shape, o, &mut conns);
        rows.push(conns.iter().copied().filter(|&(_, w)| w != 0).collect());
        bias.push(a.bias_of(shape, o));
    }
    Ok(Matrix {
        rows,
        bias,
        spots: None,
    })
}

/// Where a convolution's or pooling's output goes: on the grid the input defines when it has
/// one (so each tap is one offset for all positions), else each channel compact in its own
/// ciphertext.
fn window_output(
    input: &Placement,
    out_shape: &[usize],
    [stride, padding]: [[usize; 2]; 2],
    per_channel_input: bool,
    width: usize,
) -> Placement {
    let &[channels, oh, ow] = out_shape else {
        return Placement::compact(out_shape, width);
    };
    let fallback = || Placement::per_channel(channels, [oh, ow], width);
    let Some(g) = &input.grid else {
        return fallback();
    };
    let (step, shift) = frame(g, stride, padding);
    let base0 = g.channels.first().map_or(0, |&(_, b)| b);
    let grid = Grid {
        channels: (0..channels)
            .map(|c| {
                // A pooling reads its own channel: it stays in its ciphertext at its base, so
                // the taps are the window's offsets; a convolution reads every channel from
                // channel 0's frame, each output channel in a ciphertext of its own.
                if per_channel_input {
                    let (ct, b) = g.channels.get(c).copied().unwrap_or((c as u32, base0));
                    (ct, b + shift)
                } else {
                    (c as u32, base0 + shift)
                }
            })
            .collect(),
        hw: [oh, ow],
        step,
    };
    let placed = Placement::on_grid(grid, width);
    if distinct(&placed) {
        placed
    } else {
        fallback()
    }
}

/// A window layer's output grid on the input's frame: the column steps per output row and
/// column, and the shift of output (0, 0) from input (0, 0) that the padding makes.
fn frame(g: &Grid, stride: [usize; 2], padding: [usize; 2]) -> ([i64; 2], i64) {
    let step = [stride[0] as i64 * g.step[0], stride[1] as i64 * g.step[1]];
    let shift = -(padding[0] as i64) * g.step[0] - (padding[1] as i64) * g.step[1];
    (step, shift)
}

/// Whether every activation's first copy has a spot of its own.
fn distinct(placed: &Placement) -> bool {
    let mut seen = HashSet::default();
    (0..placed.len()).all(|a| placed.primary(a).is_some_and(|s| seen.insert(s)))
}

/// A `[C, H, W]` output compact, as many whole channels per ciphertext as fit a row, each on
/// a grid (so a pooling after it is one offset per tap); other shapes compact.
fn chunked_channels(out_shape: &[usize], width: usize) -> Placement {
    let &[channels, h, w] = out_shape else {
        return Placement::compact(out_shape, width);
    };
    let plane = h * w;
    if plane == 0 || plane > width || channels * plane <= width {
        return Placement::compact(out_shape, width);
    }
    let per_ct = width / plane;
    Placement::on_grid(
        Grid {
            channels: (0..channels)
                .map(|o| ((o / per_ct) as u32, ((o % per_ct) * plane) as i64))
                .collect(),
            hw: [h, w],
            step: [w as i64, 1],
        },
        width,
    )
}

/// A convolution's output channels sharing ciphertexts, each on the input's frame (so a tap is
/// one offset per pair of channels): as many per ciphertext as fit a row, the k-th of a
/// ciphertext at the input's first base plus k times the input's channel spacing when the input
/// is one evenly spaced ciphertext, else plus k times one channel's footprint. `None` when one
/// channel does not fit a row or they would overlap.
fn mixed_grid_output(
    g: &Grid,
    out_shape: &[usize],
    [stride, padding]: [[usize; 2]; 2],
    width: usize,
) -> Option<Placement> {
    let &[channels, oh, ow] = out_shape else {
        return None;
    };
    let (step, shift) = frame(g, stride, padding);
    let footprint = (oh as i64 - 1) * step[0].abs() + (ow as i64 - 1) * step[1].abs() + 1;
    let &(ct0, base0) = g.channels.first()?;
    let spacing = match g.channels.get(1) {
        Some(&(ct1, b1))
            if ct1 == ct0
                && b1 - base0 >= footprint
                && g.channels
                    .windows(2)
                    .all(|w| w[0].0 == ct0 && w[1].0 == ct0 && w[1].1 - w[0].1 == b1 - base0) =>
        {
            b1 - base0
        }
        _ => footprint,
    };
    // As many channels per ciphertext as fit a row, in as few ciphertexts as that allows.
    let room = width as i64 - footprint - shift.abs();
    if room < 0 || spacing <= 0 {
        return None;
    }
    let per_ct = (room / spacing + 1) as usize;
    let grid = Grid {
        channels: (0..channels)
            .map(|o| {
                let (ct, k) = (o / per_ct, o % per_ct);
                (ct as u32, base0 + shift + k as i64 * spacing)
            })
            .collect(),
        hw: [oh, ow],
        step,
    };
    let placed = Placement::on_grid(grid, width);
    distinct(&placed).then_some(placed)
}

/// How outputs are placed.
enum OutputPlan {
    /// At their spots.
    Placed(Placement),
    /// All in ciphertext 0: output o summed from replicas o + j·stride (j = `lowest` …
    /// `lowest` + 2^folds − 1) into column o + lowest·stride, by `folds` rotations (the hybrid
    /// method: `stride` offsets per input instead of one per input–output distance); `mask`:
    /// then multiplied by the 0/1 vector of the output columns, so nothing else remains.
    Folded {
        stride: usize,
        lowest: i64,
        folds: u32,
        mask: bool,
    },
}

/// The hybrid plan for a linear layer, if its outputs fit one ciphertext and the replicas a
/// row. Input columns are read as signed (a previous fold may have left them just below 0).
fn fold_plan(matrix: &Matrix, input: &Placement, width: usize, mask: bool) -> Option<OutputPlan> {
    let stride = matrix.rows.len() as i64;
    if stride == 0 || stride > width as i64 / 2 {
        return None;
    }
    let cols = input
        .copies
        .iter()
        .flatten()
        .map(|s| signed_mod(s.col as i64, width));
    let (lo, hi) = cols.fold(None, |acc: Option<(i64, i64)>, c| {
        Some(acc.map_or((c, c), |(lo, hi)| (lo.min(c), hi.max(c))))
    })?;
    // Replica j = floor((s − o)/stride) over every input column s and output o.
    let lowest = (lo - (stride - 1)).div_euclid(stride);
    let replicas = (hi.div_euclid(stride) - lowest + 1) as usize;
    let folds = replicas.next_power_of_two().trailing_zeros();
    ((1usize << folds) * stride as usize <= width).then_some(OutputPlan::Folded {
        stride: stride as usize,
        lowest,
        folds,
        mask,
    })
}

fn signed_mod(x: i64, width: usize) -> i64 {
    let w = width as i64;
    let r = x.rem_euclid(w);
    if r > w / 2 {
        r - w
    } else {
        r
    }
}

/// (output ciphertext, input ciphertext, offset).
type DiagKey = (u32, u32, i64);

/// Compiles an affine map or window sum: picks a copy of each input per term, groups terms
/// into diagonals, keeps scalars where a diagonal is one weight over every output column (when
/// the output may be dirty), and splits offsets into baby and giant steps.
fn linear(
    name: &str,
    matrix: &Matrix,
    input: &Placement,
    plan: OutputPlan,
    allow_dirty: bool,
) -> Result<(PackedStep, Placement), LayerError> {
    let width = input.width;
    let outputs = matrix.rows.len();
    let (out_place, fold, masked) = match plan {
        OutputPlan::Placed(p) => (p, None, false),
        OutputPlan::Folded {
            stride,
            lowest,
            folds,
            mask,
        } => {
            let copies = (0..outputs)
                .map(|o| {
                    vec![Spot {
                        ct: 0,
                        col: (o as i64 + lowest * stride as i64).rem_euclid(width as i64) as u32,
                    }]
                })
                .collect();
            let p = Placement {
                cts: 1,
                width,
                copies,
                dirty: vec![true],
                grid: None,
                im2col: None,
            };
            (p, Some((stride, folds)), mask)
        }
    };
    if out_place.len() != outputs {
        return Err(inconsistent(name, "output placement size"));
    }
    // The accumulation column of a term: the output's own column, or (folded) the replica of
    // the output at most one stride below the input column.
    let target = |o: usize, s: Spot| -> Result<(u32, u32), LayerError> {
        let spot = out_place
            .primary(o)
            .ok_or_else(|| inconsistent(name, "an output without a place"))?;
        Ok(match fold {
            None => (spot.ct, spot.col),
            Some((stride, _)) => {
                let j = (signed_mod(s.col as i64, width) - o as i64).div_euclid(stride as i64);
                let col = (o as i64 + j * stride as i64).rem_euclid(width as i64);
                (0, col as u32)
            }
        })
    };
    let key_of = |o: usize, s: Spot| -> Result<(DiagKey, u32), LayerError> {
        let (ct, col) = target(o, s)?;
        let r = signed_mod(s.col as i64 - col as i64, width);
        Ok(((ct, s.ct, r), col))
    };
    // Pass 1: how many terms could use each diagonal; pass 2: each term takes its most shared.
    let mut popularity: HashMap<DiagKey, u32> = HashMap::default();
    let one_copy_each = input.copies.iter().all(|c| c.len() <= 1);
    for (o, row) in matrix.rows.iter().enumerate() {
        if matrix.spots.is_some() || one_copy_each {
            break;
        }
        for &(i, _) in row {
            let copies = input
                .copies
                .get(i)
                .filter(|c| !c.is_empty())
                .ok_or_else(|| inconsistent(name, "an input without a copy"))?;
            for &s in copies {
                *popularity.entry(key_of(o, s)?.0).or_default() += 1;
            }
        }
    }
    let mut diagonals: BTreeMap<DiagKey, HashMap<u32, i64>> = BTreeMap::new();
    for (o, row) in matrix.rows.iter().enumerate() {
        if let Some(spots) = &matrix.spots {
            let spots = spots
                .get(o)
                .filter(|s| s.len() == row.len())
                .ok_or_else(|| inconsistent(name, "an arrangement for other terms"))?;
            for (&(_, w), &s) in row.iter().zip(spots) {
                let (key, col) = key_of(o, s)?;
                *diagonals.entry(key).or_default().entry(col).or_default() += w;
            }
            continue;
        }
        for &(i, w) in row {
            let mut best: Option<(u32, DiagKey, u32)> = None;
            for &s in &input.copies[i] {
                let (key, col) = key_of(o, s)?;
                let pop = popularity.get(&key).copied().unwrap_or(0);
                if best.is_none_or(|(p, _, _)| pop > p) {
                    best = Some((pop, key, col));
                }
            }
            let (_, key, col) =
                best.ok_or_else(|| inconsistent(name, "an input without a copy"))?;
            *diagonals.entry(key).or_default().entry(col).or_default() += w;
        }
    }
    diagonals.retain(|_, d| {
        d.retain(|_, w| *w != 0);
        !d.is_empty()
    });

    // Which diagonals can be scalars: one weight, and every other output column of the
    // ciphertext reads an input column that is a clean zero.
    let mut out_cols: HashMap<u32, Vec<u32>> = HashMap::default();
    for a in 0..out_place.len() {
        if let Some(s) = out_place.primary(a) {
            out_cols.entry(s.ct).or_default().push(s.col);
        }
    }
    let mut occupied: HashMap<u32, HashSet<u32>> = HashMap::default();
    for s in input.copies.iter().flatten() {
        occupied.entry(s.ct).or_default().insert(s.col);
    }
    let scalar_of = |key: &DiagKey, d: &HashMap<u32, i64>| -> Option<i64> {
        if !allow_dirty || fold.is_some() {
            return None;
        }
        let mut ws = d.values();
        let w0 = *ws.next()?;
        if ws.any(|&w| w != w0) {
            return None;
        }
        let (ct_o, ct_i, r) = *key;
        let cols = out_cols.get(&ct_o)?;
        if cols.len() == d.len() {
            return Some(w0);
        }
        if input.dirty.get(ct_i as usize).copied().unwrap_or(true) {
            return None;
        }
        let occ = occupied.get(&ct_i);
        cols.iter()
            .filter(|c| !d.contains_key(c))
            .all(|&c| {
                let read = (c as i64 + r).rem_euclid(width as i64) as u32;
                !occ.is_some_and(|o| o.contains(&read))
            })
            .then_some(w0)
    };

    // Baby-step size: the fewest rotations over the candidates.
    let keys: Vec<DiagKey> = diagonals.keys().copied().collect();
    let b = best_baby_size(&keys, width);
    let mut babies: Vec<(usize, i64)> = keys
        .iter()
        .map(|&(_, ci, r)| (ci as usize, r.rem_euclid(b)))
        .collect();
    babies.sort_unstable();
    babies.dedup();
    let baby_index: HashMap<(usize, i64), usize> =
        babies.iter().enumerate().map(|(k, &v)| (v, k)).collect();

    let out_cts = out_place.cts;
    let mut giants: Vec<BTreeMap<i64, Vec<Term>>> = vec![BTreeMap::new(); out_cts];
    let mut dirty = vec![fold.is_some() && !masked; out_cts];
    for (key, d) in &diagonals {
        let (ct_o, ct_i, r) = *key;
        let (g, s) = (r.div_euclid(b), r.rem_euclid(b));
        let baby = *baby_index
            .get(&(ct_i as usize, s))
            .ok_or_else(|| inconsistent(name, "a baby step was not planned"))?;
        let weight = match scalar_of(key, d) {
            Some(w) => {
                dirty[ct_o as usize] = true;
                Weight::Scalar(w)
            }
            None => {
                let mut diagonal: Vec<(u32, i64)> = d
                    .iter()
                    .map(|(&col, &w)| {
                        let c = (col as i64 + g * b).rem_euclid(width as i64) as u32;
                        (c, w)
                    })
                    .collect();
                diagonal.sort_unstable();
                Weight::Diagonal(diagonal)
            }
        };
        giants
            .get_mut(ct_o as usize)
            .ok_or_else(|| inconsistent(name, "an output ciphertext out of range"))?
            .entry(g * b)
            .or_default()
            .push(Term { baby, weight });
    }
    let mut out_ct_programs = Vec::with_capacity(out_cts);
    for (ct, gs) in giants.into_iter().enumerate() {
        let biases: Vec<(u32, i128)> = (0..outputs)
            .filter_map(|o| {
                let s = out_place.primary(o)?;
                let b = matrix.bias.get(o).copied().unwrap_or(0);
                (s.ct as usize == ct && b != 0).then_some((s.col, b))
            })
            .collect();
        let count = (0..outputs)
            .filter(|&o| out_place.primary(o).is_some_and(|s| s.ct as usize == ct))
            .count();
        let bias = if biases.is_empty() {
            Bias::None
        } else if dirty[ct]
            && biases.len() == count
            && biases.iter().all(|&(_, b)| b == biases[0].1)
        {
            Bias::Constant(biases[0].1)
        } else {
            Bias::Columns(biases)
        };
        out_ct_programs.push(OutputCt {
            giants: gs
                .into_iter()
                .map(|(step, terms)| Giant { step, terms })
                .collect(),
            bias,
        });
    }
    let folds = match fold {
        Some((stride, n)) => (0..n).map(|k| (stride << k) as i64).collect(),
        None => Vec::new(),
    };
    let mask = masked.then(|| {
        (0..outputs)
            .filter_map(|o| out_place.primary(o).map(|s| (s.col, 1)))
            .collect()
    });
    let placement = Placement { dirty, ..out_place };
    Ok((
        PackedStep::Linear(LinearStep {
            babies,
            outputs: out_ct_programs,
            folds,
            mask,
        }),
        placement,
    ))
}

/// The baby-step size with the fewest rotations: distinct nonzero (input, r mod b) plus, per
/// output, the Horner chain over its distinct giants.
fn best_baby_size(keys: &[DiagKey], width: usize) -> i64 {
    let mut candidates: Vec<i64> = (1..=64).collect();
    candidates.extend(keys.iter().map(|k| k.2.abs()).filter(|&r| r > 0));
    candidates.push(width as i64);
    candidates.sort_unstable();
    candidates.dedup();
    let mut best = (usize::MAX, width as i64);
    let mut baby = HashSet::default();
    let mut giant: HashMap<u32, (i64, HashSet<i64>)> = HashMap::default();
    for b in candidates {
        baby.clear();
        giant.clear();
        for &(co, ci, r) in keys {
            let (g, s) = (r.div_euclid(b), r.rem_euclid(b));
            if s != 0 {
                baby.insert((ci, s));
            }
            let e = giant
                .entry(co)
                .or_insert_with(|| (i64::MAX, HashSet::default()));
            e.0 = e.0.min(g);
            e.1.insert(g);
        }
        let giants: usize = giant
            .values()
            .map(|(lo, set)| set.len() - 1 + usize::from(*lo != 0))
            .sum();
        let total = baby.len() + giants;
        if total < best.0 {
            best = (total, b);
        }
    }
    best.1
}
