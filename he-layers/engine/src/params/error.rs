//! Why a parameter set is refused.

use super::security::SecurityLevel;
use super::{MAX_DEGREE, MIN_DEGREE};

/// Why a parameter set was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParameterError {
    /// N is not a power of two in range.
    #[error("ring degree {0} is not a power of two between {MIN_DEGREE} and {MAX_DEGREE}")]
    Degree(usize),
    /// The total modulus exceeds the standard's bound.
    #[error(
        "the moduli total {bits} bits (key-switching prime included), over the {bound}-bit bound \
         for N={degree} at {level} security (HomomorphicEncryption.org standard); {fix}"
    )]
    Insecure {
        /// Total modulus bits.
        bits: u32,
        /// The bound for this degree and level.
        bound: u32,
        /// Ring degree.
        degree: usize,
        /// Requested level.
        level: SecurityLevel,
        /// The smallest change that makes the set secure.
        fix: String,
    },
    /// A ciphertext or special modulus is unusable.
    #[error("modulus {value}: {reason}")]
    Modulus {
        /// The offending value.
        value: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The plaintext modulus is unusable.
    #[error("plaintext modulus {value}: {reason}")]
    PlainModulus {
        /// The offending value.
        value: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Not enough primes of a requested size exist.
    #[error("not enough {bits}-bit primes ≡ 1 mod {two_n} for this parameter set")]
    NotEnoughPrimes {
        /// Requested bit size.
        bits: u32,
        /// 2N.
        two_n: usize,
    },
    /// There is no preset for this degree.
    #[error("no preset for N={0}; presets exist for N = 2048, 4096, 8192, 16384, 32768")]
    NoPreset(usize),
    /// A level (number of ciphertext primes) the set does not have.
    #[error("level {level}: a level keeps between 1 and {top} ciphertext primes")]
    Level {
        /// The level asked for.
        level: usize,
        /// The set's number of ciphertext primes.
        top: usize,
    },
    /// Internal table construction failed (should not happen for validated input).
    #[error("internal error while building parameter tables: {0}")]
    Internal(&'static str),
}
