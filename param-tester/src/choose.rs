//! Filling in what a parameter set leaves open: the input scale and the plaintext modulus,
//! the smallest that keep the quantization error within the configured bound.

use crate::*;
use he_layers::crypto::sanitize::DEFAULT_FLOOD_BITS;
use he_layers::crypto::BfvParameters;
use he_layers::layers::LayerError;
use he_layers::plan::CompiledLayout;
use net_builder::eval::{argmax, float_outputs, mirror_outputs};
use net_builder::session::plan_circuit_privacy;
use net_builder::{build_model, BuildError, BuildOptions, BuiltModel};
use serde::Serialize;

/// The largest input scale the automatic choice tries, in bits.
pub const MAX_AUTO_INPUT_SCALE_BITS: u32 = 16;

/// The largest plaintext prime the automatic choice uses, in bits (more capacity takes more
/// primes: CRT).
const MAX_PRIME_BITS: u32 = 60;

/// The most plaintext primes the automatic choice splits t into (CRT).
const MAX_AUTO_MODULI: usize = 4;

/// The most bits a CRT product of plaintext moduli may have (the protocol's cap, 2^127).
const MAX_CAPACITY_BITS: f64 = 127.0;

/// How many candidate sets the choice checks for room for the server's flood.
const MAX_FLOOD_CHECKS: usize = 16;

/// Whether the server would sanitize every answer of `set` (its estimate, as `/plan` makes
/// it), and no layer is predicted to overflow.
fn leaves_room_for_flood(loaded: &Loaded, set: &ParameterSet) -> bool {
    let Ok(params) = set.encryption_parameters() else {
        return false;
    };
    let Ok(moduli) = params.plain_moduli() else {
        return false;
    };
    let opts = set.build_options(loaded.input_range);
    let Ok(crt) = crate::run::build_crt_with(&loaded.spec, &params, &moduli, &opts) else {
        return false;
    };
    let flood = set.flood_bits.unwrap_or(DEFAULT_FLOOD_BITS);
    let Ok(layouts) = crt
        .components
        .iter()
        .map(|c| CompiledLayout::for_flood(set.layout, &c.model, Some(flood)))
        .collect::<Result<Vec<_>, _>>()
    else {
        return false;
    };
    plan_circuit_privacy(&crt, &layouts, Some(flood)).is_ok()
}

/// What the tester chose for a set that left the input scale or the plaintext modulus open.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Chosen {
    /// The input scale chosen (None: the set gave it).
    pub input_scale_bits: Option<u32>,
    /// The plaintext prime size chosen (None: the set gave the moduli).
    pub plain_modulus_bits: Option<u32>,
    /// How many such primes (CRT).
    pub plain_moduli_count: Option<usize>,
    /// The weight precision the choice was judged at (and, where t was chosen too, used:
    /// t is sized for it).
    pub weight_bits: u32,
    /// At the choice: max |integer model − float model| over the images' outputs, as a
    /// fraction of the float outputs' largest magnitude.
    pub quantization_error: f64,
    /// At the choice: the fraction of images the integer model labels as the float model does.
    pub mirror_agreement: f64,
    /// The bound on the error the choice keeps.
    pub max_quantization_error: f64,
    /// The agreement the choice keeps.
    pub min_agreement: f64,
    /// Whether both are kept; false: nothing tried keeps them and this is the closest.
    pub within_bound: bool,
}

/// How the integer model (the plaintext tail run on its outputs, as the client does) compares
/// with the float model on the loaded images: (relative error, label agreement).
/// `float` is the float model's outputs on them ([`float_outputs`]).
pub fn quantization_quality(
    loaded: &Loaded,
    float: &[Vec<f64>],
    built: &BuiltModel,
) -> Result<(f64, f64), String> {
    let mirror = mirror_outputs(&loaded.spec, built, &loaded.images)
        .map_err(|e| format!("the integer model cannot run on the images: {e}"))?;
    let scale = float
        .iter()
        .flatten()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    let mut err: f64 = 0.0;
    let mut agree = 0usize;
    for (f, m) in float.iter().zip(&mirror) {
        for (a, b) in f.iter().zip(m) {
            err = err.max((a - b).abs());
        }
        agree += (argmax(f) == argmax(m)) as usize;
    }
    Ok((err / scale, agree as f64 / float.len().max(1) as f64))
}

/// One quantization tried: its error, agreement and the largest bound of an encrypted layer.
struct Trial {
    scale: u32,
    weights: u32,
    error: f64,
    agreement: f64,
    bound_bits: f64,
}

impl Trial {
    fn within(&self, cfg: &TesterConfig) -> bool {
        self.error <= cfg.max_quantization_error && self.agreement >= cfg.min_agreement
    }
}

/// The set with its open fields filled in, and what was chosen (None when nothing was open).
pub fn fill_in(
    loaded: &Loaded,
    cfg: &TesterConfig,
    set: &ParameterSet,
) -> Result<(ParameterSet, Option<Chosen>), String> {
    let scale_open = set.input_scale_bits.is_none();
    let t_open = set.plain_modulus_open();
    if !scale_open && !t_open {
        return Ok((set.clone(), None));
    }
    let scales: Vec<u32> = match set.input_scale_bits {
        Some(s) => vec![s],
        None => (1..=MAX_AUTO_INPUT_SCALE_BITS).collect(),
    };
    let opts = |scale: u32, weights: Option<u32>| BuildOptions {
        input_scale_bits: scale,
        weight_bits: weights,
        ..set.build_options(loaded.input_range)
    };
    let float = float_outputs(&loaded.spec, &loaded.images).map_err(|e| e.to_string())?;
    if t_open {
        // Quantization does not depend on t: judge each (scale, weights) once at any t, then
        // take the t its largest encrypted bound needs.
        let t = BfvParameters::batching_plain_modulus(set.degree, 20)
            .ok_or_else(|| format!("no plaintext prime for N = {}", set.degree))?;
        let params = BfvParameters::preset(set.degree, t).map_err(|e| e.to_string())?;
        let weights: Vec<u32> = match set.weight_bits {
            Some(w) => vec![w],
            None => (1..=net_builder::build::MAX_AUTO_WEIGHT_BITS).collect(),
        };
        let mut trials: Vec<Trial> = Vec::new();
        let mut kept_bound = f64::INFINITY;
        for &s in &scales {
            let mut smallest_here = f64::INFINITY;
            for &w in &weights {
                let built = match build_model(&loaded.spec, &params, &opts(s, Some(w))) {
                    Ok(b) => b,
                    // Too large a scale for the layer's integers: try the next.
                    Err(BuildError::Layer(LayerError::Unquantizable { .. })) => continue,
                    Err(e) => return Err(e.to_string()),
                };
                let bound_bits = built
                    .model
                    .predict()
                    .iter()
                    .filter(|p| p.encryptable)
                    .map(|p| p.output.bound_bits())
                    .fold(0.0, f64::max);
                // The bound grows with the weights: past what any t holds (the CRT product
                // stays under 2^127, and the mirror's i128 with it), or past the best kept
                // so far, more weight bits cannot help.
                if bound_bits + 2.0 >= MAX_CAPACITY_BITS || bound_bits >= kept_bound {
                    smallest_here = smallest_here.min(bound_bits);
                    break;
                }
                let (error, agreement) = quantization_quality(loaded, &float, &built)?;
                let trial = Trial {
                    scale: s,
                    weights: w,
                    error,
                    agreement,
                    bound_bits,
                };
                let ok = trial.within(cfg);
                smallest_here = smallest_here.min(bound_bits);
                trials.push(trial);
                // More weight bits only cost capacity once the bound is kept.
                if ok {
                    kept_bound = kept_bound.min(bound_bits);
                    break;
                }
            }
            // A larger input scale cannot need less capacity than the best kept so far.
            if kept_bound.is_finite() && smallest_here >= kept_bound {
                break;
            }
        }
        // The kept quantizations, the least capacity first (else the closest first); for each,
        // t/2 above its bound, over more than one prime past MAX_PRIME_BITS, and over more
        // primes while the answers would leave no room for the server's flood (each
        // component's noise grows with its own t). The first the server would sanitize is
        // taken; if none is, the first some primes hold (the verdict says why it fails).
        let mut kept: Vec<&Trial> = trials.iter().filter(|t| t.within(cfg)).collect();
        kept.sort_by(|a, b| a.bound_bits.total_cmp(&b.bound_bits));
        if kept.is_empty() {
            // None keeps the bound: the closest first.
            kept = trials.iter().collect();
            kept.sort_by(|a, b| a.error.total_cmp(&b.error));
        }
        // The smallest prime size whose `count` distinct batching primes (as the set resolves
        // them, as the server will) multiply past 2^(bound + 1.5): t/2 above the bound with
        // half a bit of margin.
        let split = |trial: &Trial, count: usize| -> Option<(u32, usize)> {
            let total = trial.bound_bits + 1.5;
            let start = (total / count as f64).ceil() as u32;
            (start.max(2)..=MAX_PRIME_BITS + 2).find_map(|bits| {
                let mut candidate = set.clone();
                candidate.plain_modulus_bits = Some(bits);
                candidate.plain_moduli_count = Some(count);
                let moduli = candidate
                    .encryption_parameters()
                    .ok()?
                    .plain_moduli()
                    .ok()?;
                let capacity: f64 = moduli.iter().map(|&t| (t as f64).log2()).sum();
                (capacity >= total).then_some((bits, count))
            })
        };
        let counts = |trial: &Trial| -> Vec<usize> {
            let total = trial.bound_bits.ceil() as u32 + 2;
            let fewest = total.div_ceil(MAX_PRIME_BITS - 1).max(1) as usize;
            match set.plain_moduli_count {
                Some(k) => vec![k.max(1)],
                None => (fewest..=fewest.max(MAX_AUTO_MODULI)).collect(),
            }
        };
        if kept.is_empty() {
            return Err("no input scale and weight precision could be built".into());
        }
        // Each check compiles the layouts: a bounded number of them.
        let mut checks = 0;
        for trial in &kept {
            for k in counts(trial) {
                let Some((bits, count)) = split(trial, k) else {
                    continue;
                };
                checks += 1;
                if checks > MAX_FLOOD_CHECKS {
                    break;
                }
                let mut candidate = set.clone();
                candidate.input_scale_bits = Some(trial.scale);
                candidate.plain_modulus_bits = Some(bits);
                candidate.plain_moduli_count = Some(count);
                candidate.weight_bits = Some(trial.weights);
                if leaves_room_for_flood(loaded, &candidate) {
                    return Ok(finish(set, cfg, trial, Some((bits, count))));
                }
            }
        }
        // None would be sanitized: the first whose bound some primes hold (the verdict says
        // why it fails).
        let (trial, t) = kept
            .iter()
            .find_map(|trial| {
                counts(trial)
                    .into_iter()
                    .find_map(|k| split(trial, k))
                    .map(|t| (*trial, t))
            })
            .ok_or_else(|| {
                format!(
                    "no batching primes at N = {} hold the bound of any quantization tried",
                    set.degree
                )
            })?;
        Ok(finish(set, cfg, trial, Some(t)))
    } else {
        // The set's t: the smallest scale that keeps the bound at the weights t allows.
        let params = set.encryption_parameters().map_err(|e| e.to_string())?;
        let sets = params.resolve().map_err(|e| e.to_string())?;
        let mut tried: Vec<Trial> = Vec::new();
        for &s in &scales {
            let crt = match net_builder::pipeline::build_crt_on(
                &loaded.spec,
                &sets,
                &opts(s, set.weight_bits),
            ) {
                Ok(c) => c,
                // Past the capacity even with 1-bit weights: larger scales are worse.
                Err(BuildError::NoWeightScale { .. }) => break,
                Err(BuildError::Layer(LayerError::Unquantizable { .. })) => continue,
                Err(e) => return Err(e.to_string()),
            };
            let built = &crt.components[0];
            let (error, agreement) = quantization_quality(loaded, &float, built)?;
            let trial = Trial {
                scale: s,
                weights: built.weight_bits,
                error,
                agreement,
                bound_bits: 0.0,
            };
            let ok = trial.within(cfg);
            tried.push(trial);
            if ok {
                break;
            }
        }
        let trial = match tried.iter().position(|t| t.within(cfg)) {
            Some(i) => tried.swap_remove(i),
            None => tried
                .into_iter()
                .min_by(|a, b| a.error.total_cmp(&b.error))
                .ok_or("no input scale fits this plaintext modulus")?,
        };
        Ok(finish(set, cfg, &trial, None))
    }
}

fn finish(
    set: &ParameterSet,
    cfg: &TesterConfig,
    trial: &Trial,
    t: Option<(u32, usize)>,
) -> (ParameterSet, Option<Chosen>) {
    let mut filled = set.clone();
    filled.input_scale_bits = Some(trial.scale);
    if let Some((bits, count)) = t {
        filled.plain_modulus_bits = Some(bits);
        filled.plain_moduli_count = Some(count);
        // t was sized for these weights: the most t would allow could cost noise budget.
        filled.weight_bits = Some(trial.weights);
    }
    let chosen = Chosen {
        input_scale_bits: set.input_scale_bits.is_none().then_some(trial.scale),
        plain_modulus_bits: t.map(|(b, _)| b),
        plain_moduli_count: t.map(|(_, c)| c),
        weight_bits: trial.weights,
        quantization_error: trial.error,
        mirror_agreement: trial.agreement,
        max_quantization_error: cfg.max_quantization_error,
        min_agreement: cfg.min_agreement,
        within_bound: trial.within(cfg),
    };
    (filled, Some(chosen))
}
