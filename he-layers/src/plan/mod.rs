//! Layers describe, layouts plan. An [`EncodedLayer`](crate::layers::EncodedLayer) says what a
//! layer computes on integers, layout- and scheme-free; a [`Layout`] compiles an encoded model
//! into an [`ExecutionPlan`] (segments, per-layer operations, Galois elements, predicted
//! noise), packs tensors into ciphertext slots and runs segments through a backend. The batch
//! layout ([`BatchLayout`]) is the first; a packed layout joins by implementing the same trait
//! and adding its [`LayoutKind`].

mod batch;
mod batch_ops;
mod kind;
mod types;

pub use batch::BatchLayout;
pub use kind::{LayoutKind, SchemeKind, PROTOCOL_VERSION};
pub use types::{ExecutionPlan, LayerStep, SegmentPlan, StepOps};

use crate::layers::{EncodedLayer, HeBackend, SlotDecryptor, SlotEncryptor};
use crate::model::{EncodedModel, ModelError};
use crate::tensor::{IntTensor, ValueInfo};
use std::ops::Range;

/// A way of spreading tensors over ciphertext slots and running layers on them.
pub trait Layout {
    /// Its name in configurations and plans.
    fn kind(&self) -> LayoutKind;

    /// Compiles a model: segments, per-layer operations, Galois elements, predicted noise.
    fn compile(&self, model: &EncodedModel) -> Result<ExecutionPlan, ModelError>;

    /// Ciphertexts that carry a tensor with `info` for `images` images in `slots` slots.
    fn ciphertext_count(
        &self,
        info: &ValueInfo,
        images: usize,
        slots: usize,
    ) -> Result<usize, ModelError>;

    /// Client: packs and encrypts an integer tensor (every image of it).
    fn encrypt<E: SlotEncryptor>(
        &self,
        x: &IntTensor,
        encryptor: &E,
    ) -> Result<Vec<E::Ciphertext>, ModelError>;

    /// Client: decrypts and unpacks `images` images of a tensor with `info`.
    fn decrypt<D: SlotDecryptor>(
        &self,
        cts: &[D::Ciphertext],
        info: &ValueInfo,
        images: usize,
        decryptor: &D,
    ) -> Result<IntTensor, ModelError>;

    /// Server: runs `layers` (encryptable, free of predicted overflow) on the ciphertexts of
    /// `images` images whose facts are the model's before `layers.start`.
    fn run<B: HeBackend>(
        &self,
        model: &EncodedModel,
        layers: Range<usize>,
        images: usize,
        cts: Vec<B::Ciphertext>,
        backend: &B,
    ) -> Result<Vec<B::Ciphertext>, ModelError>;
}

/// The segments of a model: its encryptable prefix cut at every re-encryption boundary. These
/// are the only ranges a client may run, whatever the layout.
pub fn segments(model: &EncodedModel) -> Vec<Range<usize>> {
    let prefix = model.encryptable_prefix();
    let mut out = Vec::new();
    let mut start = 0;
    for (i, l) in model.layers().iter().enumerate().take(prefix) {
        if matches!(l, EncodedLayer::Reencrypt(_)) {
            if start < i {
                out.push(start..i);
            }
            start = i + 1;
        }
    }
    if start < prefix {
        out.push(start..prefix);
    }
    out
}

/// The plan's segments with their facts and noise bounds (shared by every layout).
fn segment_plans(model: &EncodedModel) -> Vec<SegmentPlan> {
    segments(model)
        .into_iter()
        .map(|r| SegmentPlan {
            input: model.info_before(r.start).clone(),
            output: model.info_before(r.end).clone(),
            noise_log2: model.range_noise_log2(&r),
            layers: r,
        })
        .collect()
}
