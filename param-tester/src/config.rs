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
    /// The input shape `[C, H, W]` (or `[features]`) for a pickle, which does not record it;
    /// default: the model folder's manifest `input_shape`, else the smallest square image
    /// that fits the model.
    #[serde(default)]
    pub input_shape: Option<Vec<usize>>,
    /// Class names of custom modules computing x², for a pickle (added to `Square`,
    /// `SquareActivation`, `Sq` and the manifest's `square_classes`).
    #[serde(default)]
    pub square_classes: Vec<String>,
    /// The bound the automatic choice of an omitted input scale and plaintext modulus keeps:
    /// the integer model's outputs (the plaintext tail run on them) may differ from the float
    /// model's by at most this fraction of the float outputs' largest magnitude (default 0.05),
    /// with labels agreeing on `min_agreement` of the images.
    #[serde(default = "default_max_quantization_error")]
    pub max_quantization_error: f64,
    /// The label agreement with the float model, on the configured images, that the automatic
    /// choices and `--recommend` keep (default 0.995).
    #[serde(default = "default_min_agreement")]
    pub min_agreement: f64,
}

/// 5 % of the float outputs' largest magnitude.
pub const DEFAULT_MAX_QUANTIZATION_ERROR: f64 = 0.05;

/// 99.5 % of the images labelled as the float model labels them.
pub const DEFAULT_MIN_AGREEMENT: f64 = 0.995;

fn default_max_quantization_error() -> f64 {
    DEFAULT_MAX_QUANTIZATION_ERROR
}

fn default_min_agreement() -> f64 {
    DEFAULT_MIN_AGREEMENT
}

/// Which images to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged, try_from = "serde_json::Value")]
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
    /// A JSON file of arrays, as the fixtures recipe writes them: `{"inputs": [[…], …]}`, one
    /// flattened image per row, with optional `"input_shape"`, `"labels"` and `"outputs"` (a
    /// reference run's outputs, PyTorch's say, which the report compares with).
    Arrays {
        /// The JSON file.
        arrays: PathBuf,
    },
    /// PNG files.
    Files(Vec<PathBuf>),
}

/// The accepted forms of `images`, for errors.
const IMAGE_FORMS: &str = r#"{"test_set": "F-images-idx3-ubyte.gz", "index": 0, "count": N}, {"arrays": "F.json"} or a list of PNG files"#;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSetFields {
    test_set: PathBuf,
    #[serde(default)]
    index: usize,
    count: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArraysFields {
    arrays: PathBuf,
}

/// Each form strictly, by its key: a typo is named, not lost in "no variant matched".
impl TryFrom<serde_json::Value> for ImagesConfig {
    type Error = String;

    fn try_from(v: serde_json::Value) -> Result<Self, String> {
        let is = |key: &str| v.as_object().is_some_and(|o| o.contains_key(key));
        if v.is_array() {
            serde_json::from_value(v)
                .map(Self::Files)
                .map_err(|e| format!("images: a list of PNG paths: {e}"))
        } else if is("test_set") {
            let f: TestSetFields =
                serde_json::from_value(v).map_err(|e| format!("images (a test set): {e}"))?;
            Ok(Self::TestSet {
                test_set: f.test_set,
                index: f.index,
                count: f.count,
            })
        } else if is("arrays") {
            let f: ArraysFields =
                serde_json::from_value(v).map_err(|e| format!("images (arrays): {e}"))?;
            Ok(Self::Arrays { arrays: f.arrays })
        } else {
            Err(format!("images: expected {IMAGE_FORMS}"))
        }
    }
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
    /// Plaintext moduli (one, or several for CRT). With neither these nor
    /// `plain_modulus_bits`, the tester picks the smallest batching prime that keeps every
    /// encrypted layer under t/2 within the quantization bound.
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
    /// Inputs × 2^input_scale_bits; omitted, the tester picks the smallest that keeps the
    /// quantization error within `max_quantization_error` (and says so in the report).
    #[serde(default)]
    pub input_scale_bits: Option<u32>,
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

impl TesterConfig {
    /// Checks the bounds the automatic choices keep.
    pub fn check(&self) -> Result<(), TesterError> {
        let bad = |field: &'static str, value: f64| TesterError::Bound { field, value };
        if !(self.max_quantization_error.is_finite() && self.max_quantization_error > 0.0) {
            return Err(bad("max_quantization_error", self.max_quantization_error));
        }
        if !(0.0..=1.0).contains(&self.min_agreement) {
            return Err(bad("min_agreement", self.min_agreement));
        }
        Ok(())
    }
}

impl ParameterSet {
    /// A set that gives only the degree: everything else default or chosen by the tester.
    pub fn open(degree: usize) -> Self {
        Self {
            name: None,
            degree,
            plain_moduli: None,
            plain_modulus_bits: None,
            plain_moduli_count: None,
            coeff_bits: None,
            security: None,
            reencrypt_positions: Vec::new(),
            input_scale_bits: None,
            weight_bits: None,
            flood_bits: None,
            layout: Default::default(),
        }
    }

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

    /// How the model is built for this set, inputs in `input_range` (an open input scale is
    /// the builder's default until the tester fills it in).
    pub fn build_options(&self, input_range: [f64; 2]) -> net_builder::BuildOptions {
        let defaults = net_builder::BuildOptions::default();
        net_builder::BuildOptions {
            input_scale_bits: self.input_scale_bits.unwrap_or(defaults.input_scale_bits),
            weight_bits: self.weight_bits,
            input_min: input_range[0],
            input_max: input_range[1],
            reencrypt_after: self.reencrypt_positions.clone(),
            ..defaults
        }
    }

    /// Whether the set leaves the plaintext modulus to the tester.
    pub fn plain_modulus_open(&self) -> bool {
        self.plain_moduli.is_none() && self.plain_modulus_bits.is_none()
    }

    /// The set's name, or its fields in words.
    pub fn label(&self) -> String {
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
                    .unwrap_or_else(|| "auto".into()),
                self.input_scale_bits
                    .map_or("auto".into(), |b| b.to_string()),
                self.weight_bits.map_or("auto".into(), |b| b.to_string()),
                self.reencrypt_positions
            )
        })
    }
}
