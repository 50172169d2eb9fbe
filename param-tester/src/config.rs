//! The tester's configuration: the model, the images, the parameter sets to try.

use crate::*;
use he_layers::protocol::EncryptionParameters;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    /// The layout: "batch" (default; one ciphertext per activation) or "packed" (one image's
    /// activations across the slots of a few ciphertexts).
    #[serde(default)]
    pub layout: he_layers::plan::LayoutKind,
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

    pub(crate) fn label(&self) -> String {
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
