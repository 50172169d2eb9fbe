//! `client compute`'s configuration file.

use crate::*;
use he_layers::plan::{LayoutKind, SchemeKind};
use he_layers::protocol::{EncryptionParameters, ModelConfig, QuantizationConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `client compute`'s configuration file (PyCrCNN's keys accepted: `m`, `p`, `sec` inside the
/// parameters, `rencrypt_positions`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Server base URL, e.g. `http://127.0.0.1:8000`.
    pub address: String,
    /// Model name on the server.
    pub net: String,
    /// Encryption parameters.
    pub encryption_parameters: EncryptionParameters,
    /// Quantization; default: inputs × 2^4, weight precision chosen by the server.
    #[serde(default = "default_quantization")]
    pub quantization: QuantizationConfig,
    /// Layers to run, `[start, end)`; default: the whole encryptable prefix.
    #[serde(default)]
    pub layers: Option<[usize; 2]>,
    /// Layers after which the client re-encrypts.
    #[serde(default, alias = "rencrypt_positions")]
    pub reencrypt_positions: Vec<usize>,
    /// A local copy of the model (an ONNX or pickle file, or a model folder) to run a
    /// plaintext-only tail after decryption; without it the output is the end of the
    /// encryptable prefix.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// The scheme (`"bfv"`, the default).
    #[serde(default)]
    pub scheme: SchemeKind,
    /// The layout (`"batch"` or `"packed"`); absent: the one expected to be cheaper for the
    /// number of images (among those whose plan the parameters allow).
    #[serde(default)]
    pub layout: Option<LayoutKind>,
    /// How to reach the server (`{"ca_cert": "…"}`; the token and plain http come from flags).
    #[serde(default)]
    pub connection: Connection,
}

fn default_quantization() -> QuantizationConfig {
    QuantizationConfig {
        input_scale_bits: 4,
        weight_bits: None,
    }
}

impl ClientConfig {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        Ok(
            serde_json::from_str(&text).map_err(|source| ConfigError::Json {
                path: path.to_path_buf(),
                source,
            })?,
        )
    }

    /// The model configuration sent to the server, in `layout`.
    pub fn model_config(&self, layout: LayoutKind) -> ModelConfig {
        ModelConfig {
            net: self.net.clone(),
            encryption_parameters: self.encryption_parameters.clone(),
            quantization: self.quantization.clone(),
            reencrypt_positions: self.reencrypt_positions.clone(),
            scheme: self.scheme,
            layout,
        }
    }
}
