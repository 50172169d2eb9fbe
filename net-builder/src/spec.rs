//! `ModelSpec`: an imported model as float weights and shapes, its validation, BatchNorm
//! folding, and the float reference forward (ndarray).

use ndarray::{ArrayD, Axis, IxDyn};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// One layer of an imported model, with float weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LayerSpec {
    /// 2-D convolution; weight `[out][in][kh][kw]`.
    Conv2d {
        /// Layer name.
        name: String,
        /// Input channels.
        in_channels: usize,
        /// Output channels.
        out_channels: usize,
        /// Kernel size.
        kernel: [usize; 2],
        /// Stride.
        stride: [usize; 2],
        /// Zero padding.
        padding: [usize; 2],
        /// Weights.
        weight: Vec<f32>,
        /// Bias per output channel.
        bias: Option<Vec<f32>>,
    },
    /// Fully connected; weight `[out][in]`.
    Linear {
        /// Layer name.
        name: String,
        /// Input features.
        in_features: usize,
        /// Output features.
        out_features: usize,
        /// Weights.
        weight: Vec<f32>,
        /// Bias.
        bias: Option<Vec<f32>>,
    },
    /// Average pooling (padding counted in the divisor).
    AvgPool2d {
        /// Layer name.
        name: String,
        /// Window.
        kernel: [usize; 2],
        /// Stride.
        stride: [usize; 2],
        /// Padding.
        padding: [usize; 2],
    },
    /// Flatten to one dimension.
    Flatten {
        /// Layer name.
        name: String,
    },
    /// x².
    Square {
        /// Layer name.
        name: String,
    },
    /// Batch normalization (inference form), to be folded into the layer before it.
    BatchNorm {
        /// Layer name.
        name: String,
        /// γ.
        gamma: Vec<f32>,
        /// β.
        beta: Vec<f32>,
        /// Running mean.
        mean: Vec<f32>,
        /// Running variance.
        var: Vec<f32>,
        /// ε.
        eps: f32,
    },
    /// max(0, x): plaintext only.
    Relu {
        /// Layer name.
        name: String,
    },
    /// tanh: plaintext only.
    Tanh {
        /// Layer name.
        name: String,
    },
    /// Max pooling: plaintext only.
    MaxPool2d {
        /// Layer name.
        name: String,
        /// Window.
        kernel: [usize; 2],
        /// Stride.
        stride: [usize; 2],
        /// Padding.
        padding: [usize; 2],
    },
}

impl LayerSpec {
    /// The layer's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Conv2d { name, .. }
            | Self::Linear { name, .. }
            | Self::AvgPool2d { name, .. }
            | Self::Flatten { name }
            | Self::Square { name }
            | Self::BatchNorm { name, .. }
            | Self::Relu { name }
            | Self::Tanh { name }
            | Self::MaxPool2d { name, .. } => name,
        }
    }

    /// Kind and hyper-parameters, one line.
    pub fn describe(&self) -> String {
        match self {
            Self::Conv2d {
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
                ..
            } => format!(
                "Conv2d({in_channels}→{out_channels}, {}×{}, stride {}×{}, padding {}×{})",
                kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1]
            ),
            Self::Linear {
                in_features,
                out_features,
                ..
            } => format!("Linear({in_features}→{out_features})"),
            Self::AvgPool2d {
                kernel,
                stride,
                padding,
                ..
            } => format!(
                "AvgPool2d({}×{}, stride {}×{}, padding {}×{})",
                kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1]
            ),
            Self::Flatten { .. } => "Flatten".into(),
            Self::Square { .. } => "Square".into(),
            Self::BatchNorm { gamma, .. } => format!("BatchNorm({})", gamma.len()),
            Self::Relu { .. } => "ReLU (plaintext only)".into(),
            Self::Tanh { .. } => "Tanh (plaintext only)".into(),
            Self::MaxPool2d { kernel, stride, .. } => format!(
                "MaxPool2d({}×{}, stride {}×{}) (plaintext only)",
                kernel[0], kernel[1], stride[0], stride[1]
            ),
        }
    }

    /// Whether the layer can run on ciphertexts.
    pub fn is_encryptable(&self) -> bool {
        !matches!(
            self,
            Self::Relu { .. } | Self::Tanh { .. } | Self::MaxPool2d { .. }
        )
    }
}

/// Why a spec is not usable.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    /// Shapes do not chain.
    #[error("layer {index} ({name}, {describe}): {reason}")]
    Shape {
        /// Layer index.
        index: usize,
        /// Layer name.
        name: String,
        /// Its description.
        describe: String,
        /// What does not fit.
        reason: String,
    },
    /// A BatchNorm cannot be folded.
    #[error("BatchNorm {name} (layer {index}) follows {after}; only a BatchNorm directly after Conv2d or Linear can be folded")]
    Unfoldable {
        /// Layer index.
        index: usize,
        /// Its name.
        name: String,
        /// What precedes it.
        after: String,
    },
    /// The input shape is unknown or invalid.
    #[error("input shape {0:?} is not usable: give [C, H, W] for images or [features]")]
    Input(Vec<usize>),
}

/// An imported model: input shape and layers with float weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Model name.
    pub name: String,
    /// Shape of one input (without the batch dimension).
    pub input_shape: Vec<usize>,
    /// Layers in order.
    pub layers: Vec<LayerSpec>,
}

fn pool_hw(
    h: usize,
    w: usize,
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
) -> Option<(usize, usize)> {
    if s.contains(&0) || k.contains(&0) || h + 2 * p[0] < k[0] || w + 2 * p[1] < k[1] {
        return None;
    }
    Some((
        (h + 2 * p[0] - k[0]) / s[0] + 1,
        (w + 2 * p[1] - k[1]) / s[1] + 1,
    ))
}

impl ModelSpec {
    /// Checks that shapes chain and weight sizes fit; returns the output shape of every layer.
    pub fn validate(&self) -> Result<Vec<Vec<usize>>, SpecError> {
        if self.input_shape.is_empty()
            || self.input_shape.contains(&0)
            || self.input_shape.len() > 3
        {
            return Err(SpecError::Input(self.input_shape.clone()));
        }
        let mut shape = self.input_shape.clone();
        let mut out = Vec::with_capacity(self.layers.len());
        for (index, l) in self.layers.iter().enumerate() {
            let fail = |reason: String| SpecError::Shape {
                index,
                name: l.name().to_string(),
                describe: l.describe(),
                reason,
            };
            shape = match l {
                LayerSpec::Conv2d {
                    in_channels,
                    out_channels,
                    kernel,
                    stride,
                    padding,
                    weight,
                    bias,
                    ..
                } => {
                    if weight.len() != out_channels * in_channels * kernel[0] * kernel[1]
                        || bias.as_ref().is_some_and(|b| b.len() != *out_channels)
                    {
                        return Err(fail("weight or bias size does not match".into()));
                    }
                    match shape.as_slice() {
                        &[c, h, w] if c == *in_channels => {
                            let (oh, ow) =
                                pool_hw(h, w, *kernel, *stride, *padding).ok_or_else(|| {
                                    fail(format!("input {shape:?} is smaller than the kernel"))
                                })?;
                            vec![*out_channels, oh, ow]
                        }
                        _ => {
                            return Err(fail(format!(
                                "needs [{in_channels}, H, W], gets {shape:?}"
                            )))
                        }
                    }
                }
                LayerSpec::Linear {
                    in_features,
                    out_features,
                    weight,
                    bias,
                    ..
                } => {
                    if weight.len() != in_features * out_features
                        || bias.as_ref().is_some_and(|b| b.len() != *out_features)
                    {
                        return Err(fail("weight or bias size does not match".into()));
                    }
                    if shape != [*in_features] {
                        return Err(fail(format!(
                            "needs [{in_features}], gets {shape:?} (a Flatten may be missing)"
                        )));
                    }
                    vec![*out_features]
                }
                LayerSpec::AvgPool2d {
                    kernel,
                    stride,
                    padding,
                    ..
                }
                | LayerSpec::MaxPool2d {
                    kernel,
                    stride,
                    padding,
                    ..
                } => match shape.as_slice() {
                    &[c, h, w] => {
                        let (oh, ow) =
                            pool_hw(h, w, *kernel, *stride, *padding).ok_or_else(|| {
                                fail(format!("input {shape:?} is smaller than the window"))
                            })?;
                        vec![c, oh, ow]
                    }
                    _ => return Err(fail(format!("needs [C, H, W], gets {shape:?}"))),
                },
                LayerSpec::Flatten { .. } => vec![shape.iter().product()],
                LayerSpec::BatchNorm {
                    gamma,
                    beta,
                    mean,
                    var,
                    ..
                } => {
                    let c = shape[0];
                    if [gamma.len(), beta.len(), mean.len(), var.len()] != [c; 4] {
                        return Err(fail(format!(
                            "has {} features, the input has {c} channels",
                            gamma.len()
                        )));
                    }
                    shape
                }
                LayerSpec::Square { .. } | LayerSpec::Relu { .. } | LayerSpec::Tanh { .. } => shape,
            };
            out.push(shape.clone());
        }
        Ok(out)
    }

    /// Folds every BatchNorm into the Conv2d or Linear right before it: w' = w γ/√(σ²+ε),
    /// b' = (b − μ) γ/√(σ²+ε) + β, per output channel.
    pub fn fold_batchnorm(&self) -> Result<ModelSpec, SpecError> {
        let mut layers: Vec<LayerSpec> = Vec::with_capacity(self.layers.len());
        for (index, l) in self.layers.iter().enumerate() {
            let LayerSpec::BatchNorm {
                name,
                gamma,
                beta,
                mean,
                var,
                eps,
            } = l
            else {
                layers.push(l.clone());
                continue;
            };
            let unfoldable = |after: String| SpecError::Unfoldable {
                index,
                name: name.clone(),
                after,
            };
            let prev = layers
                .last_mut()
                .ok_or_else(|| unfoldable("the input".into()))?;
            let (weight, bias, outs) = match prev {
                LayerSpec::Conv2d {
                    weight,
                    bias,
                    out_channels,
                    ..
                } => (weight, bias, *out_channels),
                LayerSpec::Linear {
                    weight,
                    bias,
                    out_features,
                    ..
                } => (weight, bias, *out_features),
                other => return Err(unfoldable(other.describe())),
            };
            if gamma.len() != outs || beta.len() != outs || mean.len() != outs || var.len() != outs
            {
                return Err(unfoldable(format!("a layer with {outs} outputs")));
            }
            let per = weight.len() / outs.max(1);
            let b = bias.get_or_insert_with(|| vec![0.0; outs]);
            for o in 0..outs {
                let k = gamma[o] as f64 / (var[o] as f64 + *eps as f64).sqrt();
                for w in &mut weight[o * per..(o + 1) * per] {
                    *w = (*w as f64 * k) as f32;
                }
                b[o] = ((b[o] as f64 - mean[o] as f64) * k + beta[o] as f64) as f32;
            }
        }
        Ok(ModelSpec {
            name: self.name.clone(),
            input_shape: self.input_shape.clone(),
            layers,
        })
    }

    /// The float reference: runs layers `range` on a batch (`[N, …shape]`), in f64.
    pub fn forward(
        &self,
        x: &ArrayD<f64>,
        range: std::ops::Range<usize>,
    ) -> Result<ArrayD<f64>, SpecError> {
        let mut cur = x.clone();
        for (index, l) in self
            .layers
            .iter()
            .enumerate()
            .take(range.end)
            .skip(range.start)
        {
            let fail = |reason: String| SpecError::Shape {
                index,
                name: l.name().to_string(),
                describe: l.describe(),
                reason,
            };
            cur = match l {
                LayerSpec::Conv2d {
                    in_channels,
                    out_channels,
                    kernel,
                    stride,
                    padding,
                    weight,
                    bias,
                    ..
                } => conv2d(
                    &cur,
                    *in_channels,
                    *out_channels,
                    *kernel,
                    *stride,
                    *padding,
                    weight,
                    bias.as_deref(),
                )
                .ok_or_else(|| fail(format!("input {:?} does not fit", cur.shape())))?,
                LayerSpec::Linear {
                    in_features,
                    out_features,
                    weight,
                    bias,
                    ..
                } => {
                    if cur.ndim() != 2 || cur.shape()[1] != *in_features {
                        return Err(fail(format!("input {:?} does not fit", cur.shape())));
                    }
                    let n = cur.shape()[0];
                    let x = cur.as_standard_layout();
                    let xs = x.as_slice().unwrap_or_default();
                    let (inf, outf) = (*in_features, *out_features);
                    let mut y = vec![0.0; n * outf];
                    y.par_chunks_mut(outf).enumerate().for_each(|(b, row)| {
                        let xb = &xs[b * inf..(b + 1) * inf];
                        for (o, r) in row.iter_mut().enumerate() {
                            let wo = &weight[o * inf..(o + 1) * inf];
                            let dot: f64 = wo.iter().zip(xb).map(|(&w, &v)| w as f64 * v).sum();
                            *r = dot + bias.as_ref().map_or(0.0, |v| v[o] as f64);
                        }
                    });
                    ArrayD::from_shape_vec(IxDyn(&[n, outf]), y).map_err(|e| fail(e.to_string()))?
                }
                LayerSpec::AvgPool2d {
                    kernel,
                    stride,
                    padding,
                    ..
                } => pool(&cur, *kernel, *stride, *padding, false)
                    .ok_or_else(|| fail(format!("input {:?} does not fit", cur.shape())))?,
                LayerSpec::MaxPool2d {
                    kernel,
                    stride,
                    padding,
                    ..
                } => pool(&cur, *kernel, *stride, *padding, true)
                    .ok_or_else(|| fail(format!("input {:?} does not fit", cur.shape())))?,
                LayerSpec::Flatten { .. } => {
                    let n = cur.shape()[0];
                    let len = cur.len() / n.max(1);
                    cur.as_standard_layout()
                        .into_owned()
                        .into_shape_with_order(IxDyn(&[n, len]))
                        .map_err(|e| fail(e.to_string()))?
                }
                LayerSpec::Square { .. } => cur.mapv(|v| v * v),
                LayerSpec::Relu { .. } => cur.mapv(|v| v.max(0.0)),
                LayerSpec::Tanh { .. } => cur.mapv(f64::tanh),
                LayerSpec::BatchNorm {
                    gamma,
                    beta,
                    mean,
                    var,
                    eps,
                    ..
                } => {
                    let mut y = cur.clone();
                    for (c, mut lane) in y.axis_iter_mut(Axis(1)).enumerate() {
                        let k = gamma[c] as f64 / (var[c] as f64 + *eps as f64).sqrt();
                        lane.mapv_inplace(|v| (v - mean[c] as f64) * k + beta[c] as f64);
                    }
                    y
                }
            };
        }
        Ok(cur)
    }
}

#[allow(clippy::too_many_arguments)]
fn conv2d(
    x: &ArrayD<f64>,
    c: usize,
    oc: usize,
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
    w: &[f32],
    b: Option<&[f32]>,
) -> Option<ArrayD<f64>> {
    let &[n, xc, h, wd] = x.shape() else {
        return None;
    };
    if xc != c {
        return None;
    }
    let (oh, ow) = pool_hw(h, wd, k, s, p)?;
    let x = x.as_standard_layout();
    let xs = x.as_slice()?;
    let mut y = vec![0.0; n * oc * oh * ow];
    y.par_chunks_mut(oc * oh * ow)
        .enumerate()
        .for_each(|(bi, yb)| {
            let xb = &xs[bi * c * h * wd..(bi + 1) * c * h * wd];
            for o in 0..oc {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = b.map_or(0.0, |b| b[o] as f64);
                        for ci in 0..c {
                            for ky in 0..k[0] {
                                let iy = (oy * s[0] + ky) as isize - p[0] as isize;
                                if iy < 0 || iy >= h as isize {
                                    continue;
                                }
                                let r0 = (ci * h + iy as usize) * wd;
                                let row = &xb[r0..r0 + wd];
                                let w0 = ((o * c + ci) * k[0] + ky) * k[1];
                                for (kx, &wv) in w[w0..w0 + k[1]].iter().enumerate() {
                                    let ix = (ox * s[1] + kx) as isize - p[1] as isize;
                                    if ix >= 0 && ix < wd as isize {
                                        acc += wv as f64 * row[ix as usize];
                                    }
                                }
                            }
                        }
                        yb[(o * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        });
    ArrayD::from_shape_vec(IxDyn(&[n, oc, oh, ow]), y).ok()
}

fn pool(
    x: &ArrayD<f64>,
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
    max: bool,
) -> Option<ArrayD<f64>> {
    let &[n, c, h, w] = x.shape() else {
        return None;
    };
    let (oh, ow) = pool_hw(h, w, k, s, p)?;
    let x = x.as_standard_layout();
    let xs = x.as_slice()?;
    let mut y = vec![0.0; n * c * oh * ow];
    for (plane, out) in y.chunks_mut(oh * ow).enumerate() {
        let xp = &xs[plane * h * w..(plane + 1) * h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = if max { f64::NEG_INFINITY } else { 0.0 };
                for ky in 0..k[0] {
                    let iy = (oy * s[0] + ky) as isize - p[0] as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..k[1] {
                        let ix = (ox * s[1] + kx) as isize - p[1] as isize;
                        if ix < 0 || ix >= w as isize {
                            continue;
                        }
                        let v = xp[iy as usize * w + ix as usize];
                        acc = if max { acc.max(v) } else { acc + v };
                    }
                }
                out[oy * ow + ox] = if max { acc } else { acc / (k[0] * k[1]) as f64 };
            }
        }
    }
    ArrayD::from_shape_vec(IxDyn(&[n, c, oh, ow]), y).ok()
}

/// A batch of float activations `[N, …shape]`, as the float reference takes them.
pub type Array = ArrayD<f64>;

/// A batch array from a shape and row-major data; `None` if the sizes disagree.
pub fn array(shape: &[usize], data: Vec<f64>) -> Option<Array> {
    ArrayD::from_shape_vec(IxDyn(shape), data).ok()
}
