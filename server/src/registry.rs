//! The models the server serves, and the encoded models built from them per configuration.

use crate::cache::BoundedCache;
use crate::error::ApiError;
use he_layers::protocol::{ModelConfig, ModelInfo};
use net_builder::{
    build_model, load_folder, BuildOptions, BuiltModel, FolderOptions, Manifest, ModelFolder,
    ModelSpec,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

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
    /// Loads every model folder of `dir`: `<net>/model.onnx` or a PyCrCNN-style
    /// `<net>/model.pt` (its input shape and square-class names from the manifest), with
    /// `manifest.json`. Every folder skipped is logged with the reason; the others are served.
    pub fn load(dir: &Path, max_built: usize) -> std::io::Result<Self> {
        let mut models = HashMap::new();
        let mut entries: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(|e| {
                e.map_err(|err| tracing::warn!(error = %err, "an entry of the models folder cannot be read"))
                    .ok()
            })
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        entries.sort();
        let opts = FolderOptions {
            require_input_shape: true,
            ..Default::default()
        };
        for path in entries {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !net_builder::folder::has_model(&path) {
                tracing::warn!(folder = %path.display(), "folder skipped: no model.onnx or model.pt in it");
                continue;
            }
            let folder = match load_folder(&path, &opts) {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(model = %name, error = %e, "model skipped");
                    continue;
                }
            };
            let ModelFolder {
                spec,
                mut manifest,
                model_file,
                files,
            } = folder;
            // A boundary must cut two encrypted layers apart: after one before the last, and
            // not in or right before the plaintext tail. Others are dropped, and said.
            let tail = spec
                .layers
                .iter()
                .position(|l| !l.is_encryptable())
                .unwrap_or(spec.layers.len());
            let usable = |p: &usize| p + 1 < spec.layers.len() && p + 1 < tail;
            for p in manifest
                .reencrypt_positions
                .iter()
                .chain(manifest.allowed_reencrypt_positions.iter().flatten())
                .filter(|p| !usable(p))
            {
                tracing::warn!(model = %name, position = p, layers = spec.layers.len(), plaintext_from = tail, "manifest re-encryption position dropped: no encrypted layer follows it");
            }
            manifest.reencrypt_positions.retain(usable);
            if let Some(a) = &mut manifest.allowed_reencrypt_positions {
                a.retain(usable);
            }
            let mut allowed_positions = manifest
                .allowed_reencrypt_positions
                .clone()
                .unwrap_or_else(|| manifest.reencrypt_positions.clone());
            allowed_positions.sort_unstable();
            allowed_positions.dedup();
            tracing::info!(
                model = %name,
                file = %model_file.display(),
                input = ?spec.input_shape,
                layers = spec.layers.len(),
                classes = manifest.classes.len(),
                "model loaded"
            );
            let digest = {
                use sha2::{Digest, Sha256};
                let mut h = Sha256::new();
                for f in &files {
                    h.update(
                        f.file_name()
                            .map(|n| n.as_encoded_bytes())
                            .unwrap_or_default(),
                    );
                    h.update(std::fs::read(f).unwrap_or_default());
                }
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
