//! What the engine's unit tests share: small insecure parameter sets and a slow CRT reference.

use super::params::BfvParameters;
use super::poly::RnsPoly;
use num_bigint::BigUint;
use num_traits::{ToPrimitive, Zero};
use std::sync::Arc;

/// N = 2048, t = 12289, three ciphertext primes of `prime_bits` and a special prime of
/// `special_bits`, without a security check.
pub(crate) fn small_params(prime_bits: u32, special_bits: u32) -> Arc<BfvParameters> {
    let special = crate::arith::generate_primes(special_bits, 2048, 1, &[]).unwrap_or_default();
    BfvParameters::try_new(crate::ParameterSpec {
        degree: 2048,
        plain_modulus: 12289,
        moduli: crate::arith::generate_primes(prime_bits, 2048, 3, &[12289]).unwrap_or_default(),
        special_modulus: special.first().copied().unwrap_or(0),
        security: crate::SecurityLevel::DangerNone,
    })
    .unwrap_or_else(|e| panic!("test parameters: {e}"))
}

/// The coefficients of an NTT-form polynomial as integers in [0, Q) (slow CRT).
pub(crate) fn to_integers(p: &RnsPoly, params: &BfvParameters) -> Vec<BigUint> {
    let mut p = p.clone();
    p.inverse_ntt(&params.q);
    let q = params.q.product().clone();
    (0..params.degree())
        .map(|c| {
            let mut v = BigUint::zero();
            for (i, m) in params.q.moduli().iter().enumerate() {
                let qi = &q / m.value();
                let hat = (&qi % m.value()).to_u64().unwrap_or(0);
                v += &qi * m.mul(p.limb(i)[c], m.inv(hat).unwrap_or(0));
            }
            v % &q
        })
        .collect()
}
