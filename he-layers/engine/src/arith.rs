//! Modular arithmetic: word-sized moduli, prime generation, the NTT wrapper, and exact RNS
//! base conversion and scaling.
//!
//! Everything here works on plain `u64` residues; polynomials live in [`super::poly`].

use num_bigint::BigUint;
use num_traits::{One, ToPrimitive, Zero};
use std::collections::HashMap;
use std::sync::Arc;

/// Largest modulus this module accepts: Shoup products and lazy reductions need 2p < 2^63.
pub const MAX_MODULUS_BITS: u32 = 62;

/// A word-sized modulus with the constants for Barrett and Shoup reductions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modulus {
    p: u64,
    /// floor(2^128 / p), low and high words.
    barrett_lo: u64,
    barrett_hi: u64,
}

impl Modulus {
    /// A modulus `2 <= p < 2^62`; `None` outside that range.
    pub fn try_new(p: u64) -> Option<Self> {
        if p < 2 || p >> MAX_MODULUS_BITS != 0 {
            return None;
        }
        let r = u128::MAX / p as u128 + u128::from((u128::MAX % p as u128) + 1 == p as u128);
        Some(Self {
            p,
            barrett_lo: r as u64,
            barrett_hi: (r >> 64) as u64,
        })
    }

    /// The modulus value.
    #[inline]
    pub fn value(&self) -> u64 {
        self.p
    }

    /// Number of significant bits of p.
    pub fn bits(&self) -> u32 {
        64 - self.p.leading_zeros()
    }

    /// (a + b) mod p for a, b < p.
    #[inline]
    pub fn add(&self, a: u64, b: u64) -> u64 {
        let s = a + b;
        if s >= self.p {
            s - self.p
        } else {
            s
        }
    }

    /// (a - b) mod p for a, b < p.
    #[inline]
    pub fn sub(&self, a: u64, b: u64) -> u64 {
        if a >= b {
            a - b
        } else {
            a + self.p - b
        }
    }

    /// (-a) mod p for a < p.
    #[inline]
    pub fn neg(&self, a: u64) -> u64 {
        if a == 0 {
            0
        } else {
            self.p - a
        }
    }

    /// x mod p for any 128-bit x (Barrett with floor(2^128/p)).
    #[inline]
    pub fn reduce_u128(&self, x: u128) -> u64 {
        let x_lo = x as u64 as u128;
        let x_hi = (x >> 64) as u64 as u128;
        let (r_lo, r_hi) = (self.barrett_lo as u128, self.barrett_hi as u128);
        // Upper 128 bits of the 256-bit product x * r.
        let lo_lo = x_lo * r_lo;
        let lo_hi = x_lo * r_hi;
        let hi_lo = x_hi * r_lo;
        let mid = (lo_lo >> 64) + (lo_hi as u64 as u128) + (hi_lo as u64 as u128);
        let q = x_hi * r_hi + (lo_hi >> 64) + (hi_lo >> 64) + (mid >> 64);
        // x - q p < 2p < 2^64.
        let r = x.wrapping_sub(q.wrapping_mul(self.p as u128)) as u64;
        if r >= self.p {
            r - self.p
        } else {
            r
        }
    }

    /// x mod p for any u64.
    #[inline]
    pub fn reduce(&self, x: u64) -> u64 {
        if x < self.p {
            x
        } else {
            self.reduce_u128(x as u128)
        }
    }

    /// x mod p for a signed integer, in [0, p).
    #[inline]
    pub fn reduce_i64(&self, x: i64) -> u64 {
        let r = self.reduce(x.unsigned_abs());
        if x < 0 {
            self.neg(r)
        } else {
            r
        }
    }

    /// x mod p for a signed 128-bit integer, in [0, p).
    #[inline]
    pub fn reduce_i128(&self, x: i128) -> u64 {
        let r = self.reduce_u128(x.unsigned_abs());
        if x < 0 {
            self.neg(r)
        } else {
            r
        }
    }

    /// a b mod p for a, b < 2^64.
    #[inline]
    pub fn mul(&self, a: u64, b: u64) -> u64 {
        self.reduce_u128(a as u128 * b as u128)
    }

    /// The Shoup companion floor(w 2^64 / p) of a constant w < p.
    #[inline]
    pub fn shoup(&self, w: u64) -> u64 {
        (((w as u128) << 64) / self.p as u128) as u64
    }

    /// a w mod p for any a < 2^64, with w < p and its Shoup companion.
    #[inline]
    pub fn mul_shoup(&self, a: u64, w: u64, w_shoup: u64) -> u64 {
        let q = ((a as u128 * w_shoup as u128) >> 64) as u64;
        let r = a.wrapping_mul(w).wrapping_sub(q.wrapping_mul(self.p));
        if r >= self.p {
            r - self.p
        } else {
            r
        }
    }

    /// a^e mod p.
    pub fn pow(&self, mut a: u64, mut e: u64) -> u64 {
        let mut r = 1 % self.p;
        a = self.reduce(a);
        while e > 0 {
            if e & 1 == 1 {
                r = self.mul(r, a);
            }
            a = self.mul(a, a);
            e >>= 1;
        }
        r
    }

    /// The inverse of a mod p, when p is prime and a is not 0 mod p.
    pub fn inv(&self, a: u64) -> Option<u64> {
        let a = self.reduce(a);
        if a == 0 || !is_prime(self.p) {
            return None;
        }
        Some(self.pow(a, self.p - 2))
    }

    /// The centered representative of a < p, in (-p/2, p/2].
    #[inline]
    pub fn center(&self, a: u64) -> i64 {
        if a > self.p / 2 {
            a as i64 - self.p as i64
        } else {
            a as i64
        }
    }
}

/// Deterministic Miller–Rabin for 64-bit integers.
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    const SMALL: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
    for p in SMALL {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    let mut d = n - 1;
    let mut s = 0;
    while d.is_multiple_of(2) {
        d /= 2;
        s += 1;
    }
    let mulmod = |a: u64, b: u64| ((a as u128 * b as u128) % n as u128) as u64;
    let powmod = |mut a: u64, mut e: u64| {
        let mut r = 1u64;
        while e > 0 {
            if e & 1 == 1 {
                r = mulmod(r, a);
            }
            a = mulmod(a, a);
            e >>= 1;
        }
        r
    };
    'witness: for a in SMALL {
        let mut x = powmod(a, d);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mulmod(x, x);
            if x == n - 1 {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

/// The largest `count` primes of exactly `bits` bits that are ≡ 1 mod 2n and not in `exclude`,
/// largest first. `None` if there are not enough of them.
pub fn generate_primes(bits: u32, n: usize, count: usize, exclude: &[u64]) -> Option<Vec<u64>> {
    if !(10..=MAX_MODULUS_BITS).contains(&bits) || n == 0 {
        return None;
    }
    let step = 2 * n as u64;
    let lower = 1u64 << (bits - 1);
    // Largest value < 2^bits that is ≡ 1 mod 2n.
    let mut candidate = ((1u64 << bits) - 1) / step * step + 1;
    if candidate >= 1u64 << bits {
        candidate -= step;
    }
    let mut found = Vec::with_capacity(count);
    while found.len() < count {
        if candidate < lower {
            return None;
        }
        if is_prime(candidate) && !exclude.contains(&candidate) {
            found.push(candidate);
        }
        candidate = candidate.checked_sub(step)?;
    }
    Some(found)
}

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
        super::stats::ntt();
        self.plan.fwd(a);
    }

    /// Inverse transform in place, normalized: NTT slots to coefficients.
    #[inline]
    pub fn backward(&self, a: &mut [u64]) {
        super::stats::ntt();
        self.plan.inv(a);
        self.plan.normalize(a);
    }

    /// acc += a * b slot-wise (all in [0, p)).
    #[inline]
    pub fn mul_accumulate(&self, acc: &mut [u64], a: &[u64], b: &[u64]) {
        self.plan.mul_accumulate(acc, a, b);
    }
}

/// A set of pairwise coprime word-sized moduli, each with its NTT.
#[derive(Debug)]
pub(crate) struct RnsBasis {
    ntts: Vec<NttOperator>,
    moduli: Vec<Modulus>,
    product: BigUint,
}

impl RnsBasis {
    /// A basis for degree n over the given primes.
    pub fn try_new(n: usize, primes: &[u64]) -> Option<Self> {
        let mut ntts: Vec<NttOperator> = Vec::with_capacity(primes.len());
        for &p in primes {
            let hint = ntts.first().map(|op| op.exponents().clone());
            ntts.push(NttOperator::try_new(n, p, hint.as_ref())?);
        }
        let moduli = ntts.iter().map(|o| *o.modulus()).collect();
        let product = primes.iter().fold(BigUint::one(), |acc, &p| acc * p);
        Some(Self {
            ntts,
            moduli,
            product,
        })
    }

    /// Number of moduli.
    #[inline]
    pub fn len(&self) -> usize {
        self.moduli.len()
    }

    /// The moduli.
    #[inline]
    pub fn moduli(&self) -> &[Modulus] {
        &self.moduli
    }

    /// The NTT operators.
    #[inline]
    pub fn ntts(&self) -> &[NttOperator] {
        &self.ntts
    }

    /// The product of the moduli.
    pub fn product(&self) -> &BigUint {
        &self.product
    }
}

fn biguint_mod(x: &BigUint, m: u64) -> u64 {
    (x % m).to_u64().unwrap_or(0)
}

/// Sum of x_i F_i / 2^128 for 64-bit x_i and 128-bit fractions F_i, kept exactly as an integer
/// part and a 128-bit fractional part.
#[derive(Default, Clone, Copy)]
struct FixedPointSum {
    int: u128,
    frac: u128,
}

impl FixedPointSum {
    #[inline]
    fn add_product(&mut self, x: u64, f: u128) {
        let lo = x as u128 * (f as u64) as u128;
        let hi = x as u128 * (f >> 64);
        // x f = hi 2^64 + lo: integer part hi >> 64 plus carries, fraction the low 128 bits.
        let (s, c1) = self.frac.overflowing_add(lo);
        let (s, c2) = s.overflowing_add(hi << 64);
        self.frac = s;
        self.int += (hi >> 64) + c1 as u128 + c2 as u128;
    }

    /// The sum rounded to the nearest integer (ties up).
    #[inline]
    fn round(&self) -> u128 {
        self.int + (self.frac >> 127)
    }
}

/// Exact conversion of residues from one basis to another, giving the centered representative:
/// x in (-Q/2, Q/2] from its residues mod Q, reduced mod every target modulus.
///
/// Uses the fast base conversion with its overflow count v = round(Σ y_i / q_i) computed
/// exactly in 128-bit fixed point, so no floating point and no big integers on the hot path.
#[derive(Debug)]
pub(crate) struct BaseConverter {
    from: Vec<Modulus>,
    to: Vec<Modulus>,
    /// [(Q/q_i)^{-1}]_{q_i} and its Shoup companion.
    inv_punctured: Vec<(u64, u64)>,
    /// floor(2^128 / q_i).
    inv_fraction: Vec<u128>,
    /// [Q/q_i]_{p_j}, indexed [j][i].
    punctured_mod_to: Vec<Vec<u64>>,
    /// [v Q]_{p_j} for v = 0..=len(from), indexed [v][j]: v never exceeds the source count.
    correction: Vec<Vec<u64>>,
    /// How many products may be summed in a u128 before reducing.
    lazy_terms: usize,
}

impl BaseConverter {
    /// A converter from the moduli `from` to the moduli `to`.
    pub fn new(from: &[Modulus], to: &[Modulus]) -> Self {
        let q = from.iter().fold(BigUint::one(), |a, m| a * m.value());
        let mut inv_punctured = Vec::with_capacity(from.len());
        let mut inv_fraction = Vec::with_capacity(from.len());
        let mut punctured = Vec::with_capacity(from.len());
        for m in from {
            let qi = &q / m.value();
            let inv = m.inv(biguint_mod(&qi, m.value())).unwrap_or(0);
            inv_punctured.push((inv, m.shoup(inv)));
            inv_fraction.push(u128::MAX / m.value() as u128);
            punctured.push(qi);
        }
        let punctured_mod_to = to
            .iter()
            .map(|t| {
                punctured
                    .iter()
                    .map(|qi| biguint_mod(qi, t.value()))
                    .collect()
            })
            .collect();
        let correction = (0..=from.len() as u64)
            .map(|v| {
                to.iter()
                    .map(|t| biguint_mod(&(&q * v), t.value()))
                    .collect()
            })
            .collect();
        let max_from = from.iter().map(|m| m.value()).max().unwrap_or(1) as u128;
        let max_to = to.iter().map(|m| m.value()).max().unwrap_or(1) as u128;
        // A start value below 2·max_from·max_to plus `lazy_terms` products must fit a u128.
        let lazy_terms = (u128::MAX / (max_from * max_to))
            .saturating_sub(2)
            .min(1 << 20) as usize;
        Self {
            from: from.to_vec(),
            to: to.to_vec(),
            inv_punctured,
            inv_fraction,
            punctured_mod_to,
            correction,
            lazy_terms: lazy_terms.max(1),
        }
    }

    /// Converts `n` coefficients: `input[i]` holds residues mod from[i]; `output[j]` receives
    /// residues mod to[j].
    ///
    /// Limb-major: each pass streams one source limb into a u128 accumulator per coefficient,
    /// so the inner loops are straight multiply-adds over contiguous memory.
    pub fn convert(&self, input: &[&[u64]], output: &mut [&mut [u64]]) {
        let n = input.first().map_or(0, |l| l.len());
        let l = self.from.len();
        let mut y = vec![0u64; l * n];
        for (i, (m, &(w, ws))) in self.from.iter().zip(&self.inv_punctured).enumerate() {
            for (dst, &x) in y[i * n..(i + 1) * n].iter_mut().zip(input[i]) {
                *dst = m.mul_shoup(x, w, ws);
            }
        }
        // v = round(Σ y_i / q_i) < len(from): the multiple of Q to remove for the centered value.
        let v: Vec<usize> = (0..n)
            .map(|c| {
                let mut s = FixedPointSum::default();
                for (i, &f) in self.inv_fraction.iter().enumerate() {
                    s.add_product(y[i * n + c], f);
                }
                (s.round() as usize).min(l)
            })
            .collect();
        let mut acc = vec![0u128; n];
        for (j, t) in self.to.iter().enumerate() {
            acc.iter_mut().for_each(|a| *a = 0);
            for (i, &w) in self.punctured_mod_to[j].iter().enumerate() {
                accumulate(&mut acc, &y[i * n..(i + 1) * n], w);
                if (i + 1) % self.lazy_terms == 0 {
                    // Reduced values restart the lazy budget.
                    acc.iter_mut().for_each(|a| *a = t.reduce_u128(*a) as u128);
                }
            }
            for ((o, &a), &vc) in output[j].iter_mut().zip(&acc).zip(&v) {
                *o = t.sub(t.reduce_u128(a), self.correction[vc][j]);
            }
        }
    }
}

/// acc[c] += x[c] · w.
#[inline]
fn accumulate(acc: &mut [u128], x: &[u64], w: u64) {
    let w = w as u128;
    for (a, &xc) in acc.iter_mut().zip(x) {
        *a += xc as u128 * w;
    }
}

/// Exact scaling and rounding: from residues of x over a source basis M, computes
/// round(numerator · x / D) reduced mod each target modulus, where D is the product of the first
/// `denominator_len` source moduli.
///
/// For each source modulus m_s, numerator · [(M/m_s)^{-1}]_{m_s} · (M/m_s) / D is split into an
/// integer part (kept mod each target) and a 128-bit fraction; the fractions are summed exactly
/// in fixed point. Source moduli whose constant is an integer that vanishes mod every target
/// but one are handled on a diagonal.
#[derive(Debug)]
pub(crate) struct RnsScaler {
    target: Vec<Modulus>,
    /// For the first `with_fraction` sources: the 128-bit fractions.
    fractions: Vec<u128>,
    /// Integer parts mod each target, indexed [k][s], for the sources without a diagonal.
    integer_mod_target: Vec<Vec<u64>>,
    /// Source index s diagonal to target k: (k, s, constant mod target k, shoup).
    diagonal: Vec<(usize, usize, u64, u64)>,
    lazy_terms: usize,
}

impl RnsScaler {
    /// round(numerator · x / D) from residues of x over `source` into residues over `target`,
    /// with D the product of the first `denominator_len` source moduli. When `target` equals
    /// the trailing source moduli, those are treated on the diagonal.
    pub fn new(
        source: &[Modulus],
        denominator_len: usize,
        numerator: u64,
        target: &[Modulus],
    ) -> Self {
        let m = source.iter().fold(BigUint::one(), |a, x| a * x.value());
        let d = source[..denominator_len]
            .iter()
            .fold(BigUint::one(), |a, x| a * x.value());
        let tail = &source[denominator_len..];
        let diagonal_tail = tail.len() == target.len()
            && tail.iter().zip(target).all(|(a, b)| a.value() == b.value());
        let dense_sources = if diagonal_tail {
            denominator_len
        } else {
            source.len()
        };
        let mut fractions = Vec::new();
        let mut integer_mod_target = vec![Vec::new(); target.len()];
        let mut diagonal = Vec::new();
        for (s, ms) in source.iter().enumerate() {
            let punct = &m / ms.value();
            let inv = ms.inv(biguint_mod(&punct, ms.value())).unwrap_or(0);
            let num = punct * inv * numerator;
            let int = &num / &d;
            let rem = &num % &d;
            if s < dense_sources {
                for (k, t) in target.iter().enumerate() {
                    integer_mod_target[k].push(biguint_mod(&int, t.value()));
                }
                if s < denominator_len {
                    // rem / d with d = D; express as a 128-bit fraction exactly.
                    let f: BigUint = (rem << 128u32) / &d;
                    let digits = f.to_u64_digits();
                    let lo = digits.first().copied().unwrap_or(0) as u128;
                    let hi = digits.get(1).copied().unwrap_or(0) as u128;
                    fractions.push((hi << 64) | lo);
                }
            } else {
                debug_assert!(rem.is_zero());
                let k = s - denominator_len;
                let c = biguint_mod(&int, target[k].value());
                diagonal.push((k, s, c, target[k].shoup(c)));
            }
        }
        let max_src = source.iter().map(|m| m.value()).max().unwrap_or(1) as u128;
        let max_tgt = target.iter().map(|m| m.value()).max().unwrap_or(1) as u128;
        // A start value (the rounded fraction sum, below len·max_src, or a reduced residue) plus
        // `lazy_terms` products must fit a u128.
        let lazy_terms = (u128::MAX / (max_src * max_tgt))
            .saturating_sub(2)
            .clamp(1, 1 << 20) as usize;
        Self {
            target: target.to_vec(),
            fractions,
            integer_mod_target,
            diagonal,
            lazy_terms,
        }
    }

    /// Scales `n` coefficients: `input[s]` holds residues mod source[s]; `output[k]` receives
    /// residues mod target[k].
    pub fn scale(&self, input: &[&[u64]], output: &mut [&mut [u64]]) {
        let n = input.first().map_or(0, |l| l.len());
        // round(Σ x_s θ_s) < len · max(q): it starts every accumulator.
        let rounded: Vec<u128> = (0..n)
            .map(|c| {
                let mut s = FixedPointSum::default();
                for (src, &f) in input.iter().zip(&self.fractions) {
                    s.add_product(src[c], f);
                }
                s.round()
            })
            .collect();
        let mut acc = vec![0u128; n];
        for (k, t) in self.target.iter().enumerate() {
            acc.copy_from_slice(&rounded);
            for (s, &w) in self.integer_mod_target[k].iter().enumerate() {
                accumulate(&mut acc, input[s], w);
                if (s + 1) % self.lazy_terms == 0 {
                    acc.iter_mut().for_each(|a| *a = t.reduce_u128(*a) as u128);
                }
            }
            for (o, &a) in output[k].iter_mut().zip(&acc) {
                *o = t.reduce_u128(a);
            }
        }
        for &(k, s, w, ws) in &self.diagonal {
            let t = &self.target[k];
            for (o, &x) in output[k].iter_mut().zip(input[s]) {
                *o = t.add(*o, t.mul_shoup(x, w, ws));
            }
        }
    }
}

/// The exact value of a big integer as f64 log2 (for diagnostics).
pub fn log2_biguint(x: &BigUint) -> f64 {
    if x.is_zero() {
        return f64::NEG_INFINITY;
    }
    let bits = x.bits();
    let shift = bits.saturating_sub(60);
    let top = (x >> shift).to_u64().unwrap_or(1) as f64;
    top.log2() + shift as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn barrett_and_shoup_match_u128_remainder() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for bits in [2u32, 17, 31, 50, 51, 61, 62] {
            for _ in 0..200 {
                let p = rng.gen_range(2u64..(1u64 << bits).max(3)).max(2) | 1;
                let m = Modulus::try_new(p).unwrap();
                let x: u128 = rng.gen();
                assert_eq!(m.reduce_u128(x) as u128, x % p as u128, "p={p} x={x}");
                assert_eq!(m.reduce_u128(u128::MAX) as u128, u128::MAX % p as u128);
                let a = rng.gen::<u64>();
                let w = rng.gen_range(0..p);
                assert_eq!(
                    m.mul_shoup(a, w, m.shoup(w)) as u128,
                    a as u128 * w as u128 % p as u128
                );
                let s: i64 = rng.gen();
                assert_eq!(m.reduce_i64(s) as i128, (s as i128).rem_euclid(p as i128));
            }
        }
        assert!(Modulus::try_new(1 << 62).is_none());
        assert!(Modulus::try_new(1).is_none());
    }

    #[test]
    fn miller_rabin_matches_trial_division() {
        let trial = |n: u64| {
            n >= 2
                && (2..)
                    .take_while(|d| d * d <= n)
                    .all(|d| !n.is_multiple_of(d))
        };
        for n in 0..20_000u64 {
            assert_eq!(is_prime(n), trial(n), "{n}");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for _ in 0..2000 {
            let n = rng.gen_range(1u64 << 30..1u64 << 34);
            assert_eq!(is_prime(n), trial(n), "{n}");
        }
    }

    #[test]
    fn generated_primes_are_ntt_friendly_distinct_and_sized() {
        let ps = generate_primes(44, 8192, 5, &[]).unwrap();
        assert_eq!(ps.len(), 5);
        for w in ps.windows(2) {
            assert!(w[0] > w[1]);
        }
        for p in &ps {
            assert!(is_prime(*p));
            assert_eq!(p % 16384, 1);
            assert_eq!(64 - p.leading_zeros(), 44);
        }
        let more = generate_primes(44, 8192, 2, &ps[..1]).unwrap();
        assert_eq!(more[0], ps[1]);
        assert!(generate_primes(12, 8192, 1, &[]).is_none());
    }

    fn big_from_residues(res: &[u64], moduli: &[Modulus]) -> BigUint {
        // CRT by the textbook formula, with big integers.
        let q = moduli.iter().fold(BigUint::one(), |a, m| a * m.value());
        let mut x = BigUint::zero();
        for (r, m) in res.iter().zip(moduli) {
            let qi = &q / m.value();
            let inv = m.inv(biguint_mod(&qi, m.value())).unwrap();
            x += qi * inv * r;
        }
        x % q
    }

    #[test]
    fn base_conversion_gives_centered_value() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let from: Vec<Modulus> = generate_primes(50, 1024, 4, &[])
            .unwrap()
            .into_iter()
            .map(|p| Modulus::try_new(p).unwrap())
            .collect();
        let to: Vec<Modulus> = generate_primes(61, 1024, 3, &[])
            .unwrap()
            .into_iter()
            .chain([65537])
            .map(|p| Modulus::try_new(p).unwrap())
            .collect();
        let conv = BaseConverter::new(&from, &to);
        let q = from.iter().fold(BigUint::one(), |a, m| a * m.value());
        let n = 300;
        let input: Vec<Vec<u64>> = from
            .iter()
            .map(|m| (0..n).map(|_| rng.gen_range(0..m.value())).collect())
            .collect();
        let mut out = vec![vec![0u64; n]; to.len()];
        {
            let inp: Vec<&[u64]> = input.iter().map(|v| v.as_slice()).collect();
            let mut o: Vec<&mut [u64]> = out.iter_mut().map(|v| v.as_mut_slice()).collect();
            conv.convert(&inp, &mut o);
        }
        for c in 0..n {
            let res: Vec<u64> = input.iter().map(|l| l[c]).collect();
            let x = big_from_residues(&res, &from);
            let centered_neg = x > &q >> 1u32;
            for (j, t) in to.iter().enumerate() {
                let expect = if centered_neg {
                    t.neg(biguint_mod(&(&q - &x), t.value()))
                } else {
                    biguint_mod(&x, t.value())
                };
                assert_eq!(out[j][c], expect);
            }
        }
    }

    #[test]
    fn scaler_rounds_exactly_like_big_integers() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let qs: Vec<Modulus> = generate_primes(44, 1024, 3, &[])
            .unwrap()
            .into_iter()
            .map(|p| Modulus::try_new(p).unwrap())
            .collect();
        let ps: Vec<Modulus> = generate_primes(50, 1024, 4, &[])
            .unwrap()
            .into_iter()
            .map(|p| Modulus::try_new(p).unwrap())
            .collect();
        let t = 65537u64;
        let q = qs.iter().fold(BigUint::one(), |a, m| a * m.value());
        let source: Vec<Modulus> = qs.iter().chain(&ps).copied().collect();
        let m = source.iter().fold(BigUint::one(), |a, m| a * m.value());
        // HPS-style: source Q ∪ P, denominator Q, target P (diagonal).
        let hps = RnsScaler::new(&source, qs.len(), t, &ps);
        // Decryption-style: source Q, denominator Q, target {t}.
        let tm = Modulus::try_new(t).unwrap();
        let dec = RnsScaler::new(&qs, qs.len(), t, &[tm]);
        let n = 200;
        for scaler_case in 0..2 {
            let (src, tgt, scaler, modulus): (&[Modulus], &[Modulus], &RnsScaler, &BigUint) =
                if scaler_case == 0 {
                    (&source, &ps, &hps, &m)
                } else {
                    (&qs, std::slice::from_ref(&tm), &dec, &q)
                };
            let input: Vec<Vec<u64>> = src
                .iter()
                .map(|md| (0..n).map(|_| rng.gen_range(0..md.value())).collect())
                .collect();
            let mut out = vec![vec![0u64; n]; tgt.len()];
            {
                let inp: Vec<&[u64]> = input.iter().map(|v| v.as_slice()).collect();
                let mut o: Vec<&mut [u64]> = out.iter_mut().map(|v| v.as_mut_slice()).collect();
                scaler.scale(&inp, &mut o);
            }
            for c in 0..n {
                let res: Vec<u64> = input.iter().map(|l| l[c]).collect();
                let x = big_from_residues(&res, src);
                let _ = modulus;
                // round(t x / Q) for x in [0, M).
                let num = &x * t;
                let r = (&num + (&q >> 1u32)) / &q;
                for (k, tk) in tgt.iter().enumerate() {
                    assert_eq!(out[k][c], biguint_mod(&r, tk.value()), "case {scaler_case}");
                }
            }
        }
    }

    #[test]
    fn ntt_exponents_describe_evaluation_points() {
        for &n in &[16usize, 2048] {
            let p = generate_primes(50, n, 1, &[]).unwrap()[0];
            let op = NttOperator::try_new(n, p, None).unwrap();
            let m = op.modulus();
            // a(X) = 1 + 2X + 3X^2 evaluated at ψ^e for every slot.
            let mut a = vec![0u64; n];
            a[0] = 1;
            a[1] = 2;
            a[2] = 3;
            let mut x = vec![0u64; n];
            x[1] = 1;
            op.forward(&mut x);
            let psi = x[0];
            op.forward(&mut a);
            for (k, &e) in op.exponents().iter().enumerate() {
                assert_eq!(e % 2, 1);
                let r = m.pow(psi, e as u64);
                let expect = m.add(m.add(1, m.mul(2, r)), m.mul(3, m.mul(r, r)));
                assert_eq!(a[k], expect);
            }
        }
    }
}
