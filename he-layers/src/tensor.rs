//! Tensors in the batch layout: one entry per activation, each holding a value for every image
//! of the batch (for ciphertexts: slot j of every ciphertext belongs to image j).
//!
//! Three twins share the layout: [`EncryptedTensor`] (ciphertexts), [`IntTensor`] (the exact
//! integer mirror, i128, no modulus) and [`FloatTensor`] (the float reference).

use serde::{Deserialize, Serialize};

/// What is known about a tensor before any data exists: its shape, its fixed-point scale, the
/// exact worst-case interval of its integers, and how far its scaled integers may be from the
/// float model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValueInfo {
    /// Shape of one image's activations (e.g. `[C, H, W]` or `[features]`).
    pub shape: Vec<usize>,
    /// Fixed-point scale: a value x is held as the integer round(x · scale).
    pub scale: f64,
    /// Exact worst-case smallest integer over all inputs the model accepts (saturating).
    pub lo: i128,
    /// Exact worst-case largest integer (saturating).
    pub hi: i128,
    /// Worst-case |value| of the float model (weights as quantized, inputs in range).
    pub float_bound: f64,
    /// Worst-case |integer / scale − float value|: the quantization error so far.
    pub error_bound: f64,
}

impl ValueInfo {
    /// Number of activations per image.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no activations.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The worst-case |integer|: max(|lo|, |hi|).
    pub fn bound(&self) -> u128 {
        self.lo.unsigned_abs().max(self.hi.unsigned_abs())
    }

    /// log2 of the bound (for reports).
    pub fn bound_bits(&self) -> f64 {
        (self.bound() as f64).log2()
    }
}

/// A plaintext tensor in the batch layout: `data[activation * batch + image]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T> {
    shape: Vec<usize>,
    batch: usize,
    data: Vec<T>,
}

/// The exact integer mirror of an encrypted tensor.
pub type IntTensor = Tensor<i128>;
/// The float reference.
pub type FloatTensor = Tensor<f64>;

impl<T: Clone> Tensor<T> {
    /// A tensor from activation-major data; `None` if the sizes disagree.
    pub fn from_data(shape: Vec<usize>, batch: usize, data: Vec<T>) -> Option<Self> {
        (shape.iter().product::<usize>() * batch == data.len()).then_some(Self {
            shape,
            batch,
            data,
        })
    }

    /// A tensor from one vector of activations per image (each of `shape`'s size).
    pub fn from_images(shape: Vec<usize>, images: &[Vec<T>]) -> Option<Self> {
        let len: usize = shape.iter().product();
        if images.iter().any(|im| im.len() != len) {
            return None;
        }
        let batch = images.len();
        let mut data = Vec::with_capacity(len * batch);
        for a in 0..len {
            for im in images {
                data.push(im[a].clone());
            }
        }
        Some(Self { shape, batch, data })
    }

    /// The activations of image j.
    pub fn image(&self, j: usize) -> Vec<T> {
        (0..self.len())
            .map(|a| self.data[a * self.batch + j].clone())
            .collect()
    }

    /// Activation a across the batch.
    pub fn activation(&self, a: usize) -> &[T] {
        &self.data[a * self.batch..(a + 1) * self.batch]
    }

    /// Shape of one image.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of images.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Activations per image.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether there are no activations.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The flat data.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The same data under another shape of equal size.
    pub fn reshaped(mut self, shape: Vec<usize>) -> Option<Self> {
        (shape.iter().product::<usize>() == self.len()).then(|| {
            self.shape = shape;
            self
        })
    }

    /// Applies f to every value.
    pub fn map<U>(&self, f: impl Fn(&T) -> U) -> Tensor<U> {
        Tensor {
            shape: self.shape.clone(),
            batch: self.batch,
            data: self.data.iter().map(f).collect(),
        }
    }
}

/// An encrypted tensor in the batch layout: one ciphertext per activation, slot j of each is
/// image j. Carries its fixed-point facts so every layer can check and propagate them.
#[derive(Clone, Debug)]
pub struct EncryptedTensor<C> {
    /// Shape of one image.
    pub shape: Vec<usize>,
    /// Number of images (used slots).
    pub batch: usize,
    /// One ciphertext per activation, row-major over `shape`.
    pub cts: Vec<C>,
    /// Fixed-point scale of the values.
    pub scale: f64,
    /// Worst-case smallest integer.
    pub lo: i128,
    /// Worst-case largest integer.
    pub hi: i128,
}

impl<C> EncryptedTensor<C> {
    /// The tensor's facts (float bounds unknown here, so zero).
    pub fn info(&self) -> ValueInfo {
        ValueInfo {
            shape: self.shape.clone(),
            scale: self.scale,
            lo: self.lo,
            hi: self.hi,
            float_bound: 0.0,
            error_bound: 0.0,
        }
    }

    /// Activations per image.
    pub fn len(&self) -> usize {
        self.cts.len()
    }

    /// Whether there are no activations.
    pub fn is_empty(&self) -> bool {
        self.cts.is_empty()
    }
}

impl EncryptedTensor<crate::crypto::Ciphertext> {
    /// Encrypts an integer tensor in the batch layout with the secret key (seeded, half-size
    /// ciphertexts): activation a becomes one ciphertext whose slot j holds image j's value
    /// ([`BatchLayout`](crate::plan::BatchLayout) with a
    /// [`BfvSlotEncryptor`](crate::layers::BfvSlotEncryptor)).
    pub fn encrypt(
        x: &IntTensor,
        info: &ValueInfo,
        sk: &crate::crypto::SecretKey,
    ) -> Result<Self, crate::model::ModelError> {
        let encryptor = crate::layers::BfvSlotEncryptor::new(sk)
            .map_err(|e| crate::model::ModelError::from(crate::layers::LayerError::from(e)))?;
        let cts = crate::plan::Packing::Batch.encrypt(x, &encryptor)?;
        Ok(Self {
            shape: x.shape().to_vec(),
            batch: x.batch(),
            cts,
            scale: info.scale,
            lo: info.lo,
            hi: info.hi,
        })
    }

    /// Decrypts every ciphertext: the integers, centered mod t, for the first `batch` slots.
    pub fn decrypt(
        &self,
        sk: &crate::crypto::SecretKey,
    ) -> Result<IntTensor, crate::model::ModelError> {
        let decryptor = crate::layers::BfvSlotDecryptor::new(sk)
            .map_err(|e| crate::model::ModelError::from(crate::layers::LayerError::from(e)))?;
        crate::plan::Packing::Batch.decrypt(&self.cts, &self.shape, self.batch, &decryptor)
    }

    /// The smallest noise budget over all ciphertexts (needs the secret key).
    pub fn min_noise_budget(
        &self,
        sk: &crate::crypto::SecretKey,
    ) -> Result<u32, crate::crypto::Error> {
        use rayon::prelude::*;
        let dec = crate::crypto::Decryptor::new(sk);
        self.cts
            .par_iter()
            .map(|ct| dec.noise_budget(ct))
            .try_reduce(|| u32::MAX, |a, b| Ok(a.min(b)))
    }
}
