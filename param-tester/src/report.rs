//! What the tester reports: per layer, per set, and the verdicts.

use crate::*;
use he_layers::crypto::sanitize::SanitizationPlan;
use he_layers::protocol::Runs;
use serde::Serialize;

/// One layer's measurements: every layer of the model, the plaintext tail included.
#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    /// Index in the encoded model.
    pub index: usize,
    /// Name.
    pub name: String,
    /// Kind and hyper-parameters.
    pub description: String,
    /// Where it ran: "encrypted" (server), "reencrypt" (client, between segments) or
    /// "plaintext" (client, in floating point after the last decryption).
    pub runs: Runs,
    /// Largest |value / scale − float reference| at the layer's output (for a plaintext layer:
    /// the client's float run on the decrypted values against the float model's own run).
    pub max_error: f64,
    /// Mean of the same.
    pub mean_error: f64,
    /// Time of the layer itself, ms (all plaintext moduli; for a boundary, the client's
    /// decryption, rescale and encryption; for a plaintext layer, the client's float run),
    /// without the measurements.
    pub ms: f64,
    /// What was measured on the ciphertexts (absent for the plaintext tail).
    #[serde(flatten)]
    pub encrypted: Option<EncryptedLayerReport>,
}

/// The measurements of a layer run on ciphertexts (or of a boundary's fresh encryption).
#[derive(Clone, Debug, Serialize)]
pub struct EncryptedLayerReport {
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
    /// Whether every decrypted integer equals the integer mirror.
    pub equals_mirror: bool,
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

/// One image, end to end: what the client gets against what the float model says.
#[derive(Clone, Debug, Serialize)]
pub struct ImageReport {
    /// Index among the configured images.
    pub index: usize,
    /// The decrypted outputs, dequantized (integer / scale), with the plaintext tail run on
    /// them as the client runs it.
    pub decrypted: Vec<f64>,
    /// The float model's outputs.
    pub float: Vec<f64>,
    /// A reference run's outputs (an arrays file's `"outputs"`: PyTorch's, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<Vec<f64>>,
    /// The label the client decrypts (argmax of `decrypted`).
    pub encrypted_label: usize,
    /// The float model's label.
    pub float_label: usize,
    /// The reference run's label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_label: Option<usize>,
    /// The true label, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<usize>,
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
    /// What the tester chose where the set left the input scale or plaintext modulus open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chosen: Option<Chosen>,
    /// The verdict.
    pub verdict: Verdict,
    /// Security level reached (HE standard).
    pub security: Option<String>,
    /// Plaintext moduli.
    pub plain_moduli: Vec<u64>,
    /// Weight precision in use.
    pub weight_bits: Option<u32>,
    /// Per layer, the plaintext tail included (up to the one that failed).
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
    /// Fraction of images whose encrypted label (end to end, the plaintext tail run on the
    /// decrypted values) equals the float model's.
    pub label_agreement: f64,
    /// Fraction whose encrypted label equals the reference run's (when the images came with
    /// its outputs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_agreement: Option<f64>,
    /// Fraction of images labelled correctly (when labels are known).
    pub accuracy: Option<f64>,
    /// Per image: decrypted and float outputs and labels.
    pub per_image: Vec<ImageReport>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Model.
    pub model: String,
    /// Images used.
    pub images: usize,
    /// The model's input shape.
    pub input_shape: Vec<usize>,
    /// Whether a pickle's input shape was guessed (neither the config nor a manifest gave it).
    pub input_shape_guessed: bool,
    /// One entry per parameter set.
    pub sets: Vec<SetReport>,
}
