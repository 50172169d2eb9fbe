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
    /// The Galois elements the keys cover (in the backend; none for the batch layout).
    pub galois_elements: Vec<u64>,
    /// Bytes the keys hold in memory, expanded (what the cache limits count; about twice
    /// their serialized size, the seeded halves regrown).
    pub resident_bytes: usize,
}

impl KeyEntry {
    /// Builds an entry from deserialized keys.
    pub fn new(
        params: Arc<BfvParameters>,
        pk: PublicKey,
        rk: Option<RelinearizationKey>,
        galois: Option<GaloisKeys>,
    ) -> Self {
        let has_relin = rk.is_some();
        // The backend keeps the public key (in its encryptor) and both key sets.
        let resident_bytes = pk.resident_bytes()
            + rk.as_ref().map_or(0, RelinearizationKey::resident_bytes)
            + galois.as_ref().map_or(0, GaloisKeys::resident_bytes);
        let backend = BfvBackend::new(&pk, rk);
        let (backend, galois_elements) = match galois {
            Some(g) => {
                let elements = g.elements().collect();
                (backend.with_galois_keys(g), elements)
            }
            None => (backend, Vec::new()),
        };
        Self {
            backend,
            params,
            has_relin,
            galois_elements,
            resident_bytes,
        }
    }
}

/// Uploaded key sets, content-addressed, bounded by count and bytes.
pub type KeyCache = crate::cache::BoundedCache<KeyEntry>;
