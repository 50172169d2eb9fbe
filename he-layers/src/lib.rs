//! `he-layers`: an RNS-BFV homomorphic encryption scheme ([`crypto`]) and, on top of it, the
//! encoded neural-network layers the server runs on ciphertexts.
//!
//! The engine is the crate `he-engine` (in `he-layers/engine/`), re-exported here as
//! [`crypto`]. Its RNS polynomials, bases and base converters are private to it, so nothing in
//! the layers, the model or the tools above can reach a limb; the compiler holds that line.
//! Naming the polynomial type fails (private module):
//!
//! ```compile_fail,E0603
//! use he_layers::crypto::poly::RnsPoly;
//! ```
//!
//! and so does reading a ciphertext's polynomials (private field):
//!
//! ```compile_fail,E0616
//! fn limbs(ct: &he_layers::crypto::Ciphertext) -> usize {
//!     ct.polys.len()
//! }
//! ```
//!
//! while the public API compiles:
//!
//! ```
//! fn size(ct: &he_layers::crypto::Ciphertext) -> usize {
//!     ct.size()
//! }
//! ```
#![warn(missing_docs)]

pub use he_engine as crypto;
pub mod layers;
pub mod model;
pub mod numeric;
pub mod plan;
pub mod protocol;
pub mod tensor;

/// Tunes glibc's allocator for ciphertext workloads; call once at program start.
///
/// A BFV operation allocates and frees several buffers of hundreds of kilobytes. By default
/// glibc serves them with fresh `mmap`s or returns the freed heap top to the OS, so every
/// operation page-faults its memory in again: measured here, a multiplication at N = 8192 takes
/// 10.5 ms that way and 7.7 ms with memory kept in the process. This raises the mmap and trim
/// thresholds so freed memory is reused. It does nothing on other platforms.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator thresholds; both values are within glibc's limits
    // (the mmap threshold may be at most 32 MiB on 64-bit targets).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}
