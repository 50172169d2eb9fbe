//! Running one parameter set: the session in process, observed after every layer.

use crate::*;
use he_layers::crypto::compressed_budget;
use he_layers::crypto::sanitize::DEFAULT_FLOOD_BITS;
use he_layers::layers::EncodedLayer;
use he_layers::plan::{CompiledLayout, Layout};
use he_layers::protocol::{EncryptionParameters, ProtocolError, Runs};
use he_layers::tensor::IntTensor;
use net_builder::eval::argmax;
use net_builder::pipeline::{build_crt, build_crt_on, ClientKeys, CrtModel};
use net_builder::session::{
    keys_for, plan_circuit_privacy, InProcess, LayerObservation, Session, SessionError, SessionPlan,
};
use net_builder::{BuildOptions, ModelSpec};
use std::time::Instant;

pub(crate) fn classify(e: ProtocolError) -> Verdict {
    match e {
        ProtocolError::Parameters(p @ he_layers::crypto::ParameterError::Insecure { .. }) => {
            Verdict::Insecure {
                message: p.to_string(),
            }
        }
        other => Verdict::Invalid {
            message: other.to_string(),
        },
    }
}

fn empty_report(set: &ParameterSet, verdict: Verdict) -> SetReport {
    SetReport {
        name: set.label(),
        parameters: set.clone(),
        chosen: None,
        verdict,
        security: None,
        plain_moduli: vec![],
        weight_bits: None,
        layers: vec![],
        public_key_bytes: 0,
        relin_key_bytes: 0,
        upload_bytes: 0,
        download_bytes: 0,
        keygen_ms: 0.0,
        total_ms: 0.0,
        images: 0,
        ms_per_image: 0.0,
        label_agreement: 0.0,
        reference_agreement: None,
        accuracy: None,
        per_image: vec![],
    }
}

/// Runs one parameter set, its open fields (input scale, plaintext modulus) filled in first
/// within `cfg`'s bounds. `progress` is told each layer as it finishes.
pub fn run_set(
    loaded: &Loaded,
    cfg: &TesterConfig,
    set: &ParameterSet,
    mut progress: impl FnMut(&str),
) -> SetReport {
    let started = Instant::now();
    let debug = cfg.debug;
    let (filled, chosen) = match fill_in(loaded, cfg, set) {
        Ok(f) => f,
        Err(message) => return empty_report(set, Verdict::Invalid { message }),
    };
    if let Some(c) = &chosen {
        progress(&chosen_line(c));
    }
    let mut report = run_filled(loaded, &filled, debug, &mut progress, started);
    // The set as given; what the tester filled in is under `chosen`.
    report.name = set.label();
    report.parameters = set.clone();
    report.chosen = chosen;
    report
}

/// What the tester chose, in words.
pub fn chosen_line(c: &Chosen) -> String {
    let mut picked = Vec::new();
    if let Some(s) = c.input_scale_bits {
        picked.push(format!("input scale 2^{s}"));
    }
    if let (Some(b), Some(k)) = (c.plain_modulus_bits, c.plain_moduli_count) {
        picked.push(if k == 1 {
            format!("a {b}-bit t")
        } else {
            format!("{k} × {b}-bit t (CRT)")
        });
    }
    format!(
        "chose {} (at {}-bit weights: quantization error {:.2}% of the largest output, labels agree {:.1}%{})",
        picked.join(" and "),
        c.weight_bits,
        100.0 * c.quantization_error,
        100.0 * c.mirror_agreement,
        if c.within_bound {
            format!(
                "; bound {:.2}% and {:.1}%",
                100.0 * c.max_quantization_error,
                100.0 * c.min_agreement
            )
        } else {
            format!(
                "; NOT within the bound {:.2}% and {:.1}%: the closest tried",
                100.0 * c.max_quantization_error,
                100.0 * c.min_agreement
            )
        }
    )
}

fn run_filled(
    loaded: &Loaded,
    set: &ParameterSet,
    debug: bool,
    progress: &mut impl FnMut(&str),
    started: Instant,
) -> SetReport {
    let params = match set.encryption_parameters() {
        Ok(p) => p,
        Err(e) => {
            return empty_report(
                set,
                Verdict::Invalid {
                    message: e.to_string(),
                },
            )
        }
    };
    let sets = match params.resolve() {
        Ok(s) => s,
        Err(e) => return empty_report(set, classify(e)),
    };
    let moduli: Vec<u64> = sets.iter().map(|p| p.plain_modulus()).collect();
    let opts = set.build_options(loaded.input_range);
    let crt = match build_crt_with(&loaded.spec, &params, &moduli, &opts) {
        Ok(c) => c,
        Err(v) => return empty_report(set, v),
    };
    let model = crt.model();
    let mut report = empty_report(set, Verdict::Ok);
    report.security = Some(sets[0].achieved_security().to_string());
    report.plain_moduli = moduli.clone();
    report.weight_bits = Some(crt.components[0].weight_bits);
    report.images = loaded.images.batch();
    let prefix = model.encryptable_prefix();
    // Overflow is reported before anything runs.
    if let Some(p) = model
        .predict()
        .into_iter()
        .take(prefix)
        .find(|p| p.overflow)
    {
        report.verdict = Verdict::Overflow {
            layer: p.index,
            fix: fix_for_overflow(set, p.index, &crt),
        };
        return report;
    }
    // The server's λ: the layouts spend budget only as far as it leaves room for.
    let flood_bits = set.flood_bits.unwrap_or(DEFAULT_FLOOD_BITS);
    let layouts = match crt
        .components
        .iter()
        .map(|c| CompiledLayout::for_flood(set.layout, &c.model, Some(flood_bits)))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(l) => l,
        Err(e) => {
            report.verdict = Verdict::Invalid {
                message: e.to_string(),
            };
            return report;
        }
    };
    // The layout's own prediction (the packed layout's plaintext products and rotations cost
    // budget the batch layout's scalar products do not).
    let predicted: Vec<f64> = match layouts[0].compile(model) {
        Ok(plan) => (0..model.layers().len())
            .map(|i| {
                plan.steps
                    .get(i)
                    .map_or(f64::NAN, |s| s.predicted_budget_bits)
            })
            .collect(),
        Err(e) => {
            report.verdict = Verdict::Invalid {
                message: e.to_string(),
            };
            return report;
        }
    };
    let t0 = Instant::now();
    let keys: Vec<ClientKeys> = match keys_for(&crt, set.layout, Some(flood_bits)) {
        Ok(k) => k,
        Err(e) => {
            report.verdict = verdict_of(e);
            return report;
        }
    };
    report.keygen_ms = t0.elapsed().as_secs_f64() * 1000.0;
    report.public_key_bytes = keys.iter().map(|k| k.pk.to_bytes().len()).sum();
    report.relin_key_bytes = keys.iter().map(|k| k.rk.to_bytes().len()).sum();

    let x = match model.quantize_input(&loaded.images) {
        Ok(x) => x,
        Err(e) => {
            report.verdict = Verdict::Invalid {
                message: e.to_string(),
            };
            return report;
        }
    };
    // The server's side in process, sanitizing every segment's answer as the server does
    // (refused, before anything runs, where it would refuse), observed layer by layer.
    let observations = Observations::new(model, x.batch());
    let observe = |o: LayerObservation<'_>| observations.record(&o, &keys, &layouts);
    let plans = match plan_circuit_privacy(&crt, &layouts, Some(flood_bits)) {
        Ok(p) => p,
        Err(e) => {
            report.verdict = verdict_of(e);
            return report;
        }
    };
    let transport = match InProcess::new(&crt, set.layout, &keys, Some(flood_bits)) {
        Ok(t) => t.observed(&observe),
        Err(e) => {
            report.verdict = verdict_of(e);
            return report;
        }
    };
    let session = SessionPlan::from_model(model, &layouts[0], &moduli)
        .and_then(|plan| Session::new(plan, keys.iter().map(|k| &k.sk).collect()));
    let run = match session.and_then(|s| s.run_blocking(&transport, &x)) {
        Ok(r) => r,
        Err(e) => {
            report.verdict = Verdict::Invalid {
                message: e.to_string(),
            };
            return report;
        }
    };
    report.upload_bytes = run.segments.iter().map(|s| s.bytes_up).sum();
    report.download_bytes = run.segments.iter().map(|s| s.bytes_down).sum();
    let compute_ms: f64 = run.segments.iter().map(|s| s.server_ms).sum();
    let observed = observations.into_layers();
    let float_outs = float_per_layer(loaded, &crt);
    let predictions = model.predict();
    let mut mirror = x.clone();
    let mut last: Option<IntTensor> = None;
    for (i, layer) in model.layers()[..prefix].iter().enumerate() {
        let reencrypt = matches!(layer, EncodedLayer::Reencrypt(_));
        let next_mirror = match model.run_int(i..i + 1, &mirror) {
            Ok(m) => m,
            Err(e) => {
                report.verdict = Verdict::Invalid {
                    message: e.to_string(),
                };
                return report;
            }
        };
        // A boundary's row is what the client encrypted afresh: the next segment's input.
        let seen = if reencrypt {
            observed.input.get(i + 1)
        } else {
            observed.layer.get(i)
        }
        .and_then(Option::as_ref);
        let Some(seen) = seen else {
            report.verdict = Verdict::Invalid {
                message: format!("layer {i} was not observed"),
            };
            return report;
        };
        let sanitized = observed.sanitized.get(i).and_then(Option::as_ref);
        let shown = sanitized.unwrap_or(seen);
        let values = shown.values.clone();
        let budget = shown.budget;
        let ms = if reencrypt {
            // The client's decryption, rescale and encryption around the boundary.
            let seg = run
                .segments
                .iter()
                .position(|s| s.layers[1] == i)
                .unwrap_or(0);
            run.segments[seg].decrypt_ms + run.segments.get(seg + 1).map_or(0.0, |s| s.encrypt_ms)
        } else {
            seen.ms
        };
        let info = model.info_before(i + 1);
        let equals = values == next_mirror;
        let (max_error, mean_error) = float_outs
            .get(i)
            .and_then(|f| f.as_ref())
            .map(|f| error_against(&values, info.scale, f))
            .unwrap_or((f64::NAN, f64::NAN));
        let observed_max = values
            .data()
            .iter()
            .map(|v| v.unsigned_abs())
            .max()
            .unwrap_or(0);
        let plan = sanitized.and_then(|_| {
            let end = segment_ending(model, i);
            let k = he_layers::plan::segments(model)
                .iter()
                .position(|r| *r == end)?;
            plans.get(k)?.first()
        });
        report.layers.push(LayerReport {
            index: i,
            name: layer.name().to_string(),
            description: layer.describe(),
            runs: if reencrypt {
                Runs::Reencrypt
            } else {
                Runs::Encrypted
            },
            max_error,
            mean_error,
            ms,
            encrypted: Some(EncryptedLayerReport {
                noise_budget: budget,
                // A sanitized answer's budget as the client has it: after the compression.
                predicted_noise_budget: plan.map_or(predicted[i], |p| {
                    model
                        .parameters()
                        .at_level(p.level)
                        .ok()
                        .and_then(|level| compressed_budget(&level, p.noise_log2))
                        .unwrap_or(p.budget_bits)
                }),
                bound_bits: info.bound_bits(),
                capacity_bits: (model.capacity() as f64).log2(),
                overflow: predictions[i].overflow,
                observed_bits: (observed_max as f64).log2(),
                equals_mirror: equals,
                ciphertexts: shown.ciphertexts,
                bytes: shown.bytes,
                budget_before_sanitization: sanitized.map(|_| seen.budget),
                bytes_before_sanitization: sanitized.map(|_| seen.bytes),
                sanitize_ms: sanitized.map(|s| s.ms),
                sanitization: plan.cloned(),
                sample: debug.then(|| {
                    (
                        values.image(0).into_iter().take(8).collect(),
                        next_mirror.image(0).into_iter().take(8).collect(),
                    )
                }),
            }),
        });
        progress(&format!(
            "layer {i}: {} — budget {budget} bits",
            layer.describe()
        ));
        if budget == 0 || !equals {
            let fix = fix_for_noise(&crt, set, i);
            report.verdict = Verdict::NoiseExhausted { layer: i, fix };
            report.total_ms = started.elapsed().as_secs_f64() * 1000.0;
            return report;
        }
        mirror = next_mirror;
        last = Some(values);
    }
    // The plaintext tail, run on the decrypted values as the client runs it, layer by layer;
    // then every image end to end against the float model (and a reference run's outputs).
    if let Some(out) = last {
        let float = match net_builder::eval::float_outputs(&loaded.spec, &loaded.images) {
            Ok(f) => f,
            Err(e) => {
                report.verdict = Verdict::Invalid {
                    message: format!("the float model cannot run on the images: {e}"),
                };
                return report;
            }
        };
        let decrypted = match run_tail(loaded, &crt, &out, &float_outs, &mut report) {
            Ok(d) => d,
            Err(message) => {
                report.verdict = Verdict::Invalid { message };
                return report;
            }
        };
        let n = decrypted.len();
        let (mut agree, mut correct, mut ref_agree) = (0, 0, 0);
        for (j, d) in decrypted.into_iter().enumerate() {
            let f = float.get(j).cloned().unwrap_or_default();
            let reference = loaded
                .reference_outputs
                .as_ref()
                .and_then(|r| r.get(j).cloned());
            let image = ImageReport {
                index: j,
                encrypted_label: argmax(&d),
                float_label: argmax(&f),
                reference_label: reference.as_deref().map(argmax),
                label: loaded.labels.as_ref().and_then(|l| l.get(j).copied()),
                decrypted: d,
                float: f,
                reference,
            };
            agree += (image.encrypted_label == image.float_label) as usize;
            correct += (image.label == Some(image.encrypted_label)) as usize;
            ref_agree += (image.reference_label == Some(image.encrypted_label)) as usize;
            report.per_image.push(image);
        }
        let d = n.max(1) as f64;
        report.label_agreement = agree as f64 / d;
        report.accuracy = loaded.labels.as_ref().map(|_| correct as f64 / d);
        report.reference_agreement = loaded
            .reference_outputs
            .as_ref()
            .map(|_| ref_agree as f64 / d);
    }
    report.ms_per_image = compute_ms / report.images.max(1) as f64;
    report.total_ms = started.elapsed().as_secs_f64() * 1000.0;
    report
}

pub(crate) fn build_crt_with(
    spec: &ModelSpec,
    params: &EncryptionParameters,
    moduli: &[u64],
    opts: &BuildOptions,
) -> Result<CrtModel, Verdict> {
    if params.coeff_bits.is_none() && params.security.0 == he_layers::crypto::SecurityLevel::Bits128
    {
        build_crt(spec, params.degree, moduli, opts).map_err(|e| Verdict::Invalid {
            message: e.to_string(),
        })
    } else {
        // Custom moduli: build every component from the resolved sets.
        let sets = params.resolve().map_err(classify)?;
        build_crt_on(spec, &sets, opts).map_err(|e| Verdict::Invalid {
            message: e.to_string(),
        })
    }
}

fn error_against(values: &IntTensor, scale: f64, float: &[Vec<f64>]) -> (f64, f64) {
    let mut max: f64 = 0.0;
    let mut sum = 0.0;
    let mut n = 0usize;
    for (j, f) in float.iter().enumerate().take(values.batch()) {
        for (v, fv) in values.image(j).iter().zip(f) {
            let e = (*v as f64 / scale - fv).abs();
            max = max.max(e);
            sum += e;
            n += 1;
        }
    }
    (max, sum / n.max(1) as f64)
}

/// The float reference's activations after each encoded layer (None where a re-encryption
/// boundary has no float counterpart: it keeps the previous values).
fn float_per_layer(loaded: &Loaded, crt: &CrtModel) -> Vec<Option<Vec<Vec<f64>>>> {
    let spec = &loaded.spec;
    let n = loaded.images.batch();
    let mut shape = vec![n];
    shape.extend(loaded.images.shape());
    let data: Vec<f64> = (0..n).flat_map(|j| loaded.images.image(j)).collect();
    let Some(mut cur) = net_builder::spec::array(&shape, data) else {
        return vec![];
    };
    let mut outs = Vec::new();
    let mut last_rows: Option<Vec<Vec<f64>>> = None;
    for idx in &crt.components[0].spec_index {
        match idx {
            Some(i) => match spec.forward(&cur, *i..*i + 1) {
                Ok(y) => {
                    cur = y;
                    let per = cur.len() / n.max(1);
                    let flat: Vec<f64> = cur.iter().copied().collect();
                    let rows: Vec<Vec<f64>> = flat.chunks(per.max(1)).map(|c| c.to_vec()).collect();
                    last_rows = Some(rows.clone());
                    outs.push(Some(rows));
                }
                // Every later reference would start from the wrong input: none is given.
                Err(_) => {
                    outs.resize(crt.components[0].spec_index.len(), None);
                    return outs;
                }
            },
            None => outs.push(last_rows.clone()),
        }
    }
    outs
}

/// Runs the plaintext tail (the layers after the encryptable prefix) on the decrypted
/// values `out`, in floating point as the client does, adding a row per layer to the report;
/// returns every image's end-to-end outputs.
fn run_tail(
    loaded: &Loaded,
    crt: &CrtModel,
    out: &IntTensor,
    float_outs: &[Option<Vec<Vec<f64>>>],
    report: &mut SetReport,
) -> Result<Vec<Vec<f64>>, String> {
    let model = crt.model();
    let prefix = model.encryptable_prefix();
    let scale = model.info_before(prefix).scale;
    let n = out.batch();
    let mut shape = vec![n];
    shape.extend(out.shape());
    let data: Vec<f64> = (0..n)
        .flat_map(|j| out.image(j).into_iter().map(|v| v as f64 / scale))
        .collect();
    let mut cur = net_builder::spec::array(&shape, data)
        .ok_or("the decrypted values do not fill the prefix's output shape")?;
    for i in prefix..model.layers().len() {
        let layer = &model.layers()[i];
        let spec_i = crt.components[0]
            .spec_index
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| format!("layer {i} of the tail has no float layer"))?;
        let t0 = Instant::now();
        cur = loaded
            .spec
            .forward(&cur, spec_i..spec_i + 1)
            .map_err(|e| format!("the plaintext tail at layer {i}: {e}"))?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let rows = rows_of(&cur, n);
        let (max_error, mean_error) = float_outs
            .get(i)
            .and_then(Option::as_ref)
            .map(|f| float_error(&rows, f))
            .unwrap_or((f64::NAN, f64::NAN));
        report.layers.push(LayerReport {
            index: i,
            name: layer.name().to_string(),
            description: layer.describe(),
            runs: Runs::Plaintext,
            max_error,
            mean_error,
            ms,
            encrypted: None,
        });
    }
    Ok(rows_of(&cur, n))
}

/// One row per image of a batch array.
fn rows_of(a: &ndarray::ArrayD<f64>, n: usize) -> Vec<Vec<f64>> {
    let flat: Vec<f64> = a.iter().copied().collect();
    let per = (flat.len() / n.max(1)).max(1);
    flat.chunks(per).map(<[f64]>::to_vec).collect()
}

/// Largest and mean |a − b| over rows.
fn float_error(a: &[Vec<f64>], b: &[Vec<f64>]) -> (f64, f64) {
    let mut max: f64 = 0.0;
    let (mut sum, mut count) = (0.0, 0usize);
    for (x, y) in a.iter().zip(b) {
        for (u, v) in x.iter().zip(y) {
            let e = (u - v).abs();
            max = max.max(e);
            sum += e;
            count += 1;
        }
    }
    (max, sum / count.max(1) as f64)
}

/// Runs every set of a config.
pub fn run(cfg: &TesterConfig, loaded: &Loaded, mut progress: impl FnMut(usize, &str)) -> Report {
    let sets = cfg
        .encryption_parameters
        .iter()
        .enumerate()
        .map(|(k, s)| run_set(loaded, cfg, s, |m| progress(k, m)))
        .collect();
    Report {
        model: loaded.spec.name.clone(),
        images: loaded.images.batch(),
        input_shape: loaded.spec.input_shape.clone(),
        input_shape_guessed: loaded.input_shape_guessed,
        sets,
    }
}

/// A session's refusal as the tester's verdict.
fn verdict_of(e: SessionError) -> Verdict {
    match e {
        SessionError::NoRoomForCircuitPrivacy { layers, reason } => {
            Verdict::NoRoomForCircuitPrivacy {
                layer: layers.end.saturating_sub(1),
                fix: reason.to_string(),
            }
        }
        other => Verdict::Invalid {
            message: other.to_string(),
        },
    }
}
