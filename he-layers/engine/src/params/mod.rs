//! BFV parameter sets: validation against the HomomorphicEncryption.org security table,
//! presets, fingerprints, and the tables every algorithm precomputes from them.

use super::arith::{
    generate_primes, is_prime, BaseConverter, Modulus, NttOperator, RnsBasis, RnsScaler,
};
use num_bigint::BigUint;
use num_traits::ToPrimitive;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::{Arc, Mutex, Weak};

/// Whether a parameter set without a security check was announced on stderr already.
static INSECURE_WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

mod error;
mod security;

pub use error::ParameterError;
pub use security::SecurityLevel;

/// Smallest supported ring degree.
pub const MIN_DEGREE: usize = 2048;
/// Largest supported ring degree.
pub const MAX_DEGREE: usize = 32768;
/// At most this many primes, the key-switching prime included (the 128-bit preset at
/// N = 32768 uses 18), whatever the security level.
pub const MAX_COEFF_MODULI: usize = 20;
/// At most this many bits of modulus, the key-switching prime included: the 128-bit bound at
/// the largest degree, whatever the security level, so that even an unchecked set cannot make
/// a server build arbitrarily large tables.
pub const MAX_COEFF_MODULUS_BITS: u32 = 881;
/// Bits of the primes of the auxiliary multiplication basis (below 2^50: the IFMA NTT path).
const AUX_PRIME_BITS: u32 = 50;

/// The serializable description of a parameter set: what a user writes and what travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterSpec {
    /// Ring degree N.
    pub degree: usize,
    /// Plaintext modulus t.
    pub plain_modulus: u64,
    /// Ciphertext primes q_i.
    pub moduli: Vec<u64>,
    /// Key-switching special prime.
    pub special_modulus: u64,
    /// Requested security level.
    pub security: SecurityLevel,
}

/// A validated BFV parameter set with every precomputed table the algorithms need.
/// Objects hold it behind an `Arc`.
pub struct BfvParameters {
    spec: ParameterSpec,
    fingerprint: [u8; 32],
    pub(crate) q: RnsBasis,
    pub(crate) key: RnsBasis,
    pub(crate) aux: RnsBasis,
    pub(crate) plain: Modulus,
    pub(crate) plain_ntt: Option<NttOperator>,
    /// [floor(Q/t)]_{q_i} with Shoup companions.
    pub(crate) delta: Vec<(u64, u64)>,
    /// Q mod t.
    pub(crate) q_mod_t: u64,
    pub(crate) decrypt_scaler: RnsScaler,
    pub(crate) q_to_aux: BaseConverter,
    pub(crate) mul_scaler: RnsScaler,
    pub(crate) aux_to_q: BaseConverter,
    /// [special]_{q_i}.
    pub(crate) special_mod_q: Vec<u64>,
    /// [special^{-1}]_{q_i} with Shoup companions.
    pub(crate) special_inv_mod_q: Vec<(u64, u64)>,
    /// index_of_exponent[e] = NTT slot evaluating at ψ^e (e odd), for every prime of the
    /// key basis.
    pub(crate) ntt_index_of_exponent: Vec<u32>,
    /// For the batch encoder: NTT slot (mod t) of each plaintext slot.
    pub(crate) slot_to_plain_ntt: Vec<u32>,
    log2_q: f64,
    /// The same set over fewer ciphertext primes, built on first use (index k-1: k primes).
    levels: Mutex<Vec<Option<Arc<BfvParameters>>>>,
}

impl fmt::Debug for BfvParameters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BfvParameters")
            .field("degree", &self.spec.degree)
            .field("plain_modulus", &self.spec.plain_modulus)
            .field("moduli", &self.spec.moduli)
            .field("special_modulus", &self.spec.special_modulus)
            .field("security", &self.spec.security)
            .finish()
    }
}

impl Eq for BfvParameters {}

impl PartialEq for BfvParameters {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

fn bit_len(x: u64) -> u32 {
    64 - x.leading_zeros()
}

impl BfvParameters {
    /// Builds a parameter set from explicit primes. Sets are shared: while any object (a
    /// cached key set, a cached model, a request) holds a set, asking again for the same
    /// specification returns that same object and its tables, so every cache uses one object
    /// per fingerprint. Only weak references are kept: a set nobody holds is freed.
    pub fn try_new(spec: ParameterSpec) -> Result<Arc<Self>, ParameterError> {
        static SHARED: Mutex<Vec<Weak<BfvParameters>>> = Mutex::new(Vec::new());
        let find = |shared: &[Weak<BfvParameters>], spec: &ParameterSpec| {
            shared
                .iter()
                .filter_map(Weak::upgrade)
                .find(|p| &p.spec == spec)
        };
        if let Some(p) = find(&SHARED.lock().unwrap_or_else(|e| e.into_inner()), &spec) {
            return Ok(p);
        }
        let built = Self::build(spec)?;
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = find(&shared, &built.spec) {
            return Ok(p);
        }
        shared.retain(|w| w.strong_count() > 0);
        shared.push(Arc::downgrade(&built));
        Ok(built)
    }

    fn build(spec: ParameterSpec) -> Result<Arc<Self>, ParameterError> {
        let n = spec.degree;
        if !n.is_power_of_two() || !(MIN_DEGREE..=MAX_DEGREE).contains(&n) {
            return Err(ParameterError::Degree(n));
        }
        if spec.moduli.is_empty() {
            return Err(ParameterError::Modulus {
                value: 0,
                reason: "at least one ciphertext modulus is needed".into(),
            });
        }
        let two_n = 2 * n as u64;
        let mut all: Vec<u64> = spec.moduli.clone();
        all.push(spec.special_modulus);
        if all.len() > MAX_COEFF_MODULI {
            return Err(ParameterError::Modulus {
                value: all.len() as u64,
                reason: format!(
                    "that many primes (key-switching prime included); at most {MAX_COEFF_MODULI}"
                ),
            });
        }
        let capped_bits: u32 = all.iter().map(|&q| bit_len(q)).sum();
        if capped_bits > MAX_COEFF_MODULUS_BITS {
            return Err(ParameterError::Modulus {
                value: u64::from(capped_bits),
                reason: format!(
                    "bits of modulus in all; at most {MAX_COEFF_MODULUS_BITS} whatever the \
                     security level"
                ),
            });
        }
        for (i, &q) in all.iter().enumerate() {
            let bad = |reason: &str| ParameterError::Modulus {
                value: q,
                reason: reason.into(),
            };
            if bit_len(q) > 62 {
                return Err(bad("wider than 62 bits"));
            }
            if !is_prime(q) {
                return Err(bad("not prime"));
            }
            if q % two_n != 1 {
                return Err(bad(&format!(
                    "not ≡ 1 mod 2N = {two_n}, so no negacyclic NTT"
                )));
            }
            if all[..i].contains(&q) {
                return Err(bad("repeated"));
            }
        }
        let max_q = spec.moduli.iter().copied().max().unwrap_or(0);
        if spec.special_modulus < max_q {
            return Err(ParameterError::Modulus {
                value: spec.special_modulus,
                reason: format!(
                    "the key-switching prime must be at least the largest ciphertext prime ({max_q}), \
                     or key switching adds more noise than it should"
                ),
            });
        }
        let t = spec.plain_modulus;
        let bad_t = |reason: String| ParameterError::PlainModulus { value: t, reason };
        if t < 2 || bit_len(t) > 60 {
            return Err(bad_t("must be between 2 and 2^60".into()));
        }
        if let Some(q) = all.iter().find(|&&q| q % t == 0 || t.is_multiple_of(q)) {
            return Err(bad_t(format!(
                "shares a factor with the ciphertext modulus {q}"
            )));
        }
        let q_product: BigUint = spec.moduli.iter().fold(BigUint::from(1u32), |a, &q| a * q);
        let log2_q = spec.moduli.iter().map(|&q| (q as f64).log2()).sum::<f64>();
        if log2_q < (t as f64).log2() + 8.0 {
            return Err(bad_t(format!(
                "too large for a {log2_q:.0}-bit ciphertext modulus: a fresh ciphertext would have \
                 no noise budget; use a smaller t or larger moduli"
            )));
        }

        // Security.
        let total_bits: u32 = all.iter().map(|&q| bit_len(q)).sum();
        match spec.security.max_modulus_bits(n) {
            Some(bound) if total_bits > bound => {
                let next = (n * 2 <= MAX_DEGREE)
                    .then(|| spec.security.max_modulus_bits(n * 2))
                    .flatten();
                let fix = match next {
                    Some(b) => format!(
                        "remove at least {} bits of modulus, or use N={} (bound {b} bits)",
                        total_bits - bound,
                        n * 2
                    ),
                    None => format!("remove at least {} bits of modulus", total_bits - bound),
                };
                return Err(ParameterError::Insecure {
                    bits: total_bits,
                    bound,
                    degree: n,
                    level: spec.security,
                    fix,
                });
            }
            Some(_) => {}
            // Once per process: these sets can come from untrusted bytes (a key upload, before
            // the server refuses them), and a warning per set would let anyone flood the log.
            None if !INSECURE_WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) => eprintln!(
                "warning: BFV parameters N={n} with a {total_bits}-bit modulus are used WITHOUT a \
                 security check (security \"none\"); they may offer {} security. Never use them \
                 for real data. (Said once; later such sets are not announced.)",
                SecurityLevel::achieved(n, total_bits)
            ),
            None => {}
        }

        // Tables.
        let internal = ParameterError::Internal;
        let q = RnsBasis::try_new(n, &spec.moduli).ok_or(internal("ciphertext basis"))?;
        let key = RnsBasis::try_new(n, &all).ok_or(internal("key basis"))?;
        let exps = q.ntts()[0].exponents().clone();
        if key.ntts().iter().any(|op| op.exponents()[..] != exps[..]) {
            return Err(internal("NTT slot orders differ between primes"));
        }
        let mut ntt_index_of_exponent = vec![u32::MAX; 2 * n];
        for (k, &e) in exps.iter().enumerate() {
            ntt_index_of_exponent[e as usize] = k as u32;
        }

        // Auxiliary basis P for multiplication: P > t N Q with two bits of margin.
        let needed = log2_q + (t as f64).log2() + (n as f64).log2() + 2.0;
        let mut aux_primes: Vec<u64> = Vec::new();
        let mut aux_bits = 0.0;
        while aux_bits < needed {
            let mut exclude = all.clone();
            exclude.extend(&aux_primes);
            exclude.push(t);
            let p = generate_primes(AUX_PRIME_BITS, n, 1, &exclude).ok_or(
                ParameterError::NotEnoughPrimes {
                    bits: AUX_PRIME_BITS,
                    two_n: 2 * n,
                },
            )?[0];
            aux_bits += (p as f64).log2();
            aux_primes.push(p);
        }
        let aux = RnsBasis::try_new(n, &aux_primes).ok_or(internal("auxiliary basis"))?;

        let plain = Modulus::try_new(t).ok_or(internal("plaintext modulus"))?;
        let plain_ntt = if is_prime(t) && t % two_n == 1 {
            NttOperator::try_new(n, t, None)
        } else {
            None
        };
        let mut slot_to_plain_ntt = Vec::new();
        if let Some(op) = &plain_ntt {
            let mut index = vec![u32::MAX; 2 * n];
            for (k, &e) in op.exponents().iter().enumerate() {
                index[e as usize] = k as u32;
            }
            let half = n / 2;
            let m2n = 2 * n as u64;
            let mut g = 1u64;
            let mut row0 = vec![0u32; half];
            let mut row1 = vec![0u32; half];
            for col in 0..half {
                row0[col] = index[g as usize];
                row1[col] = index[(m2n - g) as usize];
                g = g * 3 % m2n;
            }
            slot_to_plain_ntt.extend(row0);
            slot_to_plain_ntt.extend(row1);
            if slot_to_plain_ntt.contains(&u32::MAX) {
                return Err(internal("batch encoder slot map"));
            }
        }

        let delta_big = &q_product / t;
        let delta = q
            .moduli()
            .iter()
            .map(|m| {
                let d = (&delta_big % m.value()).to_u64().unwrap_or(0);
                (d, m.shoup(d))
            })
            .collect();
        let q_mod_t = (&q_product % t).to_u64().unwrap_or(0);
        let decrypt_scaler = RnsScaler::new(q.moduli(), q.len(), t, &[plain]);
        let q_to_aux = BaseConverter::new(q.moduli(), aux.moduli());
        let q_and_aux: Vec<Modulus> = q.moduli().iter().chain(aux.moduli()).copied().collect();
        let mul_scaler = RnsScaler::new(&q_and_aux, q.len(), t, aux.moduli());
        let aux_to_q = BaseConverter::new(aux.moduli(), q.moduli());
        let sp = spec.special_modulus;
        let special_mod_q = q.moduli().iter().map(|m| m.reduce(sp)).collect();
        let special_inv_mod_q = q
            .moduli()
            .iter()
            .map(|m| {
                let inv = m.inv(sp).unwrap_or(0);
                (inv, m.shoup(inv))
            })
            .collect();

        let fingerprint = Self::fingerprint_of(&spec);
        Ok(Arc::new(Self {
            spec,
            fingerprint,
            q,
            key,
            aux,
            plain,
            plain_ntt,
            delta,
            q_mod_t,
            decrypt_scaler,
            q_to_aux,
            mul_scaler,
            aux_to_q,
            special_mod_q,
            special_inv_mod_q,
            ntt_index_of_exponent,
            slot_to_plain_ntt,
            log2_q,
            levels: Mutex::new(Vec::new()),
        }))
    }

    /// Builds a parameter set whose primes are generated from bit sizes: the largest primes
    /// ≡ 1 mod 2N of each size, the special prime taking the largest of its size.
    pub fn with_bit_sizes(
        degree: usize,
        plain_modulus: u64,
        moduli_bits: &[u32],
        special_bits: u32,
        security: SecurityLevel,
    ) -> Result<Arc<Self>, ParameterError> {
        if !degree.is_power_of_two() || !(MIN_DEGREE..=MAX_DEGREE).contains(&degree) {
            return Err(ParameterError::Degree(degree));
        }
        let mut sizes: Vec<u32> = vec![special_bits];
        sizes.extend_from_slice(moduli_bits);
        let mut chosen = vec![0u64; sizes.len()];
        let mut distinct = sizes.clone();
        distinct.sort_unstable();
        distinct.dedup();
        for bits in distinct {
            let idx: Vec<usize> = (0..sizes.len()).filter(|&i| sizes[i] == bits).collect();
            let primes = generate_primes(bits, degree, idx.len(), &[plain_modulus]).ok_or(
                ParameterError::NotEnoughPrimes {
                    bits,
                    two_n: 2 * degree,
                },
            )?;
            for (i, p) in idx.into_iter().zip(primes) {
                chosen[i] = p;
            }
        }
        let special_modulus = chosen[0];
        Self::try_new(ParameterSpec {
            degree,
            plain_modulus,
            moduli: chosen[1..].to_vec(),
            special_modulus,
            security,
        })
    }

    /// The 128-bit preset for degree n with plaintext modulus t: ciphertext primes of at most
    /// 50 bits (the fast NTT path) filling the standard's bound exactly.
    pub fn preset(degree: usize, plain_modulus: u64) -> Result<Arc<Self>, ParameterError> {
        let (moduli, special): (Vec<u32>, u32) = match degree {
            2048 => (vec![27], 27),
            4096 => (vec![36, 36], 37),
            8192 => (vec![43, 43, 44, 44], 44),
            16384 => (vec![48, 48, 48, 48, 49, 49, 49, 49], 50),
            32768 => {
                let mut v = vec![49; 16];
                v.push(48);
                (v, 49)
            }
            n => return Err(ParameterError::NoPreset(n)),
        };
        Self::with_bit_sizes(
            degree,
            plain_modulus,
            &moduli,
            special,
            SecurityLevel::Bits128,
        )
    }

    /// The largest prime of `bits` bits that is ≡ 1 mod 2N (a plaintext modulus that allows
    /// batching).
    pub fn batching_plain_modulus(degree: usize, bits: u32) -> Option<u64> {
        generate_primes(bits, degree, 1, &[]).map(|v| v[0])
    }

    fn fingerprint_of(spec: &ParameterSpec) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"he-layers/bfv-parameters/v1");
        h.update((spec.degree as u64).to_le_bytes());
        h.update(spec.plain_modulus.to_le_bytes());
        h.update((spec.moduli.len() as u64).to_le_bytes());
        for q in &spec.moduli {
            h.update(q.to_le_bytes());
        }
        h.update(spec.special_modulus.to_le_bytes());
        h.finalize().into()
    }

    /// The user-level description.
    pub fn spec(&self) -> &ParameterSpec {
        &self.spec
    }

    /// Ring degree N (also the number of batching slots).
    pub fn degree(&self) -> usize {
        self.spec.degree
    }

    /// Plaintext modulus t.
    pub fn plain_modulus(&self) -> u64 {
        self.spec.plain_modulus
    }

    /// Ciphertext primes.
    pub fn moduli(&self) -> &[u64] {
        &self.spec.moduli
    }

    /// Key-switching special prime.
    pub fn special_modulus(&self) -> u64 {
        self.spec.special_modulus
    }

    /// The requested security level.
    pub fn security(&self) -> SecurityLevel {
        self.spec.security
    }

    /// Total modulus bits counted against the security bound (special prime included).
    pub fn total_modulus_bits(&self) -> u32 {
        self.spec
            .moduli
            .iter()
            .chain([&self.spec.special_modulus])
            .map(|&q| bit_len(q))
            .sum()
    }

    /// The highest standard level these parameters reach.
    pub fn achieved_security(&self) -> SecurityLevel {
        SecurityLevel::achieved(self.degree(), self.total_modulus_bits())
    }

    /// log2 of the ciphertext modulus Q.
    pub fn log2_q(&self) -> f64 {
        self.log2_q
    }

    /// A SHA-256 fingerprint of (N, t, moduli, special prime).
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The fingerprint's first 8 bytes in hex, for logs and messages.
    pub fn fingerprint_hex(&self) -> String {
        self.fingerprint[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether t allows batching (prime and ≡ 1 mod 2N).
    pub fn supports_batching(&self) -> bool {
        self.plain_ntt.is_some()
    }

    /// The auxiliary primes used by ciphertext multiplication.
    pub fn aux_moduli(&self) -> Vec<u64> {
        self.aux.moduli().iter().map(|m| m.value()).collect()
    }

    /// The number of ciphertext primes (the level of a fresh ciphertext).
    pub fn level(&self) -> usize {
        self.spec.moduli.len()
    }

    /// The same parameter set over its first `level` ciphertext primes only (same N, t,
    /// special prime and security): where modulus switching takes a ciphertext. Built once
    /// and shared; `level == self.level()` is the set itself.
    pub fn at_level(self: &Arc<Self>, level: usize) -> Result<Arc<Self>, ParameterError> {
        let top = self.level();
        if level == top {
            return Ok(self.clone());
        }
        if level == 0 || level > top {
            return Err(ParameterError::Level { level, top });
        }
        let mut levels = self.levels.lock().unwrap_or_else(|e| e.into_inner());
        if levels.len() < top {
            levels.resize(top, None);
        }
        if let Some(p) = &levels[level - 1] {
            return Ok(p.clone());
        }
        let mut spec = self.spec.clone();
        spec.moduli.truncate(level);
        let p = Self::try_new(spec)?;
        levels[level - 1] = Some(p.clone());
        Ok(p)
    }

    /// Whether this set is `top` restricted to its first ciphertext primes (or `top` itself).
    pub fn is_level_of(&self, top: &BfvParameters) -> bool {
        let (a, b) = (&self.spec, &top.spec);
        a.degree == b.degree
            && a.plain_modulus == b.plain_modulus
            && a.special_modulus == b.special_modulus
            && a.security == b.security
            && a.moduli.len() <= b.moduli.len()
            && b.moduli.starts_with(&a.moduli)
    }

    /// Galois element of a row rotation by `step` slots to the left (negative: right).
    pub fn galois_element_for_step(&self, step: i64) -> u64 {
        let half = (self.degree() / 2) as i64;
        let k = step.rem_euclid(half) as u64;
        Modulus::try_new(2 * self.degree() as u64)
            .map(|m| m.pow(3, k))
            .unwrap_or(1)
    }

    /// Galois element that swaps the two rows of slots.
    pub fn galois_element_column_swap(&self) -> u64 {
        2 * self.degree() as u64 - 1
    }

    /// The NTT-slot permutation applying X -> X^g: new[k] = old[perm[k]].
    pub(crate) fn ntt_galois_permutation(&self, g: u64) -> Vec<u32> {
        let m2n = 2 * self.degree() as u64;
        self.q.ntts()[0]
            .exponents()
            .iter()
            .map(|&e| self.ntt_index_of_exponent[((e as u64 * g) % m2n) as usize])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_per_specification_while_held_and_levels_are_prefixes() {
        let a = BfvParameters::preset(4096, 65537).unwrap();
        let b = BfvParameters::try_new(a.spec().clone()).unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "the same specification gives the same object"
        );
        let low = a.at_level(1).unwrap();
        assert!(Arc::ptr_eq(&low, &a.at_level(1).unwrap()));
        assert!(low.is_level_of(&a) && !a.is_level_of(&low));
        assert_eq!(low.moduli(), &a.moduli()[..1]);
        assert_ne!(low.fingerprint(), a.fingerprint());
        assert!(a.at_level(0).is_err() && a.at_level(a.level() + 1).is_err());
    }

    #[test]
    fn presets_meet_the_128_bit_bound_exactly() {
        for n in [2048usize, 4096, 8192, 16384] {
            let t_bits = if n == 2048 { 14 } else { 20 };
            let t = BfvParameters::batching_plain_modulus(n, t_bits).unwrap();
            let p = BfvParameters::preset(n, t).unwrap();
            assert_eq!(
                p.total_modulus_bits(),
                SecurityLevel::Bits128.max_modulus_bits(n).unwrap()
            );
            assert!(p.supports_batching());
            assert!(p.moduli().iter().all(|&q| q < 1 << 50));
            assert_eq!(p.achieved_security(), SecurityLevel::Bits128);
            let aux_bits: f64 = p.aux_moduli().iter().map(|&q| (q as f64).log2()).sum();
            assert!(aux_bits > p.log2_q() + (t as f64).log2() + (n as f64).log2() + 1.0);
        }
    }

    #[test]
    fn over_the_bound_is_refused_with_the_fix() {
        let t = 65537;
        let err =
            BfvParameters::with_bit_sizes(8192, t, &[44, 44, 44, 44], 50, SecurityLevel::Bits128)
                .unwrap_err();
        let ParameterError::Insecure { bits, bound, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((*bits, *bound), (226, 218));
        let msg = err.to_string();
        assert!(msg.contains("218-bit bound"), "{msg}");
        assert!(msg.contains("remove at least 8 bits"), "{msg}");
        assert!(msg.contains("N=16384"), "{msg}");
        // The same moduli pass at N = 16384, and at 192 bits fail for N = 8192.
        assert!(BfvParameters::with_bit_sizes(
            16384,
            t,
            &[44, 44, 44, 44],
            50,
            SecurityLevel::Bits128
        )
        .is_ok());
        assert!(matches!(
            BfvParameters::with_bit_sizes(8192, t, &[43, 43, 44, 44], 44, SecurityLevel::Bits192),
            Err(ParameterError::Insecure { bound: 152, .. })
        ));
    }

    #[test]
    fn bad_moduli_are_refused() {
        let good = BfvParameters::preset(4096, 65537).unwrap().spec().clone();
        let mut s = good.clone();
        s.moduli[0] += 2;
        assert!(matches!(
            BfvParameters::try_new(s),
            Err(ParameterError::Modulus { .. })
        ));
        let mut s = good.clone();
        s.moduli[1] = s.moduli[0];
        assert!(matches!(
            BfvParameters::try_new(s),
            Err(ParameterError::Modulus { .. })
        ));
        let mut s = good.clone();
        s.degree = 3000;
        assert_eq!(
            BfvParameters::try_new(s).unwrap_err(),
            ParameterError::Degree(3000)
        );
        let mut s = good.clone();
        s.plain_modulus = s.moduli[0];
        assert!(matches!(
            BfvParameters::try_new(s),
            Err(ParameterError::PlainModulus { .. })
        ));
        let mut s = good;
        s.special_modulus = generate_primes(30, s.degree, 1, &[]).unwrap()[0];
        let err = BfvParameters::try_new(s).unwrap_err();
        assert!(err.to_string().contains("key-switching prime"), "{err}");
    }

    #[test]
    fn fingerprint_is_stable_and_distinguishes_sets() {
        let a = BfvParameters::preset(4096, 65537).unwrap();
        let b = BfvParameters::preset(4096, 65537).unwrap();
        let c = BfvParameters::preset(4096, 40961).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert_eq!(a.fingerprint_hex().len(), 16);
    }
}
