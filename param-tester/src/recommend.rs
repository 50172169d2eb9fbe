//! `--recommend`: the cheapest preset that keeps every layer exact with budget left, per
//! layout.

use crate::*;
use he_layers::crypto::sanitize::DEFAULT_FLOOD_BITS;
use he_layers::plan::{estimated_cost, CompiledLayout, Layout, LayoutKind};
use he_layers::protocol::Security;
use net_builder::pipeline::build_crt;
use net_builder::session::plan_circuit_privacy;

/// Relative cost of one component at a degree (from the engine bench: multiply+relinearize at
/// the 128-bit presets, 1.7 / 7.7 / 39 ms).
fn degree_cost(n: usize) -> f64 {
    match n {
        4096 => 1.0,
        8192 => 4.4,
        16384 => 22.6,
        _ => 120.0,
    }
}

/// What one re-encryption boundary costs, in [`degree_cost`]'s unit (a product at N = 4096,
/// ≈ 1.7 ms): the client's decryption, rescaling and encryption and a network round trip,
/// ≈ 17 ms. Measured on mnist-deep packed: four boundaries at N = 8192 (0.81 s on the server)
/// against one at N = 16384 with a third plaintext modulus (5.95 s).
const ROUND_TRIP_COST: f64 = 10.0;

/// What `--recommend` found for one layout.
#[derive(Clone, Debug)]
pub struct Recommendation {
    /// The layout searched.
    pub layout: LayoutKind,
    /// The report of the set that passed.
    pub report: SetReport,
    /// A ready client config for it.
    pub config: serde_json::Value,
    /// The expected cost of one ciphertext group over every plaintext modulus, in NTTs of
    /// one limb ([`he_layers::plan::estimated_cost`]); times the groups a count of images needs.
    pub cost_per_group: f64,
    /// Images one group holds.
    pub images_per_group: usize,
    /// The integer model's label agreement with the float model on the configured images,
    /// at the set found (the search keeps it at or above the config's `min_agreement`).
    pub agreement: f64,
    /// The cheapest candidate passed over because its quantization loses agreement (None:
    /// none was): what keeping the agreement costs.
    pub passed_over: Option<PassedOver>,
}

/// A cheaper candidate `--recommend` would have taken were accuracy not kept.
#[derive(Clone, Debug)]
pub struct PassedOver {
    /// Its parameters.
    pub set: ParameterSet,
    /// The weight precision its t allows.
    pub weight_bits: u32,
    /// Its label agreement with the float model.
    pub agreement: f64,
    /// Its expected cost per group (NTT units).
    pub cost_per_group: f64,
}

impl Recommendation {
    /// The expected cost of `images` images (NTT units).
    pub fn cost_for(&self, images: usize) -> f64 {
        self.cost_per_group * images.div_ceil(self.images_per_group.max(1)) as f64
    }
}

/// Searches the 128-bit presets, plaintext-modulus splits and re-encryption positions for the
/// cheapest set the evaluator predicts to work in `layout` whose quantization keeps the label
/// agreement with the float model on the configured images at `cfg.min_agreement` or more
/// (where `weight_bits` is open: a given precision is kept, and its agreement reported),
/// then runs candidates in order of cost until one passes. Returns its report, a ready client
/// config, its expected cost and the cheaper candidate accuracy ruled out.
pub fn recommend(
    loaded: &Loaded,
    cfg: &TesterConfig,
    input_scale_bits: u32,
    weight_bits: Option<u32>,
    layout: LayoutKind,
    mut progress: impl FnMut(&str),
) -> Option<Recommendation> {
    let float = match net_builder::eval::float_outputs(&loaded.spec, &loaded.images) {
        Ok(f) => f,
        Err(e) => {
            progress(&format!(
                "error: the float model cannot run on the images: {e}"
            ));
            return None;
        }
    };
    // Agreement depends on the quantization only: the weight precision and the boundaries.
    let mut agreements: std::collections::HashMap<(u32, Vec<usize>), f64> = Default::default();
    let mut passed_over: Option<PassedOver> = None;
    // Squares a boundary may follow: those before the plaintext tail, not right before it.
    let tail = loaded
        .spec
        .layers
        .iter()
        .position(|l| !l.is_encryptable())
        .unwrap_or(loaded.spec.layers.len());
    let squares: Vec<usize> = loaded
        .spec
        .layers
        .iter()
        .enumerate()
        .filter(|(i, l)| matches!(l, net_builder::LayerSpec::Square { .. }) && i + 1 < tail)
        .map(|(i, _)| i)
        .collect();
    // Boundary options: none, after each square alone, after every second square (two
    // squares per segment), after all.
    let mut boundaries: Vec<Vec<usize>> = vec![vec![]];
    for &s in &squares {
        boundaries.push(vec![s]);
    }
    let pairs: Vec<usize> = squares.iter().skip(1).step_by(2).copied().collect();
    if pairs.len() > 1 {
        boundaries.push(pairs);
    }
    if squares.len() > 1 {
        boundaries.push(squares.clone());
    }
    let mut candidates = Vec::new();
    for n in [4096usize, 8192, 16384] {
        for k in 1..=4usize {
            for bits in (16..=60u32).rev() {
                for b in &boundaries {
                    candidates.push((degree_cost(n) * k as f64, n, k, bits, b.clone()));
                }
            }
        }
    }
    // The cheapest first, each re-encryption (a client round trip) counted at
    // ROUND_TRIP_COST: a larger ring that saves a boundary pays for itself only when it costs
    // less than the round trip; then the smallest t that fits (the most noise margin).
    let rank = |c: &(f64, usize, usize, u32, Vec<usize>)| c.0 + ROUND_TRIP_COST * c.4.len() as f64;
    candidates.sort_by(|a, b| rank(a).total_cmp(&rank(b)).then(a.3.cmp(&b.3)));
    let mut tried = 0;
    for (_, n, k, bits, b) in candidates {
        let set = ParameterSet {
            name: None,
            degree: n,
            plain_moduli: None,
            plain_modulus_bits: Some(bits),
            plain_moduli_count: Some(k),
            coeff_bits: None,
            security: None,
            reencrypt_positions: b.clone(),
            input_scale_bits: Some(input_scale_bits),
            weight_bits,
            flood_bits: None,
            layout,
        };
        // Cheap checks first: valid parameters, no overflow, a plausible noise budget.
        let Ok(params) = set.encryption_parameters() else {
            continue;
        };
        let Ok(moduli) = params.plain_moduli() else {
            continue;
        };
        let opts = set.build_options(loaded.input_range);
        let Ok(crt) = build_crt(&loaded.spec, n, &moduli, &opts) else {
            continue;
        };
        let model = crt.model();
        let prefix = model.encryptable_prefix();
        if model.predict().iter().take(prefix).any(|p| p.overflow) {
            continue;
        }
        // The server refuses what its estimate says cannot be sanitized: so does the search.
        let Ok(layouts) = crt
            .components
            .iter()
            .map(|c| CompiledLayout::new(layout, &c.model))
            .collect::<Result<Vec<_>, _>>()
        else {
            continue;
        };
        if plan_circuit_privacy(&crt, &layouts, Some(DEFAULT_FLOOD_BITS)).is_err() {
            continue;
        }
        let Ok(compiled) = layouts[0].compile(model) else {
            continue;
        };
        let limbs = model.parameters().moduli().len();
        let cost_per_group = crt.components.len() as f64
            * estimated_cost(layout, compiled.steps.iter().map(|s| &s.ops), limbs, n, 1);
        // The estimate errs low by up to ~17 bits on the shipped models; only clear failures are
        // pruned, and every candidate that survives is verified by running it.
        if model
            .estimate_noise_budgets()
            .iter()
            .take(prefix)
            .any(|&b| b < -12.0)
        {
            continue;
        }
        // Accuracy is kept, not traded: a quantization that loses agreement is passed over.
        let wbits = crt.components[0].weight_bits;
        let agreement = *agreements.entry((wbits, b.clone())).or_insert_with(|| {
            quantization_quality(loaded, &float, &crt.components[0]).map_or(0.0, |q| q.1)
        });
        // A quantization the config fixes (the weight precision given) is the user's to
        // trade: it is kept, and the report says how it fares (`agreement`).
        if agreement < cfg.min_agreement && weight_bits.is_none() {
            // The cheapest passed over (candidates come in rank order, boundaries counted).
            if passed_over
                .as_ref()
                .is_none_or(|p| cost_per_group < p.cost_per_group)
            {
                progress(&format!(
                    "passing over {layout}: N={n}, {k} × {bits}-bit t, re-encrypt after {b:?}: \
                     {wbits}-bit weights agree with the float model on {:.1}% of the images, \
                     under {:.1}%",
                    100.0 * agreement,
                    100.0 * cfg.min_agreement
                ));
                passed_over = Some(PassedOver {
                    set: set.clone(),
                    weight_bits: wbits,
                    agreement,
                    cost_per_group,
                });
            }
            continue;
        }
        tried += 1;
        progress(&format!(
            "trying {layout}: N={n}, {k} × {bits}-bit t, re-encrypt after {b:?}"
        ));
        let report = run_set(loaded, cfg, &set, |_| {});
        progress(&format!("  → {}", verdict_line(&report.verdict)));
        if report.verdict == Verdict::Ok {
            let config = serde_json::json!({
                "address": "http://127.0.0.1:8000",
                "net": loaded.spec.name,
                "encryption_parameters": {
                    "degree": n,
                    "plain_moduli": report.plain_moduli,
                    "security": Security::default(),
                },
                "quantization": {"input_scale_bits": input_scale_bits, "weight_bits": report.weight_bits},
                "reencrypt_positions": b,
                "layout": layout,
            });
            return Some(Recommendation {
                layout,
                report,
                config,
                cost_per_group,
                images_per_group: he_layers::plan::images_per_group(layout, n),
                agreement,
                passed_over,
            });
        }
        if tried >= 6 {
            break;
        }
    }
    None
}
