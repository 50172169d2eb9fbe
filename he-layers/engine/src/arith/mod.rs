//! Modular arithmetic on plain `u64` residues: word-sized moduli ([`modulus`]), prime
//! generation ([`primes`]), the NTT ([`ntt`]), and RNS bases with exact base conversion and
//! scaling ([`rns`], private to the engine). Polynomials live in `poly`.

#[cfg(target_arch = "x86_64")]
mod ifma;
pub(crate) mod kernels;
pub mod modulus;
pub mod ntt;
pub mod primes;
pub(crate) mod rns;

pub use kernels::Kernel;
pub use modulus::{Modulus, MAX_MODULUS_BITS};
pub use ntt::NttOperator;
pub use primes::{generate_primes, is_prime};
pub use rns::log2_biguint;
pub(crate) use rns::{BaseConverter, RnsBasis, RnsScaler};

#[cfg(test)]
mod tests {
    use super::rns::biguint_mod;
    use super::*;
    use num_bigint::BigUint;
    use num_traits::{One, Zero};
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
