//! RNS bases and the exact conversions between them: base conversion (centered) and
//! scaling with rounding, in 128-bit fixed point.

use super::kernels::{self, Kernel};
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

/// Exact conversion of residues from one basis to another, giving the centered representative:
/// x in (-Q/2, Q/2] from its residues mod Q, reduced mod every target modulus.
///
/// Uses the fast base conversion with its overflow count v = round(Σ y_i / q_i) computed
/// exactly in 128-bit fixed point, so no floating point and no big integers on the hot path.
#[derive(Debug)]
pub(crate) struct BaseConverter {
    from: Vec<Modulus>,
    to: Vec<Modulus>,
    /// [(Q/q_i)^{-1}]_{q_i}.
    inv_punctured: Vec<u64>,
    /// floor(2^128 / q_i).
    inv_fraction: Vec<u128>,
    /// Q/q_i and Q, for the rare sums the fixed point cannot round for sure, and the window
    /// around one half that holds them ([`kernels::near_half_bits`]).
    punctured: Vec<BigUint>,
    q: BigUint,
    window_bits: u32,
    /// [Q/q_i]_{p_j}, indexed [j][i].
    punctured_mod_to: Vec<Vec<u64>>,
    /// [v Q]_{p_j} for v = 0..=len(from), indexed [j][v]: v never exceeds the source count.
    correction: Vec<Vec<u64>>,
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
            inv_punctured.push(m.inv(biguint_mod(&qi, m.value())).unwrap_or(0));
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
        let correction = to
            .iter()
            .map(|t| {
                (0..=from.len() as u64)
                    .map(|v| biguint_mod(&(&q * v), t.value()))
                    .collect()
            })
            .collect();
        Self {
            from: from.to_vec(),
            to: to.to_vec(),
            inv_punctured,
            inv_fraction,
            punctured_mod_to,
            correction,
            punctured,
            q,
            window_bits: kernels::near_half_bits(from),
        }
    }

    /// Converts `n` coefficients: `input[i]` holds residues mod from[i]; `output[j]` receives
    /// residues mod to[j]. Runs the fastest kernel this CPU has ([`Kernel::best`]).
    pub fn convert(&self, input: &[&[u64]], output: &mut [&mut [u64]]) {
        self.convert_with(Kernel::best(), input, output);
    }

    /// [`Self::convert`] with the given kernel (the scalar one where it cannot serve).
    ///
    /// Limb-major: each pass streams whole limbs, so the inner loops run over contiguous memory.
    pub fn convert_with(&self, kernel: Kernel, input: &[&[u64]], output: &mut [&mut [u64]]) {
        let n = input.first().map_or(0, |l| l.len());
        if n == 0 {
            return;
        }
        let k = kernel.for_moduli(n, self.from.iter().chain(&self.to));
        let l = self.from.len();
        let mut y = vec![0u64; l * n];
        for ((dst, m), (x, &w)) in y
            .chunks_mut(n)
            .zip(&self.from)
            .zip(input.iter().zip(&self.inv_punctured))
        {
            kernels::mul_const(k, dst, x, w, m);
        }
        let ys: Vec<&[u64]> = y.chunks(n).collect();
        // v = round(Σ y_i / q_i) ≤ len(from): the multiple of Q to remove for the centered value.
        let mut v = vec![0u64; n];
        let mut near_half = Vec::new();
        kernels::fixed_point_round(
            k,
            &mut v,
            &ys,
            &self.inv_fraction,
            self.window_bits,
            &mut near_half,
        );
        for c in near_half {
            // Settled exactly: v = ⌊Σ y_i (Q/q_i) / Q + 1/2⌋.
            let s = ys
                .iter()
                .zip(&self.punctured)
                .fold(BigUint::zero(), |a, (y, p)| a + p * y[c]);
            v[c] = (((s << 1u32) + &self.q) / (&self.q << 1u32))
                .to_u64()
                .unwrap_or(l as u64);
        }
        for (j, (t, out)) in self.to.iter().zip(output.iter_mut()).enumerate() {
            kernels::dot_const(k, out, &ys, &self.punctured_mod_to[j], None, t);
            kernels::sub_table(k, out, &v, &self.correction[j], t);
        }
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
    source: Vec<Modulus>,
    target: Vec<Modulus>,
    /// For the first `with_fraction` sources: the 128-bit fractions, and the exact numerators
    /// over `denominator` they truncate (for the rare sums the fixed point cannot round for sure).
    fractions: Vec<u128>,
    remainders: Vec<BigUint>,
    denominator: BigUint,
    /// The window around one half for the fixed-point sum ([`kernels::near_half_bits`]), and
    /// whether the sum may pass 2^64 (wide moduli: it is kept in 128 bits).
    window_bits: u32,
    wide: bool,
    /// Integer parts mod each target, indexed [k][s], for the sources without a diagonal.
    integer_mod_target: Vec<Vec<u64>>,
    /// Source index s diagonal to target k: (k, s, constant mod target k).
    diagonal: Vec<(usize, usize, u64)>,
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
        let mut remainders = Vec::new();
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
                    let f: BigUint = (&rem << 128u32) / &d;
                    let digits = f.to_u64_digits();
                    let lo = digits.first().copied().unwrap_or(0) as u128;
                    let hi = digits.get(1).copied().unwrap_or(0) as u128;
                    fractions.push((hi << 64) | lo);
                    remainders.push(rem);
                }
            } else {
                debug_assert!(rem.is_zero());
                let k = s - denominator_len;
                let c = biguint_mod(&int, target[k].value());
                diagonal.push((k, s, c));
            }
        }
        Self {
            source: source.to_vec(),
            target: target.to_vec(),
            fractions,
            remainders,
            denominator: d,
            window_bits: kernels::near_half_bits(&source[..denominator_len]),
            wide: source[..denominator_len]
                .iter()
                .map(|m| m.value() as u128)
                .sum::<u128>()
                >= 1 << 60,
            integer_mod_target,
            diagonal,
        }
    }

    /// Scales `n` coefficients: `input[s]` holds residues mod source[s]; `output[k]` receives
    /// residues mod target[k]. Runs the fastest kernel this CPU has ([`Kernel::best`]).
    pub fn scale(&self, input: &[&[u64]], output: &mut [&mut [u64]]) {
        self.scale_with(Kernel::best(), input, output);
    }

    /// [`Self::scale`] with the given kernel (the scalar one where it cannot serve).
    pub fn scale_with(&self, kernel: Kernel, input: &[&[u64]], output: &mut [&mut [u64]]) {
        let n = input.first().map_or(0, |l| l.len());
        let k = kernel.for_moduli(n, self.source.iter().chain(&self.target));
        // round(Σ x_s θ_s) < Σ q_s: it starts every accumulator. Below 2^60 (every preset) it
        // is kept in 64 bits and starts them as it is; wider, in 128 bits, reduced per target.
        let with_fraction = &input[..self.fractions.len().min(input.len())];
        let (w, fr) = (self.window_bits, &self.fractions);
        let mut near_half = Vec::new();
        let mut wide = vec![0u128; if self.wide { n } else { 0 }];
        let mut narrow = vec![0u64; if self.wide { 0 } else { n }];
        if self.wide {
            kernels::fixed_point_round_wide(&mut wide, with_fraction, fr, w, &mut near_half);
        } else {
            kernels::fixed_point_round(k, &mut narrow, with_fraction, fr, w, &mut near_half);
        }
        let d = &self.denominator;
        for c in near_half {
            // Settled exactly: ⌊Σ x_s r_s / D + 1/2⌋ for the numerators r_s.
            let s = with_fraction
                .iter()
                .zip(&self.remainders)
                .fold(BigUint::zero(), |a, (x, r)| a + r * x[c]);
            let exact = ((s << 1u32) + d) / (d << 1u32);
            if self.wide {
                wide[c] = exact.to_u128().unwrap_or(0);
            } else {
                narrow[c] = exact.to_u64().unwrap_or(0);
            }
        }
        for (j, (t, out)) in self.target.iter().zip(output.iter_mut()).enumerate() {
            if self.wide {
                narrow = wide.iter().map(|&r| t.reduce_u128(r)).collect();
            }
            let weights = &self.integer_mod_target[j];
            let sources = &input[..weights.len().min(input.len())];
            kernels::dot_const(k, out, sources, weights, Some(&narrow), t);
        }
        for &(j, s, w) in &self.diagonal {
            kernels::mul_add_const(k, output[j], input[s], w, &self.target[j]);
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
