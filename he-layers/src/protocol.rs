//! The serde types client, server and parameter tester share: encryption parameters as users
//! write them (PyCrCNN's keys `m`, `p`, `sec` accepted as aliases), the model configuration,
//! and the JSON halves of the REST messages. Ciphertexts and keys never travel in JSON: they go
//! in binary multipart parts in the format of [`crate::crypto::serial`].

use crate::crypto::sanitize::SanitizationPlan;
use crate::crypto::{BfvParameters, ParameterError, SecurityLevel};
use crate::plan::{LayoutKind, SchemeKind, StepOps};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::Arc;

/// Security level as written in JSON: 128, 192, 256, or "none".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Security(pub SecurityLevel);

impl Serialize for Security {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            SecurityLevel::DangerNone => s.serialize_str("none"),
            other => s.serialize_u32(other.bits()),
        }
    }
}

impl schemars::JsonSchema for Security {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Security".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Security level in bits, or \"none\" (refused unless the server allows insecure parameters).",
            "oneOf": [
                {"type": "integer", "enum": [128, 192, 256]},
                {"type": "string", "enum": ["128", "192", "256", "none"]}
            ]
        })
    }
}

impl<'de> Deserialize<'de> for Security {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u32),
            Str(String),
        }
        let level = match Raw::deserialize(d)? {
            Raw::Num(128) => SecurityLevel::Bits128,
            Raw::Num(192) => SecurityLevel::Bits192,
            Raw::Num(256) => SecurityLevel::Bits256,
            Raw::Str(s) if s == "128" => SecurityLevel::Bits128,
            Raw::Str(s) if s == "192" => SecurityLevel::Bits192,
            Raw::Str(s) if s == "256" => SecurityLevel::Bits256,
            Raw::Str(s) if s == "none" => SecurityLevel::DangerNone,
            other => {
                let shown = match other {
                    Raw::Num(n) => n.to_string(),
                    Raw::Str(s) => format!("{s:?}"),
                };
                return Err(serde::de::Error::custom(format!(
                    "security {shown} is not one of 128, 192, 256, \"none\""
                )));
            }
        };
        Ok(Security(level))
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(u64),
        Many(Vec<u64>),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::One(v) => vec![v],
        Raw::Many(v) => v,
    })
}

/// Encryption parameters as a config file writes them.
///
/// `{"degree": 8192, "plain_moduli": [33538049, 33292289, 33177601], "security": 128}`, or with
/// PyCrCNN's names `{"m": 8192, "p": 65537, "sec": 128}`, or by size
/// `{"degree": 8192, "plain_modulus_bits": 25, "plain_moduli_count": 3}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EncryptionParameters {
    /// Ring degree N (PyCrCNN: `m`).
    #[serde(alias = "m", alias = "n")]
    pub degree: usize,
    /// Plaintext moduli t: one, or several for CRT (PyCrCNN: `p`; also `t`, `plain_modulus`).
    #[serde(
        default,
        alias = "p",
        alias = "t",
        alias = "plain_modulus",
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub plain_moduli: Vec<u64>,
    /// Instead of values: the size of each plaintext modulus (the largest batching primes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_modulus_bits: Option<u32>,
    /// With `plain_modulus_bits`: how many moduli (CRT); default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_moduli_count: Option<usize>,
    /// Ciphertext prime sizes in bits, the key-switching prime last; default: the 128-bit
    /// preset for the degree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coeff_bits: Option<Vec<u32>>,
    /// Security level: 128 (default), 192, 256 or "none" (PyCrCNN: `sec`).
    #[serde(default, alias = "sec")]
    pub security: Security,
}

/// Why encryption parameters could not be resolved.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The parameter set is refused (insecure, bad primes, …).
    #[error(transparent)]
    Parameters(#[from] ParameterError),
    /// `plain_moduli_count` out of range.
    #[error(
        "encryption parameters: plain_moduli_count {count} is not between 1 and {MAX_PLAIN_MODULI}"
    )]
    PlainModuliCount {
        /// The count asked for.
        count: usize,
    },
    /// Fewer batching primes of the size asked for than the count.
    #[error("encryption parameters: there are not {count} batching primes of {bits} bits for N = {degree}")]
    NoBatchingPrimes {
        /// How many.
        count: usize,
        /// Of what size.
        bits: u32,
        /// The ring degree.
        degree: usize,
    },
    /// No plaintext modulus given.
    #[error("encryption parameters: give the plaintext modulus: plain_moduli (or p, t) or plain_modulus_bits")]
    NoPlainModulus,
    /// Both forms of the plaintext modulus given.
    #[error("encryption parameters: give either plain_moduli or plain_modulus_bits, not both")]
    BothPlainModulusForms,
    /// More plaintext moduli than allowed.
    #[error("encryption parameters: {count} plaintext moduli; at most {MAX_PLAIN_MODULI}")]
    TooManyPlainModuli {
        /// How many were given.
        count: usize,
    },
    /// A plaintext modulus given twice.
    #[error("encryption parameters: plaintext modulus {value} is given twice; CRT needs distinct moduli")]
    RepeatedPlainModulus {
        /// The modulus.
        value: u64,
    },
    /// Plaintext moduli whose product does not fit the 128-bit CRT recombination.
    #[error("encryption parameters: the plaintext moduli multiply to 2^{bits:.1}; at most 2^127 fits the CRT recombination")]
    PlainModuliProduct {
        /// log2 of the product.
        bits: f64,
    },
    /// A security level without a preset needs explicit moduli.
    #[error("encryption parameters: security {security} needs coeff_bits (presets are 128-bit)")]
    CoeffBitsNeeded {
        /// The level asked for.
        security: SecurityLevel,
    },
    /// `coeff_bits` with too few or too many sizes.
    #[error("encryption parameters: coeff_bits needs 2 to {MAX_COEFF_MODULI} sizes (ciphertext primes, then the special prime); it has {count}")]
    CoeffBitsCount {
        /// Sizes given.
        count: usize,
    },
    /// `coeff_bits` over the total cap.
    #[error("encryption parameters: coeff_bits total {total} bits, over the {MAX_COEFF_MODULUS_BITS}-bit cap (the 128-bit bound at N = 32768), whatever the security level")]
    CoeffBitsTotal {
        /// Their sum.
        total: u64,
    },
}

/// At most this many plaintext moduli (CRT components).
pub const MAX_PLAIN_MODULI: usize = 8;

pub use crate::crypto::params::{MAX_COEFF_MODULI, MAX_COEFF_MODULUS_BITS};

impl EncryptionParameters {
    /// Checks the ring degree before any arithmetic uses it: a power of two between
    /// [`MIN_DEGREE`](crate::crypto::params::MIN_DEGREE) and
    /// [`MAX_DEGREE`](crate::crypto::params::MAX_DEGREE).
    pub fn check_degree(&self) -> Result<(), ProtocolError> {
        use crate::crypto::params::{MAX_DEGREE, MIN_DEGREE};
        let n = self.degree;
        if n.is_power_of_two() && (MIN_DEGREE..=MAX_DEGREE).contains(&n) {
            Ok(())
        } else {
            Err(ProtocolError::Parameters(ParameterError::Degree(n)))
        }
    }

    /// The plaintext moduli these parameters name.
    pub fn plain_moduli(&self) -> Result<Vec<u64>, ProtocolError> {
        self.check_degree()?;
        let moduli = match (self.plain_moduli.is_empty(), self.plain_modulus_bits) {
            (false, None) => self.plain_moduli.clone(),
            (true, Some(bits)) => {
                let k = self.plain_moduli_count.unwrap_or(1);
                if k == 0 || k > MAX_PLAIN_MODULI {
                    return Err(ProtocolError::PlainModuliCount { count: k });
                }
                crate::crypto::arith::generate_primes(bits, self.degree, k, &[]).ok_or(
                    ProtocolError::NoBatchingPrimes {
                        count: k,
                        bits,
                        degree: self.degree,
                    },
                )?
            }
            (true, None) => return Err(ProtocolError::NoPlainModulus),
            (false, Some(_)) => return Err(ProtocolError::BothPlainModulusForms),
        };
        if moduli.len() > MAX_PLAIN_MODULI {
            return Err(ProtocolError::TooManyPlainModuli {
                count: moduli.len(),
            });
        }
        // CRT needs distinct moduli (each is a prime, checked when its set is built) whose
        // product fits the 128-bit recombination: a repeated t would double the capacity the
        // overflow check believes in.
        let mut seen = moduli.clone();
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(ProtocolError::RepeatedPlainModulus { value: w[0] });
        }
        let bits: f64 = moduli.iter().map(|&t| (t as f64).log2()).sum();
        if bits >= 127.0 {
            return Err(ProtocolError::PlainModuliProduct { bits });
        }
        Ok(moduli)
    }

    /// One validated parameter set per plaintext modulus (same ring and ciphertext primes).
    pub fn resolve(&self) -> Result<Vec<Arc<BfvParameters>>, ProtocolError> {
        self.plain_moduli()?
            .into_iter()
            .map(|t| self.for_modulus(t))
            .collect()
    }

    /// The parameter set for one plaintext modulus.
    pub fn for_modulus(&self, t: u64) -> Result<Arc<BfvParameters>, ProtocolError> {
        self.check_degree()?;
        let level = self.security.0;
        match &self.coeff_bits {
            None if level == SecurityLevel::Bits128 => Ok(BfvParameters::preset(self.degree, t)?),
            None => Err(ProtocolError::CoeffBitsNeeded { security: level }),
            Some(bits) => {
                let (&special, moduli) = bits
                    .split_last()
                    .ok_or(ProtocolError::CoeffBitsCount { count: 0 })?;
                if moduli.is_empty() || bits.len() > MAX_COEFF_MODULI {
                    return Err(ProtocolError::CoeffBitsCount { count: bits.len() });
                }
                let total: u64 = bits.iter().map(|&b| u64::from(b)).sum();
                if total > u64::from(MAX_COEFF_MODULUS_BITS) {
                    return Err(ProtocolError::CoeffBitsTotal { total });
                }
                Ok(BfvParameters::with_bit_sizes(
                    self.degree,
                    t,
                    moduli,
                    special,
                    level,
                )?)
            }
        }
    }
}

/// How the model's values are quantized, as requested.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuantizationConfig {
    /// Inputs are held as round(x · 2^input_scale_bits).
    pub input_scale_bits: u32,
    /// Weight precision per layer; absent: the server picks the most that cannot overflow.
    #[serde(default, alias = "weight_scale_bits")]
    pub weight_bits: Option<u32>,
}

/// Which model, for which parameters, quantized and split how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Model name (a folder under the server's model directory).
    pub net: String,
    /// The encryption parameters (all CRT moduli).
    pub encryption_parameters: EncryptionParameters,
    /// The quantization.
    pub quantization: QuantizationConfig,
    /// Indices of model layers after which the client re-encrypts (PyCrCNN:
    /// `rencrypt_positions`).
    #[serde(default, alias = "rencrypt_positions")]
    pub reencrypt_positions: Vec<usize>,
    /// The scheme (`"bfv"`, the default and only one today).
    #[serde(default)]
    pub scheme: SchemeKind,
    /// The layout (`"batch"`, the default).
    #[serde(default)]
    pub layout: LayoutKind,
}

/// Facts of a tensor that travel with its ciphertexts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TensorInfo {
    /// Shape of one image.
    pub shape: Vec<usize>,
    /// Images in the batch (used slots).
    pub batch: usize,
    /// Fixed-point scale.
    pub scale: f64,
    /// Worst-case smallest integer.
    pub lo: i128,
    /// Worst-case largest integer.
    pub hi: i128,
}

/// Where a layer of a plan runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Runs {
    /// On the server, on ciphertexts.
    Encrypted,
    /// On the client between segments: decrypt, rescale, encrypt again.
    Reencrypt,
    /// On the client, after the last decryption (ReLU, MaxPool, …).
    Plaintext,
}

/// One layer of a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LayerPlan {
    /// Index in the encoded model.
    pub index: usize,
    /// Name.
    pub name: String,
    /// Kind and hyper-parameters.
    pub description: String,
    /// Where it runs.
    pub runs: Runs,
    /// Output shape.
    pub shape: Vec<usize>,
    /// Output scale (for a `plaintext` layer, run in floating point by the client, only the
    /// shape is meaningful: scale and interval are not integer facts there).
    pub scale: f64,
    /// Output worst-case interval.
    pub lo: i128,
    /// Output worst-case interval.
    pub hi: i128,
    /// Whether the output may exceed the plaintext capacity.
    pub overflow: bool,
    /// Multiplicative depth since the last (re-)encryption.
    pub depth: usize,
    /// For a re-encryption boundary: bits the client divides by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescale_bits: Option<u32>,
    /// For a layer the server runs: the homomorphic operations of the plan's layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<StepOps>,
    /// For a layer the server runs: the estimated noise budget left after it, bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_budget_bits: Option<f64>,
}

/// What the server will do with a model configuration: answered by `POST /plan`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Plan {
    /// The protocol version the server speaks ([`PROTOCOL_VERSION`](crate::plan::PROTOCOL_VERSION)).
    pub protocol: u32,
    /// The plan's name: a SHA-256 of the canonical configuration. `/compute` names it.
    pub plan_id: String,
    /// The scheme.
    pub scheme: SchemeKind,
    /// The layout.
    pub layout: LayoutKind,
    /// Galois elements the client must hold keys for (none in the batch layout).
    pub galois_elements: Vec<u64>,
    /// Bytes the Galois keys for those elements take (sent once per key id; 0 without).
    #[serde(default)]
    pub galois_key_bytes: u64,
    /// Model name.
    pub net: String,
    /// Class names.
    pub classes: Vec<String>,
    /// The input the first layer expects (batch 0).
    pub input: TensorInfo,
    /// Smallest and largest input value accepted.
    pub input_range: [f64; 2],
    /// Every encoded layer.
    pub layers: Vec<LayerPlan>,
    /// Encrypted segments `[start, end)` the client sends, in order.
    pub segments: Vec<[usize; 2]>,
    /// Per segment, in the order of `segments`: where the values of its input and of its
    /// answer sit in the slots (the packed layout; empty in the batch layout, where
    /// ciphertext a holds activation a of every image).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packings: Vec<SegmentPacking>,
    /// End of the encryptable prefix; layers after it run on the client in plaintext.
    pub encryptable_prefix: usize,
    /// Weight precision in use (chosen by the server if the request left it open).
    pub weight_bits: u32,
    /// The plaintext moduli.
    pub plain_moduli: Vec<u64>,
    /// log2 of the plaintext capacity (half the product of the moduli).
    pub capacity_bits: f64,
    /// What the server does to each segment's answer for circuit privacy, in the order of
    /// `segments` (for the first plaintext modulus). Empty when the server runs without
    /// circuit privacy (`--danger-no-circuit-privacy`).
    pub circuit_privacy: Vec<SegmentPrivacy>,
}

/// Where a packed tensor's values sit, as `/plan` sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PackingInfo {
    /// Ciphertexts per group of two images (image 2g + r in row r of group g).
    pub ciphertexts: usize,
    /// Columns per row of slots (N/2).
    pub width: usize,
    /// Per activation, its copies as flat spots ciphertext · width + column; the first is
    /// read back.
    pub copies: Vec<Vec<u64>>,
}

/// How one segment's input and answer are packed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SegmentPacking {
    /// The input the client encrypts.
    pub input: PackingInfo,
    /// The answer the client decrypts.
    pub output: PackingInfo,
}

/// The circuit privacy of one segment's answer, as `/plan` reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SegmentPrivacy {
    /// The segment, `[start, end)`.
    pub layers: [usize; 2],
    /// Estimated noise budget before sanitization, bits.
    pub budget_before_bits: f64,
    /// The sanitization (level kept, flooding, budget left); absent when it does not fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sanitization: Option<SanitizationPlan>,
    /// Why the segment cannot be sanitized (and so will be refused), with the fixes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// The JSON part of `POST /compute`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComputeRequest {
    /// The plan (`plan_id` of `POST /plan`): the configuration it was made for is the
    /// server's, not resent.
    pub plan_id: String,
    /// The plaintext modulus of this request's ciphertexts (one of the plan's).
    pub plain_modulus: u64,
    /// The keys uploaded with `POST /keys`.
    pub key_id: String,
    /// The segment to run, `[start, end)` (one of the plan's segments).
    pub layers: [usize; 2],
    /// Images in the ciphertexts (used slots).
    pub batch: usize,
    /// Whether the client reads compressed answers (`ComputeResponse::compressed_bits`); a
    /// client that does not say so gets ciphertexts at the answer's level.
    #[serde(default)]
    pub accept_compressed: bool,
}

/// The JSON part of the `/compute` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ComputeResponse {
    /// The protocol version the server speaks.
    pub protocol: u32,
    /// Layers run.
    pub layers: [usize; 2],
    /// The output's facts.
    pub output: TensorInfo,
    /// Server compute time, milliseconds (sanitization included).
    pub compute_ms: f64,
    /// Of which sanitization (circuit privacy), milliseconds.
    #[serde(default)]
    pub sanitize_ms: f64,
    /// Ciphertexts in the binary part.
    pub ciphertexts: usize,
    /// Ciphertext primes the returned ciphertexts keep after modulus switching: decode them
    /// with the parameter set at this level.
    pub level: usize,
    /// The sanitization applied (absent only when the server runs without circuit privacy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sanitization: Option<SanitizationPlan>,
    /// When present, the binary part is a batch of compressed ciphertexts of this many bits
    /// per coefficient (over 2^bits; lift them back to the level's primes before decrypting);
    /// absent, a batch of ciphertexts at the level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed_bits: Option<u32>,
}

/// The answer of `POST /keys`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KeysResponse {
    /// Content address of the key set.
    pub key_id: String,
    /// Parameter fingerprint (hex prefix) the keys belong to.
    pub fingerprint: String,
}

/// The multipart parts of `POST /keys`, in the order the key id hashes them.
pub const KEY_PARTS: [&str; 4] = [
    "parameters",
    "public_key",
    "relinearization_key",
    "galois_keys",
];

/// The content address of a key upload: SHA-256 over each present part's name and bytes (in
/// [`KEY_PARTS`] order, length-prefixed), as 64 hex digits. Client and server compute it the
/// same way, so a client can ask whether the server already holds its keys.
pub fn key_id<'a>(parts: impl Fn(&str) -> Option<&'a [u8]>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for name in KEY_PARTS {
        if let Some(b) = parts(name) {
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// One entry of `GET /models`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModelInfo {
    /// Name.
    pub name: String,
    /// Input shape of one image.
    pub input_shape: Vec<usize>,
    /// Accepted input range.
    pub input_range: [f64; 2],
    /// Class names.
    pub classes: Vec<String>,
    /// Layer descriptions.
    pub layers: Vec<String>,
    /// Layers the server can run encrypted from the start.
    pub encryptable_prefix: usize,
    /// Re-encryption positions its manifest recommends.
    pub reencrypt_positions: Vec<usize>,
    /// Re-encryption positions clients may use; `/compute` runs only the segments they cut.
    #[serde(default)]
    pub allowed_reencrypt_positions: Vec<usize>,
}

/// An error answer: `{"error": {"kind": …, "message": …}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Kind and message of an error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable kind (`bad_request`, `not_found`, `too_large`, …).
    pub kind: String,
    /// What went wrong and what to change.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pycrcnn_aliases_and_sizes_resolve() {
        let p: EncryptionParameters =
            serde_json::from_str(r#"{"m": 4096, "p": 65537, "sec": 128}"#).unwrap();
        assert_eq!(p.degree, 4096);
        assert_eq!(p.plain_moduli().unwrap(), vec![65537]);
        assert_eq!(p.resolve().unwrap()[0].plain_modulus(), 65537);
        let q: EncryptionParameters = serde_json::from_str(
            r#"{"degree": 8192, "plain_modulus_bits": 25, "plain_moduli_count": 3}"#,
        )
        .unwrap();
        let sets = q.resolve().unwrap();
        assert_eq!(sets.len(), 3);
        assert!(sets
            .iter()
            .all(|s| s.degree() == 8192 && s.supports_batching()));
        let err = serde_json::from_str::<EncryptionParameters>(r#"{"m": 4096, "p": 3, "x": 1}"#)
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `x`"), "{err}");
        let err =
            serde_json::from_str::<EncryptionParameters>(r#"{"m": 4096, "p": 3, "sec": 100}"#)
                .unwrap_err();
        assert!(err.to_string().contains("128, 192, 256"), "{err}");
        // CRT moduli must be distinct and fit 128-bit recombination.
        let twice: EncryptionParameters =
            serde_json::from_str(r#"{"degree": 4096, "plain_moduli": [65537, 65537]}"#).unwrap();
        assert_eq!(
            twice.plain_moduli(),
            Err(ProtocolError::RepeatedPlainModulus { value: 65537 })
        );
        let wide: EncryptionParameters = serde_json::from_str(
            r#"{"degree": 4096, "plain_modulus_bits": 60, "plain_moduli_count": 3}"#,
        )
        .unwrap();
        assert!(matches!(
            wide.plain_moduli(),
            Err(ProtocolError::PlainModuliProduct { .. })
        ));
        // An insecure custom set is refused with the standard's bound.
        let bad: EncryptionParameters =
            serde_json::from_str(r#"{"degree": 4096, "t": 65537, "coeff_bits": [50, 50, 50]}"#)
                .unwrap();
        assert!(matches!(
            bad.resolve(),
            Err(ProtocolError::Parameters(ParameterError::Insecure { .. }))
        ));
    }
}
