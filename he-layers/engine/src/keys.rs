//! Keys: the ternary secret key, the public key, and key-switching keys (relinearization and
//! Galois) for hybrid key switching with one special prime. Every uniform half is derived from
//! a 32-byte seed, so keys travel at half size.

use super::params::BfvParameters;
use super::poly::{sample_error, sample_ternary, Representation, RnsPoly};
use super::random::{draw_seed, os_rng};
use super::Error;
use rand::{CryptoRng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use zeroize::Zeroize;

/// The ternary secret key s. Never leaves the client; zeroed on drop; not `Debug`.
pub struct SecretKey {
    pub(crate) params: Arc<BfvParameters>,
    /// Coefficients in {-1, 0, 1}.
    pub(crate) coeffs: Vec<i64>,
    /// s in NTT form over the key basis (ciphertext primes and the special prime).
    pub(crate) ntt: RnsPoly,
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.coeffs.zeroize();
        self.ntt.data_mut().zeroize();
    }
}

impl SecretKey {
    /// Samples a new secret key from the OS-seeded CSPRNG.
    pub fn generate(params: &Arc<BfvParameters>) -> Self {
        Self::generate_with_rng(params, &mut os_rng())
    }

    /// Samples a new secret key from `rng`.
    pub fn generate_with_rng<R: RngCore + CryptoRng>(
        params: &Arc<BfvParameters>,
        rng: &mut R,
    ) -> Self {
        let coeffs = sample_ternary(rng, params.degree());
        Self::from_coefficients(params, coeffs)
    }

    pub(crate) fn from_coefficients(params: &Arc<BfvParameters>, coeffs: Vec<i64>) -> Self {
        let mut ntt = RnsPoly::from_signed(&coeffs, &params.key, params.key.len());
        ntt.forward_ntt(&params.key);
        Self {
            params: params.clone(),
            coeffs,
            ntt,
        }
    }

    /// The parameter set.
    pub fn parameters(&self) -> &Arc<BfvParameters> {
        &self.params
    }

    /// s restricted to the ciphertext primes, NTT form.
    pub(crate) fn ntt_q(&self) -> RnsPoly {
        let mut s = self.ntt.clone();
        s.truncate_limbs(self.params.q.len());
        s
    }
}

/// A seeded RLWE sample over the first `limbs` limbs of the key basis: b = -a s + e (+ extra),
/// a expanded from the seed stream, e drawn from `rng`.
fn rlwe_sample<R: RngCore + CryptoRng>(
    sk: &SecretKey,
    stream: &mut ChaCha20Rng,
    limbs: usize,
    extra: Option<&RnsPoly>,
    rng: &mut R,
) -> (RnsPoly, RnsPoly) {
    let params = &sk.params;
    let n = params.degree();
    let basis = &params.key;
    let a = RnsPoly::sample_uniform(stream, n, basis, limbs, Representation::Ntt);
    let mut e = RnsPoly::from_signed(&sample_error(rng, n), basis, limbs);
    e.forward_ntt(basis);
    let mut s = sk.ntt.clone();
    s.truncate_limbs(limbs);
    let mut b = RnsPoly::zero(n, limbs, Representation::Ntt);
    b.mul_accumulate_ntt(&a, &s, basis);
    b.negate(basis);
    b.add_assign(&e, basis);
    if let Some(x) = extra {
        b.add_assign(x, basis);
    }
    (b, a)
}

/// The public key (b, a) = (-a s + e, a) over the ciphertext primes, a from a seed.
#[derive(Clone, Debug)]
pub struct PublicKey {
    pub(crate) params: Arc<BfvParameters>,
    pub(crate) seed: [u8; 32],
    pub(crate) b: RnsPoly,
    pub(crate) a: RnsPoly,
}

impl PublicKey {
    /// Bytes this key holds in memory (its polynomials, expanded), what a cache that keeps
    /// many clients' keys must weigh rather than the serialized size.
    pub fn resident_bytes(&self) -> usize {
        8 * (self.b.data().len() + self.a.data().len())
    }

    /// Derives a public key from a secret key (OS-seeded randomness).
    pub fn generate(sk: &SecretKey) -> Self {
        Self::generate_with_rng(sk, &mut os_rng())
    }

    /// Derives a public key from a secret key, its seed and error drawn from `rng`.
    pub fn generate_with_rng<R: RngCore + CryptoRng>(sk: &SecretKey, rng: &mut R) -> Self {
        let seed = draw_seed(rng);
        let (b, a) = rlwe_sample(
            sk,
            &mut ChaCha20Rng::from_seed(seed),
            sk.params.q.len(),
            None,
            rng,
        );
        Self {
            params: sk.params.clone(),
            seed,
            b,
            a,
        }
    }

    /// Rebuilds a key from its seed and b half (deserialization).
    pub(crate) fn from_parts(params: &Arc<BfvParameters>, seed: [u8; 32], b: RnsPoly) -> Self {
        let a = RnsPoly::sample_uniform(
            &mut ChaCha20Rng::from_seed(seed),
            params.degree(),
            &params.key,
            params.q.len(),
            Representation::Ntt,
        );
        Self {
            params: params.clone(),
            seed,
            b,
            a,
        }
    }

    /// The parameter set.
    pub fn parameters(&self) -> &Arc<BfvParameters> {
        &self.params
    }
}

/// A key that switches a ciphertext component from a secret s' to s: for each ciphertext prime
/// q_i (one digit), an RLWE sample over the key basis encrypting special · s' in limb i.
#[derive(Clone, Debug)]
pub struct KeySwitchingKey {
    pub(crate) params: Arc<BfvParameters>,
    pub(crate) seed: [u8; 32],
    /// b_i, NTT form over the key basis.
    pub(crate) b: Vec<RnsPoly>,
    /// a_i, NTT form over the key basis, expanded from the seed.
    pub(crate) a: Vec<RnsPoly>,
}

impl KeySwitchingKey {
    /// Bytes held in memory: every polynomial, both halves expanded.
    fn resident_bytes(&self) -> usize {
        8 * self
            .b
            .iter()
            .chain(&self.a)
            .map(|p| p.data().len())
            .sum::<usize>()
    }

    /// A key switching from `from` (NTT form over the key basis) to the secret key `sk`.
    fn generate<R: RngCore + CryptoRng>(sk: &SecretKey, from: &RnsPoly, rng: &mut R) -> Self {
        let params = &sk.params;
        let seed = draw_seed(rng);
        let mut stream = ChaCha20Rng::from_seed(seed);
        let limbs = params.key.len();
        let n = params.degree();
        let mut b = Vec::with_capacity(params.q.len());
        let mut a = Vec::with_capacity(params.q.len());
        for i in 0..params.q.len() {
            // special · s' in limb i only.
            let mut gadget = RnsPoly::zero(n, limbs, Representation::Ntt);
            let m = params.q.moduli()[i];
            let sp = params.special_mod_q[i];
            let sps = m.shoup(sp);
            for (g, &x) in gadget.limb_mut(i).iter_mut().zip(from.limb(i)) {
                *g = m.mul_shoup(x, sp, sps);
            }
            let (bi, ai) = rlwe_sample(sk, &mut stream, limbs, Some(&gadget), rng);
            b.push(bi);
            a.push(ai);
        }
        Self {
            params: params.clone(),
            seed,
            b,
            a,
        }
    }

    /// Rebuilds a key from its seed and b halves (deserialization).
    pub(crate) fn from_parts(params: &Arc<BfvParameters>, seed: [u8; 32], b: Vec<RnsPoly>) -> Self {
        let mut stream = ChaCha20Rng::from_seed(seed);
        let a = (0..b.len())
            .map(|_| {
                RnsPoly::sample_uniform(
                    &mut stream,
                    params.degree(),
                    &params.key,
                    params.key.len(),
                    Representation::Ntt,
                )
            })
            .collect();
        Self {
            params: params.clone(),
            seed,
            b,
            a,
        }
    }
}

/// The relinearization key: switches s² to s.
#[derive(Clone, Debug)]
pub struct RelinearizationKey {
    pub(crate) ksk: KeySwitchingKey,
}

impl RelinearizationKey {
    /// Derives the relinearization key from a secret key (OS-seeded randomness).
    pub fn generate(sk: &SecretKey) -> Self {
        Self::generate_with_rng(sk, &mut os_rng())
    }

    /// Derives the relinearization key from a secret key, randomness from `rng`.
    pub fn generate_with_rng<R: RngCore + CryptoRng>(sk: &SecretKey, rng: &mut R) -> Self {
        let mut s2 = sk.ntt.clone();
        s2.mul_assign_ntt(&sk.ntt, &sk.params.key);
        Self {
            ksk: KeySwitchingKey::generate(sk, &s2, rng),
        }
    }

    /// The parameter set.
    pub fn parameters(&self) -> &Arc<BfvParameters> {
        &self.ksk.params
    }

    /// Bytes this key holds in memory (see [`PublicKey::resident_bytes`]).
    pub fn resident_bytes(&self) -> usize {
        self.ksk.resident_bytes()
    }
}

/// Applies X -> X^g to signed coefficients.
pub(crate) fn automorphism_signed(coeffs: &[i64], g: u64) -> Vec<i64> {
    let n = coeffs.len();
    let mut out = vec![0i64; n];
    for (i, &c) in coeffs.iter().enumerate() {
        let j = (i as u64 * g) % (2 * n as u64);
        if j < n as u64 {
            out[j as usize] = c;
        } else {
            out[(j - n as u64) as usize] = -c;
        }
    }
    out
}

/// Galois keys for a chosen set of Galois elements (row rotations, column swap).
#[derive(Clone, Debug)]
pub struct GaloisKeys {
    pub(crate) params: Arc<BfvParameters>,
    pub(crate) keys: BTreeMap<u64, KeySwitchingKey>,
}

impl GaloisKeys {
    /// Bytes these keys hold in memory (see [`PublicKey::resident_bytes`]).
    pub fn resident_bytes(&self) -> usize {
        self.keys
            .values()
            .map(KeySwitchingKey::resident_bytes)
            .sum()
    }

    /// Keys for the given row-rotation steps (left positive) and, if asked, the column swap.
    /// Only what is asked for is generated: each key is as large as the relinearization key.
    pub fn generate(sk: &SecretKey, steps: &[i64], column_swap: bool) -> Self {
        Self::generate_with_rng(sk, steps, column_swap, &mut os_rng())
    }

    /// [`Self::generate`] with randomness from `rng`.
    pub fn generate_with_rng<R: RngCore + CryptoRng>(
        sk: &SecretKey,
        steps: &[i64],
        column_swap: bool,
        rng: &mut R,
    ) -> Self {
        let params = &sk.params;
        let mut elements: Vec<u64> = steps
            .iter()
            .map(|&s| params.galois_element_for_step(s))
            .collect();
        if column_swap {
            elements.push(params.galois_element_column_swap());
        }
        Self::for_valid_elements(sk, elements, rng)
    }

    /// Keys for exactly the Galois elements a plan lists (what `/plan` tells a client to
    /// generate). Element 1 (the identity) needs no key; any other must be odd and below 2N.
    pub fn generate_for_elements(sk: &SecretKey, elements: &[u64]) -> Result<Self, Error> {
        Self::generate_for_elements_with_rng(sk, elements, &mut os_rng())
    }

    /// [`Self::generate_for_elements`] with randomness from `rng`.
    pub fn generate_for_elements_with_rng<R: RngCore + CryptoRng>(
        sk: &SecretKey,
        elements: &[u64],
        rng: &mut R,
    ) -> Result<Self, Error> {
        let two_n = 2 * sk.params.degree() as u64;
        if let Some(&element) = elements.iter().find(|&&g| g % 2 == 0 || g >= two_n) {
            return Err(Error::InvalidGaloisElement {
                element,
                degree: sk.params.degree(),
            });
        }
        Ok(Self::for_valid_elements(sk, elements.to_vec(), rng))
    }

    fn for_valid_elements<R: RngCore + CryptoRng>(
        sk: &SecretKey,
        mut elements: Vec<u64>,
        rng: &mut R,
    ) -> Self {
        let params = &sk.params;
        elements.retain(|&g| g != 1);
        elements.sort_unstable();
        elements.dedup();
        let keys = elements
            .into_iter()
            .map(|g| {
                let sg = automorphism_signed(&sk.coeffs, g);
                let mut from = RnsPoly::from_signed(&sg, &params.key, params.key.len());
                from.forward_ntt(&params.key);
                (g, KeySwitchingKey::generate(sk, &from, rng))
            })
            .collect();
        Self {
            params: params.clone(),
            keys,
        }
    }

    /// The Galois elements keys exist for.
    pub fn elements(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.keys().copied()
    }

    /// The parameter set.
    pub fn parameters(&self) -> &Arc<BfvParameters> {
        &self.params
    }
}
