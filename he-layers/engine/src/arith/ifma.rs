//! AVX-512 IFMA lanes: eight 52-bit multiply-adds (`vpmadd52luq`/`vpmadd52huq`) per
//! instruction, for residues of moduli below 2^50.
//!
//! Each function computes exactly what its scalar counterpart in [`super::kernels`] does, on
//! the leading multiple of 8 of the slices (the dispatcher there runs only lengths that are
//! multiples of 8 here). Callers must have checked that the CPU has AVX-512F and IFMA.
//!
//! The bounds behind every step, for a modulus m < 2^50 and residues below 2^50:
//! - a Shoup product with w' = ⌊w 2^52 / m⌋ leaves a·w − ⌊a w'/2^52⌋·m in [0, 2m) for any
//!   a < 2^52, so its low 52 bits are the whole value;
//! - a product x·w < 2^100 splits into lo52 < 2^52 and hi52 < 2^48, so 15 of them sum in
//!   64-bit lanes with the high column below 2^52 after the low column's carry.

use super::kernels::Lanes;
use std::arch::x86_64::*;

const MASK52: u64 = (1 << 52) - 1;

/// How far ahead (in words) the inner products prefetch their many streams.
const PREFETCH: usize = 256;

/// The most terms one pair of columns takes before it is reduced.
pub(crate) const COLUMN_TERMS: usize = 15;

#[inline]
#[target_feature(enable = "avx512f,avx512ifma")]
fn splat(x: u64) -> __m512i {
    _mm512_set1_epi64(x as i64)
}

/// Eight words of `s` from index `i`.
///
/// # Safety
/// `i + 8 <= s.len()`.
#[inline]
#[target_feature(enable = "avx512f,avx512ifma")]
unsafe fn load(s: &[u64], i: usize) -> __m512i {
    debug_assert!(i + 8 <= s.len());
    // SAFETY: the caller keeps i + 8 within s.
    unsafe { _mm512_loadu_si512(s.as_ptr().add(i).cast()) }
}

/// Stores eight words into `s` from index `i`.
///
/// # Safety
/// `i + 8 <= s.len()`.
#[inline]
#[target_feature(enable = "avx512f,avx512ifma")]
unsafe fn store(s: &mut [u64], i: usize, v: __m512i) {
    debug_assert!(i + 8 <= s.len());
    // SAFETY: the caller keeps i + 8 within s.
    unsafe { _mm512_storeu_si512(s.as_mut_ptr().add(i).cast(), v) }
}

/// r mod m for lanes r < 2m.
#[inline]
#[target_feature(enable = "avx512f,avx512ifma")]
fn reduce_once(r: __m512i, m: __m512i) -> __m512i {
    _mm512_min_epu64(r, _mm512_sub_epi64(r, m))
}

/// a·w mod m in [0, 2m) for lanes a < 2^52, w < m, ws = ⌊w 2^52 / m⌋.
#[inline]
#[target_feature(enable = "avx512f,avx512ifma")]
fn mul_shoup_lazy(a: __m512i, w: __m512i, ws: __m512i, m: __m512i) -> __m512i {
    let z = _mm512_setzero_si512();
    let q = _mm512_madd52hi_epu64(z, a, ws);
    let r = _mm512_sub_epi64(
        _mm512_madd52lo_epu64(z, a, w),
        _mm512_madd52lo_epu64(z, q, m),
    );
    _mm512_and_si512(r, splat(MASK52))
}

/// (hi·2^52 + lo) mod m for lanes lo < 2^64 and hi + ⌊lo / 2^52⌋ < 2^52.
#[inline]
#[target_feature(enable = "avx512f,avx512ifma")]
fn reduce_columns(lo: __m512i, hi: __m512i, k: &Lanes) -> __m512i {
    let m = splat(k.m);
    let hi = _mm512_add_epi64(hi, _mm512_srli_epi64::<52>(lo));
    let lo = _mm512_and_si512(lo, splat(MASK52));
    let a = mul_shoup_lazy(hi, splat(k.r52), splat(k.r52_shoup), m);
    let b = mul_shoup_lazy(lo, splat(1), splat(k.one_shoup), m);
    let s = _mm512_add_epi64(a, b);
    let s = _mm512_min_epu64(s, _mm512_sub_epi64(s, splat(2 * k.m)));
    reduce_once(s, m)
}

/// out[c] = x[c]·w mod m, for x < 2^52 and w < m.
#[target_feature(enable = "avx512f,avx512ifma")]
pub(crate) fn mul_const(out: &mut [u64], x: &[u64], w: u64, k: &Lanes) {
    let n = out.len().min(x.len()) & !7;
    let (m, wv, ws) = (splat(k.m), splat(w), splat(k.shoup(w)));
    for c in (0..n).step_by(8) {
        // SAFETY: c + 8 <= n, within both slices.
        unsafe {
            store(
                out,
                c,
                reduce_once(mul_shoup_lazy(load(x, c), wv, ws, m), m),
            )
        };
    }
}

/// out[c] = (out[c] + x[c]·w) mod m, for out < m, x < 2^52 and w < m.
#[target_feature(enable = "avx512f,avx512ifma")]
pub(crate) fn mul_add_const(out: &mut [u64], x: &[u64], w: u64, k: &Lanes) {
    let n = out.len().min(x.len()) & !7;
    let (m, wv, ws) = (splat(k.m), splat(w), splat(k.shoup(w)));
    for c in (0..n).step_by(8) {
        // SAFETY: c + 8 <= n, within both slices.
        unsafe {
            let p = reduce_once(mul_shoup_lazy(load(x, c), wv, ws, m), m);
            store(out, c, reduce_once(_mm512_add_epi64(load(out, c), p), m));
        }
    }
}

/// out[c] = (start[c] + Σ_i xs[i][c]·ws[i]) mod m, for xs, ws < 2^50 and start < 2^60.
#[target_feature(enable = "avx512f,avx512ifma")]
pub(crate) fn dot_const(
    out: &mut [u64],
    xs: &[&[u64]],
    ws: &[u64],
    start: Option<&[u64]>,
    k: &Lanes,
) {
    let mut n = out.len() & !7;
    for x in xs {
        n = n.min(x.len() & !7);
    }
    if let Some(s) = start {
        n = n.min(s.len() & !7);
    }
    let weights: Vec<__m512i> = ws.iter().map(|&w| splat(w)).collect();
    for c in (0..n).step_by(8) {
        let mut lo = match start {
            // SAFETY: c + 8 <= n <= s.len().
            Some(s) => unsafe { load(s, c) },
            None => _mm512_setzero_si512(),
        };
        let mut hi = _mm512_setzero_si512();
        for (t, (x, w)) in xs.iter().zip(&weights).enumerate() {
            if t > 0 && t % COLUMN_TERMS == 0 {
                lo = reduce_columns(lo, hi, k);
                hi = _mm512_setzero_si512();
            }
            // SAFETY: c + 8 <= n <= x.len().
            let xv = unsafe { load(x, c) };
            lo = _mm512_madd52lo_epu64(lo, xv, *w);
            hi = _mm512_madd52hi_epu64(hi, xv, *w);
        }
        // SAFETY: c + 8 <= n <= out.len().
        unsafe { store(out, c, reduce_columns(lo, hi, k)) };
    }
}

/// Slot-wise inner products with two right-hand sides at once:
/// out0[c] = Σ_i xs[i][c]·bs[i][c] mod m and out1[c] = Σ_i xs[i][c]·as_[i][c] mod m, for
/// inputs below 2^50.
#[target_feature(enable = "avx512f,avx512ifma")]
pub(crate) fn dot_slots2(
    out0: &mut [u64],
    out1: &mut [u64],
    xs: &[&[u64]],
    bs: &[&[u64]],
    as_: &[&[u64]],
    k: &Lanes,
) {
    let mut n = out0.len().min(out1.len()) & !7;
    for s in xs.iter().chain(bs).chain(as_) {
        n = n.min(s.len() & !7);
    }
    let z = _mm512_setzero_si512();
    for c in (0..n).step_by(8) {
        let (mut lo0, mut hi0, mut lo1, mut hi1) = (z, z, z, z);
        for (t, ((x, b), a)) in xs.iter().zip(bs).zip(as_).enumerate() {
            if t > 0 && t % COLUMN_TERMS == 0 {
                lo0 = reduce_columns(lo0, hi0, k);
                lo1 = reduce_columns(lo1, hi1, k);
                hi0 = z;
                hi1 = z;
            }
            // SAFETY: c + 8 <= n, within every slice; a prefetch of any address is harmless
            // (wrapping_add: never dereferenced).
            let (xv, bv, av) = unsafe {
                _mm_prefetch::<_MM_HINT_T0>(b.as_ptr().wrapping_add(c + PREFETCH).cast());
                _mm_prefetch::<_MM_HINT_T0>(a.as_ptr().wrapping_add(c + PREFETCH).cast());
                _mm_prefetch::<_MM_HINT_T0>(x.as_ptr().wrapping_add(c + PREFETCH).cast());
                (load(x, c), load(b, c), load(a, c))
            };
            lo0 = _mm512_madd52lo_epu64(lo0, xv, bv);
            hi0 = _mm512_madd52hi_epu64(hi0, xv, bv);
            lo1 = _mm512_madd52lo_epu64(lo1, xv, av);
            hi1 = _mm512_madd52hi_epu64(hi1, xv, av);
        }
        // SAFETY: c + 8 <= n, within both outputs.
        unsafe {
            store(out0, c, reduce_columns(lo0, hi0, k));
            store(out1, c, reduce_columns(lo1, hi1, k));
        }
    }
}

/// out[c] = ⌊(Σ_i ys[i][c]·F_i + 2^127) / 2^128⌋ for ys < 2^52 and 128-bit fractions F_i given
/// as 52-bit pieces [F mod 2^52, ⌊F/2^52⌋ mod 2^52, ⌊F/2^104⌋], at most 1024 terms. Pushes onto
/// `near_half` every c whose sum's fractional part is within 2^-70 (2^58 units of 2^-128,
/// [`super::kernels::NEAR_HALF_BITS`]) of one half.
#[target_feature(enable = "avx512f,avx512ifma")]
pub(crate) fn fixed_point_round(
    out: &mut [u64],
    ys: &[&[u64]],
    fractions: &[[u64; 3]],
    near_half: &mut Vec<usize>,
) {
    let mut n = out.len() & !7;
    for y in ys {
        n = n.min(y.len() & !7);
    }
    let f: Vec<[__m512i; 3]> = fractions
        .iter()
        .map(|p| [splat(p[0]), splat(p[1]), splat(p[2])])
        .collect();
    let z = _mm512_setzero_si512();
    let mask = splat(MASK52);
    for c in (0..n).step_by(8) {
        // Columns of weight 2^0, 2^52, 2^104 and 2^156 of the exact sum.
        let (mut c0, mut c1, mut c2, mut c3) = (z, z, z, z);
        for (y, p) in ys.iter().zip(&f) {
            // SAFETY: c + 8 <= n <= y.len().
            let yv = unsafe { load(y, c) };
            c0 = _mm512_madd52lo_epu64(c0, yv, p[0]);
            c1 = _mm512_madd52hi_epu64(c1, yv, p[0]);
            c1 = _mm512_madd52lo_epu64(c1, yv, p[1]);
            c2 = _mm512_madd52hi_epu64(c2, yv, p[1]);
            c2 = _mm512_madd52lo_epu64(c2, yv, p[2]);
            c3 = _mm512_madd52hi_epu64(c3, yv, p[2]);
        }
        let c1 = _mm512_add_epi64(c1, _mm512_srli_epi64::<52>(c0));
        let c2 = _mm512_add_epi64(c2, _mm512_srli_epi64::<52>(c1));
        let c3 = _mm512_add_epi64(c3, _mm512_srli_epi64::<52>(c2));
        let c2 = _mm512_and_si512(c2, mask);
        // The fraction's top 70 bits are its bits 127..104 (c2's low 24) and 103..58 (c1's top
        // 46): 1000…0 or 0111…1 put it within 2^58 of 2^127.
        let top24 = _mm512_and_si512(c2, splat((1 << 24) - 1));
        let mid46 = _mm512_srli_epi64::<6>(_mm512_and_si512(c1, mask));
        let above =
            _mm512_cmpeq_epu64_mask(top24, splat(1 << 23)) & _mm512_cmpeq_epu64_mask(mid46, z);
        let below = _mm512_cmpeq_epu64_mask(top24, splat((1 << 23) - 1))
            & _mm512_cmpeq_epu64_mask(mid46, splat((1 << 46) - 1));
        let near = above | below;
        if near != 0 {
            near_half.extend((0..8).filter(|b| near >> b & 1 == 1).map(|b| c + b));
        }
        // 2^128 = 2^104 · 2^24: the columns below 2^104 cannot reach the rounding bit.
        let r = _mm512_add_epi64(
            _mm512_slli_epi64::<28>(c3),
            _mm512_srli_epi64::<24>(_mm512_add_epi64(c2, splat(1 << 23))),
        );
        // SAFETY: c + 8 <= n <= out.len().
        unsafe { store(out, c, r) };
    }
}

/// out[c] = (out[c] − table[min(v[c], table.len() − 1)]) mod m, for out < m and a non-empty
/// table of residues.
#[target_feature(enable = "avx512f,avx512ifma")]
pub(crate) fn sub_table(out: &mut [u64], v: &[u64], table: &[u64], m: u64) {
    let n = out.len().min(v.len()) & !7;
    let Some(last) = table.len().checked_sub(1) else {
        return;
    };
    let (mv, top) = (splat(m), splat(last as u64));
    if table.len() <= 8 {
        // The whole table in one register: a permutation instead of a gather.
        let mut padded = [0u64; 8];
        padded[..table.len()].copy_from_slice(table);
        // SAFETY: `padded` holds 8 words.
        let t = unsafe { load(&padded, 0) };
        for c in (0..n).step_by(8) {
            // SAFETY: c + 8 <= n, within both slices.
            unsafe {
                let idx = _mm512_min_epu64(load(v, c), top);
                let d = _mm512_sub_epi64(load(out, c), _mm512_permutexvar_epi64(idx, t));
                store(out, c, _mm512_min_epu64(d, _mm512_add_epi64(d, mv)));
            }
        }
        return;
    }
    for c in (0..n).step_by(8) {
        // SAFETY: c + 8 <= n; every gathered index is clamped to the table.
        unsafe {
            let idx = _mm512_min_epu64(load(v, c), top);
            let g = _mm512_i64gather_epi64::<8>(idx, table.as_ptr().cast());
            let d = _mm512_sub_epi64(load(out, c), g);
            store(out, c, _mm512_min_epu64(d, _mm512_add_epi64(d, mv)));
        }
    }
}

/// out[c] = the centered lift of x[c] (a residue mod some p, minus p when above `half`) mod m:
/// x mod m, plus `minus_p` (= −p mod m) where x > half. For x < 2^50.
#[target_feature(enable = "avx512f,avx512ifma")]
pub(crate) fn lift_centered(out: &mut [u64], x: &[u64], half: u64, minus_p: u64, k: &Lanes) {
    let n = out.len().min(x.len()) & !7;
    let (m, one, one_s, h, lift) = (
        splat(k.m),
        splat(1),
        splat(k.one_shoup),
        splat(half),
        splat(minus_p),
    );
    for c in (0..n).step_by(8) {
        // SAFETY: c + 8 <= n, within both slices.
        unsafe {
            let xv = load(x, c);
            let r = reduce_once(mul_shoup_lazy(xv, one, one_s, m), m);
            let above = _mm512_cmpgt_epu64_mask(xv, h);
            let r = _mm512_mask_add_epi64(r, above, r, lift);
            store(out, c, reduce_once(r, m));
        }
    }
}

/// a[c] = (a[c] − t[c])·w mod m, for a, t < m and w < m.
#[target_feature(enable = "avx512f,avx512ifma")]
pub(crate) fn sub_mul_const(a: &mut [u64], t: &[u64], w: u64, k: &Lanes) {
    let n = a.len().min(t.len()) & !7;
    let (m, wv, ws) = (splat(k.m), splat(w), splat(k.shoup(w)));
    for c in (0..n).step_by(8) {
        // SAFETY: c + 8 <= n, within both slices.
        unsafe {
            let d = _mm512_sub_epi64(load(a, c), load(t, c));
            let d = _mm512_min_epu64(d, _mm512_add_epi64(d, m));
            store(a, c, reduce_once(mul_shoup_lazy(d, wv, ws, m), m));
        }
    }
}
