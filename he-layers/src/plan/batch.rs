//! The batch layout (CryptoNets): one ciphertext per activation, slot j of every ciphertext
//! holding image j. Layers are dot products with integer scalars and slot-wise squares: no
//! rotations, no Galois keys; a batch costs the same for 1 image as for N.

use super::batch_ops::forward_layer;
use super::{
    segments, ExecutionPlan, LayerStep, Layout, LayoutKind, Packing, SchemeKind, SegmentPlan,
    StepOps,
};
use crate::layers::{EncodedLayer, HeBackend, LayerError, PackedBackend};
use crate::model::{EncodedModel, ModelError};
use crate::tensor::{EncryptedTensor, ValueInfo};
use std::ops::Range;

/// The batch layout.
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchLayout;

/// The operations of one layer in the batch layout, for an input with `input`'s shape.
fn layer_ops(layer: &EncodedLayer, input: &ValueInfo) -> Result<StepOps, ModelError> {
    let out = layer.output_info(input)?.len() as u64;
    let mut ops = StepOps {
        ciphertexts_out: out,
        ..StepOps::default()
    };
    match layer {
        EncodedLayer::Conv2d(c) => ops.scalar_products = c.nonzero_connections(&input.shape)?,
        EncodedLayer::Linear(l) => ops.scalar_products = l.nonzero_connections(&input.shape)?,
        EncodedLayer::Square(_) => {
            ops.ciphertext_products = out;
            ops.key_switches = out;
        }
        _ => {}
    }
    Ok(ops)
}

impl Layout for BatchLayout {
    fn kind(&self) -> LayoutKind {
        LayoutKind::Batch
    }

    fn compile(&self, model: &EncodedModel) -> Result<ExecutionPlan, ModelError> {
        let budgets = model.estimate_noise_budgets();
        let steps = model.layers()[..model.encryptable_prefix()]
            .iter()
            .enumerate()
            .map(|(index, layer)| {
                Ok(LayerStep {
                    index,
                    ops: layer_ops(layer, model.info_before(index))?,
                    predicted_budget_bits: budgets[index],
                })
            })
            .collect::<Result<_, ModelError>>()?;
        Ok(ExecutionPlan {
            scheme: SchemeKind::Bfv,
            layout: LayoutKind::Batch,
            segments: segments(model)
                .into_iter()
                .map(|r| SegmentPlan {
                    input: model.info_before(r.start).clone(),
                    output: model.info_before(r.end).clone(),
                    noise_log2: model.range_noise_log2(&r),
                    input_packing: Packing::Batch,
                    output_packing: Packing::Batch,
                    layers: r,
                })
                .collect(),
            steps,
            galois_elements: Vec::new(),
        })
    }

    fn packing(
        &self,
        _model: &EncodedModel,
        _layers: &Range<usize>,
    ) -> Result<Packing, ModelError> {
        Ok(Packing::Batch)
    }

    fn run<B: PackedBackend>(
        &self,
        model: &EncodedModel,
        layers: Range<usize>,
        images: usize,
        cts: Vec<B::Ciphertext>,
        backend: &B,
    ) -> Result<Vec<B::Ciphertext>, ModelError> {
        let info = model.info_before(layers.start);
        let x = EncryptedTensor {
            shape: info.shape.clone(),
            batch: images,
            cts,
            scale: info.scale,
            lo: info.lo,
            hi: info.hi,
        };
        Ok(self.run_tensor(model, layers, x, backend)?.cts)
    }
}

impl BatchLayout {
    /// Runs a range of layers on a batch-layout tensor. The range must be encryptable and
    /// free of predicted overflow, and the input must have the shape, scale and interval the
    /// range expects.
    pub fn run_tensor<B: HeBackend>(
        &self,
        model: &EncodedModel,
        range: Range<usize>,
        x: EncryptedTensor<B::Ciphertext>,
        backend: &B,
    ) -> Result<EncryptedTensor<B::Ciphertext>, ModelError> {
        model.check_range(&range)?;
        model.check_overflow(&range)?;
        let expect = model.info_before(range.start);
        if x.shape != expect.shape || x.cts.len() != expect.len() {
            return Err(ModelError::InputShape {
                layer: range.start,
                expected: expect.shape.clone(),
                found: x.shape.clone(),
                found_ciphertexts: x.cts.len(),
            });
        }
        if x.scale != expect.scale || x.lo < expect.lo || x.hi > expect.hi {
            return Err(ModelError::InputFacts {
                layer: range.start,
                expected_scale: expect.scale,
                found_scale: x.scale,
                expected: [expect.lo, expect.hi],
                found: [x.lo, x.hi],
            });
        }
        let mut cur = x;
        for layer in &model.layers()[range] {
            cur = forward_layer(layer, &cur, backend)?;
        }
        Ok(cur)
    }

    /// One layer on a batch-layout tensor (no range checks: for tests of a single layer).
    pub fn forward_layer<B: HeBackend>(
        &self,
        layer: &EncodedLayer,
        x: &EncryptedTensor<B::Ciphertext>,
        backend: &B,
    ) -> Result<EncryptedTensor<B::Ciphertext>, LayerError> {
        forward_layer(layer, x, backend)
    }
}
