//! Security levels and the HomomorphicEncryption.org bounds on log2 q (ternary secret, σ = 3.2).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Requested security level, in bits, against the HE standard's table for a ternary secret
/// and σ = 3.2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SecurityLevel {
    /// 128-bit classical security (the default).
    #[default]
    #[serde(rename = "128")]
    Bits128,
    /// 192-bit classical security.
    #[serde(rename = "192")]
    Bits192,
    /// 256-bit classical security.
    #[serde(rename = "256")]
    Bits256,
    /// No security check: for experiments only, prints a warning.
    #[serde(rename = "none")]
    DangerNone,
}

impl SecurityLevel {
    /// The largest log2(q) (including the key-switching prime) allowed at degree n, from the
    /// HomomorphicEncryption.org standard; `None` when unchecked or n is not in the table.
    pub fn max_modulus_bits(self, n: usize) -> Option<u32> {
        let row: [u32; 5] = match self {
            Self::Bits128 => [54, 109, 218, 438, 881],
            Self::Bits192 => [37, 75, 152, 305, 611],
            Self::Bits256 => [29, 58, 118, 237, 476],
            Self::DangerNone => return None,
        };
        let idx = match n {
            2048 => 0,
            4096 => 1,
            8192 => 2,
            16384 => 3,
            32768 => 4,
            _ => return None,
        };
        Some(row[idx])
    }

    /// The level as a number of bits, or 0 for none.
    pub fn bits(self) -> u32 {
        match self {
            Self::Bits128 => 128,
            Self::Bits192 => 192,
            Self::Bits256 => 256,
            Self::DangerNone => 0,
        }
    }

    /// The highest level whose bound a modulus of `bits` bits at degree n satisfies.
    pub fn achieved(n: usize, bits: u32) -> Self {
        for level in [Self::Bits256, Self::Bits192, Self::Bits128] {
            if level.max_modulus_bits(n).is_some_and(|b| bits <= b) {
                return level;
            }
        }
        Self::DangerNone
    }
}

impl fmt::Display for SecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DangerNone => write!(f, "none"),
            other => write!(f, "{}-bit", other.bits()),
        }
    }
}
