//! The evaluator: additions, plaintext and scalar products, a lazily reduced dot product,
//! ciphertext products by the HPS RNS method, relinearization and rotations by hybrid key
//! switching.
//!
//! Ciphertexts stay in NTT form between operations, so plaintext products and additions need no
//! transform; products and key switches transform only what their RNS steps require.

use super::encoding::{LiftedPlaintext, Plaintext, ScaledPlaintext};
use super::encrypt::Ciphertext;
use super::params::BfvParameters;
use super::poly::{Representation, RnsPoly};
use super::{ensure_level_of, ensure_same, Error};
use std::sync::Arc;

mod dot;
mod keyswitch;
mod product;

/// log2(2^a + 2^b) without overflow: the noise estimate of a sum.
pub fn log2_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (1.0 + (lo - hi).exp2()).log2()
}

/// Performs homomorphic operations for one parameter set.
#[derive(Clone, Debug)]
pub struct Evaluator {
    params: Arc<BfvParameters>,
}

impl Evaluator {
    /// An evaluator for a parameter set.
    pub fn new(params: &Arc<BfvParameters>) -> Self {
        Self {
            params: params.clone(),
        }
    }

    /// The parameter set.
    pub fn parameters(&self) -> &Arc<BfvParameters> {
        &self.params
    }

    fn check(&self, ct: &Ciphertext) -> Result<(), Error> {
        ensure_same(&self.params, &ct.params)
    }

    fn check_linear(&self, ct: &Ciphertext) -> Result<(), Error> {
        self.check(ct)?;
        if ct.polys.len() != 2 {
            return Err(Error::CiphertextSize {
                expected: 2,
                found: ct.polys.len(),
            });
        }
        Ok(())
    }

    fn output(&self, polys: Vec<RnsPoly>, noise_log2: f64) -> Ciphertext {
        Ciphertext {
            params: self.params.clone(),
            polys,
            seed: None,
            noise_log2,
        }
    }

    /// a + b.
    pub fn add(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, Error> {
        let mut r = a.clone();
        self.add_assign(&mut r, b)?;
        Ok(r)
    }

    /// a += b.
    pub fn add_assign(&self, a: &mut Ciphertext, b: &Ciphertext) -> Result<(), Error> {
        self.combine_assign(a, b, false)
    }

    /// a - b.
    pub fn sub(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, Error> {
        let mut r = a.clone();
        self.sub_assign(&mut r, b)?;
        Ok(r)
    }

    /// a -= b.
    pub fn sub_assign(&self, a: &mut Ciphertext, b: &Ciphertext) -> Result<(), Error> {
        self.combine_assign(a, b, true)
    }

    fn combine_assign(&self, a: &mut Ciphertext, b: &Ciphertext, sub: bool) -> Result<(), Error> {
        self.check(a)?;
        self.check(b)?;
        let basis = &self.params.q;
        let n = self.params.degree();
        while a.polys.len() < b.polys.len() {
            a.polys
                .push(RnsPoly::zero(n, basis.len(), Representation::Ntt));
        }
        for (x, y) in a.polys.iter_mut().zip(&b.polys) {
            if sub {
                x.sub_assign(y, basis);
            } else {
                x.add_assign(y, basis);
            }
        }
        a.seed = None;
        a.noise_log2 = log2_add(a.noise_log2, b.noise_log2);
        Ok(())
    }

    /// -a.
    pub fn negate(&self, a: &Ciphertext) -> Result<Ciphertext, Error> {
        self.check(a)?;
        let mut r = a.clone();
        for p in &mut r.polys {
            p.negate(&self.params.q);
        }
        r.seed = None;
        Ok(r)
    }

    /// Prepares a plaintext once for additions (Δ m in NTT form).
    pub fn prepare_add(&self, pt: &Plaintext) -> Result<ScaledPlaintext, Error> {
        ensure_level_of(&self.params, &pt.params)?;
        let mut poly = pt.scaled_at(&self.params);
        poly.forward_ntt(&self.params.q);
        Ok(ScaledPlaintext {
            params: self.params.clone(),
            poly,
        })
    }

    /// Prepares a plaintext once for multiplications (centered lift in NTT form), at this
    /// evaluator's level (the plaintext's parameter set or a level below it).
    pub fn prepare_mul(&self, pt: &Plaintext) -> Result<LiftedPlaintext, Error> {
        ensure_level_of(&self.params, &pt.params)?;
        let mut poly = pt.lifted_at(&self.params);
        poly.forward_ntt(&self.params.q);
        let max_abs = pt
            .coeffs
            .iter()
            .map(|&c| self.params.plain.center(c).unsigned_abs())
            .max()
            .unwrap_or(0);
        let nonzero = pt.coeffs.iter().filter(|&&c| c != 0).count();
        Ok(LiftedPlaintext {
            params: self.params.clone(),
            poly,
            max_abs,
            nonzero,
        })
    }

    /// ct += pt.
    pub fn add_plain_assign(&self, ct: &mut Ciphertext, pt: &ScaledPlaintext) -> Result<(), Error> {
        self.check(ct)?;
        ensure_same(&self.params, &pt.params)?;
        ct.polys[0].add_assign(&pt.poly, &self.params.q);
        ct.noise_log2 = self.estimate_add_plain_noise(ct.noise_log2);
        Ok(())
    }

    /// ct -= pt.
    pub fn sub_plain_assign(&self, ct: &mut Ciphertext, pt: &ScaledPlaintext) -> Result<(), Error> {
        self.check(ct)?;
        ensure_same(&self.params, &pt.params)?;
        ct.polys[0].sub_assign(&pt.poly, &self.params.q);
        ct.noise_log2 = self.estimate_add_plain_noise(ct.noise_log2);
        Ok(())
    }

    /// ct += c in every slot, for an integer c (taken mod t). The constant polynomial c is the
    /// all-c slot vector, and its NTT is c in every NTT slot, so this is one addition per
    /// residue: no encoding, no transform.
    pub fn add_constant_assign(&self, ct: &mut Ciphertext, c: i128) -> Result<(), Error> {
        self.check(ct)?;
        let p = &self.params;
        let m = p.plain.reduce_i128(c);
        if m == 0 {
            return Ok(());
        }
        // round(Q m / t) mod q_i, as in `Plaintext::scaled`.
        let t = p.plain_modulus() as u128;
        let fix = ((p.q_mod_t as u128 * m as u128 + t / 2) / t) as u64;
        for ((limb, q), &(d, ds)) in ct.polys[0].limbs_mut().zip(p.q.moduli()).zip(&p.delta) {
            let v = q.add(q.mul_shoup(m, d, ds), q.reduce(fix));
            for x in limb.iter_mut() {
                *x = q.add(*x, v);
            }
        }
        ct.seed = None;
        ct.noise_log2 = self.estimate_add_plain_noise(ct.noise_log2);
        Ok(())
    }

    /// ct · pt. An all-zero plaintext would give a transparent ciphertext, so it is refused.
    /// A plaintext prepared at a higher level serves this one (its first limbs are the lift
    /// over this level's primes).
    pub fn mul_plain(&self, ct: &Ciphertext, pt: &LiftedPlaintext) -> Result<Ciphertext, Error> {
        self.check(ct)?;
        ensure_level_of(&self.params, &pt.params)?;
        if pt.nonzero == 0 {
            return Err(Error::TransparentResult);
        }
        let mut polys = ct.polys.clone();
        for p in &mut polys {
            p.mul_assign_ntt(&pt.poly, &self.params.q);
        }
        let noise = self.estimate_mul_plain_noise(ct.noise_log2, pt.max_abs, pt.nonzero);
        Ok(self.output(polys, noise))
    }

    /// The noise estimate after a product with a plaintext whose centered coefficients are
    /// at most `max_abs` in size, `nonzero` of them nonzero. ‖p v‖ ≤ ‖p‖∞ · nonzero · ‖v‖;
    /// heuristically the sum of random-sign terms grows like its square root, with a tail
    /// factor. A batch-encoded vector has coefficients of any size below t/2 in every place.
    pub fn estimate_mul_plain_noise(&self, noise: f64, max_abs: u64, nonzero: usize) -> f64 {
        let growth = (max_abs.max(1) as f64).log2() + 0.5 * (nonzero.max(1) as f64).log2() + 3.0;
        noise + growth.max(0.0)
    }

    /// The noise estimate after adding a plaintext or a constant (t/2 at most per slot
    /// value, as a numerator).
    pub fn estimate_add_plain_noise(&self, noise: f64) -> f64 {
        log2_add(noise, (self.params.plain_modulus() as f64).log2() - 1.0)
    }
}
