//! The models the server serves, and the encoded models built from them per configuration.

use crate::cache::BoundedCache;
use crate::error::ApiError;
use he_layers::protocol::{ModelConfig, ModelInfo};
use net_builder::{build_model, BuildOptions, BuiltModel, ModelSpec, PickleOptions};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The parts of a model's manifest.json the server uses.
#[derive(Clone, Debug, Deserialize)]
pub struct Manifest {
    /// Class names.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Accepted input range.
    #[serde(default = "unit_range")]
    pub input_range: [f64; 2],
    /// Recommended re-encryption positions.
    #[serde(default)]
    pub reencrypt_positions: Vec<usize>,
    /// Positions (layers of the float model) after which the owner lets clients re-encrypt,
    /// that is, see the intermediate activations. Default: the recommended ones. A client may
    /// run only the segments these boundaries cut, never an arbitrary range.
    #[serde(default)]
    pub allowed_reencrypt_positions: Option<Vec<usize>>,
}

fn unit_range() -> [f64; 2] {
    [0.0, 1.0]
}

/// A served model: its float spec (weights stay here) and manifest.
#[derive(Debug)]
pub struct ServedModel {
    /// The imported, validated, BatchNorm-folded spec.
    pub spec: ModelSpec,
    /// Its manifest.
    pub manifest: Manifest,
    /// Re-encryption positions clients may use (the manifest's, plus any the server operator
    /// allowed with `--allow-reencrypt`), sorted.
    pub allowed_positions: Vec<usize>,
    /// SHA-256 of the model file and the manifest as loaded: plan ids include it, so a plan
    /// made for another model under the same name is never mistaken for this one's.
    pub digest: [u8; 32],
}

/// Why the operator's `--allow-reencrypt` positions are refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AllowReencryptError {
    /// No model of that name is served.
    #[error("--allow-reencrypt: no model named {net:?}")]
    UnknownNet {
        /// The name given.
        net: String,
    },
    /// A position at or after the model's last layer.
    #[error(
        "--allow-reencrypt {net}: {position} is not a layer before the last (the model has \
         {layers})"
    )]
    NotBeforeLast {
        /// The model.
        net: String,
        /// The position given.
        position: usize,
        /// Its number of layers.
        layers: usize,
    },
    /// The registry is shared already (positions are set before serving).
    #[error("--allow-reencrypt: the registry is already serving")]
    Serving,
}

/// Every model found under the models directory, by name.
#[derive(Debug)]
pub struct Registry {
    models: HashMap<String, Arc<ServedModel>>,
    /// Built encoded models, by configuration.
    built: BoundedCache<BuiltModel>,
}

impl Registry {
    /// Loads every `<dir>/<net>/model.onnx` (with its `manifest.json`). A model that fails to
    /// load is reported and skipped; the others are served.
    pub fn load(dir: &Path, max_built: usize) -> std::io::Result<Self> {
        let mut models = HashMap::new();
        let mut entries: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("model.onnx").is_file())
            .collect();
        entries.sort();
        for path in entries {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let spec = match net_builder::load_model(
                &path.join("model.onnx"),
                &PickleOptions::default(),
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(model = %name, error = %e, "model skipped");
                    continue;
                }
            };
            let manifest: Manifest = match std::fs::read_to_string(path.join("manifest.json")) {
                Ok(text) => match serde_json::from_str(&text) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::error!(model = %name, error = %e, "manifest.json unreadable; model skipped");
                        continue;
                    }
                },
                Err(_) => Manifest {
                    classes: Vec::new(),
                    input_range: unit_range(),
                    reencrypt_positions: Vec::new(),
                    allowed_reencrypt_positions: None,
                },
            };
            let mut allowed_positions = manifest
                .allowed_reencrypt_positions
                .clone()
                .unwrap_or_else(|| manifest.reencrypt_positions.clone());
            allowed_positions.sort_unstable();
            allowed_positions.dedup();
            tracing::info!(
                model = %name,
                input = ?spec.input_shape,
                layers = spec.layers.len(),
                classes = manifest.classes.len(),
                "model loaded"
            );
            let digest = {
                use sha2::{Digest, Sha256};
                let mut h = Sha256::new();
                h.update(std::fs::read(path.join("model.onnx")).unwrap_or_default());
                h.update(std::fs::read(path.join("model.onnx.data")).unwrap_or_default());
                h.update(std::fs::read(path.join("manifest.json")).unwrap_or_default());
                h.finalize().into()
            };
            models.insert(
                name,
                Arc::new(ServedModel {
                    spec,
                    manifest,
                    allowed_positions,
                    digest,
                }),
            );
        }
        Ok(Self {
            models,
            built: BoundedCache::new(max_built, usize::MAX),
        })
    }

    /// Lets clients of `net` re-encrypt after these layers too (the operator's
    /// `--allow-reencrypt`). Called before serving.
    pub fn allow_positions(
        &mut self,
        net: &str,
        positions: &[usize],
    ) -> Result<(), AllowReencryptError> {
        let m = self
            .models
            .get_mut(net)
            .ok_or_else(|| AllowReencryptError::UnknownNet {
                net: net.to_string(),
            })?;
        let layers = m.spec.layers.len();
        if let Some(&position) = positions.iter().find(|&&p| p + 1 >= layers) {
            return Err(AllowReencryptError::NotBeforeLast {
                net: net.to_string(),
                position,
                layers,
            });
        }
        let m = Arc::get_mut(m).ok_or(AllowReencryptError::Serving)?;
        m.allowed_positions.extend_from_slice(positions);
        m.allowed_positions.sort_unstable();
        m.allowed_positions.dedup();
        Ok(())
    }

    /// Number of models.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether no model is served.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// A model by name.
    pub fn get(&self, net: &str) -> Result<&Arc<ServedModel>, ApiError> {
        self.models.get(net).ok_or_else(|| {
            let mut names: Vec<&str> = self.models.keys().map(String::as_str).collect();
            names.sort_unstable();
            ApiError::not_found(
                "unknown_net",
                format!("no model named {net:?}; served: {}", names.join(", ")),
            )
        })
    }

    /// Summaries for `GET /models`.
    pub fn infos(&self) -> Vec<ModelInfo> {
        let mut v: Vec<ModelInfo> = self
            .models
            .iter()
            .map(|(name, m)| ModelInfo {
                name: name.clone(),
                input_shape: m.spec.input_shape.clone(),
                input_range: m.manifest.input_range,
                classes: m.manifest.classes.clone(),
                layers: m.spec.layers.iter().map(|l| l.describe()).collect(),
                encryptable_prefix: m
                    .spec
                    .layers
                    .iter()
                    .position(|l| !l.is_encryptable())
                    .unwrap_or(m.spec.layers.len()),
                reencrypt_positions: m.manifest.reencrypt_positions.clone(),
                allowed_reencrypt_positions: m.allowed_positions.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The encoded model for a configuration and one of its plaintext moduli, built once and
    /// cached. With several moduli the capacity is their product and `weight_bits` is chosen
    /// (if open) against it.
    pub fn built(
        &self,
        cfg: &ModelConfig,
        plain_modulus: u64,
    ) -> Result<Arc<BuiltModel>, ApiError> {
        let served = self.get(&cfg.net)?;
        let moduli = cfg.encryption_parameters.plain_moduli()?;
        if !moduli.contains(&plain_modulus) {
            return Err(ApiError::unprocessable(
                "invalid_parameters",
                format!(
                    "plain modulus {plain_modulus} is not one of the configuration's {moduli:?}"
                ),
            ));
        }
        let params = cfg.encryption_parameters.for_modulus(plain_modulus)?;
        check_reencrypt_positions(&cfg.reencrypt_positions, served.spec.layers.len())?;
        if let Some(p) = cfg
            .reencrypt_positions
            .iter()
            .find(|p| !served.allowed_positions.contains(p))
        {
            return Err(ApiError::unprocessable(
                "reencrypt_not_allowed",
                format!(
                    "re-encrypting after layer {p} would show the client activations the owner of \
                     {} keeps private; allowed positions: {:?} (GET /models)",
                    cfg.net, served.allowed_positions
                ),
            ));
        }
        let key = config_key(cfg, &params.fingerprint(), &moduli)?;
        if let Some(b) = self.built.get(&key) {
            return Ok(b);
        }
        let opts = BuildOptions {
            input_scale_bits: cfg.quantization.input_scale_bits,
            weight_bits: cfg.quantization.weight_bits,
            input_min: served.manifest.input_range[0],
            input_max: served.manifest.input_range[1],
            reencrypt_after: cfg.reencrypt_positions.clone(),
            rescale_bits: None,
            crt_moduli: (moduli.len() > 1).then(|| moduli.clone()),
        };
        if opts.input_scale_bits > MAX_INPUT_SCALE_BITS {
            return Err(ApiError::unprocessable(
                "invalid_quantization",
                format!("input_scale_bits must be at most {MAX_INPUT_SCALE_BITS}"),
            ));
        }
        if let Some(w) = opts.weight_bits.filter(|&w| w > MAX_WEIGHT_BITS) {
            return Err(ApiError::unprocessable(
                "invalid_quantization",
                format!("weight_bits {w}: at most {MAX_WEIGHT_BITS}"),
            ));
        }
        let built = build_model(&served.spec, &params, &opts)?;
        Ok(self.built.insert(key, built, 1).0)
    }
}

/// The largest input scale a request may ask for, in bits.
pub const MAX_INPUT_SCALE_BITS: u32 = 30;

/// The largest weight precision a request may ask for, in bits (weights are i64 scalars, and
/// the dot-product kernel's u64 path assumes small ones).
pub const MAX_WEIGHT_BITS: u32 = 30;

/// Re-encryption positions must be strictly increasing (sorted, no repeats) and name layers of
/// the model.
pub fn check_reencrypt_positions(positions: &[usize], layers: usize) -> Result<(), ApiError> {
    if let Some(&p) = positions.iter().find(|&&p| p >= layers) {
        return Err(ApiError::unprocessable(
            "invalid_model_config",
            format!(
                "reencrypt_positions: {p} is not a layer of the model (it has {layers}, numbered \
                 from 0)"
            ),
        ));
    }
    if positions.windows(2).any(|w| w[0] >= w[1]) {
        return Err(ApiError::unprocessable(
            "invalid_model_config",
            "reencrypt_positions must be sorted and without repeats",
        ));
    }
    Ok(())
}

/// The cache key of an encoded model: a SHA-256 of the canonical configuration (net, the
/// parameter set's fingerprint, quantization, re-encryption positions, the CRT moduli).
fn config_key(
    cfg: &ModelConfig,
    fingerprint: &[u8; 32],
    moduli: &[u64],
) -> Result<String, ApiError> {
    use sha2::{Digest, Sha256};
    let canonical = serde_json::to_vec(&(
        &cfg.net,
        fingerprint,
        &cfg.quantization,
        &cfg.reencrypt_positions,
        moduli,
    ))
    .map_err(|e| ApiError::internal(format!("configuration key: {e}")))?;
    let digest = Sha256::digest(&canonical);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}
