//! Conv2d and Linear: affine maps out[o] = Σ w · x[i] + bias[o], run as one fused dot product
//! per output, parallel across outputs.

use super::{shape_error, LayerError};
use crate::tensor::{IntTensor, ValueInfo};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// What Conv2d and Linear share: for each output, its connections (input index and quantized
/// weight, zero weights included) and its bias. A layout reads a layer through it.
pub(crate) trait Affine {
    fn layer_name(&self) -> &str;
    fn out_shape(&self, input: &[usize]) -> Result<Vec<usize>, LayerError>;
    /// All connections of output o, including zero weights (they still carry quantization error).
    fn connections(&self, input: &[usize], o: usize, out: &mut Vec<(usize, i64)>);
    fn bias_of(&self, input: &[usize], o: usize) -> i128;
    fn weight_scale(&self) -> f64;
}

fn info<A: Affine>(a: &A, input: &ValueInfo) -> Result<ValueInfo, LayerError> {
    let shape = a.out_shape(&input.shape)?;
    let out_len: usize = shape.iter().product();
    let sw = a.weight_scale();
    let eps_w = 0.5 / sw;
    let scale = input.scale * sw;
    let (mut lo, mut hi) = (i128::MAX, i128::MIN);
    let mut float_bound = 0.0f64;
    let mut error_bound = 0.0f64;
    let mut conns = Vec::new();
    for o in 0..out_len {
        conns.clear();
        a.connections(&input.shape, o, &mut conns);
        let b = a.bias_of(&input.shape, o);
        // Exact worst case per output: each term at the end of the input interval that
        // pushes the sum furthest (padding contributes exactly zero and is not a connection).
        let (mut lo_o, mut hi_o) = (b, b);
        let mut fo = b.unsigned_abs() as f64 / scale + 0.5 / scale;
        let mut eo = 0.5 / scale;
        for &(_, w) in &conns {
            let w = w as i128;
            let (p, q) = (w.saturating_mul(input.lo), w.saturating_mul(input.hi));
            lo_o = lo_o.saturating_add(p.min(q));
            hi_o = hi_o.saturating_add(p.max(q));
            let wf = w.unsigned_abs() as f64 / sw;
            fo += (wf + eps_w) * input.float_bound;
            eo += eps_w * input.float_bound + wf * input.error_bound;
        }
        lo = lo.min(lo_o);
        hi = hi.max(hi_o);
        float_bound = float_bound.max(fo);
        error_bound = error_bound.max(eo);
    }
    if out_len == 0 {
        (lo, hi) = (0, 0);
    }
    Ok(ValueInfo {
        shape,
        scale,
        lo,
        hi,
        float_bound,
        error_bound,
    })
}

fn forward_int<A: Affine + Sync>(a: &A, x: &IntTensor) -> Result<IntTensor, LayerError> {
    let shape = a.out_shape(x.shape())?;
    let out_len: usize = shape.iter().product();
    let batch = x.batch();
    let data: Vec<i128> = (0..out_len)
        .into_par_iter()
        .flat_map_iter(|o| {
            let mut conns = Vec::new();
            a.connections(x.shape(), o, &mut conns);
            let b = a.bias_of(x.shape(), o);
            let mut acc = vec![b; batch];
            for &(i, w) in &conns {
                for (s, &v) in acc.iter_mut().zip(x.activation(i)) {
                    *s += w as i128 * v;
                }
            }
            acc
        })
        .collect();
    IntTensor::from_data(shape, batch, data).ok_or_else(|| LayerError::Inconsistent {
        layer: a.layer_name().to_string(),
        what: "output size",
    })
}

/// Connections with a nonzero weight, summed over outputs: the scalar products a dot-product
/// layout performs.
fn nonzero_connections<A: Affine>(a: &A, input: &[usize]) -> Result<u64, LayerError> {
    let out_len: usize = a.out_shape(input)?.iter().product();
    let mut conns = Vec::new();
    let mut total = 0u64;
    for o in 0..out_len {
        conns.clear();
        a.connections(input, o, &mut conns);
        total += conns.iter().filter(|(_, w)| *w != 0).count() as u64;
    }
    Ok(total)
}

/// Quantizes float weights to round(w · 2^bits) and biases to round(b · input_scale · 2^bits);
/// `bits` may be negative for layers with large weights.
fn quantize(
    name: &str,
    weights: &[f64],
    bias: &[f64],
    input_scale: f64,
    weight_scale_bits: i32,
) -> Result<(Vec<i64>, Vec<i128>, f64), LayerError> {
    let sw = (weight_scale_bits.clamp(-62, 62) as f64).exp2();
    let bad = |what: &'static str, value: f64| LayerError::Unquantizable {
        layer: name.to_string(),
        what,
        value,
        weight_scale_bits,
    };
    let w = weights
        .iter()
        .map(|&x| {
            let q = (x * sw).round();
            if q.is_finite() && q.abs() < 2f64.powi(62) {
                Ok(q as i64)
            } else {
                Err(bad("weight", x))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let b = bias
        .iter()
        .map(|&x| {
            let q = (x * input_scale * sw).round();
            if q.is_finite() && q.abs() < 2f64.powi(120) {
                Ok(q as i128)
            } else {
                Err(bad("bias", x))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((w, b, sw))
}

/// A 2-D convolution over `[C, H, W]` inputs, with quantized weights and bias.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncodedConv2d {
    /// Layer name.
    pub name: String,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Zero padding along height and width.
    pub padding: [usize; 2],
    /// Weights quantized at `weight_scale`, laid out `[out][in][kh][kw]`.
    pub weights: Vec<i64>,
    /// Bias per output channel, at the output scale (input scale × weight scale).
    pub bias: Vec<i128>,
    /// The weight scale 2^s_w.
    pub weight_scale: f64,
}

impl EncodedConv2d {
    /// Quantizes a float convolution (weights `[out][in][kh][kw]`, one bias per output channel
    /// or none) for inputs at `input_scale`.
    #[allow(clippy::too_many_arguments)]
    pub fn quantize(
        name: impl Into<String>,
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        weights: &[f64],
        bias: Option<&[f64]>,
        input_scale: f64,
        weight_scale_bits: i32,
    ) -> Result<Self, LayerError> {
        let name = name.into();
        let n_w = out_channels * in_channels * kernel[0] * kernel[1];
        if weights.len() != n_w || bias.is_some_and(|b| b.len() != out_channels) {
            return Err(LayerError::ParameterCount {
                layer: name,
                expected_weights: n_w,
                expected_biases: out_channels,
                found_weights: weights.len(),
                found_biases: bias.map_or(out_channels, <[f64]>::len),
            });
        }
        if kernel.contains(&0) || stride.contains(&0) {
            return Err(LayerError::Geometry {
                layer: name,
                problem: "kernel and stride must be positive",
            });
        }
        let zeros = vec![0.0; out_channels];
        let (weights, bias, weight_scale) = quantize(
            &name,
            weights,
            bias.unwrap_or(&zeros),
            input_scale,
            weight_scale_bits,
        )?;
        Ok(Self {
            name,
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            weights,
            bias,
            weight_scale,
        })
    }

    /// One-line description.
    pub fn describe(&self) -> String {
        format!(
            "Conv2d({}→{}, {}×{}, stride {}×{}, padding {}×{})",
            self.in_channels,
            self.out_channels,
            self.kernel[0],
            self.kernel[1],
            self.stride[0],
            self.stride[1],
            self.padding[0],
            self.padding[1]
        )
    }

    fn out_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.stride;
        let [ph, pw] = self.padding;
        if sh == 0 || sw == 0 || h + 2 * ph < kh || w + 2 * pw < kw {
            return None;
        }
        Some(((h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1))
    }

    /// Taps per output: in_channels × kernel height × kernel width.
    pub(crate) fn taps_per_output(&self) -> usize {
        self.in_channels * self.kernel[0] * self.kernel[1]
    }

    /// The input activation that tap k = (c, ky, kx) of output position p (of an `ow`-wide
    /// output on an `hw` input) reads, or `None` where it reads padding.
    pub(crate) fn tap_input(&self, hw: [usize; 2], ow: usize, p: usize, k: usize) -> Option<usize> {
        let [kh, kw] = self.kernel;
        let (c, ky, kx) = (k / (kh * kw), (k / kw) % kh, k % kw);
        let (oy, ox) = (p / ow.max(1), p % ow.max(1));
        let iy = (oy * self.stride[0] + ky).checked_sub(self.padding[0])?;
        let ix = (ox * self.stride[1] + kx).checked_sub(self.padding[1])?;
        (iy < hw[0] && ix < hw[1]).then(|| (c * hw[0] + iy) * hw[1] + ix)
    }

    /// For every output position, what each tap reads: the arrangement of the input that
    /// turns the convolution into one scalar product per tap (im2col). `None` if the input
    /// shape does not fit.
    pub(crate) fn taps(&self, input: &[usize]) -> Option<Vec<Vec<Option<usize>>>> {
        let &[c, h, w] = input else {
            return None;
        };
        if c != self.in_channels {
            return None;
        }
        let (oh, ow) = self.out_hw(h, w)?;
        Some(
            (0..oh * ow)
                .map(|p| {
                    (0..self.taps_per_output())
                        .map(|k| self.tap_input([h, w], ow, p, k))
                        .collect()
                })
                .collect(),
        )
    }

    /// The output facts.
    pub fn output_info(&self, input: &ValueInfo) -> Result<ValueInfo, LayerError> {
        info(self, input)
    }

    /// Exact integer forward.
    pub fn forward_int(&self, x: &IntTensor) -> Result<IntTensor, LayerError> {
        forward_int(self, x)
    }

    /// Connections with a nonzero weight over all outputs, for an input of `shape`.
    pub fn nonzero_connections(&self, shape: &[usize]) -> Result<u64, LayerError> {
        nonzero_connections(self, shape)
    }
}

impl Affine for EncodedConv2d {
    fn layer_name(&self) -> &str {
        &self.name
    }

    fn out_shape(&self, input: &[usize]) -> Result<Vec<usize>, LayerError> {
        let expected = || {
            format!(
                "[{}, H, W] with H, W ≥ the kernel less padding",
                self.in_channels
            )
        };
        let &[c, h, w] = input else {
            return Err(shape_error(&self.name, expected(), input));
        };
        if c != self.in_channels {
            return Err(shape_error(&self.name, expected(), input));
        }
        let (oh, ow) = self
            .out_hw(h, w)
            .ok_or_else(|| shape_error(&self.name, expected(), input))?;
        Ok(vec![self.out_channels, oh, ow])
    }

    fn connections(&self, input: &[usize], o: usize, out: &mut Vec<(usize, i64)>) {
        let (h, w) = (input[1], input[2]);
        let Some((oh, ow)) = self.out_hw(h, w) else {
            return;
        };
        let (oc, p) = (o / (oh * ow), o % (oh * ow));
        let per = self.taps_per_output();
        for k in 0..per {
            if let Some(i) = self.tap_input([h, w], ow, p, k) {
                out.push((i, self.weights[oc * per + k]));
            }
        }
    }

    fn bias_of(&self, input: &[usize], o: usize) -> i128 {
        let plane = match input {
            &[_, h, w] => self.out_hw(h, w).map_or(1, |(oh, ow)| (oh * ow).max(1)),
            _ => 1,
        };
        self.bias.get(o / plane).copied().unwrap_or(0)
    }

    fn weight_scale(&self) -> f64 {
        self.weight_scale
    }
}

/// A fully connected layer over a 1-D input.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncodedLinear {
    /// Layer name.
    pub name: String,
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Weights quantized at `weight_scale`, laid out `[out][in]`.
    pub weights: Vec<i64>,
    /// Bias per output, at the output scale.
    pub bias: Vec<i128>,
    /// The weight scale 2^s_w.
    pub weight_scale: f64,
}

impl EncodedLinear {
    /// Quantizes a float linear layer (weights `[out][in]`) for inputs at `input_scale`.
    pub fn quantize(
        name: impl Into<String>,
        in_features: usize,
        out_features: usize,
        weights: &[f64],
        bias: Option<&[f64]>,
        input_scale: f64,
        weight_scale_bits: i32,
    ) -> Result<Self, LayerError> {
        let name = name.into();
        if weights.len() != in_features * out_features
            || bias.is_some_and(|b| b.len() != out_features)
        {
            return Err(LayerError::ParameterCount {
                layer: name,
                expected_weights: in_features * out_features,
                expected_biases: out_features,
                found_weights: weights.len(),
                found_biases: bias.map_or(out_features, <[f64]>::len),
            });
        }
        let zeros = vec![0.0; out_features];
        let (weights, bias, weight_scale) = quantize(
            &name,
            weights,
            bias.unwrap_or(&zeros),
            input_scale,
            weight_scale_bits,
        )?;
        Ok(Self {
            name,
            in_features,
            out_features,
            weights,
            bias,
            weight_scale,
        })
    }

    /// One-line description.
    pub fn describe(&self) -> String {
        format!("Linear({}→{})", self.in_features, self.out_features)
    }

    /// The output facts.
    pub fn output_info(&self, input: &ValueInfo) -> Result<ValueInfo, LayerError> {
        info(self, input)
    }

    /// Exact integer forward.
    pub fn forward_int(&self, x: &IntTensor) -> Result<IntTensor, LayerError> {
        forward_int(self, x)
    }

    /// Connections with a nonzero weight over all outputs, for an input of `shape`.
    pub fn nonzero_connections(&self, shape: &[usize]) -> Result<u64, LayerError> {
        nonzero_connections(self, shape)
    }
}

impl Affine for EncodedLinear {
    fn layer_name(&self) -> &str {
        &self.name
    }

    fn out_shape(&self, input: &[usize]) -> Result<Vec<usize>, LayerError> {
        if input != [self.in_features] {
            return Err(shape_error(
                &self.name,
                format!(
                    "[{}] (add a Flatten before a Linear layer)",
                    self.in_features
                ),
                input,
            ));
        }
        Ok(vec![self.out_features])
    }

    fn connections(&self, _input: &[usize], o: usize, out: &mut Vec<(usize, i64)>) {
        let row = &self.weights[o * self.in_features..(o + 1) * self.in_features];
        out.extend(row.iter().copied().enumerate());
    }

    fn bias_of(&self, _input: &[usize], o: usize) -> i128 {
        self.bias.get(o).copied().unwrap_or(0)
    }

    fn weight_scale(&self) -> f64 {
        self.weight_scale
    }
}
