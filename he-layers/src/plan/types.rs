//! What a layout compiles a model into: the segments the server runs, and per layer the
//! operations it performs and the noise it is predicted to leave.

use super::kind::{LayoutKind, SchemeKind};
use super::Packing;
use crate::tensor::ValueInfo;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Homomorphic operations of one layer in one layout, counted before anything runs.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct StepOps {
    /// Ciphertexts the layer outputs.
    pub ciphertexts_out: u64,
    /// Ciphertext × integer-scalar products (terms of dot products).
    pub scalar_products: u64,
    /// Ciphertext × plaintext products.
    pub plaintext_products: u64,
    /// Ciphertext × ciphertext products (squares included).
    pub ciphertext_products: u64,
    /// Slot rotations (automorphisms).
    pub rotations: u64,
    /// Key switches (relinearizations and rotations).
    pub key_switches: u64,
    /// Ciphertext primes the layer runs at, when a layout switched down to fewer than the
    /// parameter set's (0: all of them).
    #[serde(default)]
    pub level: u64,
}

/// One layer of a compiled plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerStep {
    /// Layer index in the model.
    pub index: usize,
    /// The operations the layout performs for it.
    pub ops: StepOps,
    /// The evaluator's conservative estimate of the noise budget left after it (bits).
    pub predicted_budget_bits: f64,
}

/// A range of layers the server runs in one request, between re-encryption boundaries.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentPlan {
    /// Layers `[start, end)`.
    pub layers: Range<usize>,
    /// The facts of the tensor entering it.
    pub input: ValueInfo,
    /// The facts of the tensor leaving it.
    pub output: ValueInfo,
    /// The server's bound on log2 of the noise of every ciphertext it returns, from the
    /// public model and fresh noise at `layers.start` (what circuit-privacy flooding is sized
    /// by).
    pub noise_log2: f64,
    /// How the client packs its input.
    pub input_packing: Packing,
    /// How the answer is packed.
    pub output_packing: Packing,
}

/// A model compiled by a layout.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecutionPlan {
    /// The scheme.
    pub scheme: SchemeKind,
    /// The layout.
    pub layout: LayoutKind,
    /// The segments, in order.
    pub segments: Vec<SegmentPlan>,
    /// One step per layer of the encryptable prefix (re-encryption boundaries included,
    /// with no operations).
    pub steps: Vec<LayerStep>,
    /// Galois elements the client must generate keys for (sorted, unique).
    pub galois_elements: Vec<u64>,
}
