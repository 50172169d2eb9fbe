//! Ciphertexts, public-key and seeded symmetric encryption, decryption, and the invariant noise
//! budget.

use super::encoding::Plaintext;
use super::keys::{PublicKey, SecretKey};
use super::params::BfvParameters;
use super::poly::{
    sample_error, sample_ternary, Representation, RnsPoly, ERROR_CLIP, ERROR_STD_DEV,
};
use super::random::{draw_seed, os_rng};
use super::Error;
use num_bigint::BigUint;
use num_traits::{ToPrimitive, Zero};
use rand::{CryptoRng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::sync::Arc;

/// A BFV ciphertext: two (or, after an unrelinearized product, three) polynomials in NTT form
/// over the ciphertext primes.
///
/// A freshly symmetric-encrypted ciphertext keeps the seed its second polynomial was expanded
/// from, so it serializes at half size; any operation yields an unseeded result.
#[derive(Clone, Debug)]
pub struct Ciphertext {
    pub(crate) params: Arc<BfvParameters>,
    pub(crate) polys: Vec<RnsPoly>,
    pub(crate) seed: Option<[u8; 32]>,
    /// Estimate of log2 ‖[t (c0 + c1 s + …)]_Q‖∞, the numerator of the invariant noise.
    pub(crate) noise_log2: f64,
}

impl Ciphertext {
    /// The parameter set.
    pub fn parameters(&self) -> &Arc<BfvParameters> {
        &self.params
    }

    /// Number of polynomials (2, or 3 before relinearization).
    pub fn size(&self) -> usize {
        self.polys.len()
    }

    /// The residues of polynomial `component` modulo ciphertext prime `prime`, NTT form: the
    /// numbers the wire format carries, for inspection (what a client sees of an answer). Read
    /// only; no arithmetic on limbs is reachable outside the engine. `None` when out of range.
    pub fn ntt_residues(&self, component: usize, prime: usize) -> Option<&[u64]> {
        let poly = self.polys.get(component)?;
        (prime < poly.limb_count()).then(|| poly.limb(prime))
    }

    /// Whether the second polynomial is still the expansion of a stored seed.
    pub fn is_seeded(&self) -> bool {
        self.seed.is_some()
    }

    /// The evaluator's estimate of the noise budget in bits, without the secret key. It is
    /// meant to be conservative: at most the measured budget in ordinary use.
    pub fn estimated_noise_budget(&self) -> f64 {
        (self.params.log2_q() - self.noise_log2 - 1.0).max(0.0)
    }

    /// The estimate in the measurement's whole bits ([`whole_bit_budget`]): never above
    /// [`Decryptor::noise_budget`] while the noise bound holds.
    pub fn estimated_whole_budget(&self) -> f64 {
        whole_bit_budget(self.params.log2_q(), self.noise_log2)
    }

    /// Estimated log2 of the noise numerator (see [`Self::estimated_noise_budget`]).
    pub fn estimated_noise_log2(&self) -> f64 {
        self.noise_log2
    }

    /// Replaces the noise estimate by the fresh symmetric bound. A server calls it on every
    /// ciphertext it receives: the serialized estimate is written by the client and is not
    /// trusted (a crafted one would make the server's estimates track the weights).
    pub fn assume_fresh_noise(&mut self) {
        self.noise_log2 = fresh_symmetric_noise(&self.params);
    }
}

/// The budget of a noise numerator of at most 2^`noise_log2` under a modulus of
/// `modulus_log2` bits, counted as [`Decryptor::noise_budget`] counts it: ⌊log2 Q⌋ − ⌊log2 ν⌋
/// − 1, so the measured budget is never below it while the bound holds (the real-valued
/// log2 Q − log2 ν − 1 may be, by less than a bit).
pub fn whole_bit_budget(modulus_log2: f64, noise_log2: f64) -> f64 {
    modulus_log2.floor() - noise_log2.floor() - 1.0
}

/// A bound on the fresh noise numerator t‖e‖ for a symmetric encryption (log2): the
/// evaluator's starting estimate for a seeded ciphertext.
pub fn fresh_symmetric_noise(params: &BfvParameters) -> f64 {
    let t = params.plain_modulus() as f64;
    (t * (ERROR_STD_DEV * ERROR_CLIP + 0.5)).log2()
}

/// A high-probability bound on the fresh noise numerator of a public-key encryption (log2):
/// t‖e u + e1 s + e0‖ with u, s ternary.
pub fn fresh_public_noise(params: &BfvParameters) -> f64 {
    let t = params.plain_modulus() as f64;
    let n = params.degree() as f64;
    let std = ERROR_STD_DEV * (2.0 * (2.0 * n / 3.0) + 1.0).sqrt();
    (t * (ERROR_CLIP * std + 0.5)).log2()
}

/// Encrypts with the public key. The server holds one to make fresh encryptions of zero.
#[derive(Clone, Debug)]
pub struct Encryptor {
    pk: PublicKey,
}

impl Encryptor {
    /// An encryptor for a public key.
    pub fn new(pk: &PublicKey) -> Self {
        Self { pk: pk.clone() }
    }

    /// Encrypts a plaintext: (b u + e0 + Δm, a u + e1), OS-seeded randomness.
    pub fn encrypt(&self, pt: &Plaintext) -> Result<Ciphertext, Error> {
        self.encrypt_with_rng(pt, &mut os_rng())
    }

    /// [`Self::encrypt`] with u, e0 and e1 drawn from `rng`.
    pub fn encrypt_with_rng<R: RngCore + CryptoRng>(
        &self,
        pt: &Plaintext,
        rng: &mut R,
    ) -> Result<Ciphertext, Error> {
        super::ensure_same(&self.pk.params, &pt.params)?;
        Ok(self.encrypt_poly_at(&self.pk.params, Some(pt), rng))
    }

    /// A fresh encryption of zero (to re-randomize, or to replace a transparent result).
    pub fn encrypt_zero(&self) -> Ciphertext {
        self.encrypt_poly_at(&self.pk.params, None, &mut os_rng())
    }

    /// A fresh encryption of zero at a lower level of the key's parameter set (the public key
    /// restricted to the level's primes), to re-randomize a modulus-switched ciphertext.
    pub fn encrypt_zero_at(&self, level: &Arc<BfvParameters>) -> Result<Ciphertext, Error> {
        self.encrypt_zero_at_with_rng(level, &mut os_rng())
    }

    /// [`Self::encrypt_zero_at`] with randomness from `rng`.
    pub fn encrypt_zero_at_with_rng<R: RngCore + CryptoRng>(
        &self,
        level: &Arc<BfvParameters>,
        rng: &mut R,
    ) -> Result<Ciphertext, Error> {
        if !level.is_level_of(&self.pk.params) {
            super::ensure_same(&self.pk.params, level)?;
        }
        Ok(self.encrypt_poly_at(level, None, rng))
    }

    /// (b u + e0 + Δm, a u + e1) over the primes of `params`, the first limbs of the key's.
    fn encrypt_poly_at<R: RngCore + CryptoRng>(
        &self,
        params: &Arc<BfvParameters>,
        pt: Option<&Plaintext>,
        rng: &mut R,
    ) -> Ciphertext {
        let n = params.degree();
        let basis = &params.q;
        let limbs = basis.len();
        let mut u = RnsPoly::from_signed(&sample_ternary(rng, n), basis, limbs);
        u.forward_ntt(basis);
        let mut e0 = RnsPoly::from_signed(&sample_error(rng, n), basis, limbs);
        if let Some(pt) = pt {
            e0.add_assign(&pt.scaled(), basis);
        }
        e0.forward_ntt(basis);
        let mut e1 = RnsPoly::from_signed(&sample_error(rng, n), basis, limbs);
        e1.forward_ntt(basis);
        e0.mul_accumulate_ntt(&self.pk.b, &u, basis);
        e1.mul_accumulate_ntt(&self.pk.a, &u, basis);
        Ciphertext {
            params: params.clone(),
            polys: vec![e0, e1],
            seed: None,
            noise_log2: fresh_public_noise(params),
        }
    }
}

/// Encrypts with the secret key; the uniform half comes from a fresh 32-byte seed, so the
/// ciphertext travels at half size. This is how clients upload.
pub struct SymmetricEncryptor<'a> {
    sk: &'a SecretKey,
}

impl<'a> SymmetricEncryptor<'a> {
    /// An encryptor for a secret key.
    pub fn new(sk: &'a SecretKey) -> Self {
        Self { sk }
    }

    /// Encrypts a plaintext: (-a s + e + Δm, a) with a expanded from a fresh seed (OS-seeded
    /// randomness).
    pub fn encrypt(&self, pt: &Plaintext) -> Result<Ciphertext, Error> {
        self.encrypt_with_rng(pt, &mut os_rng())
    }

    /// [`Self::encrypt`] with the seed of a and the error e drawn from `rng`.
    pub fn encrypt_with_rng<R: RngCore + CryptoRng>(
        &self,
        pt: &Plaintext,
        rng: &mut R,
    ) -> Result<Ciphertext, Error> {
        super::ensure_same(&self.sk.params, &pt.params)?;
        let params = &self.sk.params;
        let n = params.degree();
        let basis = &params.q;
        let limbs = basis.len();
        let seed = draw_seed(rng);
        let a = expand_seeded_component(params, seed);
        let mut c0 = RnsPoly::from_signed(&sample_error(rng, n), basis, limbs);
        c0.add_assign(&pt.scaled(), basis);
        c0.forward_ntt(basis);
        let mut a_s = RnsPoly::zero(n, limbs, Representation::Ntt);
        a_s.mul_accumulate_ntt(&a, &self.sk.ntt_q(), basis);
        c0.sub_assign(&a_s, basis);
        Ok(Ciphertext {
            params: params.clone(),
            polys: vec![c0, a],
            seed: Some(seed),
            noise_log2: fresh_symmetric_noise(params),
        })
    }
}

/// The uniform polynomial a of a seeded ciphertext, in NTT form over the ciphertext primes.
pub(crate) fn expand_seeded_component(params: &Arc<BfvParameters>, seed: [u8; 32]) -> RnsPoly {
    RnsPoly::sample_uniform(
        &mut ChaCha20Rng::from_seed(seed),
        params.degree(),
        &params.q,
        params.q.len(),
        Representation::Ntt,
    )
}

/// Decrypts and measures noise. Only the secret key holder has one.
pub struct Decryptor<'a> {
    sk: &'a SecretKey,
}

impl<'a> Decryptor<'a> {
    /// A decryptor for a secret key.
    pub fn new(sk: &'a SecretKey) -> Self {
        Self { sk }
    }

    /// c0 + c1 s + c2 s² + …, coefficient form over the ciphertext primes.
    /// Accepts ciphertexts of the key's parameter set and of its lower levels (after modulus
    /// switching): s over the first primes is the first limbs of s.
    fn phase(&self, ct: &Ciphertext) -> Result<RnsPoly, Error> {
        if !ct.params.is_level_of(&self.sk.params) {
            super::ensure_same(&self.sk.params, &ct.params)?;
        }
        let params = &ct.params;
        let basis = &params.q;
        let mut s = self.sk.ntt_q();
        s.truncate_limbs(basis.len());
        // Horner: ((c_k s + c_{k-1}) s + …) s + c0.
        let mut acc = ct.polys[ct.polys.len() - 1].clone();
        for c in ct.polys[..ct.polys.len() - 1].iter().rev() {
            acc.mul_assign_ntt(&s, basis);
            acc.add_assign(c, basis);
        }
        acc.inverse_ntt(basis);
        Ok(acc)
    }

    /// Decrypts: round(t (c0 + c1 s) / Q) mod t, exactly, in RNS.
    pub fn decrypt(&self, ct: &Ciphertext) -> Result<Plaintext, Error> {
        let x = self.phase(ct)?;
        let params = &ct.params;
        let mut coeffs = vec![0u64; params.degree()];
        let input: Vec<&[u64]> = x.limbs().collect();
        params
            .decrypt_scaler
            .scale(&input, &mut [coeffs.as_mut_slice()]);
        // The plaintext space (N, t) is the same at every level: the plaintext belongs to the
        // key's set, whatever level the ciphertext was switched to.
        Ok(Plaintext {
            params: self.sk.params.clone(),
            coeffs,
        })
    }

    /// The noise of each coefficient: [c0 + c1 s − ⌊Q/t⌋ m]_Q centered, as f64 (exact below
    /// 2^53). What the key holder can read off any ciphertext: for its own fresh encryptions
    /// these are the errors it sampled. Slow (big-integer CRT); for diagnostics and tests.
    pub fn noise_coefficients(&self, ct: &Ciphertext) -> Result<Vec<f64>, Error> {
        let x = self.phase(ct)?;
        let m = self.decrypt(ct)?;
        let params = &ct.params;
        let basis = &params.q;
        let q = basis.product();
        let half_q = q >> 1u32;
        let delta = q / params.plain_modulus();
        let punctured: Vec<(BigUint, u64)> = basis
            .moduli()
            .iter()
            .map(|md| {
                let qi = q / md.value();
                let inv = md
                    .inv((&qi % md.value()).to_u64().unwrap_or(0))
                    .unwrap_or(0);
                (qi, inv)
            })
            .collect();
        Ok((0..params.degree())
            .map(|c| {
                let mut v = BigUint::zero();
                for (i, md) in basis.moduli().iter().enumerate() {
                    v += &punctured[i].0 * md.mul(x.limb(i)[c], punctured[i].1);
                }
                let dm = (&delta * m.coeffs[c]) % q;
                let v = (v % q + q - dm) % q;
                if v > half_q {
                    -(q - &v).to_f64().unwrap_or(f64::INFINITY)
                } else {
                    v.to_f64().unwrap_or(f64::INFINITY)
                }
            })
            .collect())
    }

    /// The invariant noise budget in bits (SEAL's definition): log2(Q) minus the bits of
    /// ‖[t (c0 + c1 s)]_Q‖∞, minus one, floored at 0. Zero means decryption may be wrong.
    pub fn noise_budget(&self, ct: &Ciphertext) -> Result<u32, Error> {
        let x = self.phase(ct)?;
        let params = &ct.params;
        let basis = &params.q;
        let t = params.plain_modulus();
        let q = basis.product();
        let half_q = q >> 1u32;
        // CRT with big integers: diagnostic, not on the hot path.
        let punctured: Vec<(BigUint, u64)> = basis
            .moduli()
            .iter()
            .map(|m| {
                let qi = q / m.value();
                let inv = m.inv((&qi % m.value()).to_u64().unwrap_or(0)).unwrap_or(0);
                (qi, inv)
            })
            .collect();
        let mut max = BigUint::zero();
        for c in 0..params.degree() {
            let mut v = BigUint::zero();
            for (i, m) in basis.moduli().iter().enumerate() {
                let r = m.mul(m.mul(x.limb(i)[c], t), punctured[i].1);
                v += &punctured[i].0 * r;
            }
            v %= q;
            let abs = if v > half_q { q - &v } else { v };
            if abs > max {
                max = abs;
            }
        }
        let q_bits = q.bits() as i64;
        let budget = q_bits - max.bits() as i64 - 1;
        Ok(budget.max(0) as u32)
    }
}
