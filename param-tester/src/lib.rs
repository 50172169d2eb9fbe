//! `param-tester`: runs a model encrypted and in plaintext for each parameter set of a config,
//! layer by layer with the secret key at hand, and reports per layer the noise budget left,
//! the predicted interval against t/2, the error against the float reference, whether it equals
//! the integer mirror exactly, time, and ciphertext count and bytes; per set a verdict and the
//! smallest change that would fix it. `recommend` searches for the cheapest set that works.
#![warn(missing_docs)]

mod error;
pub use error::TesterError;

use he_layers::crypto::sanitize::{SanitizationPlan, DEFAULT_FLOOD_BITS};
use he_layers::layers::EncodedLayer;
use he_layers::model::crt_combine_tensors;
use he_layers::plan::LayoutKind;
use he_layers::protocol::{EncryptionParameters, ProtocolError, Runs, Security};
use he_layers::tensor::{FloatTensor, IntTensor};
use net_builder::eval::argmax;
use net_builder::pipeline::{build_crt, ClientKeys, CrtModel};
use net_builder::session::{
    decrypt_tensor, min_noise_budget, plan_circuit_privacy, InProcess, LayerObservation, Observed,
    Session, SessionError, SessionPlan,
};
use net_builder::{BuildOptions, ModelSpec, PickleOptions};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The tester's configuration file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TesterConfig {
    /// A model folder (`models/<net>`, with model.onnx and manifest.json) or a model file.
    pub model: PathBuf,
    /// The images: a test-set slice or a list of PNG files.
    pub images: ImagesConfig,
    /// The parameter sets to test.
    pub encryption_parameters: Vec<ParameterSet>,
    /// Per-layer details in the report (value samples, intervals).
    #[serde(default)]
    pub debug: bool,
}

/// Which images to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImagesConfig {
    /// A slice of an IDX test set.
    TestSet {
        /// The IDX image file.
        test_set: PathBuf,
        /// First image.
        #[serde(default)]
        index: usize,
        /// How many (one batch holds up to N).
        count: usize,
    },
    /// PNG files.
    Files(Vec<PathBuf>),
}

/// One parameter set to test, PyCrCNN's shape extended.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterSet {
    /// A label for the report.
    #[serde(default)]
    pub name: Option<String>,
    /// Ring degree N.
    #[serde(alias = "m", alias = "n")]
    pub degree: usize,
    /// Plaintext moduli (one, or several for CRT).
    #[serde(default, alias = "p", alias = "t", alias = "plain_modulus")]
    pub plain_moduli: Option<serde_json::Value>,
    /// Or their size in bits…
    #[serde(default)]
    pub plain_modulus_bits: Option<u32>,
    /// …and how many.
    #[serde(default)]
    pub plain_moduli_count: Option<usize>,
    /// Ciphertext prime sizes, special prime last (default: the 128-bit preset).
    #[serde(default)]
    pub coeff_bits: Option<Vec<u32>>,
    /// Security: 128 (default), 192, 256, "none".
    #[serde(default, alias = "sec")]
    pub security: Option<serde_json::Value>,
    /// Layers after which the client re-encrypts.
    #[serde(default, alias = "rencrypt_positions")]
    pub reencrypt_positions: Vec<usize>,
    /// Inputs × 2^input_scale_bits.
    pub input_scale_bits: u32,
    /// Weight precision per layer (default: the most without overflow).
    #[serde(default, alias = "weight_scale_bits")]
    pub weight_bits: Option<u32>,
    /// λ of the server's circuit privacy (default 40, the server's default); 0 measures the
    /// unsanitized answers a `--danger-no-circuit-privacy` server returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flood_bits: Option<u32>,
}

impl ParameterSet {
    /// The encryption parameters these fields describe.
    pub fn encryption_parameters(&self) -> Result<EncryptionParameters, TesterError> {
        let mut v = serde_json::json!({ "degree": self.degree });
        if let Some(p) = &self.plain_moduli {
            v["plain_moduli"] = p.clone();
        }
        if let Some(b) = self.plain_modulus_bits {
            v["plain_modulus_bits"] = b.into();
        }
        if let Some(c) = self.plain_moduli_count {
            v["plain_moduli_count"] = c.into();
        }
        if let Some(c) = &self.coeff_bits {
            v["coeff_bits"] = serde_json::json!(c);
        }
        if let Some(s) = &self.security {
            v["security"] = s.clone();
        }
        serde_json::from_value(v).map_err(TesterError::Parameters)
    }

    fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            format!(
                "N={} t={} in=2^{} w={} re={:?}",
                self.degree,
                self.plain_moduli
                    .as_ref()
                    .map(|v| v.to_string())
                    .or(self
                        .plain_modulus_bits
                        .map(|b| format!("{}×{b}b", self.plain_moduli_count.unwrap_or(1))))
                    .unwrap_or_default(),
                self.input_scale_bits,
                self.weight_bits.map_or("auto".into(), |b| b.to_string()),
                self.reencrypt_positions
            )
        })
    }
}

/// One layer's measurements.
#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    /// Index in the encoded model.
    pub index: usize,
    /// Name.
    pub name: String,
    /// Kind and hyper-parameters.
    pub description: String,
    /// Where it ran: "encrypted" or "reencrypt" (client).
    pub runs: Runs,
    /// Noise budget left, bits, smallest over ciphertexts and plaintext moduli.
    pub noise_budget: u32,
    /// The evaluator's prediction of it (conservative; negative: predicted short by that many
    /// bits); for a sanitized layer, the sanitization plan's budget.
    pub predicted_noise_budget: f64,
    /// log2 of the predicted worst-case bound.
    pub bound_bits: f64,
    /// log2 of the plaintext capacity t/2 (or the CRT product's half).
    pub capacity_bits: f64,
    /// Whether the bound reaches the capacity.
    pub overflow: bool,
    /// log2 of the largest |integer| actually seen.
    pub observed_bits: f64,
    /// Largest |decrypted / scale − float reference|.
    pub max_error: f64,
    /// Mean of the same.
    pub mean_error: f64,
    /// Whether every decrypted integer equals the integer mirror.
    pub equals_mirror: bool,
    /// Time of the layer itself, ms (all plaintext moduli; for a boundary, the client's
    /// decryption, rescale and encryption), without the measurements.
    pub ms: f64,
    /// Ciphertexts out (all plaintext moduli).
    pub ciphertexts: usize,
    /// Their serialized bytes.
    pub bytes: usize,
    /// For the last layer of a segment: the server's sanitization of the answer (the budget,
    /// ciphertexts and bytes above are measured after it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sanitization: Option<SanitizationPlan>,
    /// The measured budget before sanitization, for the same layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_before_sanitization: Option<u32>,
    /// Bytes before sanitization's modulus switching, for the same layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_before_sanitization: Option<usize>,
    /// Time of the sanitization, ms (all plaintext moduli).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sanitize_ms: Option<f64>,
    /// Debug: the first values of the first image (decrypted, mirror).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<(Vec<i128>, Vec<i128>)>,
}

/// The verdict for one set.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verdict {
    /// Every layer exact with budget left.
    Ok,
    /// Refused by the security check or invalid.
    Insecure {
        /// Why.
        message: String,
    },
    /// The parameters are invalid otherwise.
    Invalid {
        /// Why.
        message: String,
    },
    /// A layer's bound reaches the capacity (found before running).
    Overflow {
        /// The layer.
        layer: usize,
        /// The smallest fix.
        fix: String,
    },
    /// The noise budget ran out at a layer.
    NoiseExhausted {
        /// The layer.
        layer: usize,
        /// The smallest fix.
        fix: String,
    },
    /// A segment's answer cannot be sanitized: the server refuses it (found before running).
    NoRoomForCircuitPrivacy {
        /// The segment's last layer.
        layer: usize,
        /// What the server says, with the fixes.
        fix: String,
    },
}

/// One set's report.
#[derive(Clone, Debug, Serialize)]
pub struct SetReport {
    /// Label.
    pub name: String,
    /// The parameters as given.
    pub parameters: ParameterSet,
    /// The verdict.
    pub verdict: Verdict,
    /// Security level reached (HE standard).
    pub security: Option<String>,
    /// Plaintext moduli.
    pub plain_moduli: Vec<u64>,
    /// Weight precision in use.
    pub weight_bits: Option<u32>,
    /// Per layer (only those run).
    pub layers: Vec<LayerReport>,
    /// Public key bytes (all moduli).
    pub public_key_bytes: usize,
    /// Relinearization key bytes (all moduli).
    pub relin_key_bytes: usize,
    /// Upload bytes per batch (every segment's input).
    pub upload_bytes: usize,
    /// Download bytes per batch (every segment's output).
    pub download_bytes: usize,
    /// Key generation, ms.
    pub keygen_ms: f64,
    /// Whole run, ms.
    pub total_ms: f64,
    /// Images in the batch.
    pub images: usize,
    /// Server-side time per image, ms (the batch's compute over the images).
    pub ms_per_image: f64,
    /// Fraction of images whose encrypted label equals the float model's.
    pub label_agreement: f64,
    /// Fraction of images labelled correctly (when labels are known).
    pub accuracy: Option<f64>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Model.
    pub model: String,
    /// Images used.
    pub images: usize,
    /// One entry per parameter set.
    pub sets: Vec<SetReport>,
}

/// A loaded model with its manifest facts.
pub struct Loaded {
    /// The spec.
    pub spec: ModelSpec,
    /// Input range.
    pub input_range: [f64; 2],
    /// The images.
    pub images: FloatTensor,
    /// Labels when known.
    pub labels: Option<Vec<usize>>,
}

/// Loads the model and images a config names (paths relative to `base`).
pub fn load(cfg: &TesterConfig, base: &Path) -> Result<Loaded, TesterError> {
    let model = base.join(&cfg.model);
    let (file, manifest) = if model.is_dir() {
        (model.join("model.onnx"), Some(model.join("manifest.json")))
    } else {
        (model.clone(), None)
    };
    let spec = net_builder::load_model(&file, &PickleOptions::default())?;
    let mut input_range = [0.0, 1.0];
    if let Some(m) = manifest.filter(|m| m.exists()) {
        let text = std::fs::read_to_string(&m).map_err(|source| TesterError::Io {
            path: m.clone(),
            source,
        })?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| TesterError::Manifest {
                path: m.clone(),
                source,
            })?;
        if let (Some(a), Some(b)) = (v["input_range"][0].as_f64(), v["input_range"][1].as_f64()) {
            input_range = [a, b];
        }
    }
    let (images, labels) = match &cfg.images {
        ImagesConfig::TestSet {
            test_set,
            index,
            count,
        } => {
            let path = base.join(test_set);
            let x = net_builder::data::idx_images(&path, *index, *count)?;
            let lp = PathBuf::from(
                path.display()
                    .to_string()
                    .replace("images-idx3", "labels-idx1"),
            );
            let y = if lp != path && lp.exists() {
                Some(net_builder::data::idx_labels(&lp, *index, *count)?)
            } else {
                None
            };
            (x, y)
        }
        ImagesConfig::Files(files) => {
            let mut shape = None;
            let mut data = Vec::new();
            for f in files {
                let (s, px) = net_builder::data::png_image(&base.join(f))?;
                shape.get_or_insert(s);
                data.push(px);
            }
            let x = FloatTensor::from_images(shape.unwrap_or_default(), &data)
                .ok_or(TesterError::InconsistentImages)?;
            (x, None)
        }
    };
    Ok(Loaded {
        spec,
        input_range,
        images,
        labels,
    })
}

fn fix_for_overflow(set: &ParameterSet, layer: usize, crt: &CrtModel) -> String {
    let model = crt.model();
    let bound = model.info_before(layer + 1).bound_bits();
    let cap = (model.capacity() as f64).log2();
    let squares_before = model.layers()[..=layer]
        .iter()
        .filter(|l| matches!(l, EncodedLayer::Square(_)))
        .count();
    let extra = (bound - cap).ceil().max(1.0);
    format!(
        "plaintext capacity short by {extra:.0} bits at layer {layer}: use another plaintext modulus (CRT) or {extra:.0} more bits of t; or lower input_scale_bits (now {}) or weight_bits{}{}",
        set.input_scale_bits,
        set.weight_bits.map_or(String::new(), |w| format!(" (now {w})")),
        if squares_before > 0 { "; or re-encrypt (with a rescale) before the squares that grow it" } else { "" }
    )
}

fn classify(e: ProtocolError) -> Verdict {
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
        accuracy: None,
    }
}

/// Runs one parameter set. `progress` is told each layer as it finishes.
pub fn run_set(
    loaded: &Loaded,
    set: &ParameterSet,
    debug: bool,
    mut progress: impl FnMut(&str),
) -> SetReport {
    let started = Instant::now();
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
    let opts = BuildOptions {
        input_scale_bits: set.input_scale_bits,
        weight_bits: set.weight_bits,
        input_min: loaded.input_range[0],
        input_max: loaded.input_range[1],
        reencrypt_after: set.reencrypt_positions.clone(),
        rescale_bits: None,
        crt_moduli: None,
    };
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
    let predicted = model.estimate_noise_budgets();
    let t0 = Instant::now();
    let keys: Vec<ClientKeys> = crt
        .components
        .iter()
        .map(|c| ClientKeys::generate(c.model.parameters()))
        .collect();
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
    let flood_bits = set.flood_bits.unwrap_or(DEFAULT_FLOOD_BITS);
    let observations = Observations::new(model, x.batch());
    let observe = |o: LayerObservation<'_>| observations.record(&o, &keys);
    let plans = match plan_circuit_privacy(&crt, Some(flood_bits)) {
        Ok(p) => p,
        Err(SessionError::NoRoomForCircuitPrivacy { layers, reason }) => {
            report.verdict = Verdict::NoRoomForCircuitPrivacy {
                layer: layers.end - 1,
                fix: reason,
            };
            return report;
        }
        Err(e) => {
            report.verdict = Verdict::Invalid {
                message: e.to_string(),
            };
            return report;
        }
    };
    let transport = match InProcess::new(&crt, &keys, Some(flood_bits)) {
        Ok(t) => t.observed(&observe),
        Err(SessionError::NoRoomForCircuitPrivacy { layers, reason }) => {
            report.verdict = Verdict::NoRoomForCircuitPrivacy {
                layer: layers.end - 1,
                fix: reason,
            };
            return report;
        }
        Err(e) => {
            report.verdict = Verdict::Invalid {
                message: e.to_string(),
            };
            return report;
        }
    };
    let session = SessionPlan::from_model(model, LayoutKind::Batch, &moduli)
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
            noise_budget: budget,
            predicted_noise_budget: plan.map_or(predicted[i], |p| p.budget_bits),
            bound_bits: info.bound_bits(),
            capacity_bits: (model.capacity() as f64).log2(),
            overflow: predictions[i].overflow,
            observed_bits: (observed_max as f64).log2(),
            max_error,
            mean_error,
            equals_mirror: equals,
            ms,
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
    // Labels: the encrypted integers at the end of the prefix against the float model.
    if let Some(out) = last {
        let float =
            net_builder::eval::float_outputs(&loaded.spec, &loaded.images).unwrap_or_default();
        let n = out.batch();
        let ends_model = prefix == model.layers().len();
        let mut agree = 0;
        let mut correct = 0;
        for j in 0..n {
            let enc_label = if ends_model {
                argmax(&out.image(j))
            } else {
                // A plaintext tail: run it on the decrypted values.
                tail_label(loaded, &crt, &out, j)
            };
            agree += (float.get(j).map(|f| argmax(f)) == Some(enc_label)) as usize;
            if let Some(l) = &loaded.labels {
                correct += (l[j] == enc_label) as usize;
            }
        }
        report.label_agreement = agree as f64 / n.max(1) as f64;
        report.accuracy = loaded
            .labels
            .as_ref()
            .map(|_| correct as f64 / n.max(1) as f64);
    }
    report.ms_per_image = compute_ms / report.images.max(1) as f64;
    report.total_ms = started.elapsed().as_secs_f64() * 1000.0;
    report
}

/// The segment that ends at layer `i` (its last layer), as the plan cuts them.
fn segment_ending(model: &he_layers::model::EncodedModel, i: usize) -> std::ops::Range<usize> {
    he_layers::plan::segments(model)
        .into_iter()
        .find(|r| r.end == i + 1)
        .unwrap_or(i..i + 1)
}

/// What the observer saw of one layer, over every plaintext modulus.
struct Seen {
    /// Decrypted and recombined integers.
    values: IntTensor,
    /// Smallest measured budget.
    budget: u32,
    /// Ciphertexts, all moduli.
    ciphertexts: usize,
    /// Their bytes.
    bytes: usize,
    /// Time, ms (all moduli).
    ms: f64,
}

/// One modulus' share of a [`Seen`].
struct Part {
    values: Option<IntTensor>,
    budget: u32,
    ciphertexts: usize,
    bytes: usize,
    ms: f64,
}

/// Per layer: the segment inputs, the layer outputs and the sanitized answers seen.
struct SeenLayers {
    input: Vec<Option<Seen>>,
    layer: Vec<Option<Seen>>,
    sanitized: Vec<Option<Seen>>,
}

/// Each modulus' share, by what was observed and at which layer.
type PartsByLayer = std::collections::BTreeMap<(Observed, usize), Vec<Option<Part>>>;

/// The observer's notes, decrypted with the client's keys as they come.
struct Observations<'m> {
    model: &'m he_layers::model::EncodedModel,
    moduli: Vec<u64>,
    batch: usize,
    parts: std::sync::Mutex<PartsByLayer>,
}

impl<'m> Observations<'m> {
    fn new(model: &'m he_layers::model::EncodedModel, batch: usize) -> Self {
        Self {
            model,
            moduli: model.plaintext_moduli().to_vec(),
            batch,
            parts: Default::default(),
        }
    }

    fn record(&self, o: &LayerObservation<'_>, keys: &[ClientKeys]) {
        let Some(k) = keys.get(o.component) else {
            return;
        };
        let info = match o.observed {
            Observed::Input => self.model.info_before(o.layer),
            Observed::Layer | Observed::Sanitized => self.model.info_before(o.layer + 1),
        };
        let part = Part {
            values: decrypt_tensor(LayoutKind::Batch, o.cts, info, self.batch, &k.sk).ok(),
            budget: min_noise_budget(o.cts, &k.sk).unwrap_or(0),
            ciphertexts: o.cts.len(),
            bytes: o.cts.iter().map(|c| c.serialized_len()).sum(),
            ms: o.ms,
        };
        if let Ok(mut parts) = self.parts.lock() {
            let slot = parts
                .entry((o.observed, o.layer))
                .or_insert_with(|| (0..self.moduli.len()).map(|_| None).collect());
            if let Some(s) = slot.get_mut(o.component) {
                *s = Some(part);
            }
        }
    }

    fn into_layers(self) -> SeenLayers {
        let n = self.model.layers().len() + 1;
        let mut out = SeenLayers {
            input: (0..n).map(|_| None).collect(),
            layer: (0..n).map(|_| None).collect(),
            sanitized: (0..n).map(|_| None).collect(),
        };
        let parts = self.parts.into_inner().unwrap_or_default();
        for ((kind, layer), parts) in parts {
            let Some(parts) = parts.into_iter().collect::<Option<Vec<Part>>>() else {
                continue;
            };
            let tensors: Option<Vec<IntTensor>> = parts.iter().map(|p| p.values.clone()).collect();
            let Some(values) = tensors.and_then(|t| crt_combine_tensors(&t, &self.moduli).ok())
            else {
                continue;
            };
            let seen = Seen {
                values,
                budget: parts.iter().map(|p| p.budget).min().unwrap_or(0),
                ciphertexts: parts.iter().map(|p| p.ciphertexts).sum(),
                bytes: parts.iter().map(|p| p.bytes).sum(),
                ms: parts.iter().map(|p| p.ms).sum(),
            };
            let slot = match kind {
                Observed::Input => &mut out.input,
                Observed::Layer => &mut out.layer,
                Observed::Sanitized => &mut out.sanitized,
            };
            if let Some(s) = slot.get_mut(layer) {
                *s = Some(seen);
            }
        }
        out
    }
}

fn build_crt_with(
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
        let crt = (moduli.len() > 1).then(|| moduli.to_vec());
        let mut o = BuildOptions {
            crt_moduli: crt,
            ..opts.clone()
        };
        let first = net_builder::build_model(spec, &sets[0], &o).map_err(|e| Verdict::Invalid {
            message: e.to_string(),
        })?;
        o.weight_bits = Some(first.weight_bits);
        let mut components = vec![first];
        for p in &sets[1..] {
            components.push(net_builder::build_model(spec, p, &o).map_err(|e| {
                Verdict::Invalid {
                    message: e.to_string(),
                }
            })?);
        }
        Ok(CrtModel {
            components,
            moduli: moduli.to_vec(),
        })
    }
}

fn fix_for_noise(crt: &CrtModel, set: &ParameterSet, layer: usize) -> String {
    let model = crt.model();
    // The spec index of the layer before the exhausted one: re-encrypting there gives it a
    // fresh budget.
    let spec_idx = crt.components[0].spec_index[..layer]
        .iter()
        .rev()
        .find_map(|&i| i);
    let mut fixes = Vec::new();
    if let Some(s) = spec_idx {
        if !set.reencrypt_positions.contains(&s) {
            let mut pos = set.reencrypt_positions.clone();
            pos.push(s);
            pos.sort_unstable();
            fixes.push(format!(
                "re-encrypt after layer {s} (reencrypt_positions {pos:?})"
            ));
        }
    }
    if set.degree < 32768 {
        fixes.push(format!("or a larger N ({})", set.degree * 2));
    }
    let _ = model;
    format!(
        "noise budget exhausted at layer {layer}: {}",
        fixes.join(", ")
    )
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
                Err(_) => outs.push(None),
            },
            None => outs.push(last_rows.clone()),
        }
    }
    outs
}

fn tail_label(loaded: &Loaded, crt: &CrtModel, out: &IntTensor, j: usize) -> usize {
    let model = crt.model();
    let prefix = model.encryptable_prefix();
    let scale = model.info_before(prefix).scale;
    let start = crt.components[0].spec_index[..prefix]
        .iter()
        .rev()
        .find_map(|&i| i)
        .map_or(0, |i| i + 1);
    let vals: Vec<f64> = out.image(j).iter().map(|&v| v as f64 / scale).collect();
    let mut shape = vec![1];
    shape.extend(out.shape());
    net_builder::spec::array(&shape, vals)
        .and_then(|a| {
            loaded
                .spec
                .forward(&a, start..loaded.spec.layers.len())
                .ok()
        })
        .map(|y| argmax(&y.iter().copied().collect::<Vec<_>>()))
        .unwrap_or(usize::MAX)
}

/// Runs every set of a config.
pub fn run(cfg: &TesterConfig, loaded: &Loaded, mut progress: impl FnMut(usize, &str)) -> Report {
    let sets = cfg
        .encryption_parameters
        .iter()
        .enumerate()
        .map(|(k, s)| run_set(loaded, s, cfg.debug, |m| progress(k, m)))
        .collect();
    Report {
        model: loaded.spec.name.clone(),
        images: loaded.images.batch(),
        sets,
    }
}

/// The verdict in words.
pub fn verdict_line(v: &Verdict) -> String {
    match v {
        Verdict::Ok => "OK".to_string(),
        Verdict::Insecure { message } => format!("INSECURE: {message}"),
        Verdict::Invalid { message } => format!("INVALID: {message}"),
        Verdict::Overflow { layer, fix } => format!("OVERFLOW at layer {layer}: {fix}"),
        Verdict::NoiseExhausted { layer, fix } => {
            format!("NOISE EXHAUSTED at layer {layer}: {fix}")
        }
        Verdict::NoRoomForCircuitPrivacy { layer, fix } => {
            format!("NO ROOM FOR CIRCUIT PRIVACY after layer {layer}: {fix}")
        }
    }
}

/// A human table of a report.
pub fn table(report: &Report) -> String {
    let mut s = format!("model {} on {} images\n", report.model, report.images);
    for set in &report.sets {
        s += &format!(
            "\n{} — {} — security {} — moduli {:?} — weights {} bits\n",
            set.name,
            verdict_line(&set.verdict),
            set.security.clone().unwrap_or_else(|| "-".into()),
            set.plain_moduli,
            set.weight_bits.map_or("-".into(), |w| w.to_string())
        );
        if set.layers.is_empty() {
            continue;
        }
        s += &format!(
            "  {:>3} {:<42} {:>7} {:>7} {:>7} {:>7} {:>9} {:>6} {:>9} {:>6} {:>9}\n",
            "#", "layer", "budget", "pred.", "bound", "cap", "max err", "exact", "ms", "cts", "MB"
        );
        for l in &set.layers {
            s += &format!(
                "  {:>3} {:<42} {:>7} {:>7.1} {:>7.1} {:>7.1} {:>9.2e} {:>6} {:>9.0} {:>6} {:>9.1}\n",
                l.index,
                l.description.chars().take(42).collect::<String>(),
                l.noise_budget,
                l.predicted_noise_budget,
                l.bound_bits,
                l.capacity_bits,
                l.max_error,
                if l.equals_mirror { "yes" } else { "NO" },
                l.ms,
                l.ciphertexts,
                l.bytes as f64 / 1e6
            );
            if let Some(p) = &l.sanitization {
                s += &format!(
                    "      sanitized: {} → {} primes, flood 2^{} (λ = {}), budget {} → {} bits, {:.1} → {:.1} MB, {:.0} ms\n",
                    p.from_level,
                    p.level,
                    p.flood_log2,
                    p.flood_bits,
                    l.budget_before_sanitization.unwrap_or(0),
                    l.noise_budget,
                    l.bytes_before_sanitization.unwrap_or(0) as f64 / 1e6,
                    l.bytes as f64 / 1e6,
                    l.sanitize_ms.unwrap_or(0.0)
                );
            }
        }
        s += &format!(
            "  keys: public {:.1} MB, relinearization {:.1} MB; upload {:.1} MB, download {:.1} MB per batch; total {:.1} s; {:.2} ms/image; labels agree with the float model on {:.1}%{}\n",
            set.public_key_bytes as f64 / 1e6,
            set.relin_key_bytes as f64 / 1e6,
            set.upload_bytes as f64 / 1e6,
            set.download_bytes as f64 / 1e6,
            set.total_ms / 1000.0,
            set.ms_per_image,
            100.0 * set.label_agreement,
            set.accuracy.map_or(String::new(), |a| format!("; accuracy {:.1}%", 100.0 * a))
        );
    }
    s
}

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

/// Searches the 128-bit presets, plaintext-modulus splits and re-encryption positions for the
/// cheapest set the evaluator predicts to work, then runs candidates in order of cost until one
/// passes. Returns its report and a ready client config.
pub fn recommend(
    loaded: &Loaded,
    input_scale_bits: u32,
    weight_bits: Option<u32>,
    mut progress: impl FnMut(&str),
) -> Option<(SetReport, serde_json::Value)> {
    let squares: Vec<usize> = loaded
        .spec
        .layers
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l, net_builder::LayerSpec::Square { .. }))
        .map(|(i, _)| i)
        .collect();
    // Boundary options, fewest first: none, then after each square alone, then after all.
    let mut boundaries: Vec<Vec<usize>> = vec![vec![]];
    for &s in &squares {
        boundaries.push(vec![s]);
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
    // Fewest re-encryption positions first (each is a client round trip), then the cheapest
    // ring and split, then the smallest t that fits (the most noise margin).
    candidates.sort_by(|a, b| {
        a.4.len()
            .cmp(&b.4.len())
            .then(a.0.total_cmp(&b.0))
            .then(a.3.cmp(&b.3))
    });
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
            input_scale_bits,
            weight_bits,
            flood_bits: None,
        };
        // Cheap checks first: valid parameters, no overflow, a plausible noise budget.
        let Ok(params) = set.encryption_parameters() else {
            continue;
        };
        let Ok(moduli) = params.plain_moduli() else {
            continue;
        };
        let opts = BuildOptions {
            input_scale_bits,
            weight_bits,
            input_min: loaded.input_range[0],
            input_max: loaded.input_range[1],
            reencrypt_after: b.clone(),
            rescale_bits: None,
            crt_moduli: None,
        };
        let Ok(crt) = build_crt(&loaded.spec, n, &moduli, &opts) else {
            continue;
        };
        let model = crt.model();
        let prefix = model.encryptable_prefix();
        if model.predict().iter().take(prefix).any(|p| p.overflow) {
            continue;
        }
        // The server refuses what its estimate says cannot be sanitized: so does the search.
        if plan_circuit_privacy(&crt, Some(DEFAULT_FLOOD_BITS)).is_err() {
            continue;
        }
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
        tried += 1;
        progress(&format!(
            "trying N={n}, {k} × {bits}-bit t, re-encrypt after {b:?}"
        ));
        let report = run_set(loaded, &set, false, |_| {});
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
            });
            return Some((report, config));
        }
        if tried >= 6 {
            break;
        }
    }
    None
}
