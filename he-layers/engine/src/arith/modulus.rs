//! Word-sized moduli with Barrett and Shoup reduction (the arithmetic of one limb).

use super::primes::is_prime;

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
        // Branch-free (a conditional subtraction by min): residues are random to a predictor.
        let s = a + b;
        s.min(s.wrapping_sub(self.p))
    }

    /// (a - b) mod p for a, b < p.
    #[inline]
    pub fn sub(&self, a: u64, b: u64) -> u64 {
        self.sub_flat(a, b)
    }

    /// (-a) mod p for a < p.
    #[inline]
    pub fn neg(&self, a: u64) -> u64 {
        self.sub_flat(0, a)
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

    /// x mod p for any u64, without branches (for loops the compiler keeps straight): Barrett
    /// with floor(2^64/p) leaves x − q̂p < 3p, then two conditional subtractions.
    #[inline]
    pub fn reduce_flat(&self, x: u64) -> u64 {
        let q = ((x as u128 * self.barrett_hi as u128) >> 64) as u64;
        let r = x.wrapping_sub(q.wrapping_mul(self.p));
        let r = r.min(r.wrapping_sub(self.p));
        r.min(r.wrapping_sub(self.p))
    }

    /// (a − b) mod p for a, b < p, without branches.
    #[inline]
    pub fn sub_flat(&self, a: u64, b: u64) -> u64 {
        let d = a.wrapping_sub(b);
        d.min(d.wrapping_add(self.p))
    }

    /// a·w mod p by Shoup's method (w_shoup = floor(w·2^64/p)), for any u64 a, without branches.
    #[inline]
    pub fn mul_shoup_flat(&self, a: u64, w: u64, w_shoup: u64) -> u64 {
        let q = ((a as u128 * w_shoup as u128) >> 64) as u64;
        let r = a.wrapping_mul(w).wrapping_sub(q.wrapping_mul(self.p));
        r.min(r.wrapping_sub(self.p))
    }

    /// x mod p for a signed integer, in [0, p).
    #[inline]
    pub fn reduce_i64(&self, x: i64) -> u64 {
        // Branch-free: signs of lifted plaintexts and noise are coin flips to a predictor.
        let r = self.reduce_flat(x.unsigned_abs());
        let minus = self.sub_flat(0, r);
        let negative = (x >> 63) as u64;
        r ^ ((r ^ minus) & negative)
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
        a as i64 - i64::from(a > self.p / 2) * self.p as i64
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::Modulus;
    use rand::{Rng, SeedableRng};

    /// The branch-free forms (and the additions built on them) against u128 arithmetic, on random and extreme inputs, for moduli
    /// from tiny to the 62-bit limit.
    #[test]
    fn flat_forms_equal_wide_arithmetic() {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for p in [
            2u64,
            3,
            65537,
            (1 << 36) + 1,
            (1u64 << 50) - 27,
            (1u64 << 61) - 1,
            (1u64 << 62) - 57,
        ] {
            let m = Modulus::try_new(p).unwrap(); // every p listed is in [2, 2^62)
            let mut xs: Vec<u64> = vec![
                0,
                1,
                p - 1,
                p,
                p + 1,
                2 * p,
                3 * p - 1,
                u64::MAX,
                1 << 63,
                (1 << 63) + 1,
            ];
            xs.extend((0..2000).map(|_| r.gen::<u64>()));
            xs.extend((0..2000).map(|_| r.gen_range(0..4 * p.min(1 << 61))));
            for &x in &xs {
                assert_eq!(m.reduce_flat(x), x % p, "reduce {x} mod {p}");
                let signed = x as i64;
                let want = (i128::from(signed)).rem_euclid(i128::from(p)) as u64;
                assert_eq!(m.reduce_i64(signed), want, "reduce {signed} mod {p}");
                let c = m.center(x % p);
                assert!(
                    c.unsigned_abs() <= p / 2
                        && (i128::from(c) - i128::from(x % p)) % i128::from(p) == 0
                );
                let (a, b) = (x % p, r.gen_range(0..p));
                assert_eq!(m.sub_flat(a, b), (a + p - b) % p, "{a} - {b} mod {p}");
                assert_eq!(m.sub(a, b), (a + p - b) % p, "{a} - {b} mod {p}");
                assert_eq!(m.add(a, b), (a + b) % p, "{a} + {b} mod {p}");
                assert_eq!(m.neg(a), (p - a) % p, "-{a} mod {p}");
                let w = r.gen_range(0..p);
                let ws = ((u128::from(w) << 64) / u128::from(p)) as u64;
                let expect = (u128::from(x) * u128::from(w) % u128::from(p)) as u64;
                assert_eq!(m.mul_shoup_flat(x, w, ws), expect, "{x}·{w} mod {p}");
            }
        }
    }
}
