//! What the tester reports: per layer, per set, and the verdicts.

use crate::*;
use he_layers::crypto::sanitize::SanitizationPlan;
use he_layers::protocol::Runs;
use serde::Serialize;

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
