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

    fn moduli(bits: u32, count: usize) -> Vec<Modulus> {
        generate_primes(bits, 1024, count, &[])
            .unwrap()
            .into_iter()
            .map(|p| Modulus::try_new(p).unwrap())
            .collect()
    }

    /// `count` primes below `start`, far from any power of two (so the fractions 2^128/p are far
    /// from integers and fixed-point truncation errors are as large as they get).
    fn primes_below(start: u64, count: usize) -> Vec<Modulus> {
        let mut v = Vec::new();
        let mut c = start | 1;
        while v.len() < count {
            c -= 2;
            if is_prime(c) {
                v.push(Modulus::try_new(c).unwrap());
            }
        }
        v
    }

    /// Residues of the given big integers, limb by limb.
    fn residues_of(xs: &[BigUint], moduli: &[Modulus]) -> Vec<Vec<u64>> {
        moduli
            .iter()
            .map(|m| xs.iter().map(|x| biguint_mod(x, m.value())).collect())
            .collect()
    }

    /// Random values below `modulus` (a multiple of 8 of them, so the IFMA kernels take them),
    /// with `edges` planted first.
    fn values(rng: &mut ChaCha8Rng, modulus: &BigUint, edges: Vec<BigUint>) -> Vec<BigUint> {
        let mut xs = edges;
        let bytes = modulus.bits().div_ceil(8) as usize + 8;
        while xs.len() < 304 {
            let r: Vec<u8> = (0..bytes).map(|_| rng.gen()).collect();
            xs.push(BigUint::from_bytes_le(&r) % modulus);
        }
        xs
    }

    /// Both kernels against big integers, at the boundaries of the centered range (0, 1, ⌊Q/2⌋
    /// and its neighbours, Q − 1) and on random values; to 61-bit primes (scalar only) and to
    /// primes below 2^50 (the IFMA path where the CPU has it).
    #[test]
    fn base_conversion_gives_centered_value() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        // Sources below 2^50 (the IFMA path) and of 61 bits (scalar, a wider rounding window).
        for from in [moduli(50, 4), primes_below(3 << 59, 5)] {
            let q = from.iter().fold(BigUint::one(), |a, m| a * m.value());
            let half = &q >> 1u32;
            let one = BigUint::one();
            let edges = vec![
                BigUint::zero(),
                one.clone(),
                &q - &one,
                half.clone(),
                &half + &one,
                &half - &one,
                &half + 2u32,
                &q - 2u32,
            ];
            let xs = values(&mut rng, &q, edges);
            let input = residues_of(&xs, &from);
            let inp: Vec<&[u64]> = input.iter().map(|v| v.as_slice()).collect();
            let wide: Vec<Modulus> = moduli(61, 3).into_iter().chain(moduli(17, 1)).collect();
            let narrow: Vec<Modulus> = moduli(49, 5).into_iter().chain(moduli(17, 1)).collect();
            for to in [wide, narrow] {
                let conv = BaseConverter::new(&from, &to);
                for kernel in [Kernel::Scalar, Kernel::best()] {
                    let mut out = vec![vec![0u64; xs.len()]; to.len()];
                    let mut o: Vec<&mut [u64]> = out.iter_mut().map(|v| v.as_mut_slice()).collect();
                    conv.convert_with(kernel, &inp, &mut o);
                    for (c, x) in xs.iter().enumerate() {
                        for (j, t) in to.iter().enumerate() {
                            let expect = if x > &half {
                                t.neg(biguint_mod(&(&q - x), t.value()))
                            } else {
                                biguint_mod(x, t.value())
                            };
                            assert_eq!(out[j][c], expect, "{kernel:?}: x = {x} to {}", t.value());
                        }
                    }
                }
            }
        }
    }

    /// Both kernels against big integers: round(t x / Q), ties up, at the ends of the range and
    /// where t x / Q is within one of a half (the rounding boundary), HPS-style (Q ∪ P to P on
    /// the diagonal) and decryption-style (Q to t).
    #[test]
    fn scaler_rounds_exactly_like_big_integers() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let qs = moduli(44, 3);
        let ps = moduli(50, 4);
        let t = 65537u64;
        let q = qs.iter().fold(BigUint::one(), |a, m| a * m.value());
        let source: Vec<Modulus> = qs.iter().chain(&ps).copied().collect();
        let m = source.iter().fold(BigUint::one(), |a, m| a * m.value());
        let hps = RnsScaler::new(&source, qs.len(), t, &ps);
        let tm = Modulus::try_new(t).unwrap();
        let dec = RnsScaler::new(&qs, qs.len(), t, &[tm]);
        let two_t = BigUint::from(2 * t);
        // Decryption-style over eighteen 62-bit primes: the rounded sum passes 2^64 (scalar,
        // wide).
        let wide = primes_below(3 << 60, 18);
        let wq = wide.iter().fold(BigUint::one(), |a, m| a * m.value());
        let wdec = RnsScaler::new(&wide, wide.len(), t, &[tm]);
        for case in 0..3 {
            let (src, tgt, scaler, modulus, q): (
                &[Modulus],
                &[Modulus],
                &RnsScaler,
                &BigUint,
                &BigUint,
            ) = match case {
                0 => (&source, &ps, &hps, &m, &q),
                1 => (&qs, std::slice::from_ref(&tm), &dec, &q, &q),
                _ => (&wide, std::slice::from_ref(&tm), &wdec, &wq, &wq),
            };
            // x with t x / Q = j + 1/2 − ε and + ε: x = ⌊(2j + 1) Q / 2t⌋ and the next one.
            let mut edges = vec![BigUint::zero(), BigUint::one(), modulus - 1u32];
            for j in [0u64, 1, 7, t / 2, t - 1] {
                let x = (q * (2 * j + 1)) / &two_t;
                edges.push(x.clone());
                edges.push(&x + 1u32);
            }
            let xs = values(&mut rng, modulus, edges);
            let input = residues_of(&xs, src);
            let inp: Vec<&[u64]> = input.iter().map(|v| v.as_slice()).collect();
            for kernel in [Kernel::Scalar, Kernel::best()] {
                let mut out = vec![vec![0u64; xs.len()]; tgt.len()];
                let mut o: Vec<&mut [u64]> = out.iter_mut().map(|v| v.as_mut_slice()).collect();
                scaler.scale_with(kernel, &inp, &mut o);
                for (c, x) in xs.iter().enumerate() {
                    let r = (x * t + (q >> 1u32)) / q;
                    for (k, tk) in tgt.iter().enumerate() {
                        assert_eq!(
                            out[k][c],
                            biguint_mod(&r, tk.value()),
                            "{kernel:?}, case {case}, x = {x}"
                        );
                    }
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
