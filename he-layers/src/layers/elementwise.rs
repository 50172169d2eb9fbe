//! Square, AvgPool2d, Flatten, the re-encryption boundary and plaintext-only layers.

use super::{rescale_round, shape_error, LayerError};
use crate::tensor::{IntTensor, ValueInfo};
use serde::{Deserialize, Serialize};
use std::fmt;

fn int_tensor(
    name: &str,
    shape: Vec<usize>,
    batch: usize,
    data: Vec<i128>,
) -> Result<IntTensor, LayerError> {
    IntTensor::from_data(shape, batch, data).ok_or_else(|| LayerError::Inconsistent {
        layer: name.to_string(),
        what: "output size",
    })
}

/// x² on every activation (one ciphertext product each).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Square {
    /// Layer name.
    pub name: String,
}

impl Square {
    /// One-line description.
    pub fn describe(&self) -> String {
        "Square".into()
    }

    /// The output facts: scale squared; the interval of x² for x in [lo, hi].
    pub fn output_info(&self, input: &ValueInfo) -> Result<ValueInfo, LayerError> {
        let sq = |v: i128| v.saturating_mul(v);
        let (lo, hi) = if input.lo >= 0 {
            (sq(input.lo), sq(input.hi))
        } else if input.hi <= 0 {
            (sq(input.hi), sq(input.lo))
        } else {
            (0, sq(input.lo).max(sq(input.hi)))
        };
        Ok(ValueInfo {
            shape: input.shape.clone(),
            scale: input.scale * input.scale,
            lo,
            hi,
            float_bound: input.float_bound * input.float_bound,
            // (f + δ)² − f² = 2 f δ + δ².
            error_bound: 2.0 * input.float_bound * input.error_bound
                + input.error_bound * input.error_bound,
        })
    }

    /// Exact integer forward.
    pub fn forward_int(&self, x: &IntTensor) -> Result<IntTensor, LayerError> {
        Ok(x.map(|v| v * v))
    }
}

/// Geometry shared by the 2-D pools.
fn pool_out(
    name: &str,
    input: &[usize],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Result<[usize; 5], LayerError> {
    let expected = || "[C, H, W] with H, W at least the kernel less padding".to_string();
    let &[c, h, w] = input else {
        return Err(shape_error(name, expected(), input));
    };
    if stride[0] == 0
        || stride[1] == 0
        || h + 2 * padding[0] < kernel[0]
        || w + 2 * padding[1] < kernel[1]
    {
        return Err(shape_error(name, expected(), input));
    }
    let oh = (h + 2 * padding[0] - kernel[0]) / stride[0] + 1;
    let ow = (w + 2 * padding[1] - kernel[1]) / stride[1] + 1;
    Ok([c, h, w, oh, ow])
}

/// Indices of the non-padding inputs in the window of output o.
fn window(
    dims: [usize; 5],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    o: usize,
) -> Vec<usize> {
    let [_, h, w, oh, ow] = dims;
    let (ch, rest) = (o / (oh * ow), o % (oh * ow));
    let (oy, ox) = (rest / ow, rest % ow);
    let mut v = Vec::with_capacity(kernel[0] * kernel[1]);
    for ky in 0..kernel[0] {
        let iy = (oy * stride[0] + ky) as isize - padding[0] as isize;
        if iy < 0 || iy >= h as isize {
            continue;
        }
        for kx in 0..kernel[1] {
            let ix = (ox * stride[1] + kx) as isize - padding[1] as isize;
            if ix < 0 || ix >= w as isize {
                continue;
            }
            v.push((ch * h + iy as usize) * w + ix as usize);
        }
    }
    v
}

/// Average pooling as a window sum; the divisor kh·kw is folded into the scale, so the
/// integer path stays exact. Padding counts toward the divisor (PyTorch's default).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncodedAvgPool2d {
    /// Layer name.
    pub name: String,
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Zero padding.
    pub padding: [usize; 2],
}

impl EncodedAvgPool2d {
    /// One-line description.
    pub fn describe(&self) -> String {
        format!(
            "AvgPool2d({}×{}, stride {}×{}, padding {}×{}) as a sum",
            self.kernel[0],
            self.kernel[1],
            self.stride[0],
            self.stride[1],
            self.padding[0],
            self.padding[1]
        )
    }

    fn area(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// The output facts: scale times the window area; the interval of a sum of m inputs, m
    /// ranging over the window sizes (windows over padding hold fewer inputs).
    pub fn output_info(&self, input: &ValueInfo) -> Result<ValueInfo, LayerError> {
        let dims = pool_out(
            &self.name,
            &input.shape,
            self.kernel,
            self.stride,
            self.padding,
        )?;
        let [c, _, _, oh, ow] = dims;
        let sizes =
            (0..oh * ow).map(|o| window(dims, self.kernel, self.stride, self.padding, o).len());
        let (m_min, m_max) = sizes.fold((usize::MAX, 0), |(a, b), m| (a.min(m), b.max(m)));
        let (m_min, m_max) = if oh * ow == 0 || c == 0 {
            (0, 0)
        } else {
            (m_min as i128, m_max as i128)
        };
        Ok(ValueInfo {
            shape: vec![c, oh, ow],
            scale: input.scale * self.area() as f64,
            lo: input
                .lo
                .saturating_mul(m_min)
                .min(input.lo.saturating_mul(m_max)),
            hi: input
                .hi
                .saturating_mul(m_min)
                .max(input.hi.saturating_mul(m_max)),
            float_bound: input.float_bound,
            error_bound: input.error_bound,
        })
    }

    /// Exact integer forward (window sums).
    pub fn forward_int(&self, x: &IntTensor) -> Result<IntTensor, LayerError> {
        let dims = pool_out(
            &self.name,
            x.shape(),
            self.kernel,
            self.stride,
            self.padding,
        )?;
        let [c, _, _, oh, ow] = dims;
        let batch = x.batch();
        let mut data = Vec::with_capacity(c * oh * ow * batch);
        for o in 0..c * oh * ow {
            let mut acc = vec![0i128; batch];
            for i in window(dims, self.kernel, self.stride, self.padding, o) {
                for (a, &v) in acc.iter_mut().zip(x.activation(i)) {
                    *a += v;
                }
            }
            data.extend(acc);
        }
        int_tensor(&self.name, vec![c, oh, ow], batch, data)
    }

    /// For every output, the indices of the non-padding inputs its window sums (what a layout
    /// computes, in whichever packing).
    pub fn windows(&self, input: &[usize]) -> Result<Vec<Vec<usize>>, LayerError> {
        let dims = pool_out(&self.name, input, self.kernel, self.stride, self.padding)?;
        let [c, _, _, oh, ow] = dims;
        Ok((0..c * oh * ow)
            .map(|o| window(dims, self.kernel, self.stride, self.padding, o))
            .collect())
    }
}

/// Reshape to one dimension (row-major, as `torch.flatten`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Flatten {
    /// Layer name.
    pub name: String,
}

impl Flatten {
    /// One-line description.
    pub fn describe(&self) -> String {
        "Flatten".into()
    }

    /// The output facts: same values, one dimension.
    pub fn output_info(&self, input: &ValueInfo) -> Result<ValueInfo, LayerError> {
        Ok(ValueInfo {
            shape: vec![input.len()],
            ..input.clone()
        })
    }

    /// Integer forward (a reshape).
    pub fn forward_int(&self, x: &IntTensor) -> Result<IntTensor, LayerError> {
        x.clone()
            .reshaped(vec![x.len()])
            .ok_or_else(|| LayerError::Inconsistent {
                layer: self.name.clone(),
                what: "reshape",
            })
    }
}

/// A re-encryption boundary: the server stops before it; the client decrypts, divides by
/// 2^rescale_bits with rounding (ties away from zero), re-encodes and encrypts afresh, and the
/// next segment starts after it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReencryptBoundary {
    /// Layer name.
    pub name: String,
    /// Bits to divide by (with rounding) before re-encrypting.
    pub rescale_bits: u32,
}

impl ReencryptBoundary {
    /// One-line description.
    pub fn describe(&self) -> String {
        format!("Re-encrypt (client, rescale by 2^-{})", self.rescale_bits)
    }

    /// The output facts: scale and bound divided by 2^rescale_bits.
    pub fn output_info(&self, input: &ValueInfo) -> Result<ValueInfo, LayerError> {
        let k = self.rescale_bits.min(126);
        let scale = input.scale / (1u128 << k) as f64;
        Ok(ValueInfo {
            shape: input.shape.clone(),
            scale,
            lo: rescale_round(input.lo, k),
            hi: rescale_round(input.hi, k),
            float_bound: input.float_bound,
            error_bound: input.error_bound + if k > 0 { 0.5 / scale } else { 0.0 },
        })
    }

    /// Integer forward: the client's rounding division.
    pub fn forward_int(&self, x: &IntTensor) -> Result<IntTensor, LayerError> {
        Ok(reencrypt_rescale(x, self.rescale_bits))
    }
}

/// What the client does at a re-encryption boundary, after decrypting and before encrypting
/// again: every integer divided by 2^rescale_bits, rounded (ties away from zero). The one
/// definition the mirror ([`ReencryptBoundary::forward_int`]) and every client pipeline use.
pub fn reencrypt_rescale(x: &IntTensor, rescale_bits: u32) -> IntTensor {
    let k = rescale_bits.min(126);
    x.map(|&v| rescale_round(v, k))
}

/// Layers that only the plaintext side runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PlaintextOnlyKind {
    /// max(0, x).
    Relu,
    /// tanh(x).
    Tanh,
    /// Max pooling.
    MaxPool2d {
        /// Window.
        kernel: [usize; 2],
        /// Stride.
        stride: [usize; 2],
        /// Padding (ignored positions).
        padding: [usize; 2],
    },
}

impl fmt::Display for PlaintextOnlyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Relu => write!(f, "ReLU"),
            Self::Tanh => write!(f, "Tanh"),
            Self::MaxPool2d { kernel, stride, .. } => write!(
                f,
                "MaxPool2d({}×{}, stride {}×{})",
                kernel[0], kernel[1], stride[0], stride[1]
            ),
        }
    }
}

/// A layer that cannot run on ciphertexts; the float reference (and, for ReLU and MaxPool2d,
/// the integer mirror) runs it after decryption.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlaintextOnlyLayer {
    /// Layer name.
    pub name: String,
    /// What it computes.
    pub kind: PlaintextOnlyKind,
}

impl PlaintextOnlyLayer {
    /// One-line description.
    pub fn describe(&self) -> String {
        format!("{} (plaintext only)", self.kind)
    }

    /// The output facts.
    pub fn output_info(&self, input: &ValueInfo) -> Result<ValueInfo, LayerError> {
        match &self.kind {
            PlaintextOnlyKind::Relu => Ok(ValueInfo {
                lo: input.lo.max(0),
                hi: input.hi.max(0),
                ..input.clone()
            }),
            PlaintextOnlyKind::Tanh => Ok(ValueInfo {
                float_bound: input.float_bound.min(1.0),
                ..input.clone()
            }),
            PlaintextOnlyKind::MaxPool2d {
                kernel,
                stride,
                padding,
            } => {
                let [c, _, _, oh, ow] =
                    pool_out(&self.name, &input.shape, *kernel, *stride, *padding)?;
                Ok(ValueInfo {
                    shape: vec![c, oh, ow],
                    ..input.clone()
                })
            }
        }
    }

    /// Integer forward for ReLU and MaxPool2d (exact); Tanh has none.
    pub fn forward_int(&self, x: &IntTensor) -> Result<IntTensor, LayerError> {
        match &self.kind {
            PlaintextOnlyKind::Relu => Ok(x.map(|&v| v.max(0))),
            PlaintextOnlyKind::Tanh => Err(LayerError::NoIntegerMirror {
                layer: self.name.clone(),
                kind: self.kind.to_string(),
            }),
            PlaintextOnlyKind::MaxPool2d {
                kernel,
                stride,
                padding,
            } => {
                let dims = pool_out(&self.name, x.shape(), *kernel, *stride, *padding)?;
                let [c, _, _, oh, ow] = dims;
                let batch = x.batch();
                let mut data = Vec::with_capacity(c * oh * ow * batch);
                for o in 0..c * oh * ow {
                    let mut acc = vec![i128::MIN; batch];
                    for i in window(dims, *kernel, *stride, *padding, o) {
                        for (a, &v) in acc.iter_mut().zip(x.activation(i)) {
                            *a = (*a).max(v);
                        }
                    }
                    data.extend(acc);
                }
                int_tensor(&self.name, vec![c, oh, ow], batch, data)
            }
        }
    }
}
