//! An encoded model: an ordered list of encoded layers for one parameter set and one
//! quantization, runnable over any contiguous range of layers, that predicts before running the
//! scale, bound and overflow of every layer.

use crate::crypto::BfvParameters;
use crate::layers::{EncodedLayer, LayerError};
use crate::numeric::{ModularIntegers, NumericDomain};
use crate::tensor::{FloatTensor, IntTensor, ValueInfo};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;

/// How a model's values are turned into integers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantization {
    /// Inputs are held as round(x · 2^input_scale_bits).
    pub input_scale_bits: u32,
    /// Weights are signed integers of about this many bits: each layer's weights are scaled by
    /// a power of two that maps its largest |weight| to at most 2^weight_bits (per-layer scales,
    /// so layers with small weights keep their precision). Biases sit at the accumulator's
    /// scale.
    pub weight_bits: u32,
}

/// Why a model could not be built or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A layer refused.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// The layer range is not usable.
    #[error("layer range {start}..{end} is invalid: {reason}")]
    Range {
        /// Start.
        start: usize,
        /// End (exclusive).
        end: usize,
        /// Why.
        reason: String,
    },
    /// A layer's values would exceed the plaintext modulus.
    #[error(
        "layer {index} ({name}) would overflow: its values reach 2^{bound_bits:.1}, over the \
         plaintext capacity 2^{capacity_bits:.1} (t/2); use a larger plaintext modulus (or \
         several, CRT), a smaller weight or input scale, or a re-encryption boundary with a \
         rescale before it"
    )]
    Overflow {
        /// Layer index.
        index: usize,
        /// Layer name.
        name: String,
        /// log2 of its bound.
        bound_bits: f64,
        /// log2 of the capacity.
        capacity_bits: f64,
    },
    /// The CRT moduli of a component do not include its own plaintext modulus.
    #[error("the CRT moduli {moduli:?} do not include this parameter set's t = {plain_modulus}")]
    CrtModuli {
        /// The moduli given.
        moduli: Vec<u64>,
        /// The parameter set's t.
        plain_modulus: u64,
    },
    /// A tensor of another shape (or another number of ciphertexts) than layer `layer` takes.
    #[error("input mismatch: {found_ciphertexts} ciphertexts of shape {found:?}; layer {layer} expects shape {expected:?}")]
    InputShape {
        /// The layer the input enters.
        layer: usize,
        /// Shape expected.
        expected: Vec<usize>,
        /// Shape given.
        found: Vec<usize>,
        /// Ciphertexts (or values per image) given.
        found_ciphertexts: usize,
    },
    /// A tensor at another scale, or with a wider interval, than layer `layer` takes.
    #[error("input mismatch: scale {found_scale} and values in [{}, {}]; layer {layer} expects scale {expected_scale} and values in [{}, {}]", found[0], found[1], expected[0], expected[1])]
    InputFacts {
        /// The layer the input enters.
        layer: usize,
        /// Scale expected.
        expected_scale: f64,
        /// Scale given.
        found_scale: f64,
        /// Interval expected.
        expected: [i128; 2],
        /// Interval given.
        found: [i128; 2],
    },
    /// An input value outside the model's input range (every bound assumes the range).
    #[error("input value {value} is outside the model's input range [{min}, {max}]")]
    InputOutOfRange {
        /// The value.
        value: f64,
        /// Smallest accepted.
        min: f64,
        /// Largest accepted.
        max: f64,
    },
    /// More (or fewer) images than a ciphertext's slots hold.
    #[error("{images} images: between 1 and {slots} fit the slots of one ciphertext")]
    Images {
        /// Images given.
        images: usize,
        /// Slots available.
        slots: usize,
    },
    /// CRT over moduli that are not pairwise coprime, or whose product overflows 128 bits.
    #[error(
        "the plaintext moduli {moduli:?} are not pairwise coprime, or their product exceeds 2^127"
    )]
    NotCoprime {
        /// The moduli.
        moduli: Vec<u64>,
    },
    /// The number of ciphertexts does not match the tensor.
    #[error("{found} ciphertexts; the tensor needs {expected}")]
    CiphertextCount {
        /// Needed.
        expected: usize,
        /// Given.
        found: usize,
    },
}

/// The prediction for one layer, made before anything runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerPrediction {
    /// Layer index.
    pub index: usize,
    /// Layer name.
    pub name: String,
    /// Kind and hyper-parameters.
    pub description: String,
    /// The output's facts.
    pub output: ValueInfo,
    /// Whether the output's bound reaches the plaintext capacity.
    pub overflow: bool,
    /// Ciphertext products since the last (re-)encryption, including this layer.
    pub depth: usize,
    /// Whether the server can run it: an encryptable layer of the encryptable prefix (a
    /// Linear after a ReLU runs on the client).
    pub encryptable: bool,
}

/// An ordered list of encoded layers for one parameter set and quantization.
#[derive(Clone, Debug)]
pub struct EncodedModel {
    name: String,
    params: Arc<BfvParameters>,
    domain: ModularIntegers,
    input: ValueInfo,
    layers: Vec<EncodedLayer>,
    infos: Vec<ValueInfo>,
    quantization: Quantization,
}

impl EncodedModel {
    /// Builds a model and predicts every layer's facts. `input` describes the quantized input
    /// (shape, scale 2^s_in, the integer bound and the float range). `crt_moduli`, when the model
    /// runs over several plaintext moduli at once, lists them all (this parameter set's t among
    /// them); the capacity is then half their product.
    pub fn new(
        name: impl Into<String>,
        params: &Arc<BfvParameters>,
        input: ValueInfo,
        layers: Vec<EncodedLayer>,
        quantization: Quantization,
        crt_moduli: Option<Vec<u64>>,
    ) -> Result<Self, ModelError> {
        let mut infos = Vec::with_capacity(layers.len());
        let mut current = input.clone();
        for layer in &layers {
            current = layer.output_info(&current)?;
            infos.push(current.clone());
        }
        let plaintext_moduli = match crt_moduli {
            Some(m) if m.contains(&params.plain_modulus()) => m,
            Some(moduli) => {
                return Err(ModelError::CrtModuli {
                    moduli,
                    plain_modulus: params.plain_modulus(),
                })
            }
            None => vec![params.plain_modulus()],
        };
        Ok(Self {
            name: name.into(),
            params: params.clone(),
            domain: ModularIntegers::new(plaintext_moduli),
            input,
            layers,
            infos,
            quantization,
        })
    }

    /// Model name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parameter set.
    pub fn parameters(&self) -> &Arc<BfvParameters> {
        &self.params
    }

    /// The layers.
    pub fn layers(&self) -> &[EncodedLayer] {
        &self.layers
    }

    /// The quantization.
    pub fn quantization(&self) -> &Quantization {
        &self.quantization
    }

    /// The plaintext moduli the model's integers are spread over (one unless CRT).
    pub fn plaintext_moduli(&self) -> &[u64] {
        self.domain.moduli()
    }

    /// Largest |integer| representable: half the product of the plaintext moduli.
    pub fn capacity(&self) -> u128 {
        self.domain.capacity()
    }

    /// The facts of the tensor entering layer i (i = len: the model's output).
    pub fn info_before(&self, i: usize) -> &ValueInfo {
        if i == 0 {
            &self.input
        } else {
            &self.infos[(i - 1).min(self.infos.len() - 1)]
        }
    }

    /// Per-layer predictions: scale, bound, overflow, depth. Overflow is judged only over
    /// the layers that run encrypted (the encryptable prefix): a plaintext tail runs on the
    /// client in floating point, after decryption, where t does not bound it.
    pub fn predict(&self) -> Vec<LayerPrediction> {
        let prefix = self.encryptable_prefix();
        let mut depth = 0;
        self.layers
            .iter()
            .zip(&self.infos)
            .enumerate()
            .map(|(index, (layer, info))| {
                if matches!(layer, EncodedLayer::Reencrypt(_)) {
                    depth = 0;
                } else {
                    depth += layer.depth();
                }
                LayerPrediction {
                    index,
                    name: layer.name().to_string(),
                    description: layer.describe(),
                    output: info.clone(),
                    overflow: index < prefix && !self.domain.fits(info) && layer.is_encryptable(),
                    depth,
                    encryptable: index < prefix && layer.is_encryptable(),
                }
            })
            .collect()
    }

    /// The evaluator's conservative estimate of the noise budget (bits) left after each layer,
    /// without running anything: fresh symmetric noise at the start and after every
    /// re-encryption, Σ|w| growth through affine layers, the product estimate through squares.
    /// Plaintext-only layers get the budget of the layer before them. Values below zero say by
    /// how many bits the estimate falls short (it errs low: measured budgets run 3 to 14 bits
    /// higher on the shipped models).
    pub fn estimate_noise_budgets(&self) -> Vec<f64> {
        let fresh = crate::crypto::encrypt::fresh_symmetric_noise(&self.params);
        let mut noise = fresh;
        self.layers
            .iter()
            .map(|l| {
                noise = self.noise_after(l, noise, fresh);
                self.params.log2_q() - noise - 1.0
            })
            .collect()
    }

    /// The server's bound on log2 of the noise numerator of every ciphertext that leaves a
    /// range: fresh symmetric noise at `range.start` (whatever the client claims), grown layer
    /// by layer as in [`Self::estimate_noise_budgets`]. Computed from the public model only;
    /// it is what circuit-privacy flooding is sized by.
    pub fn range_noise_log2(&self, range: &Range<usize>) -> f64 {
        let fresh = crate::crypto::encrypt::fresh_symmetric_noise(&self.params);
        let end = range.end.min(self.layers.len());
        let start = range.start.min(end);
        self.layers[start..end]
            .iter()
            .fold(fresh, |noise, l| self.noise_after(l, noise, fresh))
    }

    /// One layer's step of the noise estimate.
    fn noise_after(&self, layer: &EncodedLayer, noise: f64, fresh: f64) -> f64 {
        let log2_t_half = (self.params.plain_modulus() as f64).log2() - 1.0;
        match layer {
            EncodedLayer::Reencrypt(_) => fresh,
            EncodedLayer::Square(_) => {
                crate::crypto::Evaluator::new(&self.params).estimate_product_noise(noise, noise)
            }
            EncodedLayer::Conv2d(_) | EncodedLayer::Linear(_) => {
                (noise + layer.linear_noise_gain_log2()).max(log2_t_half)
            }
            _ => noise + layer.linear_noise_gain_log2(),
        }
    }

    /// The greatest multiplicative depth of any encrypted segment.
    pub fn max_depth(&self) -> usize {
        self.predict()
            .iter()
            .filter(|p| p.encryptable)
            .map(|p| p.depth)
            .max()
            .unwrap_or(0)
    }

    /// The prefix of layers the server can run from the start (up to the first layer that is
    /// neither encryptable nor a re-encryption boundary).
    pub fn encryptable_prefix(&self) -> usize {
        self.layers
            .iter()
            .position(|l| matches!(l, EncodedLayer::PlaintextOnly(_)))
            .unwrap_or(self.layers.len())
    }

    /// Checks that a range can run encrypted: in bounds, not empty, and made only of
    /// encryptable layers. The error names the first offending layer.
    pub fn check_range(&self, range: &Range<usize>) -> Result<(), ModelError> {
        let err = |reason: String| ModelError::Range {
            start: range.start,
            end: range.end,
            reason,
        };
        if range.start >= range.end {
            return Err(err("the start must be before the end".into()));
        }
        if range.end > self.layers.len() {
            return Err(err(format!("the model has {} layers", self.layers.len())));
        }
        for (i, layer) in self.layers[range.clone()].iter().enumerate() {
            if !layer.is_encryptable() {
                let index = range.start + i;
                return Err(err(match layer {
                    EncodedLayer::Reencrypt(_) => format!(
                        "layer {index} ({}) is a re-encryption boundary that runs on the client; \
                         end the range at {index} and start the next one at {}",
                        layer.name(),
                        index + 1
                    ),
                    _ => format!(
                        "layer {index} ({}, {}) cannot run encrypted; end the range at {index} and \
                         run the rest on the client",
                        layer.name(),
                        layer.describe()
                    ),
                }));
            }
        }
        Ok(())
    }

    /// The first layer in the range predicted to overflow, as an error. Only layers of the
    /// encryptable prefix are judged: those after it run on the client, in floating point.
    pub fn check_overflow(&self, range: &Range<usize>) -> Result<(), ModelError> {
        let end = range.end.min(self.encryptable_prefix());
        for i in range.start.min(end)..end {
            let info = &self.infos[i];
            if !self.domain.fits(info) && self.layers[i].is_encryptable() {
                return Err(ModelError::Overflow {
                    index: i,
                    name: self.layers[i].name().to_string(),
                    bound_bits: (info.bound() as f64).log2(),
                    capacity_bits: self.domain.capacity_bits(),
                });
            }
        }
        Ok(())
    }

    /// Quantizes float inputs (one tensor of the model's input shape per image) to integers at
    /// the input scale. Values outside the model's input range are refused, since the
    /// predicted bounds assume them.
    pub fn quantize_input(&self, x: &FloatTensor) -> Result<IntTensor, ModelError> {
        quantize(x, &self.input)
    }

    /// The integer mirror over a range of layers within the encryptable prefix (a plaintext
    /// tail after it runs in floating point on the client, and is refused here).
    pub fn run_int(&self, range: Range<usize>, x: &IntTensor) -> Result<IntTensor, ModelError> {
        if range.start > range.end || range.end > self.layers.len() {
            return Err(ModelError::Range {
                start: range.start,
                end: range.end,
                reason: format!("the model has {} layers", self.layers.len()),
            });
        }
        let prefix = self.encryptable_prefix();
        if range.end > prefix {
            return Err(ModelError::Range {
                start: range.start,
                end: range.end,
                reason: format!(
                    "layers from {prefix} on run on the client in floating point after \
                     decryption, so they have no integer mirror (net_builder::eval::\
                     mirror_outputs runs them)"
                ),
            });
        }
        let mut cur = x.clone();
        for layer in &self.layers[range] {
            cur = layer.forward_int(&cur)?;
        }
        Ok(cur)
    }
}

/// Quantizes float inputs (one tensor of `info`'s shape per image) to integers at `info`'s
/// scale: round(x · scale). Values whose integers fall outside `[info.lo, info.hi]` are
/// refused, since every predicted bound assumes them. The one quantization of inputs, for the
/// server's model and every client pipeline.
pub fn quantize(x: &FloatTensor, info: &ValueInfo) -> Result<IntTensor, ModelError> {
    if x.shape() != info.shape.as_slice() {
        return Err(ModelError::InputShape {
            layer: 0,
            expected: info.shape.clone(),
            found: x.shape().to_vec(),
            found_ciphertexts: x.len(),
        });
    }
    let (lo, hi, scale) = (info.lo, info.hi, info.scale);
    let mut out = Vec::with_capacity(x.data().len());
    for &v in x.data() {
        let q = (v * scale).round();
        if !q.is_finite() || q < lo as f64 || q > hi as f64 {
            return Err(ModelError::InputOutOfRange {
                value: v,
                min: lo as f64 / scale,
                max: hi as f64 / scale,
            });
        }
        out.push(q as i128);
    }
    IntTensor::from_data(x.shape().to_vec(), x.batch(), out).ok_or(ModelError::CiphertextCount {
        expected: x.data().len(),
        found: 0,
    })
}

/// Recombines residues modulo pairwise coprime moduli into the centered integer they encode
/// (CRT), for models run over several plaintext moduli. `None` if the product overflows i128
/// or the moduli are not coprime.
pub fn crt_combine(residues: &[u64], moduli: &[u64]) -> Option<i128> {
    let mut x: u128 = 0;
    let mut m: u128 = 1;
    for (&r, &t) in residues.iter().zip(moduli) {
        // x' ≡ x mod m, x' ≡ r mod t: x' = x + m · ((r − x) · m^{-1} mod t).
        let t128 = t as u128;
        let inv = modinv((m % t128) as u64, t)? as u128;
        let diff = (r as u128 + t128 - x % t128) % t128;
        let k = diff * inv % t128;
        x = x.checked_add(m.checked_mul(k)?)?;
        m = m.checked_mul(t128)?;
    }
    let half = m / 2;
    let v = if x > half {
        x as i128 - m as i128
    } else {
        x as i128
    };
    Some(v)
}

/// Recombines one tensor per plaintext modulus (the same integers, each decrypted modulo its
/// own t) into the exact integers, value by value ([`crt_combine`]). The one CRT step every
/// client pipeline uses.
pub fn crt_combine_tensors(parts: &[IntTensor], moduli: &[u64]) -> Result<IntTensor, ModelError> {
    let first = parts.first().ok_or(ModelError::CiphertextCount {
        expected: moduli.len(),
        found: 0,
    })?;
    if parts.len() != moduli.len() || parts.iter().any(|p| p.data().len() != first.data().len()) {
        return Err(ModelError::CiphertextCount {
            expected: moduli.len(),
            found: parts.len(),
        });
    }
    if moduli.len() == 1 {
        return Ok(first.clone());
    }
    let mut data = Vec::with_capacity(first.data().len());
    let mut residues = vec![0u64; parts.len()];
    for i in 0..first.data().len() {
        for ((r, p), &t) in residues.iter_mut().zip(parts).zip(moduli) {
            *r = p.data()[i].rem_euclid(t as i128) as u64;
        }
        data.push(
            crt_combine(&residues, moduli).ok_or(ModelError::NotCoprime {
                moduli: moduli.to_vec(),
            })?,
        );
    }
    IntTensor::from_data(first.shape().to_vec(), first.batch(), data).ok_or(
        ModelError::CiphertextCount {
            expected: first.data().len(),
            found: 0,
        },
    )
}

fn modinv(a: u64, m: u64) -> Option<u64> {
    let (mut r0, mut r1) = (m as i128, a as i128);
    let (mut t0, mut t1) = (0i128, 1i128);
    while r1 != 0 {
        let q = r0 / r1;
        (r0, r1) = (r1, r0 - q * r1);
        (t0, t1) = (t1, t0 - q * t1);
    }
    (r0 == 1).then(|| t0.rem_euclid(m as i128) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crt_recombines_centered_integers() {
        let moduli = [65537u64, 114689, 147457];
        let big: i128 = 65537 * 114689 * 147457 / 2 - 3;
        for v in [0i128, 1, -1, 123_456_789, -987_654_321_012, big, -big] {
            let res: Vec<u64> = moduli
                .iter()
                .map(|&t| v.rem_euclid(t as i128) as u64)
                .collect();
            assert_eq!(crt_combine(&res, &moduli), Some(v));
        }
        assert_eq!(crt_combine(&[1, 1], &[6, 4]), None);
    }
}
