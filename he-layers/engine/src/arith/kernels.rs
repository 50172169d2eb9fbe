//! The slice kernels under base conversion, scaling and key switching, each in two forms: a
//! scalar one (any modulus below 2^62; the reference) and an AVX-512 IFMA one
//! ([`super::ifma`], moduli below 2^50), chosen at run time by [`Kernel`].
//!
//! Both forms return the same canonical residues bit for bit; the tests below hold them to it
//! on random and boundary inputs.

use super::modulus::Modulus;
use std::sync::OnceLock;

/// Moduli the IFMA kernels take: below 2^50 (the bounds in [`super::ifma`]).
pub(crate) const IFMA_MAX_BITS: u32 = 50;

/// Which implementation a kernel call runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Portable 64/128-bit arithmetic, for every modulus.
    Scalar,
    /// AVX-512 IFMA, eight 52-bit lanes (x86-64 CPUs that have it, moduli below 2^50).
    Ifma,
}

impl Kernel {
    /// The fastest kernel this CPU runs: IFMA where it is present, unless the environment
    /// variable `HE_LAYERS_KERNEL=scalar` asks for the portable one (for before/after
    /// measurements). Read once per process.
    pub fn best() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            if std::env::var("HE_LAYERS_KERNEL").is_ok_and(|v| v == "scalar") {
                return Kernel::Scalar;
            }
            if ifma_available() {
                Kernel::Ifma
            } else {
                Kernel::Scalar
            }
        })
    }

    /// This kernel where it can serve `n`-word slices over these moduli, else the scalar one.
    pub(crate) fn for_moduli<'a>(
        self,
        n: usize,
        moduli: impl IntoIterator<Item = &'a Modulus>,
    ) -> Kernel {
        let fits =
            n.is_multiple_of(8) && moduli.into_iter().all(|m| m.value() >> IFMA_MAX_BITS == 0);
        match self {
            Kernel::Ifma if fits && ifma_available() => Kernel::Ifma,
            _ => Kernel::Scalar,
        }
    }
}

/// Whether this CPU has AVX-512F and IFMA.
fn ifma_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512ifma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The constants of a modulus m < 2^50 for 52-bit lanes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lanes {
    /// The modulus.
    pub m: u64,
    /// 2^52 mod m and its 52-bit Shoup companion.
    pub r52: u64,
    pub r52_shoup: u64,
    /// ⌊2^52 / m⌋, the Shoup companion of 1.
    pub one_shoup: u64,
}

impl Lanes {
    pub(crate) fn new(m: &Modulus) -> Self {
        let p = m.value();
        let r52 = ((1u128 << 52) % p as u128) as u64;
        let mut l = Self {
            m: p,
            r52,
            r52_shoup: 0,
            one_shoup: 0,
        };
        l.r52_shoup = l.shoup(r52);
        l.one_shoup = l.shoup(1);
        l
    }

    /// ⌊w 2^52 / m⌋ for w < m.
    #[inline]
    pub(crate) fn shoup(&self, w: u64) -> u64 {
        (((w as u128) << 52) / self.m as u128) as u64
    }
}

/// The 52-bit pieces of a 128-bit fraction, as [`super::ifma::fixed_point_round`] takes them.
pub(crate) fn fraction_pieces(f: u128) -> [u64; 3] {
    const MASK: u128 = (1 << 52) - 1;
    [
        (f & MASK) as u64,
        ((f >> 52) & MASK) as u64,
        (f >> 104) as u64,
    ]
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

/// out[c] = x[c]·w mod m, for x < 2^52 on the IFMA path (any x on the scalar one), w < m.
pub(crate) fn mul_const(kernel: Kernel, out: &mut [u64], x: &[u64], w: u64, m: &Modulus) {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Ifma {
        // SAFETY: `Kernel::Ifma` is only handed out where the CPU has AVX-512F and IFMA.
        unsafe { super::ifma::mul_const(out, x, w, &Lanes::new(m)) };
        return;
    }
    let _ = kernel;
    let ws = m.shoup(w);
    for (o, &a) in out.iter_mut().zip(x) {
        *o = m.mul_shoup(a, w, ws);
    }
}

/// out[c] = (out[c] + x[c]·w) mod m, for out < m, x below the kernel's bound and w < m.
pub(crate) fn mul_add_const(kernel: Kernel, out: &mut [u64], x: &[u64], w: u64, m: &Modulus) {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Ifma {
        // SAFETY: as in `mul_const`.
        unsafe { super::ifma::mul_add_const(out, x, w, &Lanes::new(m)) };
        return;
    }
    let _ = kernel;
    let ws = m.shoup(w);
    for (o, &a) in out.iter_mut().zip(x) {
        *o = m.add(*o, m.mul_shoup(a, w, ws));
    }
}

/// out[c] = (start[c] + Σ_i xs[i][c]·ws[i]) mod m. The scalar path takes residues of any
/// moduli below 2^62 and any start; the IFMA path residues below 2^50 and start below 2^60.
pub(crate) fn dot_const(
    kernel: Kernel,
    out: &mut [u64],
    xs: &[&[u64]],
    ws: &[u64],
    start: Option<&[u64]>,
    m: &Modulus,
) {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Ifma {
        // SAFETY: as in `mul_const`.
        unsafe { super::ifma::dot_const(out, xs, ws, start, &Lanes::new(m)) };
        return;
    }
    let _ = kernel;
    // Residues are below 2^62 and weights below m: `lazy` products on a reduced start fit a
    // u128 (at least 14 of them).
    let lazy = ((u128::MAX / ((1u128 << 62) * m.value() as u128)).saturating_sub(2) as usize)
        .clamp(1, 1 << 20);
    for (c, o) in out.iter_mut().enumerate() {
        let mut acc: u128 = start.map_or(0, |s| s[c] as u128);
        for (t, (x, &w)) in xs.iter().zip(ws).enumerate() {
            if t % lazy == 0 {
                acc = m.reduce_u128(acc) as u128;
            }
            acc += x[c] as u128 * w as u128;
        }
        *o = m.reduce_u128(acc);
    }
}

/// out0[c] = Σ_i xs[i][c]·bs[i][c] mod m and out1[c] = Σ_i xs[i][c]·as_[i][c] mod m, for
/// residues mod m (any m on the scalar path; below 2^50 on the IFMA one).
pub(crate) fn dot_slots2(
    kernel: Kernel,
    out0: &mut [u64],
    out1: &mut [u64],
    xs: &[&[u64]],
    bs: &[&[u64]],
    as_: &[&[u64]],
    m: &Modulus,
) {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Ifma {
        // SAFETY: as in `mul_const`.
        unsafe { super::ifma::dot_slots2(out0, out1, xs, bs, as_, &Lanes::new(m)) };
        return;
    }
    let _ = kernel;
    // Products of residues below m < 2^62: `lazy` of them on a reduced start fit a u128.
    let lazy = ((u128::MAX / (m.value() as u128 * m.value() as u128)).saturating_sub(2) as usize)
        .clamp(1, 1 << 20);
    for (c, (o0, o1)) in out0.iter_mut().zip(out1.iter_mut()).enumerate() {
        let (mut s0, mut s1) = (0u128, 0u128);
        for (t, ((x, b), a)) in xs.iter().zip(bs).zip(as_).enumerate() {
            if t > 0 && t % lazy == 0 {
                s0 = m.reduce_u128(s0) as u128;
                s1 = m.reduce_u128(s1) as u128;
            }
            s0 += x[c] as u128 * b[c] as u128;
            s1 += x[c] as u128 * a[c] as u128;
        }
        *o0 = m.reduce_u128(s0);
        *o1 = m.reduce_u128(s1);
    }
}

/// The narrowest window (log2, in units of 2^-128) around one half in which
/// [`fixed_point_round`] reports sums, and the one its IFMA path reports: beyond the truncation
/// error of every sum it takes (each F_i is short of its real value by less than 2^-128, times
/// y_i < 2^50, for at most 64 terms).
pub(crate) const NEAR_HALF_BITS: u32 = 58;

/// The window (log2) that covers the truncation error of a fixed-point sum over residues of
/// these moduli: Σ y_i < len · 2^bits, doubled for margin; never below [`NEAR_HALF_BITS`].
pub(crate) fn near_half_bits(moduli: &[Modulus]) -> u32 {
    let bits = moduli.iter().map(|m| m.bits()).max().unwrap_or(1);
    let terms = (moduli.len().max(1) as u64)
        .next_power_of_two()
        .trailing_zeros();
    (bits + terms + 1).clamp(NEAR_HALF_BITS, 120)
}

/// out[c] = round(Σ_i ys[i][c]·F_i / 2^128) (ties up) for 128-bit fractions F_i, for sums
/// below 2^64 (the callers' bound). The IFMA path takes ys below 2^50 and at most 64 terms.
///
/// F_i are truncations of real fractions, so the sum can round the other way than the real one
/// only where its fraction lies just below one half, within the truncation error: every c
/// whose fraction lies within 2^window_bits (units of 2^-128) of one half, on either side, is
/// pushed onto `near_half` for the caller to settle exactly. `window_bits` comes from
/// [`near_half_bits`]; uniform inputs land there with probability about 2^(window_bits − 127).
pub(crate) fn fixed_point_round(
    kernel: Kernel,
    out: &mut [u64],
    ys: &[&[u64]],
    fr: &[u128],
    window_bits: u32,
    near_half: &mut Vec<usize>,
) {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Ifma && ys.len() <= 64 && window_bits <= NEAR_HALF_BITS {
        let pieces: Vec<[u64; 3]> = fr.iter().map(|&f| fraction_pieces(f)).collect();
        // SAFETY: as in `mul_const`.
        unsafe { super::ifma::fixed_point_round(out, ys, &pieces, near_half) };
        return;
    }
    let _ = kernel;
    let mut wide = vec![0u128; out.len()];
    fixed_point_round_wide(&mut wide, ys, fr, window_bits, near_half);
    for (o, w) in out.iter_mut().zip(wide) {
        *o = w as u64;
    }
}

/// [`fixed_point_round`] without the 2^64 bound on the sums: scalar, 128-bit results.
pub(crate) fn fixed_point_round_wide(
    out: &mut [u128],
    ys: &[&[u64]],
    fr: &[u128],
    window_bits: u32,
    near_half: &mut Vec<usize>,
) {
    let window = window_bits.clamp(NEAR_HALF_BITS, 120);
    let half = 1u128 << (127 - window);
    for (c, o) in out.iter_mut().enumerate() {
        let mut s = FixedPointSum::default();
        for (y, &f) in ys.iter().zip(fr) {
            s.add_product(y[c], f);
        }
        *o = s.round();
        let top = s.frac >> window;
        if top == half || top == half - 1 {
            near_half.push(c);
        }
    }
}

/// out[c] = (out[c] − table[min(v[c], len − 1)]) mod m, for out < m and a non-empty table.
pub(crate) fn sub_table(kernel: Kernel, out: &mut [u64], v: &[u64], table: &[u64], m: &Modulus) {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Ifma {
        // SAFETY: as in `mul_const`.
        unsafe { super::ifma::sub_table(out, v, table, m.value()) };
        return;
    }
    let _ = kernel;
    let Some(last) = table.len().checked_sub(1) else {
        return;
    };
    for (o, &vc) in out.iter_mut().zip(v) {
        *o = m.sub(*o, table[(vc as usize).min(last)]);
    }
}

/// out[c] = x[c] lifted from a residue mod p to (−p/2, p/2] (minus p where x > half), mod m;
/// `minus_p` is −p mod m. x below 2^50 on the IFMA path.
pub(crate) fn lift_centered(
    kernel: Kernel,
    out: &mut [u64],
    x: &[u64],
    half: u64,
    minus_p: u64,
    m: &Modulus,
) {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Ifma {
        // SAFETY: as in `mul_const`.
        unsafe { super::ifma::lift_centered(out, x, half, minus_p, &Lanes::new(m)) };
        return;
    }
    let _ = kernel;
    for (t, &x) in out.iter_mut().zip(x) {
        let lift = 0u64.wrapping_sub(u64::from(x > half)) & minus_p;
        let s = m.reduce_flat(x) + lift;
        *t = s.min(s.wrapping_sub(m.value()));
    }
}

/// out[c] = x[c] mod m, for x below 2^50 on the IFMA path (any x on the scalar one).
pub(crate) fn reduce(kernel: Kernel, out: &mut [u64], x: &[u64], m: &Modulus) {
    // A centered lift that never lifts: x mod m.
    lift_centered(kernel, out, x, u64::MAX, 0, m);
}

/// a[c] = (a[c] − t[c])·w mod m, for a, t, w < m.
pub(crate) fn sub_mul_const(kernel: Kernel, a: &mut [u64], t: &[u64], w: u64, m: &Modulus) {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Ifma {
        // SAFETY: as in `mul_const`.
        unsafe { super::ifma::sub_mul_const(a, t, w, &Lanes::new(m)) };
        return;
    }
    let _ = kernel;
    let ws = m.shoup(w);
    for (a, &t) in a.iter_mut().zip(t) {
        *a = m.mul_shoup_flat(m.sub_flat(*a, t), w, ws);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::arith::generate_primes;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const N: usize = 64;

    /// Random residues below p, with the extremes 0, 1, p − 1 and p/2 (and its neighbours)
    /// planted at the front.
    fn residues(rng: &mut ChaCha8Rng, p: u64) -> Vec<u64> {
        let mut v: Vec<u64> = (0..N).map(|_| rng.gen_range(0..p)).collect();
        let edges = [0, 1, p - 1, p / 2, p / 2 + 1, p - 2, p / 2 - 1, 2];
        v[..edges.len()].copy_from_slice(&edges);
        v
    }

    /// Moduli at the ends of the IFMA range and in the presets' band.
    fn moduli() -> Vec<Modulus> {
        let mut ps = generate_primes(50, 4096, 3, &[]).unwrap();
        ps.extend(generate_primes(44, 4096, 2, &[]).unwrap());
        ps.extend(generate_primes(30, 4096, 1, &[]).unwrap());
        ps.push(3);
        ps.iter().map(|&p| Modulus::try_new(p).unwrap()).collect()
    }

    fn ifma() -> Option<Kernel> {
        let k = Kernel::Ifma.for_moduli(N, &moduli());
        (k == Kernel::Ifma).then_some(k)
    }

    /// Every IFMA kernel against the scalar one on the same inputs (the test is vacuous on a
    /// CPU without IFMA; it says so).
    #[test]
    fn ifma_kernels_equal_the_scalar_ones() {
        let Some(fast) = ifma() else {
            eprintln!("no AVX-512 IFMA on this CPU: nothing to compare");
            return;
        };
        let mut rng = ChaCha8Rng::seed_from_u64(52);
        let ms = moduli();
        for m in &ms {
            let p = m.value();
            // Inputs are residues of any of the moduli (base conversions mix them).
            let xs: Vec<Vec<u64>> = (0..20)
                .map(|i| residues(&mut rng, ms[i % ms.len()].value()))
                .collect();
            let refs: Vec<&[u64]> = xs.iter().map(|x| x.as_slice()).collect();
            let own: Vec<Vec<u64>> = (0..21).map(|_| residues(&mut rng, p)).collect();
            let own_refs: Vec<&[u64]> = own.iter().map(|x| x.as_slice()).collect();
            let ws: Vec<u64> = (0..20)
                .map(|i| match i {
                    0 => p - 1,
                    1 => 0,
                    2 => 1,
                    _ => rng.gen_range(0..p),
                })
                .collect();
            let both = |f: &dyn Fn(Kernel, &mut [u64])| {
                let (mut a, mut b) = (vec![7u64; N], vec![7u64; N]);
                f(Kernel::Scalar, &mut a);
                f(fast, &mut b);
                assert_eq!(a, b, "modulus {p}");
            };
            for &w in &ws[..4] {
                both(&|k, o| mul_const(k, o, &xs[0], w, m));
                both(&|k, o| {
                    o.copy_from_slice(&own[1]);
                    mul_add_const(k, o, &xs[2], w, m)
                });
                both(&|k, o| {
                    o.copy_from_slice(&own[0]);
                    sub_mul_const(k, o, &own[3], w, m)
                });
            }
            // One to twenty terms: across the 15-term column limit, with and without a start.
            let start: Vec<u64> = (0..N).map(|_| rng.gen_range(0..1u64 << 60)).collect();
            for terms in [1, 2, 4, 6, 10, 14, 15, 16, 20] {
                both(&|k, o| dot_const(k, o, &refs[..terms], &ws[..terms], None, m));
                both(&|k, o| dot_const(k, o, &refs[..terms], &ws[..terms], Some(&start), m));
                let mut s = [vec![0u64; N], vec![0u64; N], vec![0u64; N], vec![0u64; N]];
                let [s0, s1, f0, f1] = &mut s;
                dot_slots2(
                    Kernel::Scalar,
                    s0,
                    s1,
                    &own_refs[..terms],
                    &own_refs[1..=terms],
                    &own_refs[..terms],
                    m,
                );
                dot_slots2(
                    fast,
                    f0,
                    f1,
                    &own_refs[..terms],
                    &own_refs[1..=terms],
                    &own_refs[..terms],
                    m,
                );
                assert_eq!((s0, s1), (f0, f1), "dot_slots2, {terms} terms mod {p}");
            }
            let half = p / 2;
            let minus = m.neg(m.reduce(ms[0].value()));
            both(&|k, o| lift_centered(k, o, &xs[0], half, minus, m));
            let vs: Vec<u64> = (0..N as u64).map(|c| c % 11).collect();
            // Tables that fit one register (a permutation) and one that does not (a gather).
            for len in [1, 5, 8, 9] {
                let table: Vec<u64> = (0..len).map(|_| rng.gen_range(0..p)).collect();
                both(&|k, o| {
                    o.copy_from_slice(&own[4]);
                    sub_table(k, o, &vs, &table, m)
                });
            }
            both(&|k, o| reduce(k, o, &xs[0], m));
        }
        // Fractions: random, all ones, and the ⌊2^128/q⌋ a base conversion uses.
        let mut fr: Vec<u128> = (0..18).map(|_| rng.gen()).collect();
        fr[0] = u128::MAX;
        fr[1] = 0;
        fr[2] = u128::MAX / ms[0].value() as u128;
        let ys: Vec<Vec<u64>> = (0..18).map(|_| residues(&mut rng, ms[0].value())).collect();
        let yr: Vec<&[u64]> = ys.iter().map(|y| y.as_slice()).collect();
        for terms in [1, 3, 5, 9, 18] {
            let (mut a, mut b) = (vec![0u64; N], vec![0u64; N]);
            let (mut na, mut nb) = (Vec::new(), Vec::new());
            let w = NEAR_HALF_BITS;
            fixed_point_round(
                Kernel::Scalar,
                &mut a,
                &yr[..terms],
                &fr[..terms],
                w,
                &mut na,
            );
            fixed_point_round(fast, &mut b, &yr[..terms], &fr[..terms], w, &mut nb);
            assert_eq!((a, na), (b, nb), "fixed point, {terms} terms");
        }
        // Sums at one half and just inside and outside the reported window, both sides: one
        // term y·F with F = (2^127 + d) / y exactly, y = 2^k.
        const NEAR_HALF: u128 = 1 << NEAR_HALF_BITS;
        let near = NEAR_HALF as i128;
        for d in [
            0i128,
            1,
            -1,
            near - 1,
            -near,
            near,
            -near - 1,
            1 << 100,
            -(1 << 100),
        ] {
            let f = ((1i128 << 127) + d) as u128 >> 4;
            let ys = vec![16u64; N];
            let (mut a, mut b) = (vec![0u64; N], vec![0u64; N]);
            let (mut na, mut nb) = (Vec::new(), Vec::new());
            let w = NEAR_HALF_BITS;
            fixed_point_round(Kernel::Scalar, &mut a, &[&ys], &[f], w, &mut na);
            fixed_point_round(fast, &mut b, &[&ys], &[f], w, &mut nb);
            assert_eq!((&a, &na), (&b, &nb), "offset {d}");
            // d is a multiple of 16 or small: 16·(f) = 2^127 + d rounded down to 16.
            let frac = 16 * f;
            let inside = frac + NEAR_HALF >= 1 << 127 && frac < (1 << 127) + NEAR_HALF;
            assert_eq!(!na.is_empty(), inside, "offset {d}: reported {}", na.len());
            assert_eq!(a[0], u64::from(frac >= 1 << 127), "offset {d}");
        }
    }

    /// The scalar kernels against big-integer-free definitions, so the reference is itself
    /// checked.
    #[test]
    fn scalar_kernels_match_their_definitions() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let p = (1u64 << 61) - 1;
        let m = Modulus::try_new(p).unwrap();
        let xs: Vec<Vec<u64>> = (0..5).map(|_| residues(&mut rng, p)).collect();
        let refs: Vec<&[u64]> = xs.iter().map(|x| x.as_slice()).collect();
        let ws: Vec<u64> = (0..5).map(|_| rng.gen_range(0..p)).collect();
        let mut out = vec![0u64; N];
        dot_const(Kernel::Scalar, &mut out, &refs, &ws, None, &m);
        for (c, &o) in out.iter().enumerate() {
            let want = refs.iter().zip(&ws).fold(0u128, |a, (x, &w)| {
                (a + x[c] as u128 * w as u128) % p as u128
            });
            assert_eq!(o as u128, want);
        }
        // round(y · (2^127 / 2^128)) = round(y / 2) ties up = ⌈y/2⌉.
        let mut out = vec![0u64; N];
        fixed_point_round(
            Kernel::Scalar,
            &mut out,
            &refs[..1],
            &[1u128 << 127],
            NEAR_HALF_BITS,
            &mut Vec::new(),
        );
        for (c, &o) in out.iter().enumerate() {
            assert_eq!(o, refs[0][c].div_ceil(2));
        }
    }
}
