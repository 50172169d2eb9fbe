//! How a tensor's values sit in ciphertext slots at a segment's edge: what the client
//! encrypts by and decrypts by. A layout decides it; the client needs nothing else of the
//! model (no weights, no program) to pack its input and read its output.

use super::packed::Placement;
use crate::layers::{SlotDecryptor, SlotEncryptor};
use crate::model::ModelError;
use crate::protocol::PackingInfo;
use crate::tensor::IntTensor;
use rayon::prelude::*;

/// Images per packed ciphertext: one per row of slots.
pub(crate) const ROWS: usize = 2;

/// Where a tensor's values sit.
#[derive(Clone, Debug, PartialEq)]
pub enum Packing {
    /// One ciphertext per activation; slot j holds image j.
    Batch,
    /// Every activation at its spots (copies) in a few ciphertexts; row r of each holds image
    /// r of its group of two.
    Packed(Placement),
}

impl Packing {
    /// Ciphertexts a tensor of `activations` values per image takes for `images` images, in
    /// ciphertexts of `slots` slots.
    pub fn ciphertext_count(
        &self,
        activations: usize,
        images: usize,
        slots: usize,
    ) -> Result<usize, ModelError> {
        match self {
            Self::Batch => {
                if images == 0 || images > slots {
                    return Err(ModelError::Images { images, slots });
                }
                Ok(activations)
            }
            Self::Packed(p) => {
                if images == 0 || ROWS * p.width != slots {
                    return Err(ModelError::Images { images, slots });
                }
                // `images` comes from a request: a count whose ciphertexts overflow is refused.
                images
                    .div_ceil(ROWS)
                    .checked_mul(p.cts)
                    .ok_or(ModelError::Images { images, slots })
            }
        }
    }

    /// Packs and encrypts every image of `x`.
    pub fn encrypt<E: SlotEncryptor>(
        &self,
        x: &IntTensor,
        encryptor: &E,
    ) -> Result<Vec<E::Ciphertext>, ModelError> {
        let slots = encryptor.slot_count();
        let vectors: Vec<Vec<i128>> = match self {
            Self::Batch => {
                if x.batch() == 0 || x.batch() > slots {
                    return Err(ModelError::Images {
                        images: x.batch(),
                        slots,
                    });
                }
                return (0..x.len())
                    .into_par_iter()
                    .map(|a| encryptor.encrypt_slots(x.activation(a)))
                    .collect::<Result<_, _>>()
                    .map_err(ModelError::from);
            }
            Self::Packed(p) => {
                if x.len() != p.len() || x.batch() == 0 || ROWS * p.width != slots {
                    return Err(ModelError::CiphertextCount {
                        expected: p.len(),
                        found: x.len(),
                    });
                }
                p.slot_vectors(x)
            }
        };
        vectors
            .par_iter()
            .map(|v| encryptor.encrypt_slots(v))
            .collect::<Result<_, _>>()
            .map_err(ModelError::from)
    }

    /// Decrypts and unpacks `images` images of a tensor of `shape`.
    pub fn decrypt<D: SlotDecryptor>(
        &self,
        cts: &[D::Ciphertext],
        shape: &[usize],
        images: usize,
        decryptor: &D,
    ) -> Result<IntTensor, ModelError> {
        let len: usize = shape.iter().product();
        let expected = match self {
            Self::Batch => len,
            Self::Packed(p) => images.div_ceil(ROWS) * p.cts,
        };
        if cts.len() != expected || images == 0 {
            return Err(ModelError::CiphertextCount {
                expected,
                found: cts.len(),
            });
        }
        let slots = cts
            .par_iter()
            .map(|c| decryptor.decrypt_slots(c))
            .collect::<Result<Vec<_>, _>>()?;
        let data = match self {
            Self::Batch => {
                let mut data = Vec::with_capacity(len * images);
                for s in &slots {
                    data.extend_from_slice(s.get(..images).ok_or(ModelError::Images {
                        images,
                        slots: s.len(),
                    })?);
                }
                data
            }
            Self::Packed(p) => {
                if p.len() != len {
                    return Err(ModelError::CiphertextCount {
                        expected: p.len(),
                        found: len,
                    });
                }
                p.read_back(&slots, images)?
            }
        };
        IntTensor::from_data(shape.to_vec(), images, data).ok_or(ModelError::CiphertextCount {
            expected: len,
            found: cts.len(),
        })
    }
}

impl Packing {
    /// What `/plan` sends of it (`None` for the batch layout, which needs nothing).
    pub fn to_info(&self) -> Option<PackingInfo> {
        match self {
            Self::Batch => None,
            Self::Packed(p) => Some(PackingInfo {
                ciphertexts: p.ciphertexts(),
                width: p.width(),
                copies: p.flat_copies(),
            }),
        }
    }

    /// A packing received from a server for a tensor of `activations` values per image, or
    /// `None` if it does not describe one (copies outside the ciphertexts, a spot holding two
    /// values, another number of activations).
    pub fn from_info(info: &PackingInfo, activations: usize) -> Option<Self> {
        if info.copies.len() != activations {
            return None;
        }
        Placement::from_flat(info.ciphertexts, info.width, &info.copies).map(Self::Packed)
    }
}
