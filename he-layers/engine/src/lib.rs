//! `he-engine`: the RNS-BFV scheme under `he-layers` (which re-exports it as `he_layers::crypto`).
//!
//! Data types live apart from the algorithms that use them: [`params`] (parameter sets,
//! security levels, levels), [`arith`] (moduli, primes, NTT; RNS bases and conversions,
//! private), `poly` (RNS polynomials, private: no limb is reachable outside this crate),
//! [`keys`], [`encrypt`] (ciphertexts, encryption, decryption, noise budget), [`encoding`]
//! (plaintexts, batch encoder), [`random`] (the CSPRNG every random choice is drawn from),
//! [`eval`] (the evaluator: linear operations, dot products, products, key switching),
//! [`modswitch`] (modulus switching), [`sanitize`] (circuit privacy for returned
//! ciphertexts), [`serial`] (the binary format) and [`stats`] (operation counters).
#![warn(missing_docs)]

pub mod arith;
pub mod compress;
pub mod encoding;
pub mod encrypt;
pub mod eval;
pub mod keys;
pub mod modswitch;
pub mod params;
pub(crate) mod poly;
pub mod random;
pub mod sanitize;
pub mod serial;
pub mod stats;
#[cfg(test)]
mod test_support;

pub use compress::{
    compress, compress_answers, compressed_budget, compression_bits, lifted_noise_log2,
    CompressedCiphertext,
};
pub use encoding::{BatchEncoder, LiftedPlaintext, Plaintext, ScaledPlaintext};
pub use encrypt::{Ciphertext, Decryptor, Encryptor, SymmetricEncryptor};
pub use eval::{log2_add, Evaluator};
pub use keys::{GaloisKeys, PublicKey, RelinearizationKey, SecretKey};
pub use params::{BfvParameters, ParameterError, ParameterSpec, SecurityLevel};
pub use serial::SerialError;

use std::sync::Arc;

/// Errors of encoding, encryption and evaluation.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// Two objects belong to different parameter sets.
    #[error("objects belong to different parameter sets ({left} vs {right})")]
    ParameterMismatch {
        /// Fingerprint of the first (hex prefix).
        left: String,
        /// Fingerprint of the second (hex prefix).
        right: String,
    },
    /// A ciphertext has the wrong number of polynomials for the operation.
    #[error("ciphertext has {found} polynomials, the operation needs {expected}")]
    CiphertextSize {
        /// Needed.
        expected: usize,
        /// Found.
        found: usize,
    },
    /// A compression width outside what the format holds.
    #[error("{bits} bits per compressed coefficient; 1 to {max} are possible")]
    CompressionBits {
        /// The width asked for.
        bits: u32,
        /// The widest.
        max: u32,
    },
    /// The result would be a transparent ciphertext (a product with zero).
    #[error("the result would be transparent (a product with zero); skip the term or add a fresh encryption of zero")]
    TransparentResult,
    /// A Galois element that is not an odd residue below 2N (no automorphism of the ring).
    #[error("{element} is not a Galois element of degree {degree} (odd, below 2N)")]
    InvalidGaloisElement {
        /// The element.
        element: u64,
        /// The ring degree.
        degree: usize,
    },
    /// No Galois key for the requested automorphism.
    #[error("no Galois key for element {element}; generate it with the keys")]
    MissingGaloisKey {
        /// The Galois element.
        element: u64,
    },
    /// More values than slots.
    #[error("{given} values for {slots} slots")]
    TooManyValues {
        /// Values given.
        given: usize,
        /// Slots available.
        slots: usize,
    },
    /// A value does not fit the centered plaintext range.
    #[error("value {value} at index {index} is outside the plaintext range ±(t-1)/2 for t = {plain_modulus}")]
    ValueOutOfRange {
        /// Index of the value.
        index: usize,
        /// The value.
        value: i128,
        /// t.
        plain_modulus: u64,
    },
    /// t does not allow batching.
    #[error("plaintext modulus {plain_modulus} does not allow batching: it must be a prime ≡ 1 mod 2N = {two_n}")]
    NoBatching {
        /// t.
        plain_modulus: u64,
        /// 2N.
        two_n: usize,
    },
    /// A parameter set cannot be restricted to the requested level.
    #[error("cannot use the parameter set at this level: {0}")]
    Level(#[from] ParameterError),
    /// Lengths of paired inputs differ.
    #[error("paired inputs have different lengths ({left} and {right})")]
    LengthMismatch {
        /// First length.
        left: usize,
        /// Second length.
        right: usize,
    },
}

/// Keys are generated at the top level and serve every level below it: `level` must be `top`
/// or its restriction to its first ciphertext primes.
pub(crate) fn ensure_level_of(
    level: &Arc<BfvParameters>,
    top: &Arc<BfvParameters>,
) -> Result<(), Error> {
    if Arc::ptr_eq(level, top) || level.is_level_of(top) {
        Ok(())
    } else {
        Err(Error::ParameterMismatch {
            left: level.fingerprint_hex(),
            right: top.fingerprint_hex(),
        })
    }
}

pub(crate) fn ensure_same(a: &Arc<BfvParameters>, b: &Arc<BfvParameters>) -> Result<(), Error> {
    if Arc::ptr_eq(a, b) || a.fingerprint() == b.fingerprint() {
        Ok(())
    } else {
        Err(Error::ParameterMismatch {
            left: a.fingerprint_hex(),
            right: b.fingerprint_hex(),
        })
    }
}
