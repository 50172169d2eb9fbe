//! Layers describe, layouts plan. An [`EncodedLayer`](crate::layers::EncodedLayer) says what a
//! layer computes on integers, layout- and scheme-free; a [`Layout`] compiles an encoded model
//! into an [`ExecutionPlan`] (segments, per-layer operations, Galois elements, predicted
//! noise, and the [`Packing`] of every segment's input and output) and runs segments through a
//! backend. The client packs and unpacks by the [`Packing`] alone. The batch layout
//! ([`BatchLayout`]) and the packed layout ([`PackedLayout`]) implement the trait; a new one
//! adds its [`LayoutKind`] and an arm of [`CompiledLayout`].

mod batch;
mod batch_ops;
mod cost;
mod kind;
mod packed;
mod packing;
mod types;

pub use batch::BatchLayout;
pub use cost::{estimated_cost, images_per_group, step_cost};
pub use kind::{LayoutKind, SchemeKind, UnknownLayout, PROTOCOL_VERSION};
pub use packed::{PackedLayout, Placement};
pub use packing::Packing;
pub use types::{ExecutionPlan, LayerStep, SegmentPlan, StepOps};

use crate::layers::{EncodedLayer, PackedBackend};
use crate::model::{EncodedModel, ModelError};
use std::ops::Range;

/// A way of spreading tensors over ciphertext slots and running layers on them.
pub trait Layout {
    /// Its name in configurations and plans.
    fn kind(&self) -> LayoutKind;

    /// Compiles a model: segments with their packings, per-layer operations, Galois elements,
    /// predicted noise.
    fn compile(&self, model: &EncodedModel) -> Result<ExecutionPlan, ModelError>;

    /// The packing of the tensor that running `layers` leaves (inside one segment; with
    /// `layers` empty, of the tensor entering `layers.start`).
    fn packing(&self, model: &EncodedModel, layers: &Range<usize>) -> Result<Packing, ModelError>;

    /// Server: runs `layers` (encryptable, free of predicted overflow) on the ciphertexts of
    /// `images` images, packed as [`Self::packing`] says for the tensor entering them.
    fn run<B: PackedBackend>(
        &self,
        model: &EncodedModel,
        layers: Range<usize>,
        images: usize,
        cts: Vec<B::Ciphertext>,
        backend: &B,
    ) -> Result<Vec<B::Ciphertext>, ModelError>;
}

/// A layout ready for one model: what the server caches with a plan, and what in-process runs
/// use. Dispatches to the layout its kind names.
#[derive(Clone, Debug)]
pub enum CompiledLayout {
    /// The batch layout (nothing to compile).
    Batch(BatchLayout),
    /// The packed layout with its programs.
    Packed(PackedLayout),
}

impl CompiledLayout {
    /// The layout `kind` for `model`.
    pub fn new(kind: LayoutKind, model: &EncodedModel) -> Result<Self, ModelError> {
        Self::for_flood(
            kind,
            model,
            Some(crate::crypto::sanitize::DEFAULT_FLOOD_BITS),
        )
    }

    /// The layout `kind` for `model`, for a server flooding with `flood_bits` (`None`:
    /// unsanitized answers); see [`PackedLayout::for_flood`].
    pub fn for_flood(
        kind: LayoutKind,
        model: &EncodedModel,
        flood_bits: Option<u32>,
    ) -> Result<Self, ModelError> {
        Ok(match kind {
            LayoutKind::Batch => Self::Batch(BatchLayout),
            LayoutKind::Packed => Self::Packed(PackedLayout::for_flood(model, flood_bits)?),
        })
    }
}

impl Layout for CompiledLayout {
    fn kind(&self) -> LayoutKind {
        match self {
            Self::Batch(l) => l.kind(),
            Self::Packed(l) => l.kind(),
        }
    }

    fn compile(&self, model: &EncodedModel) -> Result<ExecutionPlan, ModelError> {
        match self {
            Self::Batch(l) => l.compile(model),
            Self::Packed(l) => l.compile(model),
        }
    }

    fn packing(&self, model: &EncodedModel, layers: &Range<usize>) -> Result<Packing, ModelError> {
        match self {
            Self::Batch(l) => l.packing(model, layers),
            Self::Packed(l) => l.packing(model, layers),
        }
    }

    fn run<B: PackedBackend>(
        &self,
        model: &EncodedModel,
        layers: Range<usize>,
        images: usize,
        cts: Vec<B::Ciphertext>,
        backend: &B,
    ) -> Result<Vec<B::Ciphertext>, ModelError> {
        match self {
            Self::Batch(l) => l.run(model, layers, images, cts, backend),
            Self::Packed(l) => l.run(model, layers, images, cts, backend),
        }
    }
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
