//! The names a configuration, a plan and the binary format use for a scheme and a layout.
//! Deliberately exhaustive: a new layout or scheme is a compile error at every place that
//! dispatches on them, so none is forgotten.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The homomorphic scheme ciphertexts belong to.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SchemeKind {
    /// RNS-BFV with batching (exact integers modulo t).
    #[default]
    Bfv,
}

/// How a tensor's values are spread over ciphertext slots.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LayoutKind {
    /// One ciphertext per activation, slot j of each holding image j (CryptoNets).
    #[default]
    Batch,
    /// One image's activations spread across the slots of a few ciphertexts, two images per
    /// ciphertext (LoLa-style; rotations and plaintext products).
    Packed,
}

impl fmt::Display for SchemeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bfv => "bfv",
        })
    }
}

impl fmt::Display for LayoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Batch => "batch",
            Self::Packed => "packed",
        })
    }
}

/// A layout name that is not one of [`LayoutKind`]'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown layout '{0}': expected 'packed' or 'batch'")]
pub struct UnknownLayout(pub String);

impl FromStr for LayoutKind {
    type Err = UnknownLayout;

    /// The names configurations use: `batch`, `packed`.
    fn from_str(s: &str) -> Result<Self, UnknownLayout> {
        match s {
            "batch" => Ok(Self::Batch),
            "packed" => Ok(Self::Packed),
            other => Err(UnknownLayout(other.to_string())),
        }
    }
}

/// The version of the REST protocol these types describe. Version 2: `/compute` names a plan
/// (`plan_id` from `/plan`) instead of resending the configuration.
pub const PROTOCOL_VERSION: u32 = 2;
