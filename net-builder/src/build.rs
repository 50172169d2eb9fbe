//! From a `ModelSpec`, a parameter set and a quantization to an `EncodedModel`.

use crate::spec::{LayerSpec, ModelSpec, SpecError};
use he_layers::crypto::BfvParameters;
use he_layers::layers::{
    EncodedAvgPool2d, EncodedConv2d, EncodedLayer, EncodedLinear, Flatten, LayerError,
    PlaintextOnlyKind, PlaintextOnlyLayer, ReencryptBoundary, Square,
};
use he_layers::model::{EncodedModel, ModelError, Quantization};
use he_layers::tensor::ValueInfo;
use std::sync::Arc;

/// The most weight bits the automatic choice tries.
pub const MAX_AUTO_WEIGHT_BITS: u32 = 16;

/// How to quantize and split a model.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildOptions {
    /// Inputs are held as round(x · 2^input_scale_bits).
    pub input_scale_bits: u32,
    /// Weight precision: each layer's largest |weight| maps to at most 2^bits (per-layer
    /// power-of-two scales). `None` picks the largest that keeps every encrypted layer under
    /// t/2 (at most [`MAX_AUTO_WEIGHT_BITS`]).
    pub weight_bits: Option<u32>,
    /// Smallest input value the model accepts (0 for images in [0, 1]).
    pub input_min: f64,
    /// Largest input value the model accepts (1 for images in [0, 1]).
    pub input_max: f64,
    /// Indices of the (BatchNorm-folded) spec layers after which the client re-encrypts.
    pub reencrypt_after: Vec<usize>,
    /// Bits to divide by at each boundary; `None` brings the scale back to about the input
    /// scale.
    pub rescale_bits: Option<Vec<u32>>,
    /// When several plaintext moduli are used at once (CRT), all of them.
    pub crt_moduli: Option<Vec<u64>>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            input_scale_bits: 8,
            weight_bits: None,
            input_min: 0.0,
            input_max: 1.0,
            reencrypt_after: Vec::new(),
            rescale_bits: None,
            crt_moduli: None,
        }
    }
}

/// Why a model could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A layer could not be encoded.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// The model could not be assembled.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// No weight scale keeps the model under t/2.
    #[error("even with {bits}-bit weights the model overflows: {detail}")]
    NoWeightScale {
        /// The fewest weight bits tried.
        bits: u32,
        /// The overflow.
        detail: String,
    },
    /// A re-encryption position that is not between two layers of the model.
    #[error("re-encryption after layer {position}: the model has {layers} layers, so a boundary must come after layer 0 to {}", layers.saturating_sub(2))]
    ReencryptPosition {
        /// The position asked for.
        position: usize,
        /// Layers of the model.
        layers: usize,
    },
    /// A re-encryption position in the plaintext tail, where nothing is encrypted any more,
    /// or right before it.
    #[error(
        "re-encryption after layer {position}: layer {first} ({what}) and every layer after it \
         run on the client after the last decryption, so a boundary must come after a layer \
         before layer {} (the client decrypts before layer {first} anyway)",
        first.saturating_sub(1)
    )]
    ReencryptInTail {
        /// The position asked for.
        position: usize,
        /// The first plaintext-only layer.
        first: usize,
        /// What it is.
        what: String,
    },
    /// Rescale values that do not pair with the re-encryption positions.
    #[error("{rescales} rescale values for {positions} re-encryption positions")]
    RescaleCount {
        /// Rescale values given.
        rescales: usize,
        /// Positions given.
        positions: usize,
    },
    /// An input range that is not a finite interval.
    #[error("input range [{min}, {max}] is not a finite interval")]
    InputRange {
        /// Its start.
        min: f64,
        /// Its end.
        max: f64,
    },
    /// A BatchNorm left unfolded (fold_batchnorm runs first; a bug if seen).
    #[error("BatchNorm {name} was not folded; fold_batchnorm runs first")]
    UnfoldedBatchNorm {
        /// The layer.
        name: String,
    },
    /// No plaintext modulus was given.
    #[error("at least one plaintext modulus is needed")]
    NoPlainModulus,
    /// The parameter set is refused.
    #[error(transparent)]
    Parameters(#[from] he_layers::crypto::ParameterError),
}

/// A built model and how it was built.
#[derive(Debug)]
pub struct BuiltModel {
    /// The encoded model.
    pub model: EncodedModel,
    /// The weight precision used.
    pub weight_bits: u32,
    /// Whether it was chosen automatically.
    pub weight_bits_auto: bool,
    /// For each encoded layer, the index of the spec layer it comes from (`None` for inserted
    /// re-encryption boundaries).
    pub spec_index: Vec<Option<usize>>,
}

/// Builds the encoded model, choosing the weight scale when it is not given.
pub fn build_model(
    spec: &ModelSpec,
    params: &Arc<BfvParameters>,
    opts: &BuildOptions,
) -> Result<BuiltModel, BuildError> {
    let spec = spec.fold_batchnorm()?;
    spec.validate()?;
    if let Some(&i) = opts
        .reencrypt_after
        .iter()
        .find(|&&i| i + 1 >= spec.layers.len())
    {
        return Err(BuildError::ReencryptPosition {
            position: i,
            layers: spec.layers.len(),
        });
    }
    if let Some(first) = spec.layers.iter().position(|l| !l.is_encryptable()) {
        // A boundary right before the tail would re-encrypt for nothing: the client decrypts
        // there anyway.
        if let Some(&position) = opts.reencrypt_after.iter().find(|&&i| i + 1 >= first) {
            return Err(BuildError::ReencryptInTail {
                position,
                first,
                what: spec.layers[first].describe(),
            });
        }
    }
    if let Some(r) = &opts.rescale_bits {
        if r.len() != opts.reencrypt_after.len() {
            return Err(BuildError::RescaleCount {
                rescales: r.len(),
                positions: opts.reencrypt_after.len(),
            });
        }
    }
    if !(opts.input_min <= opts.input_max
        && opts.input_min.is_finite()
        && opts.input_max.is_finite())
    {
        return Err(BuildError::InputRange {
            min: opts.input_min,
            max: opts.input_max,
        });
    }
    match opts.weight_bits {
        Some(bits) => {
            let (model, spec_index) = build_at(&spec, params, opts, bits)?;
            Ok(BuiltModel {
                model,
                weight_bits: bits,
                weight_bits_auto: false,
                spec_index,
            })
        }
        None => {
            let mut last_err = None;
            for bits in (1..=MAX_AUTO_WEIGHT_BITS).rev() {
                let (model, spec_index) = match build_at(&spec, params, opts, bits) {
                    Ok(m) => m,
                    // A bias too large to quantize at this scale: try a smaller one.
                    Err(BuildError::Layer(e @ LayerError::Unquantizable { .. })) => {
                        last_err = Some(e.to_string());
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                // Only the encrypted layers are bounded by t (check_overflow stops at the
                // encryptable prefix).
                let all = 0..model.layers().len();
                match model.check_overflow(&all) {
                    Ok(()) => {
                        return Ok(BuiltModel {
                            model,
                            weight_bits: bits,
                            weight_bits_auto: true,
                            spec_index,
                        })
                    }
                    Err(e) => last_err = Some(e.to_string()),
                }
            }
            Err(BuildError::NoWeightScale {
                bits: 1,
                detail: last_err.unwrap_or_default(),
            })
        }
    }
}

fn build_at(
    spec: &ModelSpec,
    params: &Arc<BfvParameters>,
    opts: &BuildOptions,
    weight_bits: u32,
) -> Result<(EncodedModel, Vec<Option<usize>>), BuildError> {
    let in_scale = (opts.input_scale_bits as f64).exp2();
    let input = ValueInfo {
        shape: spec.input_shape.clone(),
        scale: in_scale,
        lo: (opts.input_min * in_scale).round() as i128,
        hi: (opts.input_max * in_scale).round() as i128,
        float_bound: opts.input_min.abs().max(opts.input_max.abs()),
        error_bound: 0.5 / in_scale,
    };
    // Per-layer scale: 2^(bits − ⌈log2 max|w|⌉) maps the largest |weight| to at most 2^bits.
    let layer_bits = |w: &[f32]| -> i32 {
        let max = w.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()));
        let e = if max > 0.0 {
            max.log2().ceil() as i32
        } else {
            0
        };
        weight_bits as i32 - e
    };
    let mut info = input.clone();
    let mut layers = Vec::new();
    let mut spec_index = Vec::new();
    let to64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    // After the first plaintext-only layer everything runs on the client in floating point:
    // the tail's affine layers are encoded for their shapes only, at unit input scale, so a
    // scale grown through the encrypted prefix cannot make them unquantizable.
    let mut tail = false;
    for (i, l) in spec.layers.iter().enumerate() {
        let in_scale = if tail { 1.0 } else { info.scale };
        let layer = match l {
            LayerSpec::Conv2d {
                name,
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
                weight,
                bias,
            } => EncodedLayer::Conv2d(EncodedConv2d::quantize(
                name.clone(),
                *in_channels,
                *out_channels,
                *kernel,
                *stride,
                *padding,
                &to64(weight),
                bias.as_deref().map(to64).as_deref(),
                in_scale,
                layer_bits(weight),
            )?),
            LayerSpec::Linear {
                name,
                in_features,
                out_features,
                weight,
                bias,
            } => EncodedLayer::Linear(EncodedLinear::quantize(
                name.clone(),
                *in_features,
                *out_features,
                &to64(weight),
                bias.as_deref().map(to64).as_deref(),
                in_scale,
                layer_bits(weight),
            )?),
            LayerSpec::AvgPool2d {
                name,
                kernel,
                stride,
                padding,
            } => EncodedLayer::AvgPool2d(EncodedAvgPool2d {
                name: name.clone(),
                kernel: *kernel,
                stride: *stride,
                padding: *padding,
            }),
            LayerSpec::Flatten { name } => EncodedLayer::Flatten(Flatten { name: name.clone() }),
            LayerSpec::Square { name } => EncodedLayer::Square(Square { name: name.clone() }),
            LayerSpec::Relu { name } => EncodedLayer::PlaintextOnly(PlaintextOnlyLayer {
                name: name.clone(),
                kind: PlaintextOnlyKind::Relu,
            }),
            LayerSpec::Tanh { name } => EncodedLayer::PlaintextOnly(PlaintextOnlyLayer {
                name: name.clone(),
                kind: PlaintextOnlyKind::Tanh,
            }),
            LayerSpec::MaxPool2d {
                name,
                kernel,
                stride,
                padding,
            } => EncodedLayer::PlaintextOnly(PlaintextOnlyLayer {
                name: name.clone(),
                kind: PlaintextOnlyKind::MaxPool2d {
                    kernel: *kernel,
                    stride: *stride,
                    padding: *padding,
                },
            }),
            LayerSpec::BatchNorm { name, .. } => {
                return Err(BuildError::UnfoldedBatchNorm { name: name.clone() })
            }
        };
        tail |= matches!(layer, EncodedLayer::PlaintextOnly(_));
        info = layer.output_info(&info)?;
        layers.push(layer);
        spec_index.push(Some(i));
        if let Some(pos) = opts.reencrypt_after.iter().position(|&p| p == i) {
            let bits = match &opts.rescale_bits {
                Some(r) => r[pos],
                // Back to about the input scale: the integers keep the input's precision.
                None => {
                    (info.scale.log2().floor() as i64 - opts.input_scale_bits as i64).max(0) as u32
                }
            };
            let boundary = EncodedLayer::Reencrypt(ReencryptBoundary {
                name: format!("reencrypt-after-{}", l.name()),
                rescale_bits: bits,
            });
            info = boundary.output_info(&info)?;
            layers.push(boundary);
            spec_index.push(None);
        }
    }
    let model = EncodedModel::new(
        spec.name.clone(),
        params,
        input,
        layers,
        Quantization {
            input_scale_bits: opts.input_scale_bits,
            weight_bits,
        },
        opts.crt_moduli.clone(),
    )?;
    Ok((model, spec_index))
}
