//! Plans the server has compiled, named by a content hash of their canonical configuration:
//! `/plan` compiles one (every check on the configuration happens there, once), `/compute`
//! names it by `plan_id` and only checks what the request adds (keys, segment, batch, bytes).

use crate::cache::BoundedCache;
use crate::error::ApiError;
use crate::registry::Registry;
use he_layers::crypto::sanitize::{plan_sanitization, NoRoomForFlooding, SanitizationPlan};
use he_layers::crypto::{BfvParameters, GaloisKeys};
use he_layers::layers::EncodedLayer;
use he_layers::plan::{CompiledLayout, ExecutionPlan, Layout, Packing, PROTOCOL_VERSION};
use he_layers::protocol::{
    LayerPlan, ModelConfig, Plan, Runs, SegmentPacking, SegmentPrivacy, TensorInfo,
};
use net_builder::BuiltModel;
use std::ops::Range;
use std::sync::Arc;

/// One plaintext modulus of a plan.
#[derive(Debug)]
pub struct PlanComponent {
    /// Its parameter set.
    pub params: Arc<BfvParameters>,
    /// The model encoded for it.
    pub built: Arc<BuiltModel>,
    /// The layout compiled for that model (the packed layout's programs).
    pub layout: CompiledLayout,
    /// What the layout compiled for it (its noise bounds are this component's).
    pub execution: ExecutionPlan,
    /// Per segment (in the plan's order): the sanitization of its answers, or why there is no
    /// room for it. Empty when the server runs without circuit privacy.
    pub sanitization: Vec<Result<SanitizationPlan, NoRoomForFlooding>>,
}

/// A compiled plan.
#[derive(Debug)]
pub struct ServedPlan {
    /// Its id (64 hex digits).
    pub id: String,
    /// The model.
    pub net: String,
    /// One component per plaintext modulus, in the order of `public.plain_moduli`.
    pub components: Vec<PlanComponent>,
    /// What the layout compiled (shared by every component: same layers, scales, bounds).
    pub execution: ExecutionPlan,
    /// What `/plan` answers.
    pub public: Plan,
    /// Whether the server sanitizes answers.
    pub sanitized: bool,
}

impl ServedPlan {
    /// The component of a plaintext modulus.
    pub fn component(&self, plain_modulus: u64) -> Result<&PlanComponent, ApiError> {
        self.components
            .iter()
            .find(|c| c.params.plain_modulus() == plain_modulus)
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "invalid_parameters",
                    format!(
                        "plain_modulus {plain_modulus} is not one of the plan's {:?}",
                        self.public.plain_moduli
                    ),
                )
            })
    }

    /// The index of the segment that runs exactly `layers`, or why the range is refused.
    pub fn segment_index(&self, layers: &Range<usize>) -> Result<usize, ApiError> {
        let model = &self.components[0].built.model;
        model.check_range(layers)?;
        self.execution
            .segments
            .iter()
            .position(|s| &s.layers == layers)
            .ok_or_else(|| {
                let allowed: Vec<[usize; 2]> = self
                    .execution
                    .segments
                    .iter()
                    .map(|s| [s.layers.start, s.layers.end])
                    .collect();
                ApiError::unprocessable(
                    "range_not_allowed",
                    format!(
                        "layers [{}, {}) are not a segment of this plan: a client runs only whole \
                         segments between the re-encryption positions the model's owner allows; \
                         here {allowed:?} (POST /plan lists them)",
                        layers.start, layers.end
                    ),
                )
            })
    }
}

/// Compiled plans by id, bounded.
pub type PlanCache = BoundedCache<ServedPlan>;

/// The id of a configuration: SHA-256 of its canonical form (the protocol, the served model's
/// digest — another model file under the same name is another plan —, net, every parameter
/// set's fingerprint in order, quantization as asked, re-encryption positions, scheme,
/// layout). Computed once per request, before the cache is asked or the plan compiled.
pub fn plan_id(
    cfg: &ModelConfig,
    model_digest: &[u8; 32],
    fingerprints: &[[u8; 32]],
) -> Result<String, ApiError> {
    use sha2::{Digest, Sha256};
    let canonical = serde_json::to_vec(&(
        PROTOCOL_VERSION,
        model_digest,
        &cfg.net,
        fingerprints,
        &cfg.quantization,
        &cfg.reencrypt_positions,
        cfg.scheme,
        cfg.layout,
    ))
    .map_err(|e| ApiError::internal(format!("plan id: {e}")))?;
    Ok(Sha256::digest(&canonical)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Compiles a configuration: every parameter set resolved and every check made once, the
/// model built per plaintext modulus, the layout's plan, the sanitization of every segment
/// for every modulus. `flood_bits` is the server's λ (`None`: answers unsanitized).
pub fn compile(
    registry: &Registry,
    cfg: &ModelConfig,
    id: String,
    flood_bits: Option<u32>,
) -> Result<ServedPlan, ApiError> {
    let served = registry.get(&cfg.net)?;
    let moduli = cfg.encryption_parameters.plain_moduli()?;
    let mut built = Vec::with_capacity(moduli.len());
    let mut resolved = cfg.clone();
    for &t in &moduli {
        let b = registry.built(&resolved, t)?;
        // Every component uses the weight precision the first one chose.
        resolved.quantization.weight_bits = Some(b.weight_bits);
        built.push(b);
    }
    let first = built
        .first()
        .ok_or_else(|| ApiError::unprocessable("invalid_parameters", "no plaintext modulus"))?
        .clone();
    let model = &first.model;
    let components: Vec<PlanComponent> = built
        .into_iter()
        .map(|b| {
            let params = b.model.parameters().clone();
            let layout = CompiledLayout::for_flood(cfg.layout, &b.model, flood_bits)?;
            let execution = layout.compile(&b.model)?;
            let sanitization = match flood_bits {
                None => Vec::new(),
                // Each component's own bound: the noise grows with its t, so a larger t needs
                // a larger flood (sizing every component from the first would flood short).
                Some(bits) => execution
                    .segments
                    .iter()
                    .map(|s| plan_sanitization(&params, s.noise_log2, bits))
                    .collect(),
            };
            Ok(PlanComponent {
                params,
                built: b,
                layout,
                execution,
                sanitization,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    let execution = components[0].execution.clone();
    let prefix = model.encryptable_prefix();
    let layers: Vec<LayerPlan> = model
        .predict()
        .into_iter()
        .zip(model.layers())
        .map(|(p, l)| {
            let step = execution.steps.get(p.index).filter(|_| l.is_encryptable());
            LayerPlan {
                index: p.index,
                name: p.name,
                description: p.description,
                runs: match l {
                    EncodedLayer::Reencrypt(_) => Runs::Reencrypt,
                    _ if p.index >= prefix => Runs::Plaintext,
                    _ => Runs::Encrypted,
                },
                shape: p.output.shape.clone(),
                scale: p.output.scale,
                lo: p.output.lo,
                hi: p.output.hi,
                overflow: p.overflow,
                depth: p.depth,
                rescale_bits: match l {
                    EncodedLayer::Reencrypt(r) => Some(r.rescale_bits),
                    _ => None,
                },
                ops: step.map(|s| s.ops),
                predicted_budget_bits: step.map(|s| s.predicted_budget_bits),
            }
        })
        .collect();
    let params = model.parameters();
    // Per segment: the first modulus' sanitization, refused if any modulus has no room.
    let circuit_privacy = match flood_bits {
        None => Vec::new(),
        Some(_) => execution
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let refused = components.iter().find_map(|c| {
                    c.sanitization[i]
                        .as_ref()
                        .err()
                        .map(|e| format!("plaintext modulus {}: {e}", c.params.plain_modulus()))
                });
                SegmentPrivacy {
                    layers: [s.layers.start, s.layers.end],
                    budget_before_bits: params.log2_q() - s.noise_log2 - 1.0,
                    sanitization: if refused.is_some() {
                        None
                    } else {
                        components[0].sanitization[i].as_ref().ok().cloned()
                    },
                    refused,
                }
            })
            .collect(),
    };
    let input = model.info_before(0);
    let packings = execution
        .segments
        .iter()
        .filter_map(|s| match (&s.input_packing, &s.output_packing) {
            (Packing::Batch, _) | (_, Packing::Batch) => None,
            (i, o) => Some(SegmentPacking {
                input: i.to_info()?,
                output: o.to_info()?,
            }),
        })
        .collect();
    let galois_key_bytes = if execution.galois_elements.is_empty() {
        0
    } else {
        GaloisKeys::serialized_len_for(params, execution.galois_elements.len()) as u64
    };
    let public = Plan {
        protocol: PROTOCOL_VERSION,
        plan_id: id.clone(),
        scheme: execution.scheme,
        layout: execution.layout,
        galois_elements: execution.galois_elements.clone(),
        galois_key_bytes,
        net: cfg.net.clone(),
        classes: served.manifest.classes.clone(),
        input: TensorInfo {
            shape: input.shape.clone(),
            batch: 0,
            scale: input.scale,
            lo: input.lo,
            hi: input.hi,
        },
        input_range: served.manifest.input_range,
        layers,
        segments: execution
            .segments
            .iter()
            .map(|s| [s.layers.start, s.layers.end])
            .collect(),
        packings,
        encryptable_prefix: prefix,
        weight_bits: first.weight_bits,
        plain_moduli: moduli,
        capacity_bits: (model.capacity() as f64).log2(),
        circuit_privacy,
    };
    Ok(ServedPlan {
        id,
        net: cfg.net.clone(),
        components,
        execution,
        public,
        sanitized: flood_bits.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every plaintext modulus is flooded by its own bound: the noise grows with t, so a
    /// component with a larger t gets a larger flood (sizing all from the first would leave it
    /// short by about log2(t₂/t₁) bits of λ).
    #[test]
    fn each_plaintext_modulus_is_flooded_by_its_own_bound() {
        let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let registry = Registry::load(&models, 4).unwrap();
        let cfg: ModelConfig = serde_json::from_str(
            r#"{"net": "mnist-tiny",
                "encryption_parameters": {"degree": 8192, "plain_moduli": [65537, 1099511480321]},
                "quantization": {"input_scale_bits": 3, "weight_bits": 4}}"#,
        )
        .unwrap();
        let plan = compile(&registry, &cfg, "id".into(), Some(40)).unwrap();
        let layers = &plan.execution.segments[0].layers;
        let noise: Vec<f64> = plan
            .components
            .iter()
            .map(|c| c.built.model.range_noise_log2(layers))
            .collect();
        assert!(
            noise[1] > noise[0] + 5.0,
            "the larger t's bound is larger: {noise:?}"
        );
        for (c, &own) in plan.components.iter().zip(&noise) {
            let want = plan_sanitization(&c.params, own, 40).unwrap();
            assert_eq!(c.sanitization[0].as_ref().unwrap(), &want);
        }
        // What sizing the second modulus by the first one's bound would give: a different,
        // weaker plan (the test fails against that mistake).
        let large = &plan.components[1];
        let short = plan_sanitization(&large.params, noise[0], 40).unwrap();
        assert_ne!(
            large.sanitization[0].as_ref().unwrap(),
            &short,
            "noise {noise:?}"
        );
    }
}
