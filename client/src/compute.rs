//! `client compute`: a configuration run on images through the session, with progress
//! bars, labels and a plaintext tail.

use crate::*;
use he_layers::model::quantize;
use he_layers::plan::{estimated_cost, LayoutKind};
use he_layers::protocol::Plan;
use he_layers::protocol::Runs;
use he_layers::tensor::{FloatTensor, IntTensor};
use indicatif::{ProgressBar, ProgressStyle};
use net_builder::session::{
    tensor_info, Progress, SegmentReport, Session, SessionError, SessionPlan, Stage,
};
use serde::Serialize;
use std::time::Instant;

/// One image's result.
#[derive(Clone, Debug, Serialize)]
pub struct ImageResult {
    /// Where it came from.
    pub source: String,
    /// Predicted class index.
    pub label: usize,
    /// Predicted class name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// True label, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub true_label: Option<usize>,
    /// The output values (integers / scale).
    pub logits: Vec<f64>,
}

/// The output of `client compute`.
#[derive(Clone, Debug, Serialize)]
pub struct ComputeReport {
    /// Model.
    pub net: String,
    /// Plaintext moduli used.
    pub plain_moduli: Vec<u64>,
    /// Weight precision used.
    pub weight_bits: u32,
    /// The layout the run used (the config's, or the one chosen for the number of images).
    pub layout: LayoutKind,
    /// Why that layout: the config named it, or the estimated costs that chose it.
    pub layout_reason: String,
    /// Per image.
    pub images: Vec<ImageResult>,
    /// Per encrypted segment.
    pub segments: Vec<SegmentReport>,
    /// Bytes of public keys uploaded (0 if the server had them).
    pub keys_upload_bytes: usize,
    /// Whole run, ms.
    pub total_ms: f64,
    /// Whether a plaintext tail ran on the client.
    pub plaintext_tail: bool,
    /// The integers at the end of the encrypted layers, per image (for exact checks).
    #[serde(skip)]
    pub integers: Option<IntTensor>,
}

/// Progress bars for a session: one per segment and stage, counting plaintext moduli.
struct Bars {
    quiet: bool,
    current: std::sync::Mutex<Option<((usize, Stage), ProgressBar)>>,
}

impl Bars {
    fn new(quiet: bool) -> Self {
        Self {
            quiet,
            current: std::sync::Mutex::new(None),
        }
    }

    fn update(&self, p: Progress) {
        if self.quiet {
            return;
        }
        let Ok(mut cur) = self.current.lock() else {
            return;
        };
        let key = (p.segment, p.stage);
        if cur.as_ref().map(|(k, _)| *k) != Some(key) {
            if let Some((_, old)) = cur.take() {
                old.finish_and_clear();
            }
            let pb = ProgressBar::new(p.total as u64);
            pb.set_style(
                ProgressStyle::with_template("{msg:>28} [{bar:30}] {pos}/{len} moduli {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let stage = match p.stage {
                Stage::Encrypt => "encrypt",
                Stage::Compute => "compute",
                Stage::Decrypt => "decrypt",
            };
            pb.set_message(format!("segment {}: {stage}", p.segment));
            *cur = Some((key, pb));
        }
        if let Some((_, pb)) = cur.as_ref() {
            pb.set_position(p.done as u64);
        }
    }

    fn finish(&self) {
        if let Ok(mut cur) = self.current.lock() {
            if let Some((_, pb)) = cur.take() {
                pb.finish_and_clear();
            }
        }
    }
}

/// The layout a run uses, its plan, and why.
struct LayoutChoice {
    layout: LayoutKind,
    plan: Plan,
    reason: String,
}

/// The config's layout, or (none named) the one whose plan is expected to cost less for
/// `images` images ([`he_layers::plan::estimated_cost`]); a layout whose plan these parameters
/// cannot carry (no room for circuit privacy, a model it cannot pack) is left out.
async fn choose_layout(
    api: &Api,
    config: &ClientConfig,
    keys: &KeySet,
    images: usize,
) -> Result<LayoutChoice, ClientError> {
    if let Some(layout) = config.layout {
        let plan = api.plan(&config.model_config(layout)).await?;
        return Ok(LayoutChoice {
            layout,
            plan,
            reason: "named by the config".into(),
        });
    }
    let params = &keys.components[0].params;
    let limbs = params.moduli().len();
    let degree = params.degree();
    let mut best: Option<(f64, LayoutChoice)> = None;
    let mut costs = Vec::new();
    let mut refused = Vec::new();
    let mut first_refusal = None;
    let mut unsanitizable = None;
    for layout in [LayoutKind::Batch, LayoutKind::Packed] {
        let plan = match api.plan(&config.model_config(layout)).await {
            Ok(plan) => plan,
            // A layout these parameters or this model cannot carry: the other one may.
            Err(e @ ClientError::Server { status: 422, .. }) => {
                if let ClientError::Server { kind, .. } = &e {
                    refused.push(format!("{layout}: {kind}"));
                }
                first_refusal.get_or_insert(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        // A plan whose answers the server could not sanitize would be refused at /compute.
        let last = config
            .layers
            .map_or(plan.encryptable_prefix, |[_, end]| end);
        if let Some(why) = plan
            .circuit_privacy
            .iter()
            .filter(|p| p.layers[0] < last)
            .find_map(|p| p.refused.as_ref())
        {
            refused.push(format!("{layout}: {why}"));
            unsanitizable.get_or_insert(LayoutChoice {
                layout,
                plan,
                reason: format!(
                    "no layout's answers can be sanitized: {}",
                    refused.join("; ")
                ),
            });
            continue;
        }
        let steps = plan.layers[..last.min(plan.layers.len())]
            .iter()
            .filter_map(|l| l.ops.as_ref());
        let cost = estimated_cost(layout, steps, limbs, degree, images);
        costs.push(format!("{layout} {cost:.3e}"));
        if best.as_ref().is_none_or(|(c, _)| cost < *c) {
            best = Some((
                cost,
                LayoutChoice {
                    layout,
                    plan,
                    reason: String::new(),
                },
            ));
        }
    }
    let Some((_, mut choice)) = best else {
        // No layout can be sanitized: run the first the server planned, so that /compute
        // answers with its reason and the fixes; refused by /plan itself: its answer.
        if let Some(plan) = unsanitizable {
            return Ok(plan);
        }
        return Err(first_refusal.unwrap_or_else(|| {
            ConfigError::NoLayout {
                refused: refused.join("; "),
            }
            .into()
        }));
    };
    choice.reason = format!(
        "the cheaper for {images} image(s): estimated {} NTTs{}",
        costs.join(" vs "),
        refused
            .iter()
            .map(|r| format!("; refused {r}"))
            .collect::<String>()
    );
    Ok(choice)
}

/// Runs a configuration on images: keys uploaded once per key id, one `/compute` per segment
/// and plaintext modulus, re-encryption between segments. Progress goes to stderr unless
/// `quiet`.
pub async fn run_compute(
    config: &ClientConfig,
    keys: &mut KeySet,
    key_dir: Option<&std::path::Path>,
    images: &Images,
    quiet: bool,
) -> Result<ComputeReport, ClientError> {
    let started = Instant::now();
    let api = Api::connect(&config.address, &config.connection)?;
    if !keys.matches(&config.encryption_parameters)? {
        return Err(ConfigError::KeysMismatch.into());
    }
    let batch = images.tensor.batch();
    let choice = choose_layout(&api, config, keys, batch).await?;
    let model_cfg = config.model_config(choice.layout);
    let plan = choice.plan;
    let slots = keys.components[0].params.degree();
    if batch == 0 || batch > slots {
        return Err(ConfigError::BatchSize {
            images: batch,
            slots,
        }
        .into());
    }
    if images.tensor.shape() != plan.input.shape.as_slice() {
        return Err(ConfigError::ImageShape {
            found: images.tensor.shape().to_vec(),
            net: plan.net.clone(),
            expected: plan.input.shape.clone(),
        }
        .into());
    }
    // Quantize exactly as the server's model expects.
    let x = quantize(&images.tensor, &tensor_info(&plan.input)).map_err(|source| {
        ConfigError::InputRange {
            source: Box::new(source),
            range: plan.input_range,
        }
    })?;

    // A packed plan rotates: Galois keys for exactly the elements it lists, made once and
    // kept with the key set.
    if keys.ensure_galois(&plan.galois_elements)? {
        if let Some(dir) = key_dir {
            keys.save(dir)?;
        }
    }
    // Keys: uploaded once per key id (the server keeps them content-addressed).
    let mut key_ids = Vec::new();
    let mut keys_upload_bytes = 0;
    for c in &keys.components {
        let (r, b) = api.upload_keys(c).await?;
        keys_upload_bytes += b;
        key_ids.push(r.key_id);
    }

    let [first, last] = config.layers.unwrap_or([0, plan.encryptable_prefix]);
    if first != 0 {
        return Err(ConfigError::LayersStart { first, last }.into());
    }
    let session_plan = SessionPlan::from_plan(&plan)?.restricted(first..last)?;
    // Overflow is predicted before anything is encrypted, for the layers this run covers.
    if let Some(l) = session_plan
        .segments
        .iter()
        .flat_map(|s| &plan.layers[s.layers.clone()])
        .find(|l| l.overflow)
    {
        return Err(ConfigError::Overflow {
            layer: l.index,
            name: l.name.clone(),
            capacity_bits: plan.capacity_bits,
        }
        .into());
    }
    // Where the client's integers stand after the run: past the last segment, and past its
    // boundary when one follows it (the plaintext tail starts there).
    let end = session_plan.segments.last().map_or(0, |s| {
        s.boundary.as_ref().map_or(s.layers.end, |b| b.layer + 1)
    });
    let moduli = plan.plain_moduli.clone();
    let session = Session::new(
        session_plan,
        keys.components.iter().map(|c| &c.sk).collect(),
    )?;
    let transport = HttpTransport::new(
        api.clone(),
        model_cfg,
        plan.clone(),
        key_ids,
        &keys.components,
    );
    let bars = Bars::new(quiet);
    let run = match session.run(&transport, &x, &|p| bars.update(p)).await {
        Ok(run) => run,
        Err(e) => {
            bars.finish();
            return Err(discard_on_violation(e, key_dir));
        }
    };
    bars.finish();
    let x = run.output;
    let cur_info = run.output_info;
    let seg_results = run.segments;

    // Outputs: integers / scale, then a plaintext tail if the model is at hand.
    let integers = x.clone();
    let mut out = x.map(|&v| v as f64 / cur_info.scale);
    let mut tail = false;
    if end == plan.encryptable_prefix && end < plan.layers.len() {
        if let Some(path) = &config.model {
            // A pickle does not record its input shape: the images' is the model's.
            let shape = Some(images.tensor.shape().to_vec());
            let spec = if path.is_dir() {
                let opts = net_builder::FolderOptions {
                    input_shape: shape,
                    ..Default::default()
                };
                net_builder::load_folder(path, &opts)?.spec
            } else {
                let opts = net_builder::PickleOptions {
                    input_shape: shape,
                    ..Default::default()
                };
                net_builder::load_model(path, &opts)?
            };
            let boundaries = plan.layers[..end]
                .iter()
                .filter(|l| l.runs == Runs::Reencrypt)
                .count();
            let spec_start = end - boundaries;
            let imgs: Vec<Vec<f64>> = (0..batch).map(|j| out.image(j)).collect();
            let mut shape = vec![batch];
            shape.extend(out.shape());
            let arr = ndarray_from(&shape, imgs.concat())?;
            let y = spec.forward(&arr, spec_start..spec.layers.len())?;
            let per = y.len() / batch.max(1);
            let flat: Vec<f64> = y.iter().copied().collect();
            let rows: Vec<Vec<f64>> = flat.chunks(per.max(1)).map(|c| c.to_vec()).collect();
            out = FloatTensor::from_images(vec![per], &rows).ok_or(AnswerError::TailOutput {
                values: flat.len(),
                images: batch,
            })?;
            tail = true;
        }
    }
    let results = (0..batch)
        .map(|j| {
            let logits = out.image(j);
            let label = net_builder::eval::argmax(&logits);
            ImageResult {
                source: images.names.get(j).cloned().unwrap_or_default(),
                class: plan.classes.get(label).cloned(),
                label,
                true_label: images.labels.get(j).copied().flatten(),
                logits,
            }
        })
        .collect();
    Ok(ComputeReport {
        net: plan.net.clone(),
        plain_moduli: moduli,
        weight_bits: plan.weight_bits,
        layout: choice.layout,
        layout_reason: choice.reason,
        images: results,
        segments: seg_results,
        keys_upload_bytes,
        total_ms: started.elapsed().as_secs_f64() * 1000.0,
        plaintext_tail: tail,
        integers: Some(integers),
    })
}

/// Whether an error is the server breaking the protocol or the model's contract (rather
/// than failing, refusing or being unreachable): a forged answer, the wrong number of
/// ciphertexts, an oversized body, values no honest run gives.
fn is_violation(e: &SessionError) -> bool {
    match e {
        SessionError::OutOfInterval { .. } => true,
        SessionError::Transport { source, .. } => matches!(
            source.downcast_ref::<ClientError>(),
            Some(ClientError::Protocol(
                AnswerError::Count { .. }
                    | AnswerError::TooLarge { .. }
                    | AnswerError::Layers { .. }
                    | AnswerError::CompressionWidth { .. }
                    | AnswerError::Ciphertexts(_)
                    | AnswerError::Level { .. }
                    | AnswerError::Multipart(_)
                    | AnswerError::MissingPart { .. }
                    | AnswerError::Json { .. }
            ))
        ),
        _ => false,
    }
}

/// A violation stops the run and discards the saved key set: a server that forges answers
/// learns something from every reply, so the keys are not used with it again.
fn discard_on_violation(e: SessionError, key_dir: Option<&std::path::Path>) -> ClientError {
    match key_dir {
        Some(dir) if is_violation(&e) => match KeySet::discard(dir) {
            Ok(()) => ClientError::KeysDiscarded {
                dir: dir.to_path_buf(),
                source: Box::new(e.into()),
            },
            Err(d) => d,
        },
        _ => e.into(),
    }
}

fn ndarray_from(shape: &[usize], data: Vec<f64>) -> Result<net_builder::spec::Array, ClientError> {
    let values = data.len();
    net_builder::spec::array(shape, data).ok_or_else(|| {
        AnswerError::OutputShape {
            shape: shape.to_vec(),
            values,
        }
        .into()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
    use super::*;

    #[test]
    fn values_out_of_their_interval_discard_the_saved_keys_and_a_refusal_does_not() {
        let dir = std::env::temp_dir().join(format!("he-discard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let params = serde_json::from_str(r#"{"degree": 2048, "plain_modulus_bits": 16}"#).unwrap();
        let save = || KeySet::generate(&params).unwrap().save(&dir).unwrap();
        save();
        let forged = SessionError::OutOfInterval {
            layers: 0..1,
            index: 3,
            value: 1 << 40,
            lo: -10,
            hi: 10,
        };
        let e = discard_on_violation(forged, Some(&dir));
        assert!(matches!(e, ClientError::KeysDiscarded { .. }), "{e}");
        assert!(!dir.join("keyset.json").exists() && KeySet::load(&dir).is_err());

        // A server's refusal is not a violation: the keys stay.
        save();
        let refused = SessionError::Transport {
            layers: 0..1,
            source: Box::new(ClientError::Server {
                status: 503,
                kind: "busy".into(),
                message: "full".into(),
                retry_after: Some(1),
            }),
        };
        let e = discard_on_violation(refused, Some(&dir));
        assert!(!matches!(e, ClientError::KeysDiscarded { .. }));
        assert!(KeySet::load(&dir).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
