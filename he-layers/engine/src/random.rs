//! Randomness: every random choice of the scheme (secret keys, seeds of uniform halves, errors,
//! ephemeral keys, flooding noise) is drawn from a caller's cryptographically secure generator.
//! The plain entry points use [`os_rng`]; the `*_with_rng` ones take any
//! `RngCore + CryptoRng`, so tests can fix keys and ciphertexts (known-answer fixtures).

use rand::{CryptoRng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// A fresh ChaCha20 CSPRNG seeded by the operating system.
pub fn os_rng() -> ChaCha20Rng {
    ChaCha20Rng::from_entropy()
}

/// A 32-byte seed drawn from `rng` (for a uniform half expanded later).
pub(crate) fn draw_seed<R: RngCore + CryptoRng>(rng: &mut R) -> [u8; 32] {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    seed
}
