//! Primality and the generation of NTT-friendly primes.

use super::modulus::MAX_MODULUS_BITS;

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
