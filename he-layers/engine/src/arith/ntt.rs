//! The negacyclic NTT modulo one prime, through `tfhe-ntt`.

use super::modulus::Modulus;
use super::primes::is_prime;
use std::collections::HashMap;
use std::sync::Arc;

/// A negacyclic NTT modulo one prime, through `tfhe-ntt`, plus the exponent of the root of unity
/// at which each NTT slot evaluates (needed for automorphisms and batching).
pub struct NttOperator {
    plan: tfhe_ntt::prime64::Plan,
    modulus: Modulus,
    /// `exponents[k] = e` such that NTT slot k holds a(ψ^e) for this plan's root ψ.
    exponents: Arc<[u32]>,
}

impl std::fmt::Debug for NttOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NttOperator")
            .field("modulus", &self.modulus.value())
            .field("n", &self.exponents.len())
            .finish()
    }
}

impl NttOperator {
    /// A plan for degree n and prime p ≡ 1 mod 2n. `hint` is an exponent table of another
    /// plan of the same degree, reused when it also describes this one.
    pub fn try_new(n: usize, p: u64, hint: Option<&Arc<[u32]>>) -> Option<Self> {
        let modulus = Modulus::try_new(p)?;
        if !(p - 1).is_multiple_of(2 * n as u64) || !is_prime(p) {
            return None;
        }
        let plan = tfhe_ntt::prime64::Plan::try_new(n, p)?;
        let mut x = vec![0u64; n];
        x[1] = 1;
        plan.fwd(&mut x);
        // x[k] = ψ_k, a primitive 2n-th root; express every one as a power of ψ = x[0].
        let psi = x[0];
        let mut powers = vec![0u64; 2 * n];
        let mut acc = 1u64;
        for slot in powers.iter_mut() {
            *slot = acc;
            acc = modulus.mul(acc, psi);
        }
        let exponents = match hint {
            Some(h) if h.len() == n && h.iter().zip(&x).all(|(&e, &v)| powers[e as usize] == v) => {
                h.clone()
            }
            _ => {
                let index: HashMap<u64, u32> = powers
                    .iter()
                    .enumerate()
                    .map(|(e, &v)| (v, e as u32))
                    .collect();
                let mut e = Vec::with_capacity(n);
                for v in &x {
                    e.push(*index.get(v)?);
                }
                e.into()
            }
        };
        Some(Self {
            plan,
            modulus,
            exponents,
        })
    }

    /// The modulus.
    #[inline]
    pub fn modulus(&self) -> &Modulus {
        &self.modulus
    }

    /// The ring degree.
    #[inline]
    pub fn degree(&self) -> usize {
        self.exponents.len()
    }

    /// The evaluation exponents of the NTT slots.
    pub fn exponents(&self) -> &Arc<[u32]> {
        &self.exponents
    }

    /// Forward transform in place: coefficients in [0, p) to NTT slots.
    #[inline]
    pub fn forward(&self, a: &mut [u64]) {
        crate::stats::ntt();
        self.plan.fwd(a);
    }

    /// Inverse transform in place, normalized: NTT slots to coefficients.
    #[inline]
    pub fn backward(&self, a: &mut [u64]) {
        crate::stats::ntt();
        self.plan.inv(a);
        self.plan.normalize(a);
    }

    /// acc += a * b slot-wise (all in [0, p)).
    #[inline]
    pub fn mul_accumulate(&self, acc: &mut [u64], a: &[u64], b: &[u64]) {
        self.plan.mul_accumulate(acc, a, b);
    }
}
