//! Clients' public key material, content-addressed and kept in a bounded cache.

use he_layers::crypto::{BfvParameters, GaloisKeys, PublicKey, RelinearizationKey};
use he_layers::layers::BfvBackend;
use std::sync::Arc;

/// One client's public keys for one parameter set.
#[derive(Debug)]
pub struct KeyEntry {
    /// The parameter set.
    pub params: Arc<BfvParameters>,
    /// The backend the keys make (public key for fresh zeros, relinearization key).
    pub backend: BfvBackend,
    /// Whether a relinearization key came with them.
    pub has_relin: bool,
    /// Galois keys, if any (for the packed layout).
    pub galois: Option<GaloisKeys>,
    /// Serialized size (what the cache limit counts).
    pub bytes: usize,
}

impl KeyEntry {
    /// Builds an entry from deserialized keys.
    pub fn new(
        params: Arc<BfvParameters>,
        pk: PublicKey,
        rk: Option<RelinearizationKey>,
        galois: Option<GaloisKeys>,
        bytes: usize,
    ) -> Self {
        let has_relin = rk.is_some();
        Self {
            backend: BfvBackend::new(&pk, rk),
            params,
            has_relin,
            galois,
            bytes,
        }
    }
}

/// Uploaded key sets, content-addressed, bounded by count and bytes.
pub type KeyCache = crate::cache::BoundedCache<KeyEntry>;
