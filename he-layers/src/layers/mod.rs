//! Encoded layers: what each computes on integers, layout- and scheme-free. Each has an exact
//! integer forward (the mirror every encrypted run must equal after decryption), its effect on
//! the tensor's [`ValueInfo`] (shape, scale, exact interval, quantization error), and the
//! description a layout reads (connections and biases, pooling windows). How ciphertexts carry
//! the values and which homomorphic operations compute them is a layout's business
//! ([`crate::plan`]), through the backend traits defined here.

pub(crate) mod affine;
mod bfv;
mod elementwise;
mod stop;

pub(crate) use affine::Affine;
pub use affine::{EncodedConv2d, EncodedLinear};
pub use bfv::{BfvBackend, BfvSlotDecryptor, BfvSlotEncryptor};
pub use elementwise::{
    reencrypt_rescale, EncodedAvgPool2d, Flatten, PlaintextOnlyKind, PlaintextOnlyLayer,
    ReencryptBoundary, Square,
};
pub use stop::{StopReason, StopSignal, Stoppable};

use crate::tensor::{IntTensor, ValueInfo};
use serde::{Deserialize, Serialize};

/// The ciphertext a backend computes on. The operations come in capabilities, one trait
/// each, so a layout asks for what it uses and a scheme implements what it has: BFV
/// ([`BfvBackend`]) implements them all; an approximate scheme or a GPU backend can join one
/// capability at a time.
pub trait Backend: Sync {
    /// The backend's ciphertext.
    type Ciphertext: Clone + Send + Sync;
}

/// Linear operations: integer-weighted sums and constants (every layout needs them).
pub trait LinearOps: Backend {
    /// Σ w_k ct_k; `None` when every weight vanishes (the result would be transparent).
    fn dot(
        &self,
        cts: &[&Self::Ciphertext],
        weights: &[i64],
    ) -> Result<Option<Self::Ciphertext>, LayerError>;

    /// Several dot products over the same ciphertexts, one per row of weights. The default
    /// runs them one by one; a backend may share the reads of the inputs.
    fn dot_many(
        &self,
        cts: &[&Self::Ciphertext],
        rows: &[Vec<i64>],
    ) -> Result<Vec<Option<Self::Ciphertext>>, LayerError> {
        rows.iter().map(|r| self.dot(cts, r)).collect()
    }

    /// a += b.
    fn add_assign(&self, a: &mut Self::Ciphertext, b: &Self::Ciphertext) -> Result<(), LayerError>;

    /// ct += c in every slot.
    fn add_constant(&self, ct: &mut Self::Ciphertext, c: i128) -> Result<(), LayerError>;

    /// A fresh, non-transparent encryption of c in every slot (replaces products with zero).
    fn encrypt_constant(&self, c: i128) -> Result<Self::Ciphertext, LayerError>;
}

/// Ciphertext × ciphertext products (Square).
pub trait ProductOps: Backend {
    /// ct², relinearized.
    fn square(&self, ct: &Self::Ciphertext) -> Result<Self::Ciphertext, LayerError>;
}

/// Slot-wise products with plaintext vectors (masks, diagonals of a packed layout).
pub trait PlaintextOps: Backend {
    /// A plaintext prepared once for products.
    type Plaintext: Send + Sync;

    /// Encodes slot values (integers of the mirror) for products.
    fn prepare_plaintext(&self, values: &[i128]) -> Result<Self::Plaintext, LayerError>;

    /// ct ⊙ pt, slot by slot.
    fn multiply_plain(
        &self,
        ct: &Self::Ciphertext,
        pt: &Self::Plaintext,
    ) -> Result<Self::Ciphertext, LayerError>;

    /// ct += values, slot by slot.
    fn add_plain(&self, ct: &mut Self::Ciphertext, values: &[i128]) -> Result<(), LayerError>;
}

/// Slot rotations (packed layouts), with the Galois keys the plan lists.
pub trait RotationOps: Backend {
    /// Rotates the slots left by `step` (right when negative), within each row.
    fn rotate(&self, ct: &Self::Ciphertext, step: i64) -> Result<Self::Ciphertext, LayerError>;
}

/// Modulus switching: a ciphertext moved to fewer primes computes on at lower cost (every
/// operation's work grows with the primes, a key switch's with their square).
pub trait LevelOps: Backend {
    /// The number of ciphertext primes `ct` is over.
    fn level(&self, ct: &Self::Ciphertext) -> usize;

    /// `ct` switched down to its first `level` primes (at most its own level).
    fn switch_level(
        &self,
        ct: &Self::Ciphertext,
        level: usize,
    ) -> Result<Self::Ciphertext, LayerError>;
}

/// What the batch layout needs: linear operations and products.
pub trait HeBackend: LinearOps + ProductOps {}

impl<T: LinearOps + ProductOps> HeBackend for T {}

/// What every layout needs: the batch layout's operations, plaintext products, rotations and
/// modulus switching (the packed layout's).
pub trait PackedBackend: HeBackend + PlaintextOps + RotationOps + LevelOps {}

impl<T: HeBackend + PlaintextOps + RotationOps + LevelOps> PackedBackend for T {}

/// Client side: encrypts one vector of slot values (integers of the mirror; the scheme reduces
/// them as it must, e.g. centered mod t). A layout decides which values share a ciphertext.
pub trait SlotEncryptor: Sync {
    /// The ciphertext produced.
    type Ciphertext: Send;

    /// Values one ciphertext holds.
    fn slot_count(&self) -> usize;

    /// Encrypts `values` into the first slots (the rest hold zero).
    fn encrypt_slots(&self, values: &[i128]) -> Result<Self::Ciphertext, LayerError>;
}

/// Client side: decrypts one ciphertext into its slot values (centered integers).
pub trait SlotDecryptor: Sync {
    /// The ciphertext read.
    type Ciphertext: Sync;

    /// Every slot's value.
    fn decrypt_slots(&self, ct: &Self::Ciphertext) -> Result<Vec<i128>, LayerError>;
}

/// Why a layer could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// The engine refused an operation.
    #[error("layer {layer}: {source}")]
    Crypto {
        /// The layer.
        layer: String,
        /// The engine's error.
        source: crate::crypto::Error,
    },
    /// The input's shape does not fit the layer.
    #[error("layer {layer}: input shape {found:?} does not fit (expected {expected})")]
    Shape {
        /// The layer.
        layer: String,
        /// What the layer accepts.
        expected: String,
        /// What it got.
        found: Vec<usize>,
    },
    /// The layer runs on the client, between encrypted segments.
    #[error("layer {layer} is a re-encryption boundary: it runs on the client, so an encrypted range must end before it")]
    ClientOnly {
        /// The layer.
        layer: String,
    },
    /// The layer cannot run on ciphertexts.
    #[error("layer {layer} ({kind}) cannot run encrypted; only Conv2d, Linear, Square, AvgPool2d and Flatten can. Run it on the client after decryption, or choose a range that ends before it")]
    PlaintextOnly {
        /// The layer.
        layer: String,
        /// Its kind.
        kind: String,
    },
    /// The layer has no exact integer form.
    #[error("layer {layer} ({kind}) has no exact integer form; only the float reference runs it")]
    NoIntegerMirror {
        /// The layer.
        layer: String,
        /// Its kind.
        kind: String,
    },
    /// The computation was stopped from outside ([`StopSignal`]).
    #[error("the computation was {reason}")]
    Stopped {
        /// Why.
        reason: StopReason,
    },
    /// A key the operation needs is missing.
    #[error("{0} is needed but was not provided")]
    MissingKey(&'static str),
    /// A weight or bias cannot be represented at the chosen weight scale (too large for an
    /// integer, or not finite). A smaller scale may fit.
    #[error(
        "layer {layer}: {what} {value} cannot be quantized at weight scale 2^{weight_scale_bits}"
    )]
    Unquantizable {
        /// The layer.
        layer: String,
        /// "weight" or "bias".
        what: &'static str,
        /// The value.
        value: f64,
        /// The scale tried, log2.
        weight_scale_bits: i32,
    },
    /// The weights or biases given do not fit the layer's dimensions.
    #[error("layer {layer}: {found_weights} weights and {found_biases} biases; the dimensions need {expected_weights} and {expected_biases}")]
    ParameterCount {
        /// The layer.
        layer: String,
        /// Weights needed.
        expected_weights: usize,
        /// Biases needed.
        expected_biases: usize,
        /// Weights given.
        found_weights: usize,
        /// Biases given.
        found_biases: usize,
    },
    /// A hyper-parameter out of range (a zero kernel or stride, …).
    #[error("layer {layer}: {problem}")]
    Geometry {
        /// The layer.
        layer: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// An internal inconsistency (a bug, never the input's fault).
    #[error("layer {layer}: internal inconsistency: {what}")]
    Inconsistent {
        /// The layer.
        layer: String,
        /// What did not hold.
        what: &'static str,
    },
}

/// One layer of an encoded model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum EncodedLayer {
    /// 2-D convolution.
    Conv2d(EncodedConv2d),
    /// Fully connected layer.
    Linear(EncodedLinear),
    /// x².
    Square(Square),
    /// Average pooling, as a sum with the divisor folded into the scale.
    AvgPool2d(EncodedAvgPool2d),
    /// Reshape to one dimension.
    Flatten(Flatten),
    /// Client-side re-encryption with a rescale.
    Reencrypt(ReencryptBoundary),
    /// A layer only the plaintext side can run (ReLU, Tanh, MaxPool2d).
    PlaintextOnly(PlaintextOnlyLayer),
}

macro_rules! dispatch {
    ($self:ident, $l:ident => $e:expr) => {
        match $self {
            EncodedLayer::Conv2d($l) => $e,
            EncodedLayer::Linear($l) => $e,
            EncodedLayer::Square($l) => $e,
            EncodedLayer::AvgPool2d($l) => $e,
            EncodedLayer::Flatten($l) => $e,
            EncodedLayer::Reencrypt($l) => $e,
            EncodedLayer::PlaintextOnly($l) => $e,
        }
    };
}

impl EncodedLayer {
    /// The layer's name (from the imported model).
    pub fn name(&self) -> &str {
        dispatch!(self, l => &l.name)
    }

    /// A one-line description: kind and hyper-parameters.
    pub fn describe(&self) -> String {
        dispatch!(self, l => l.describe())
    }

    /// Multiplicative depth the layer consumes (ciphertext products).
    pub fn depth(&self) -> usize {
        matches!(self, Self::Square(_)) as usize
    }

    /// log2 of the largest factor by which the layer can multiply the noise of its inputs
    /// without a ciphertext product: max over outputs of Σ|w| for Conv2d and Linear (biases add
    /// no noise beyond rounding), the window area for AvgPool2d, 0 otherwise.
    pub fn linear_noise_gain_log2(&self) -> f64 {
        let max_row = |w: &[i64], row: usize| -> f64 {
            w.chunks(row.max(1))
                .map(|r| r.iter().map(|x| x.unsigned_abs() as f64).sum::<f64>())
                .fold(1.0, f64::max)
                .log2()
        };
        match self {
            Self::Conv2d(c) => max_row(&c.weights, c.in_channels * c.kernel[0] * c.kernel[1]),
            Self::Linear(l) => max_row(&l.weights, l.in_features),
            Self::AvgPool2d(p) => ((p.kernel[0] * p.kernel[1]) as f64).log2(),
            _ => 0.0,
        }
    }

    /// Whether the server can run it on ciphertexts.
    pub fn is_encryptable(&self) -> bool {
        !matches!(self, Self::Reencrypt(_) | Self::PlaintextOnly(_))
    }

    /// The output's facts from the input's.
    pub fn output_info(&self, input: &ValueInfo) -> Result<ValueInfo, LayerError> {
        dispatch!(self, l => l.output_info(input))
    }

    /// The exact integer forward.
    pub fn forward_int(&self, x: &IntTensor) -> Result<IntTensor, LayerError> {
        dispatch!(self, l => l.forward_int(x))
    }

    /// A Conv2d or Linear as the affine map a layout computes.
    pub(crate) fn affine(&self) -> Option<&(dyn affine::Affine + Sync)> {
        match self {
            Self::Conv2d(c) => Some(c),
            Self::Linear(l) => Some(l),
            _ => None,
        }
    }
}

impl From<crate::crypto::Error> for LayerError {
    fn from(source: crate::crypto::Error) -> Self {
        Self::Crypto {
            layer: String::new(),
            source,
        }
    }
}

impl LayerError {
    /// Names the layer in an engine error raised below it.
    pub(crate) fn in_layer(self, name: &str) -> Self {
        match self {
            Self::Crypto { layer, source } if layer.is_empty() => Self::Crypto {
                layer: name.to_string(),
                source,
            },
            other => other,
        }
    }
}

pub(crate) fn shape_error(layer: &str, expected: impl Into<String>, found: &[usize]) -> LayerError {
    LayerError::Shape {
        layer: layer.to_string(),
        expected: expected.into(),
        found: found.to_vec(),
    }
}

/// round(x · 2^-k), ties away from zero: the client's rescale and its mirror.
pub fn rescale_round(x: i128, k: u32) -> i128 {
    if k == 0 {
        return x;
    }
    let half = 1i128 << (k - 1);
    if x >= 0 {
        (x + half) >> k
    } else {
        -((-x + half) >> k)
    }
}
