//! Compressing an answer for the wire: a ciphertext over Q = q_1…q_k becomes one over the
//! power of two 2^d, each coefficient c replaced by round(2^d · c / Q) mod 2^d in d bits, and
//! the client lifts it back to Q with round(Q · c' / 2^d) before decrypting as usual.
//!
//! Both directions scale the phase c0 + c1 s by the ratio of the moduli up to a rounding of at
//! most (1 + ‖s‖₁)/2, so the noise numerator becomes ν · 2^d/Q + t (N + 1)/2 at 2^d. The
//! smallest d that keeps the client's whole-bit budget is about log2 t + log2 N + 2 bits,
//! against the ≈ 40 bits of flood above t that a sanitized answer's primes must carry: a
//! sanitized answer shrinks two to three times. The compression is a public function of the
//! sanitized ciphertext, so it reveals nothing the sanitized ciphertext does not.
//!
//! In RNS, with a_i = [c_i · (Q/q_i)⁻¹]_{q_i}, c = Σ a_i · Q/q_i − v·Q for an integer v, so
//! 2^d · c/Q ≡ Σ a_i · 2^d/q_i (mod 2^d): each term is an exact 128-bit quotient plus a
//! fraction. Lifting back, ⌊(c'Q + 2^(d−1)) / 2^d⌋ ≡ (2^(d−1) − r) · 2^−d (mod q_i) where
//! r = (c'Q + 2^(d−1)) mod 2^d needs only Q mod 2^d.

use super::encrypt::{whole_bit_budget, Ciphertext};
use super::eval::log2_add;
use super::params::BfvParameters;
use super::poly::{Representation, RnsPoly};
use super::Error;
use rayon::prelude::*;
use std::sync::Arc;

/// The widest compressed coefficient (2^d · a_i stays below 2^128 for primes below 2^64).
pub const MAX_COMPRESSED_BITS: u32 = 62;

/// The whole-bit budget the client keeps after compression, at 2^d and after lifting back.
const MIN_BUDGET: f64 = super::sanitize::MIN_BUDGET_AFTER_SANITIZATION;

/// A ciphertext of two polynomials over 2^`bits`, in coefficient form: the wire form of an
/// answer. Made by [`compress`], read back by [`CompressedCiphertext::decompress`].
#[derive(Clone, Debug, PartialEq)]
pub struct CompressedCiphertext {
    pub(crate) params: Arc<BfvParameters>,
    pub(crate) bits: u32,
    /// c0 then c1, each N values below 2^bits.
    pub(crate) coeffs: [Vec<u64>; 2],
    /// log2 of the noise numerator bound at Q before compression (the sanitization's public
    /// bound).
    pub(crate) noise_log2: f64,
}

/// log2 of t (N + 1)/2: what one rounding of both components adds to the noise numerator.
fn rounding_log2(params: &BfvParameters) -> f64 {
    (params.plain_modulus() as f64).log2() + (params.degree() as f64 + 1.0).log2() - 1.0
}

/// log2 of the noise numerator bound at Q after compressing a ciphertext with bound
/// 2^`noise_log2` to 2^`bits` and lifting it back: the noise field of the lifted ciphertext.
pub fn lifted_noise_log2(params: &BfvParameters, noise_log2: f64, bits: u32) -> f64 {
    let ratio = params.log2_q() - bits as f64;
    // ν + t (N + 1)/2 · (Q/2^d + 1).
    log2_add(noise_log2, rounding_log2(params) + log2_add(ratio, 0.0))
}

/// The fewest bits d to which a ciphertext of `params` with noise numerator at most
/// 2^`noise_log2` compresses while the client keeps a whole-bit budget of at least 1, both at
/// 2^d and lifted back to Q; `None` when no d saves bytes (d must be below the bits of the
/// ciphertext's primes) or the budget is too small already.
pub fn compression_bits(params: &BfvParameters, noise_log2: f64) -> Option<u32> {
    let log_q = params.log2_q();
    let prime_bits: u32 = params.q.moduli().iter().map(|m| m.bits()).sum();
    let rounding = rounding_log2(params);
    (2..=MAX_COMPRESSED_BITS.min(prime_bits.saturating_sub(1))).find(|&d| {
        let at_2d = log2_add(noise_log2 + d as f64 - log_q, rounding);
        whole_bit_budget(d as f64, at_2d) >= MIN_BUDGET
            && whole_bit_budget(log_q, lifted_noise_log2(params, noise_log2, d)) >= MIN_BUDGET
    })
}

/// The whole-bit budget a client keeps by the bound after the compression
/// [`compression_bits`] chooses (`None`: no compression, the budget stays as it was).
pub fn compressed_budget(params: &BfvParameters, noise_log2: f64) -> Option<f64> {
    let bits = compression_bits(params, noise_log2)?;
    Some(whole_bit_budget(
        params.log2_q(),
        lifted_noise_log2(params, noise_log2, bits),
    ))
}

/// Compresses a two-polynomial ciphertext to 2^`bits` (see [`compression_bits`]).
pub fn compress(ct: &Ciphertext, bits: u32) -> Result<CompressedCiphertext, Error> {
    if ct.polys.len() != 2 {
        return Err(Error::CiphertextSize {
            expected: 2,
            found: ct.polys.len(),
        });
    }
    if !(1..=MAX_COMPRESSED_BITS).contains(&bits) {
        return Err(Error::CompressionBits {
            bits,
            max: MAX_COMPRESSED_BITS,
        });
    }
    let params = &ct.params;
    let basis = &params.q;
    let moduli = basis.moduli();
    let n = params.degree();
    // (Q/q_i)⁻¹ mod q_i.
    let hat_inv: Vec<(u64, u64)> = moduli
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let hat = moduli
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .fold(1, |acc, (_, q)| m.mul(acc, m.reduce(q.value())));
            let inv = m.inv(hat).unwrap_or(0);
            (inv, m.shoup(inv))
        })
        .collect();
    let mask = (1u64 << bits) - 1;
    let coeffs = ct.polys.iter().map(|p| {
        let mut c = p.clone();
        c.inverse_ntt(basis);
        (0..n)
            .map(|k| {
                let (mut whole, mut frac) = (0u64, 0.0f64);
                for (i, m) in moduli.iter().enumerate() {
                    let a = m.mul_shoup(c.limb(i)[k], hat_inv[i].0, hat_inv[i].1);
                    let scaled = (a as u128) << bits;
                    let q = m.value() as u128;
                    whole = whole.wrapping_add((scaled / q) as u64);
                    frac += (scaled % q) as f64 / q as f64;
                }
                whole.wrapping_add(frac.round() as u64) & mask
            })
            .collect::<Vec<u64>>()
    });
    let mut it = coeffs;
    let (Some(c0), Some(c1)) = (it.next(), it.next()) else {
        return Err(Error::CiphertextSize {
            expected: 2,
            found: 0,
        });
    };
    Ok(CompressedCiphertext {
        params: params.clone(),
        bits,
        coeffs: [c0, c1],
        noise_log2: ct.noise_log2,
    })
}

/// Sanitized answers of one level in their wire form: all compressed (in parallel) to the
/// width their public noise bound 2^`noise_log2` allows, or `None` when compressing saves
/// nothing.
pub fn compress_answers(
    cts: &[Ciphertext],
    noise_log2: f64,
) -> Result<Option<(u32, Vec<CompressedCiphertext>)>, Error> {
    let Some(first) = cts.first() else {
        return Ok(None);
    };
    let Some(bits) = compression_bits(&first.params, noise_log2) else {
        return Ok(None);
    };
    let out = cts
        .par_iter()
        .map(|c| {
            super::ensure_same(&first.params, &c.params)?;
            compress(c, bits)
        })
        .collect::<Result<_, _>>()?;
    Ok(Some((bits, out)))
}

impl CompressedCiphertext {
    /// The parameter set (level) the ciphertext lifts back to.
    pub fn parameters(&self) -> &Arc<BfvParameters> {
        &self.params
    }

    /// d: bits per coefficient.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Lifts back to a ciphertext over Q (coefficients round(Q · c' / 2^d)), which decrypts
    /// and measures its noise as any other; its noise field adds both roundings to the bound.
    pub fn decompress(&self) -> Ciphertext {
        let params = &self.params;
        let basis = &params.q;
        let n = params.degree();
        let d = self.bits;
        let mask = (1u64 << d) - 1;
        let half = 1u64 << (d - 1);
        let q_mod = basis
            .moduli()
            .iter()
            .fold(1u64, |acc, m| acc.wrapping_mul(m.value()))
            & mask;
        // 2^-d mod q_i.
        let inv2d: Vec<(u64, u64)> = basis
            .moduli()
            .iter()
            .map(|m| {
                let two = m.pow(2, d as u64);
                let inv = m.inv(two).unwrap_or(0);
                (inv, m.shoup(inv))
            })
            .collect();
        let polys = self
            .coeffs
            .iter()
            .map(|c| {
                let mut data = Vec::with_capacity(n * basis.len());
                for (m, &(inv, inv_shoup)) in basis.moduli().iter().zip(&inv2d) {
                    data.extend(c.iter().map(|&y| {
                        let r = y.wrapping_mul(q_mod).wrapping_add(half) & mask;
                        let diff = m.reduce_i64(half as i64 - r as i64);
                        m.mul_shoup(diff, inv, inv_shoup)
                    }));
                }
                let mut p = RnsPoly::from_data(data, n, Representation::Coefficient);
                p.forward_ntt(basis);
                p
            })
            .collect();
        Ciphertext {
            params: params.clone(),
            polys,
            seed: None,
            noise_log2: lifted_noise_log2(params, self.noise_log2, d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{small_params, to_integers};
    use crate::{BatchEncoder, Decryptor, Encryptor, PublicKey, SecretKey};
    use num_bigint::BigUint;

    fn params() -> Arc<BfvParameters> {
        small_params(45, 50)
    }

    /// round(a · b / c) for big integers, halves rounded up (as the lifting rounds).
    fn round_div(a: &BigUint, b: &BigUint, c: &BigUint) -> BigUint {
        (a * b * 2u32 + c) / (c * 2u32)
    }

    #[test]
    fn compression_rounds_exactly_and_lifting_inverts_it_up_to_rounding() {
        let params = params();
        let sk = SecretKey::generate(&params);
        let ct = Encryptor::new(&PublicKey::generate(&sk)).encrypt_zero();
        let q = params.q.product().clone();
        let bits = 30;
        let two_d = BigUint::from(1u64) << bits;
        let small = compress(&ct, bits).unwrap();
        let lifted = small.decompress();
        for (k, poly) in ct.polys.iter().enumerate() {
            let ints = to_integers(poly, &params);
            let back = to_integers(&lifted.polys[k], &params);
            for (j, x) in ints.iter().enumerate() {
                // The reference: round(2^d x / Q) mod 2^d, by big integers.
                let want = round_div(x, &two_d, &q) % &two_d;
                assert_eq!(BigUint::from(small.coeffs[k][j]), want, "coefficient {j}");
                // Lifting: round(Q c' / 2^d), within Q / 2^(d+1) + 1 of the original.
                let lift = round_div(&want, &q, &two_d) % &q;
                assert_eq!(back[j], lift);
            }
        }
    }

    #[test]
    fn compressed_answers_decrypt_keep_their_budget_and_shrink() {
        let params = params();
        let sk = SecretKey::generate(&params);
        let encoder = BatchEncoder::try_new(&params).unwrap();
        let values: Vec<i64> = (0..2048).map(|i| (i * 37 % 12289) - 6144).collect();
        let ct = Encryptor::new(&PublicKey::generate(&sk))
            .encrypt(&encoder.encode(&values).unwrap())
            .unwrap();
        let dec = Decryptor::new(&sk);
        let bits = compression_bits(&params, ct.estimated_noise_log2()).unwrap();
        // About log2 t + log2 N + 2 bits, far below the 135 bits of the three primes.
        assert!((26..=32).contains(&bits), "{bits} bits");
        let lifted = compress(&ct, bits).unwrap().decompress();
        assert_eq!(encoder.decode(&dec.decrypt(&lifted).unwrap()), values);
        let measured = dec.noise_budget(&lifted).unwrap() as f64;
        assert!(measured >= MIN_BUDGET);
        assert!(measured >= lifted.estimated_whole_budget(), "bound holds");
        // Too few bits and the answer no longer decrypts.
        let crushed = compress(&ct, 12).unwrap().decompress();
        assert_ne!(encoder.decode(&dec.decrypt(&crushed).unwrap()), values);
    }

    #[test]
    fn nothing_compresses_without_budget_or_without_saving() {
        let params = params();
        // A noise numerator at Q/2 leaves no whole bit to spend.
        assert_eq!(compression_bits(&params, params.log2_q() - 1.0), None);
        // One 25-bit prime: the rounding alone (t (N + 1)/2, 24 bits) needs more bits than
        // the prime has, so nothing is saved.
        let narrow = small_params(25, 30).at_level(1).unwrap();
        assert_eq!(compression_bits(&narrow, 1.0), None);
        let sk = SecretKey::generate(&params);
        let ct = Encryptor::new(&PublicKey::generate(&sk)).encrypt_zero();
        assert!(compress(&ct, 0).is_err());
        assert!(compress(&ct, 63).is_err());
    }

    #[test]
    fn compressed_batches_round_trip_and_refuse_what_does_not_fit() {
        use crate::serial::SerialError;
        let params = params();
        let sk = SecretKey::generate(&params);
        let enc = Encryptor::new(&PublicKey::generate(&sk));
        let cts: Vec<CompressedCiphertext> = (0..3)
            .map(|_| compress(&enc.encrypt_zero(), 29).unwrap())
            .collect();
        let bytes = CompressedCiphertext::batch_to_bytes(&cts, &params, 29);
        assert_eq!(
            bytes.len(),
            CompressedCiphertext::batch_serialized_len(&params, 29, 3)
        );
        // 2 × 2048 × 29 bits against 2 × 2048 × 135 bits uncompressed.
        assert!(
            bytes.len() * 4
                < crate::Ciphertext::batch_to_bytes(&[enc.encrypt_zero()], &params).len() * 3
        );
        let back = CompressedCiphertext::batch_from_bytes(&bytes, &params, 29, 3).unwrap();
        assert_eq!(back, cts);
        // Another width than announced, more than allowed, short or long input.
        assert!(matches!(
            CompressedCiphertext::batch_from_bytes(&bytes, &params, 30, 3),
            Err(SerialError::Malformed {
                what: "compressed bits",
                ..
            })
        ));
        assert!(matches!(
            CompressedCiphertext::batch_from_bytes(&bytes, &params, 29, 2),
            Err(SerialError::Oversized { .. })
        ));
        assert!(matches!(
            CompressedCiphertext::batch_from_bytes(&bytes[..bytes.len() - 1], &params, 29, 3),
            Err(SerialError::Truncated { .. })
        ));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            CompressedCiphertext::batch_from_bytes(&long, &params, 29, 3),
            Err(SerialError::Oversized { .. })
        ));
        // A width over the format's is refused even when announced; so is one wider than the
        // primes of the level, at the right length.
        let mut wide = bytes.clone();
        wide[crate::serial::HEADER_LEN + 4] = 63;
        assert!(matches!(
            CompressedCiphertext::batch_from_bytes(&wide, &params, 63, 3),
            Err(SerialError::Malformed {
                what: "compressed bits",
                ..
            })
        ));
        let low = params.at_level(1).unwrap();
        let ct = crate::modswitch::switch_to_level(&enc.encrypt_zero(), 1).unwrap();
        let over = compress(&ct, 46).unwrap();
        let over = CompressedCiphertext::batch_to_bytes(&[over], &low, 46);
        assert!(matches!(
            CompressedCiphertext::batch_from_bytes(&over, &low, 46, 1),
            Err(SerialError::Malformed {
                what: "compressed bits",
                ..
            })
        ));
        // Another level's fingerprint.
        let low = params.at_level(2).unwrap();
        assert!(matches!(
            CompressedCiphertext::batch_from_bytes(&bytes, &low, 29, 3),
            Err(SerialError::FingerprintMismatch { .. })
        ));
    }
}
