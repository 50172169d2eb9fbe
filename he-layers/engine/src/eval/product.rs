//! Ciphertext products by HPS (Halevi–Polyakov–Shoup), squares and relinearization.

use super::{log2_add, Evaluator};
use crate::encrypt::Ciphertext;
use crate::ensure_level_of;
use crate::keys::{KeySwitchingKey, RelinearizationKey};
use crate::poly::{Representation, RnsPoly};
use crate::poly::{ERROR_CLIP, ERROR_STD_DEV};
use crate::Error;
use rayon::prelude::*;

impl Evaluator {
    /// The noise estimate (log2 of the numerator) after multiplying ciphertexts with noise
    /// estimates `a` and `b` and relinearizing. Lets a caller see an exhausted budget coming
    /// before it computes or decrypts anything.
    pub fn estimate_product_noise(&self, a: f64, b: f64) -> f64 {
        let p = &self.params;
        let t = (p.plain_modulus() as f64).log2();
        let n = (p.degree() as f64).log2();
        // v_out ≈ v1 k2 + v2 k1 with ‖k_i‖ ≈ t √(N/6) · tail, multiplied as polynomials (√N),
        // plus the rounding term t ‖1 + s + s²‖ and the relinearization term.
        let tensor = t + n + log2_add(a, b) + 1.5;
        let rounding = t + n + 1.0;
        log2_add(tensor.max(rounding), self.estimate_key_switch_noise())
    }

    /// log2 of the noise numerator a key switch (relinearization, rotation) adds: t Σ_i d_i e_i / special.
    pub fn estimate_key_switch_noise(&self) -> f64 {
        let p = &self.params;
        let t = (p.plain_modulus() as f64).log2();
        let l = p.q.len() as f64;
        let max_q = p.moduli().iter().copied().max().unwrap_or(1) as f64;
        let n = p.degree() as f64;
        t + (l * max_q / p.special_modulus() as f64).log2()
            + (n.sqrt() * ERROR_STD_DEV * ERROR_CLIP).log2()
            + 1.0
    }

    /// a · b without relinearization: a three-polynomial ciphertext.
    pub fn multiply_no_relin(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, Error> {
        self.check_linear(a)?;
        self.check_linear(b)?;
        let same = std::ptr::eq(a, b);
        let mut d = self.tensor(a, if same { None } else { Some(b) });
        for x in &mut d {
            x.forward_ntt(&self.params.q);
        }
        let noise = self.estimate_product_noise(a.noise_log2, b.noise_log2);
        Ok(self.output(d.into(), noise))
    }

    /// a · b, relinearized.
    pub fn multiply(
        &self,
        a: &Ciphertext,
        b: &Ciphertext,
        rk: &RelinearizationKey,
    ) -> Result<Ciphertext, Error> {
        self.check_linear(a)?;
        self.check_linear(b)?;
        ensure_level_of(&self.params, &rk.ksk.params)?;
        let same = std::ptr::eq(a, b);
        let d = self.tensor(a, if same { None } else { Some(b) });
        let noise = self.estimate_product_noise(a.noise_log2, b.noise_log2);
        Ok(self.relinearize_coefficients(d, &rk.ksk, noise))
    }

    /// a², relinearized (one base extension and half the tensor products of `multiply`).
    pub fn square(&self, a: &Ciphertext, rk: &RelinearizationKey) -> Result<Ciphertext, Error> {
        self.check_linear(a)?;
        ensure_level_of(&self.params, &rk.ksk.params)?;
        let d = self.tensor(a, None);
        let noise = self.estimate_product_noise(a.noise_log2, a.noise_log2);
        Ok(self.relinearize_coefficients(d, &rk.ksk, noise))
    }

    /// Relinearizes a three-polynomial ciphertext to two.
    pub fn relinearize(
        &self,
        ct: &Ciphertext,
        rk: &RelinearizationKey,
    ) -> Result<Ciphertext, Error> {
        self.check(ct)?;
        ensure_level_of(&self.params, &rk.ksk.params)?;
        if ct.polys.len() != 3 {
            return Err(Error::CiphertextSize {
                expected: 3,
                found: ct.polys.len(),
            });
        }
        let mut d: Vec<RnsPoly> = ct.polys.clone();
        for x in &mut d {
            x.inverse_ntt(&self.params.q);
        }
        let d: [RnsPoly; 3] = match d.try_into() {
            Ok(d) => d,
            Err(_) => {
                return Err(Error::CiphertextSize {
                    expected: 3,
                    found: 0,
                })
            }
        };
        Ok(self.relinearize_coefficients(d, &rk.ksk, ct.noise_log2))
    }

    /// (d0, d1, d2) in coefficient form → (d0 + u0, d1 + u1) in NTT form.
    fn relinearize_coefficients(
        &self,
        d: [RnsPoly; 3],
        ksk: &KeySwitchingKey,
        noise: f64,
    ) -> Ciphertext {
        let [mut d0, mut d1, d2] = d;
        let basis = &self.params.q;
        let ((u0, u1), ()) = rayon::join(
            || self.key_switch(&d2, None, ksk),
            || {
                d0.forward_ntt(basis);
                d1.forward_ntt(basis);
            },
        );
        d0.add_assign(&u0, basis);
        d1.add_assign(&u1, basis);
        self.output(vec![d0, d1], noise)
    }

    /// The HPS tensor product: (d0, d1, d2) = round(t/Q · (a0, a1) ⊗ (b0, b1)) over the ciphertext
    /// primes, coefficient form. `b = None` squares `a`.
    fn tensor(&self, a: &Ciphertext, b: Option<&Ciphertext>) -> [RnsPoly; 3] {
        crate::stats::ct_product();
        let p = &self.params;
        let n = p.degree();
        let (q, aux) = (&p.q, &p.aux);
        // Extend a ciphertext (NTT over Q) to NTT over P, exactly (centered).
        let extend = |ct: &Ciphertext| -> Vec<RnsPoly> {
            ct.polys
                .par_iter()
                .map(|poly| {
                    let mut coef = poly.clone();
                    coef.inverse_ntt(q);
                    let mut ext = RnsPoly::zero(n, aux.len(), Representation::Coefficient);
                    {
                        let input: Vec<&[u64]> = coef.limbs().collect();
                        let mut output: Vec<&mut [u64]> = ext.limbs_mut().collect();
                        p.q_to_aux.convert(&input, &mut output);
                    }
                    ext.forward_ntt(aux);
                    ext
                })
                .collect()
        };
        let (a_aux, b_aux) = rayon::join(|| extend(a), || b.map(extend));
        // Tensor over Q and over P in NTT form.
        let tensor_in = |x: &[RnsPoly], y: Option<&[RnsPoly]>, basis| -> [RnsPoly; 3] {
            let limbs = x[0].limb_count();
            let mut d0 = RnsPoly::zero(n, limbs, Representation::Ntt);
            let mut d1 = RnsPoly::zero(n, limbs, Representation::Ntt);
            let mut d2 = RnsPoly::zero(n, limbs, Representation::Ntt);
            match y {
                Some(y) => {
                    d0.mul_accumulate_ntt(&x[0], &y[0], basis);
                    d1.mul_accumulate_ntt(&x[0], &y[1], basis);
                    d1.mul_accumulate_ntt(&x[1], &y[0], basis);
                    d2.mul_accumulate_ntt(&x[1], &y[1], basis);
                }
                None => {
                    d0.mul_accumulate_ntt(&x[0], &x[0], basis);
                    d1.mul_accumulate_ntt(&x[0], &x[1], basis);
                    d1.double_assign(basis);
                    d2.mul_accumulate_ntt(&x[1], &x[1], basis);
                }
            }
            [d0, d1, d2]
        };
        let (dq, dp) = rayon::join(
            || tensor_in(&a.polys, b.map(|c| c.polys.as_slice()), q),
            || tensor_in(&a_aux, b_aux.as_deref(), aux),
        );
        // Back to coefficients, scale by t/Q into P, convert P → Q; the three in parallel.
        let mut out: [RnsPoly; 3] =
            std::array::from_fn(|_| RnsPoly::zero(n, q.len(), Representation::Coefficient));
        let mut work: Vec<((RnsPoly, RnsPoly), &mut RnsPoly)> =
            dq.into_iter().zip(dp).zip(out.iter_mut()).collect();
        work.par_iter_mut().for_each(|((xq, xp), o)| {
            xq.inverse_ntt(q);
            xp.inverse_ntt(aux);
            let mut scaled = RnsPoly::zero(n, aux.len(), Representation::Coefficient);
            {
                let input: Vec<&[u64]> = xq.limbs().chain(xp.limbs()).collect();
                let mut output: Vec<&mut [u64]> = scaled.limbs_mut().collect();
                p.mul_scaler.scale(&input, &mut output);
            }
            let input: Vec<&[u64]> = scaled.limbs().collect();
            let mut output: Vec<&mut [u64]> = o.limbs_mut().collect();
            p.aux_to_q.convert(&input, &mut output);
        });
        drop(work);
        out
    }
}
