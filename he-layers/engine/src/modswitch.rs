//! Modulus switching: a ciphertext over primes q_1..q_L becomes one over q_1..q_k by dropping
//! the last primes one at a time, each time replacing c by round(c / q_last) exactly in RNS.
//!
//! With c ≡ r (mod q_L), r centered, (c − r)/q_L is an integer and equals round(c/q_L); in
//! each remaining limb it is (c_i − r) · q_L⁻¹ mod q_i. The phase c0 + c1 s is divided by q_L
//! up to a rounding error of at most (1 + ‖s‖₁)/2, so the invariant noise grows by at most
//! t (N + 1)/2 per dropped prime in numerator terms while the ciphertext shrinks.

use super::encrypt::Ciphertext;
use super::eval::log2_add;
use super::params::BfvParameters;
use super::poly::{Representation, RnsPoly};
use super::Error;
use std::sync::Arc;

/// log2 of the noise numerator after switching a ciphertext with numerator 2^`noise_log2`
/// from `top` down to its first `level` primes: ν·Q_k/Q plus the rounding errors, at most
/// t (N + 1) in all (a geometric sum of t (N + 1)/2 per dropped prime).
pub fn switched_noise_log2(top: &BfvParameters, noise_log2: f64, level: usize) -> f64 {
    let dropped: f64 = top.moduli()[level.min(top.level())..]
        .iter()
        .map(|&q| (q as f64).log2())
        .sum();
    if dropped == 0.0 {
        return noise_log2;
    }
    let t = (top.plain_modulus() as f64).log2();
    let rounding = t + (top.degree() as f64 + 1.0).log2();
    log2_add(noise_log2 - dropped, rounding)
}

/// Switches `ct` to the first `level` primes of its parameter set (`level` at most its
/// current level). The result belongs to `ct.parameters().at_level(level)`, decrypts to the
/// same plaintext while noise allows, and serializes in level/L of the bytes.
pub fn switch_to_level(ct: &Ciphertext, level: usize) -> Result<Ciphertext, Error> {
    let from = &ct.params;
    let target: Arc<BfvParameters> = from.at_level(level)?;
    if level == from.level() {
        return Ok(ct.clone());
    }
    let basis = &from.q;
    let moduli = basis.moduli();
    let n = from.degree();
    let polys = ct
        .polys
        .iter()
        .map(|p| {
            let mut c = p.clone();
            c.inverse_ntt(basis);
            for last in (level..from.level()).rev() {
                let q_last = moduli[last];
                let (low, high) = c.data_mut().split_at_mut(last * n);
                let r = &high[..n];
                for (i, m) in moduli[..last].iter().enumerate() {
                    let inv = m.inv(m.reduce(q_last.value())).unwrap_or(0);
                    let inv_shoup = m.shoup(inv);
                    for (x, &ri) in low[i * n..(i + 1) * n].iter_mut().zip(r) {
                        let ri = m.reduce_i64(q_last.center(ri));
                        *x = m.mul_shoup(m.sub(*x, ri), inv, inv_shoup);
                    }
                }
                c.truncate_limbs(last);
            }
            let mut out = RnsPoly::from_data(c.data().to_vec(), n, Representation::Coefficient);
            out.forward_ntt(&target.q);
            out
        })
        .collect();
    Ok(Ciphertext {
        params: target,
        polys,
        seed: None,
        noise_log2: switched_noise_log2(from, ct.noise_log2, level),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{small_params, to_integers};
    use crate::{BatchEncoder, Decryptor, Encryptor, PublicKey, SecretKey};
    use num_bigint::{BigInt, BigUint};
    use num_traits::Signed;

    fn params() -> Arc<BfvParameters> {
        small_params(30, 40)
    }

    #[test]
    fn switching_divides_by_the_dropped_primes_and_rounds_exactly() {
        let params = params();
        let sk = SecretKey::generate(&params);
        let pk = PublicKey::generate(&sk);
        let enc = Encryptor::new(&pk);
        let ct = enc.encrypt_zero();
        let big_q = params.q.product().clone();
        for level in [2, 1] {
            let low = switch_to_level(&ct, level).unwrap();
            let low_params = params.at_level(level).unwrap();
            let q_low = low_params.q.product().clone();
            let dropped = &big_q / &q_low;
            for (hi, lo) in ct.polys.iter().zip(&low.polys) {
                let want: Vec<BigUint> = to_integers(hi, &params)
                    .into_iter()
                    .map(|c| {
                        // round(c / dropped) with c centered mod Q, then mod Q_k.
                        let c = BigInt::from(c);
                        let c = if c > BigInt::from(big_q.clone() >> 1u32) {
                            c - BigInt::from(big_q.clone())
                        } else {
                            c
                        };
                        let d = BigInt::from(dropped.clone());
                        // No ties: d is odd.
                        let r = if c.is_negative() {
                            let r: BigInt = (-&c * 2 + &d) / (&d * 2);
                            -r
                        } else {
                            (&c * 2 + &d) / (&d * 2)
                        };
                        let m = BigInt::from(q_low.clone());
                        let r = ((r % &m) + &m) % &m;
                        r.to_biguint().unwrap()
                    })
                    .collect();
                let got = to_integers(lo, &low_params);
                let differ = want.iter().zip(&got).filter(|(a, b)| a != b).count();
                // Dropping one prime at a time rounds twice; the results may differ by one
                // from a single rounding, never more.
                for (a, b) in want.iter().zip(&got) {
                    let d = (BigInt::from(a.clone()) - BigInt::from(b.clone())).abs();
                    let wrapped = (BigInt::from(q_low.clone()) - &d).abs();
                    let d = d.min(wrapped);
                    assert!(d <= BigInt::from(1), "off by {d}");
                }
                if level == 2 {
                    assert_eq!(differ, 0, "a single drop is exact rounding");
                }
            }
        }
    }

    #[test]
    fn switched_ciphertexts_decrypt_and_shrink() {
        let params = params();
        let sk = SecretKey::generate(&params);
        let pk = PublicKey::generate(&sk);
        let encoder = BatchEncoder::try_new(&params).unwrap();
        let values: Vec<i64> = (0..2048).map(|i| (i * 37 % 12289) - 6144).collect();
        let ct = Encryptor::new(&pk)
            .encrypt(&encoder.encode(&values).unwrap())
            .unwrap();
        let dec = Decryptor::new(&sk);
        let full = dec.noise_budget(&ct).unwrap();
        for level in [3, 2, 1] {
            let low = switch_to_level(&ct, level).unwrap();
            assert_eq!(low.parameters().level(), level);
            assert_eq!(
                encoder.decode(&dec.decrypt(&low).unwrap()),
                values,
                "level {level}"
            );
            let budget = dec.noise_budget(&low).unwrap() as f64;
            // In the measurement's whole bits: the real-valued estimate may exceed the
            // floored measurement by less than a bit.
            assert!(
                budget >= low.estimated_whole_budget(),
                "estimate conservative"
            );
            assert!(budget <= full as f64);
            // Header and size/noise fields, then two polynomials of `level` limbs.
            let fixed = crate::serial::HEADER_LEN + 10;
            assert_eq!(
                (low.to_bytes().len() - fixed) * 3,
                (ct.to_bytes().len() - fixed) * level
            );
        }
        assert!(switch_to_level(&ct, 0).is_err());
        assert!(switch_to_level(&ct, 4).is_err());
    }
}
