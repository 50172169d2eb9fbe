//! RNS bases and the exact conversions between them: base conversion (centered) and
//! scaling with rounding, in 128-bit fixed point.

use super::modulus::Modulus;
use super::ntt::NttOperator;
use num_bigint::BigUint;
use num_traits::{One, ToPrimitive, Zero};

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

pub(crate) fn biguint_mod(x: &BigUint, m: u64) -> u64 {
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
