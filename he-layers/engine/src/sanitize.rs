//! Circuit privacy: what the server does to every ciphertext before it returns it, so the
//! answer tells the client its plaintext and nothing about the weights that made it.
//!
//! A result (c0, c1) = (Σ w_k c0_k + …, Σ w_k c1_k) is a linear function of the client's own
//! ciphertexts, and its noise Σ w_k e_k a linear function of errors the client knows. In order:
//! 1. **modulus switching** to the fewest primes that still decrypt after the next steps
//!    (smaller download; the rounding it adds depends on c1, so it comes before the flood);
//! 2. **re-randomization**: adding a fresh public-key encryption of zero makes c1 uniform-
//!    looking and independent of the weights;
//! 3. **flooding**: adding to c0 a signed integer e_f per coefficient, uniform in
//!    [−B_f, B_f) with B_f = 2^(⌈log2 B_v⌉ + λ), where B_v bounds the phase noise (from the
//!    public model, never from the client), so the weight-dependent noise is hidden up to a
//!    statistical distance of about N·2^−λ.
//!
//! The noise field of the result is the public bound of the plan, the same for every answer
//! with the same model, range and parameters.

use super::encrypt::{fresh_public_noise, whole_bit_budget, Ciphertext, Encryptor};
use super::eval::log2_add;
use super::modswitch::{switch_to_level, switched_noise_log2};
use super::params::BfvParameters;
use super::poly::{Representation, RnsPoly};
use super::random::os_rng;
use super::Error;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The default statistical security parameter λ of flooding, in bits.
pub const DEFAULT_FLOOD_BITS: u32 = 40;

/// The largest λ accepted (beyond it no parameter set has room).
pub const MAX_FLOOD_BITS: u32 = 128;

/// What sanitizing a ciphertext of a given noise bound does, decided before any computation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SanitizationPlan {
    /// Ciphertext primes kept after modulus switching.
    pub level: usize,
    /// Ciphertext primes before.
    pub from_level: usize,
    /// λ: B_f ≥ 2^λ · B_v.
    pub flood_bits: u32,
    /// log2 B_f, the flooding bound (0 when λ = 0: no flooding).
    pub flood_log2: u32,
    /// log2 of the noise numerator bound after sanitization: the public value written into
    /// every returned ciphertext.
    pub noise_log2: f64,
    /// Noise budget left for the client, in whole bits (a lower bound of the measured one).
    pub budget_bits: f64,
}

/// Why a ciphertext cannot be sanitized with the parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "the noise budget left here (estimated {available:.1} bits) cannot absorb circuit-privacy \
     flooding of {flood_bits} bits (it needs about {needed:.1} bits): use more ciphertext modulus \
     or a larger N, re-encrypt earlier (a re-encryption position closer to here), or lower \
     --flood-bits on the server"
)]
pub struct NoRoomForFlooding {
    /// Estimated budget before sanitization.
    pub available: f64,
    /// Estimated budget sanitization needs at the full level.
    pub needed: f64,
    /// λ.
    pub flood_bits: u32,
}

/// The budget a sanitized answer keeps at the least, in bits, in SEAL's integer measure.
pub const MIN_BUDGET_AFTER_SANITIZATION: f64 = 1.0;

/// Plans the sanitization of a ciphertext of `params` whose noise numerator is at most
/// 2^`noise_log2`: the lowest level at which, after switching, re-randomizing and flooding,
/// the budget is still [`MIN_BUDGET_AFTER_SANITIZATION`]. The budget is counted as the
/// measurement counts it, in whole bits: ⌊log2 Q_k⌋ − ⌊log2 ν⌋ − 1 for a noise bound ν, so the
/// measured budget is never below the planned one while the bound holds.
pub fn plan_sanitization(
    params: &Arc<BfvParameters>,
    noise_log2: f64,
    flood_bits: u32,
) -> Result<SanitizationPlan, NoRoomForFlooding> {
    let log2_t = (params.plain_modulus() as f64).log2();
    let fresh = fresh_public_noise(params);
    let at = |level: usize| {
        let switched = switched_noise_log2(params, noise_log2, level);
        let flood_log2 = if flood_bits == 0 {
            0
        } else {
            ((switched - log2_t).max(0.0).ceil() as u32).saturating_add(flood_bits)
        };
        let mut after = log2_add(switched, fresh);
        if flood_bits > 0 {
            after = log2_add(after, log2_t + f64::from(flood_log2));
        }
        let log2_q: f64 = params.moduli()[..level]
            .iter()
            .map(|&q| (q as f64).log2())
            .sum();
        SanitizationPlan {
            level,
            from_level: params.level(),
            flood_bits,
            flood_log2,
            noise_log2: after,
            budget_bits: whole_bit_budget(log2_q, after),
        }
    };
    let available = params.log2_q() - noise_log2 - 1.0;
    for level in 1..=params.level() {
        let plan = at(level);
        if plan.budget_bits >= MIN_BUDGET_AFTER_SANITIZATION && params.at_level(level).is_ok() {
            return Ok(plan);
        }
    }
    let top = at(params.level());
    Err(NoRoomForFlooding {
        available,
        needed: available - top.budget_bits + MIN_BUDGET_AFTER_SANITIZATION,
        flood_bits,
    })
}

/// Sanitizes a relinearized result with the client's public key, as planned: switched to
/// `plan.level`, re-randomized, flooded (OS-seeded CSPRNG).
pub fn sanitize(
    ct: &Ciphertext,
    encryptor: &Encryptor,
    plan: &SanitizationPlan,
) -> Result<Ciphertext, Error> {
    sanitize_with_rng(ct, encryptor, plan, &mut os_rng())
}

/// [`sanitize`] with a given random source for the encryption of zero and the flooding noise.
pub fn sanitize_with_rng<R: RngCore + CryptoRng>(
    ct: &Ciphertext,
    encryptor: &Encryptor,
    plan: &SanitizationPlan,
    rng: &mut R,
) -> Result<Ciphertext, Error> {
    if ct.polys.len() != 2 {
        return Err(Error::CiphertextSize {
            expected: 2,
            found: ct.polys.len(),
        });
    }
    let mut out = switch_to_level(ct, plan.level)?;
    let zero = encryptor.encrypt_zero_at_with_rng(&out.params, rng)?;
    let params = out.params.clone();
    let basis = &params.q;
    for (c, z) in out.polys.iter_mut().zip(&zero.polys) {
        c.add_assign(z, basis);
    }
    if plan.flood_bits > 0 {
        let mut flood = sample_flooding(rng, &params, plan.flood_log2);
        flood.forward_ntt(basis);
        out.polys[0].add_assign(&flood, basis);
    }
    out.seed = None;
    out.noise_log2 = plan.noise_log2;
    Ok(out)
}

/// N signed integers uniform in [−2^bits, 2^bits), each drawn once and reduced into every limb
/// (coefficient form).
pub(crate) fn sample_flooding<R: RngCore>(
    rng: &mut R,
    params: &BfvParameters,
    bits: u32,
) -> RnsPoly {
    let n = params.degree();
    let basis = &params.q;
    let words = (bits as usize + 1).div_ceil(64);
    let top_bits = (bits + 1) % 64;
    let top_mask = if top_bits == 0 {
        u64::MAX
    } else {
        (1u64 << top_bits) - 1
    };
    // 2^bits mod q_i, subtracted to centre the draw.
    let offsets: Vec<u64> = basis
        .moduli()
        .iter()
        .map(|m| m.pow(2, u64::from(bits)))
        .collect();
    let mut p = RnsPoly::zero(n, basis.len(), Representation::Coefficient);
    let mut value = vec![0u64; words];
    for c in 0..n {
        for w in value.iter_mut() {
            *w = rng.next_u64();
        }
        value[words - 1] &= top_mask;
        for (i, m) in basis.moduli().iter().enumerate() {
            // Horner over the 64-bit words, most significant first.
            let mut r = 0u64;
            for &w in value.iter().rev() {
                r = m.reduce_u128((u128::from(r) << 64) | u128::from(w));
            }
            p.limb_mut(i)[c] = m.sub(r, offsets[i]);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchEncoder, Decryptor, PublicKey, SecretKey};
    use rand::SeedableRng;

    fn params() -> Arc<BfvParameters> {
        BfvParameters::with_bit_sizes(
            8192,
            65537,
            &[50, 50, 50],
            50,
            crate::SecurityLevel::Bits128,
        )
        .unwrap()
    }

    #[test]
    fn flooding_samples_are_centered_uniform_and_equal_in_every_limb() {
        let params = params();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        for bits in [5u32, 63, 64, 70] {
            let p = sample_flooding(&mut rng, &params, bits);
            let m0 = params.q.moduli()[0];
            let m1 = params.q.moduli()[1];
            let bound = 1i128 << bits;
            let (mut lo, mut hi) = (i128::MAX, i128::MIN);
            for c in 0..params.degree() {
                // Small draws can be read off directly; wide ones are compared across limbs
                // through their residues.
                if bits < 34 {
                    let v = i128::from(m0.center(p.limb(0)[c]));
                    assert_eq!(m1.reduce_i128(v), p.limb(1)[c]);
                    assert!((-bound..bound).contains(&v));
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
            if bits < 34 {
                // 8192 draws from 64 values: both ends are reached.
                assert_eq!((lo, hi), (-bound, bound - 1));
            }
        }
    }

    #[test]
    fn sanitized_ciphertexts_decrypt_to_the_same_values_at_a_lower_level() {
        let params = params();
        let sk = SecretKey::generate(&params);
        let pk = PublicKey::generate(&sk);
        let enc = Encryptor::new(&pk);
        let encoder = BatchEncoder::try_new(&params).unwrap();
        let values: Vec<i64> = (0..8192).map(|i| (i * 7919 % 65537) - 32768).collect();
        let ct = enc.encrypt(&encoder.encode(&values).unwrap()).unwrap();
        let plan = plan_sanitization(&params, ct.estimated_noise_log2(), 40).unwrap();
        assert!(plan.level < params.level(), "{plan:?}");
        let dec = Decryptor::new(&sk);
        let out = sanitize(&ct, &enc, &plan).unwrap();
        assert_eq!(out.parameters().level(), plan.level);
        assert_eq!(encoder.decode(&dec.decrypt(&out).unwrap()), values);
        let measured = dec.noise_budget(&out).unwrap() as f64;
        assert!(measured >= plan.budget_bits, "{measured} vs {plan:?}");
        assert_eq!(out.estimated_noise_log2(), plan.noise_log2);
        // The flood is really there: the budget fell by about λ from a fresh ciphertext's.
        let fresh = dec.noise_budget(&ct).unwrap() as f64;
        let dropped_bits: f64 = params.moduli()[plan.level..]
            .iter()
            .map(|&q| (q as f64).log2())
            .sum();
        assert!(
            fresh - dropped_bits - measured > 38.0,
            "{fresh} {dropped_bits} {measured}"
        );
    }

    #[test]
    fn a_plan_that_cannot_fit_says_how_much_it_needs() {
        let params = params();
        let noise = params.log2_q() - 20.0;
        let err = plan_sanitization(&params, noise, 40).unwrap_err();
        assert!(err.needed > 40.0 && err.needed < 45.0, "{err:?}");
        assert!((err.available - 19.0).abs() < 1e-9);
        assert!(err.to_string().contains("--flood-bits"));
        assert!(plan_sanitization(&params, noise, 10).is_ok());
    }
}
