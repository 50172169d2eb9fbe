//! The evaluator: additions, plaintext and scalar products, a lazily reduced dot product,
//! ciphertext products by the HPS RNS method, relinearization and rotations by hybrid key
//! switching.
//!
//! Ciphertexts stay in NTT form between operations, so plaintext products and additions need no
//! transform; products and key switches transform only what their RNS steps require.

use super::encoding::{LiftedPlaintext, Plaintext, ScaledPlaintext};
use super::encrypt::Ciphertext;
use super::keys::{GaloisKeys, KeySwitchingKey, RelinearizationKey};
use super::params::BfvParameters;
use super::poly::{Representation, RnsPoly, ERROR_CLIP, ERROR_STD_DEV};
use super::{ensure_same, Error};
use std::sync::Arc;

/// log2(2^a + 2^b) without overflow.
pub(crate) fn log2_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (1.0 + (lo - hi).exp2()).log2()
}

/// acc[i] += x[i] · w (wrapping; callers bound the sums below 2^64). With AVX-512 (checked at
/// run time) the loop runs eight lanes at a time.
fn multiply_add_u64(acc: &mut [u64], x: &[u64], w: u64) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512dq") {
        // SAFETY: the CPU supports AVX-512F/DQ, checked just above.
        unsafe { multiply_add_avx512(acc, x, w) };
        return;
    }
    for (a, &v) in acc.iter_mut().zip(x) {
        *a = a.wrapping_add(v.wrapping_mul(w));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
fn multiply_add_avx512(acc: &mut [u64], x: &[u64], w: u64) {
    // The same loop, compiled with AVX-512 enabled so it vectorizes (vpmullq, vpaddq).
    for (a, &v) in acc.iter_mut().zip(x) {
        *a = a.wrapping_add(v.wrapping_mul(w));
    }
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
        ensure_same(&self.params, &pt.params)?;
        let mut poly = pt.scaled();
        poly.forward_ntt(&self.params.q);
        Ok(ScaledPlaintext {
            params: self.params.clone(),
            poly,
        })
    }

    /// Prepares a plaintext once for multiplications (centered lift in NTT form).
    pub fn prepare_mul(&self, pt: &Plaintext) -> Result<LiftedPlaintext, Error> {
        ensure_same(&self.params, &pt.params)?;
        let mut poly = pt.lifted();
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
        ct.noise_log2 = log2_add(
            ct.noise_log2,
            (self.params.plain_modulus() as f64).log2() - 1.0,
        );
        Ok(())
    }

    /// ct -= pt.
    pub fn sub_plain_assign(&self, ct: &mut Ciphertext, pt: &ScaledPlaintext) -> Result<(), Error> {
        self.check(ct)?;
        ensure_same(&self.params, &pt.params)?;
        ct.polys[0].sub_assign(&pt.poly, &self.params.q);
        ct.noise_log2 = log2_add(
            ct.noise_log2,
            (self.params.plain_modulus() as f64).log2() - 1.0,
        );
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
        ct.noise_log2 = log2_add(ct.noise_log2, (p.plain_modulus() as f64).log2() - 1.0);
        Ok(())
    }

    /// ct · pt. An all-zero plaintext would give a transparent ciphertext, so it is refused.
    pub fn mul_plain(&self, ct: &Ciphertext, pt: &LiftedPlaintext) -> Result<Ciphertext, Error> {
        self.check(ct)?;
        ensure_same(&self.params, &pt.params)?;
        if pt.nonzero == 0 {
            return Err(Error::TransparentResult);
        }
        let mut polys = ct.polys.clone();
        for p in &mut polys {
            p.mul_assign_ntt(&pt.poly, &self.params.q);
        }
        // ‖p v‖ ≤ ‖p‖∞ · (nonzero terms) · ‖v‖; heuristically the sum of nonzero random-sign
        // terms grows like its square root, with a tail factor.
        let growth = (pt.max_abs as f64).log2() + 0.5 * (pt.nonzero as f64).log2() + 3.0;
        Ok(self.output(polys, ct.noise_log2 + growth.max(0.0)))
    }

    /// Per-limb residues (and Shoup companions) of a signed scalar.
    fn scalar_residues(&self, w: i64) -> Vec<(u64, u64)> {
        self.params
            .q
            .moduli()
            .iter()
            .map(|m| {
                let r = m.reduce_i64(w);
                (r, m.shoup(r))
            })
            .collect()
    }

    /// w reduced to its centered residue mod t: the same plaintext product, the least noise.
    fn center_mod_t(&self, w: i64) -> i64 {
        let plain = &self.params.plain;
        plain.center(plain.reduce_i64(w))
    }

    /// ct · w for an integer w, without transforms. w ≡ 0 mod t would be transparent and is
    /// refused.
    pub fn mul_scalar(&self, ct: &Ciphertext, w: i64) -> Result<Ciphertext, Error> {
        self.check(ct)?;
        let w = self.center_mod_t(w);
        if w == 0 {
            return Err(Error::TransparentResult);
        }
        super::stats::scalar_products(1);
        let r = self.scalar_residues(w);
        let mut polys = ct.polys.clone();
        for p in &mut polys {
            p.mul_scalar_assign(&r, &self.params.q);
        }
        Ok(self.output(polys, ct.noise_log2 + (w.unsigned_abs() as f64).log2()))
    }

    /// Σ w_k ct_k for integer weights (each taken centered mod t), accumulated in 128 bits and
    /// reduced once per limb and coefficient. Zero weights are skipped; if all are zero the result would be transparent
    /// and is refused.
    pub fn dot_scalars(&self, cts: &[&Ciphertext], weights: &[i64]) -> Result<Ciphertext, Error> {
        if cts.len() != weights.len() {
            return Err(Error::LengthMismatch {
                left: cts.len(),
                right: weights.len(),
            });
        }
        let terms: Vec<(&Ciphertext, i64)> = cts
            .iter()
            .zip(weights)
            .map(|(&c, &w)| (c, self.center_mod_t(w)))
            .filter(|&(_, w)| w != 0)
            .collect();
        if terms.is_empty() {
            return Err(Error::TransparentResult);
        }
        let size = terms[0].0.polys.len();
        for (c, _) in &terms {
            self.check(c)?;
            if c.polys.len() != size {
                return Err(Error::CiphertextSize {
                    expected: size,
                    found: c.polys.len(),
                });
            }
        }
        let p = &self.params;
        let n = p.degree();
        let basis = &p.q;
        // Small weights (the usual case: quantized weights of a few bits) take the u64 path
        // of the multi-output form; large ones 128-bit accumulation with periodic reduction.
        let abs_sum: u128 = terms.iter().map(|(_, w)| w.unsigned_abs() as u128).sum();
        let max_q = basis.moduli().iter().map(|m| m.value()).max().unwrap_or(1) as u128;
        if abs_sum.saturating_mul(max_q) < 1 << 63 {
            let (cts, row): (Vec<&Ciphertext>, Vec<i64>) = terms.iter().copied().unzip();
            return self
                .dot_scalars_many(&cts, &[row])?
                .pop()
                .flatten()
                .ok_or(Error::TransparentResult);
        }
        super::stats::scalar_products(terms.len() as u64);
        let mut noise = f64::NEG_INFINITY;
        for (c, w) in &terms {
            noise = log2_add(noise, c.noise_log2 + (w.unsigned_abs() as f64).log2());
        }
        let mut out = vec![RnsPoly::zero(n, basis.len(), Representation::Ntt); size];
        let mut acc = vec![0u128; n];
        for (limb_idx, m) in basis.moduli().iter().enumerate() {
            let q = m.value() as u128;
            // Products are < q^2; a reduced start value plus this many fit in a u128.
            let lazy = (u128::MAX / ((q - 1) * (q - 1)))
                .saturating_sub(1)
                .clamp(1, 1 << 30) as usize;
            let w: Vec<u64> = terms.iter().map(|(_, w)| m.reduce_i64(*w)).collect();
            for (poly_idx, out_poly) in out.iter_mut().enumerate() {
                acc.iter_mut().for_each(|a| *a = 0);
                for (chunk_terms, chunk_w) in terms.chunks(lazy).zip(w.chunks(lazy)) {
                    for ((c, _), &wk) in chunk_terms.iter().zip(chunk_w) {
                        let src = c.polys[poly_idx].limb(limb_idx);
                        let wk = wk as u128;
                        for (a, &x) in acc.iter_mut().zip(src) {
                            *a += x as u128 * wk;
                        }
                    }
                    if chunk_terms.len() == lazy {
                        for a in acc.iter_mut() {
                            *a = m.reduce_u128(*a) as u128;
                        }
                    }
                }
                for (o, &a) in out_poly.limb_mut(limb_idx).iter_mut().zip(&acc) {
                    *o = m.reduce_u128(a);
                }
            }
        }
        Ok(self.output(out, noise))
    }

    /// Several dot products over the same ciphertexts: output o is Σ_k rows[o][k] · cts[k].
    /// Outputs are computed in blocks that read each input limb once per block while it is in
    /// cache (the single-output form streams every input once per output). An all-zero row gives
    /// `None` (its product would be transparent).
    pub fn dot_scalars_many(
        &self,
        cts: &[&Ciphertext],
        rows: &[Vec<i64>],
    ) -> Result<Vec<Option<Ciphertext>>, Error> {
        /// Outputs per block: 2 accumulators of N words each stay in L2 with the input limb.
        const BLOCK: usize = 4;
        for row in rows {
            if row.len() != cts.len() {
                return Err(Error::LengthMismatch {
                    left: cts.len(),
                    right: row.len(),
                });
            }
        }
        let size = cts.first().map_or(2, |c| c.polys.len());
        for c in cts {
            self.check(c)?;
            if c.polys.len() != size {
                return Err(Error::CiphertextSize {
                    expected: size,
                    found: c.polys.len(),
                });
            }
        }
        let rows: Vec<Vec<i64>> = rows
            .iter()
            .map(|r| r.iter().map(|&w| self.center_mod_t(w)).collect())
            .collect();
        let p = &self.params;
        let basis = &p.q;
        let max_q = basis.moduli().iter().map(|m| m.value()).max().unwrap_or(1) as u128;
        let small = rows.iter().all(|r| {
            let s: u128 = r.iter().map(|w| w.unsigned_abs() as u128).sum();
            s.saturating_mul(max_q) < 1 << 63
        });
        if !small {
            return rows
                .iter()
                .map(|r| match self.dot_scalars(cts, r) {
                    Ok(c) => Ok(Some(c)),
                    Err(Error::TransparentResult) => Ok(None),
                    Err(e) => Err(e),
                })
                .collect();
        }
        let n = p.degree();
        let mut results = Vec::with_capacity(rows.len());
        for block in rows.chunks(BLOCK) {
            let live: Vec<bool> = block.iter().map(|r| r.iter().any(|&w| w != 0)).collect();
            let mut out: Vec<Vec<RnsPoly>> = block
                .iter()
                .map(|_| vec![RnsPoly::zero(n, basis.len(), Representation::Ntt); size])
                .collect();
            let mut pos = vec![vec![0u64; n]; block.len()];
            let mut neg = vec![vec![0u64; n]; block.len()];
            for (limb_idx, m) in basis.moduli().iter().enumerate() {
                for poly_idx in 0..size {
                    for a in pos.iter_mut().chain(neg.iter_mut()) {
                        a.iter_mut().for_each(|x| *x = 0);
                    }
                    for (k, c) in cts.iter().enumerate() {
                        let src = c.polys[poly_idx].limb(limb_idx);
                        for (o, row) in block.iter().enumerate() {
                            let w = row[k];
                            if w > 0 {
                                multiply_add_u64(&mut pos[o], src, w as u64);
                            } else if w < 0 {
                                multiply_add_u64(&mut neg[o], src, w.unsigned_abs());
                            }
                        }
                    }
                    for (o, out_o) in out.iter_mut().enumerate() {
                        let dst = out_o[poly_idx].limb_mut(limb_idx);
                        for ((d, &a), &b) in dst.iter_mut().zip(&pos[o]).zip(&neg[o]) {
                            *d = m.sub(m.reduce(a), m.reduce(b));
                        }
                    }
                }
            }
            for ((polys, row), &alive) in out.into_iter().zip(block).zip(&live) {
                if !alive {
                    results.push(None);
                    continue;
                }
                let terms = row.iter().filter(|&&w| w != 0).count() as u64;
                super::stats::scalar_products(terms);
                let mut noise = f64::NEG_INFINITY;
                for (c, &w) in cts.iter().zip(row) {
                    if w != 0 {
                        noise = log2_add(noise, c.noise_log2 + (w.unsigned_abs() as f64).log2());
                    }
                }
                results.push(Some(self.output(polys, noise)));
            }
        }
        Ok(results)
    }

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
        log2_add(tensor.max(rounding), self.key_switch_noise_log2())
    }

    /// log2 of the noise numerator a key switch adds: t Σ_i d_i e_i / special.
    fn key_switch_noise_log2(&self) -> f64 {
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
        ensure_same(&self.params, &rk.ksk.params)?;
        let same = std::ptr::eq(a, b);
        let d = self.tensor(a, if same { None } else { Some(b) });
        let noise = self.estimate_product_noise(a.noise_log2, b.noise_log2);
        Ok(self.relinearize_coefficients(d, &rk.ksk, noise))
    }

    /// a², relinearized (one base extension and half the tensor products of `multiply`).
    pub fn square(&self, a: &Ciphertext, rk: &RelinearizationKey) -> Result<Ciphertext, Error> {
        self.check_linear(a)?;
        ensure_same(&self.params, &rk.ksk.params)?;
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
        ensure_same(&self.params, &rk.ksk.params)?;
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
        let (u0, u1) = self.key_switch(&d2, ksk);
        let basis = &self.params.q;
        d0.forward_ntt(basis);
        d1.forward_ntt(basis);
        d0.add_assign(&u0, basis);
        d1.add_assign(&u1, basis);
        self.output(vec![d0, d1], noise)
    }

    /// The HPS tensor product: (d0, d1, d2) = round(t/Q · (a0, a1) ⊗ (b0, b1)) over the ciphertext
    /// primes, coefficient form. `b = None` squares `a`.
    fn tensor(&self, a: &Ciphertext, b: Option<&Ciphertext>) -> [RnsPoly; 3] {
        super::stats::ct_product();
        let p = &self.params;
        let n = p.degree();
        let (q, aux) = (&p.q, &p.aux);
        // Extend a ciphertext (NTT over Q) to NTT over P, exactly (centered).
        let extend = |ct: &Ciphertext| -> Vec<RnsPoly> {
            ct.polys
                .iter()
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
        let a_aux = extend(a);
        let b_aux = b.map(extend);
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
                    let copy = d1.clone();
                    d1.add_assign(&copy, basis);
                    d2.mul_accumulate_ntt(&x[1], &x[1], basis);
                }
            }
            [d0, d1, d2]
        };
        let dq = tensor_in(&a.polys, b.map(|c| c.polys.as_slice()), q);
        let dp = tensor_in(&a_aux, b_aux.as_deref(), aux);
        // Back to coefficients, scale by t/Q into P, convert P → Q.
        let mut out: [RnsPoly; 3] =
            std::array::from_fn(|_| RnsPoly::zero(n, q.len(), Representation::Coefficient));
        let mut scaled = RnsPoly::zero(n, aux.len(), Representation::Coefficient);
        for ((mut xq, mut xp), o) in dq.into_iter().zip(dp).zip(out.iter_mut()) {
            xq.inverse_ntt(q);
            xp.inverse_ntt(aux);
            {
                let input: Vec<&[u64]> = xq.limbs().chain(xp.limbs()).collect();
                let mut output: Vec<&mut [u64]> = scaled.limbs_mut().collect();
                p.mul_scaler.scale(&input, &mut output);
            }
            let input: Vec<&[u64]> = scaled.limbs().collect();
            let mut output: Vec<&mut [u64]> = o.limbs_mut().collect();
            p.aux_to_q.convert(&input, &mut output);
        }
        out
    }

    /// Hybrid key switching of c (coefficient form over Q): returns (u0, u1) in NTT form over Q
    /// with u0 + u1 s ≈ c s'.
    fn key_switch(&self, c: &RnsPoly, ksk: &KeySwitchingKey) -> (RnsPoly, RnsPoly) {
        super::stats::key_switch();
        let p = &self.params;
        let n = p.degree();
        let key = &p.key;
        let l = p.q.len();
        let k = key.len();
        let mut acc0 = RnsPoly::zero(n, k, Representation::Ntt);
        let mut acc1 = RnsPoly::zero(n, k, Representation::Ntt);
        let mut tmp = vec![0u64; n];
        for i in 0..l {
            let src = c.limb(i);
            let qi = p.q.moduli()[i].value();
            for j in 0..k {
                let op = &key.ntts()[j];
                let mj = op.modulus();
                if qi <= mj.value() {
                    tmp.copy_from_slice(src);
                } else if qi <= 2 * mj.value() {
                    let m = mj.value();
                    for (t, &x) in tmp.iter_mut().zip(src) {
                        *t = if x >= m { x - m } else { x };
                    }
                } else {
                    for (t, &x) in tmp.iter_mut().zip(src) {
                        *t = mj.reduce(x);
                    }
                }
                op.forward(&mut tmp);
                op.mul_accumulate(acc0.limb_mut(j), &tmp, ksk.b[i].limb(j));
                op.mul_accumulate(acc1.limb_mut(j), &tmp, ksk.a[i].limb(j));
            }
        }
        // Divide by the special prime with rounding: (acc - [acc]_sp) / sp, in NTT form.
        let sp_op = &key.ntts()[l];
        let sp = sp_op.modulus();
        for acc in [&mut acc0, &mut acc1] {
            let mut r = acc.limb(l).to_vec();
            sp_op.backward(&mut r);
            let centered: Vec<i64> = r.iter().map(|&x| sp.center(x)).collect();
            for j in 0..l {
                let op = &p.q.ntts()[j];
                let m = op.modulus();
                for (t, &x) in tmp.iter_mut().zip(&centered) {
                    *t = m.reduce_i64(x);
                }
                op.forward(&mut tmp);
                let (inv, inv_s) = p.special_inv_mod_q[j];
                for (a, &t) in acc.limb_mut(j).iter_mut().zip(&tmp) {
                    *a = m.mul_shoup(m.sub(*a, t), inv, inv_s);
                }
            }
            acc.truncate_limbs(l);
        }
        (acc0, acc1)
    }

    /// Applies the Galois automorphism X → X^g with its key.
    pub fn apply_galois(
        &self,
        ct: &Ciphertext,
        element: u64,
        keys: &GaloisKeys,
    ) -> Result<Ciphertext, Error> {
        self.check_linear(ct)?;
        ensure_same(&self.params, &keys.params)?;
        let ksk = keys
            .keys
            .get(&element)
            .ok_or(Error::MissingGaloisKey { element })?;
        let perm = self.params.ntt_galois_permutation(element);
        let permute = |poly: &RnsPoly| -> RnsPoly {
            let mut out = poly.clone();
            for (dst, src) in out.limbs_mut().zip(poly.limbs()) {
                for (d, &k) in dst.iter_mut().zip(&perm) {
                    *d = src[k as usize];
                }
            }
            out
        };
        let mut c0 = permute(&ct.polys[0]);
        let mut c1 = permute(&ct.polys[1]);
        c1.inverse_ntt(&self.params.q);
        let (u0, u1) = self.key_switch(&c1, ksk);
        c0.add_assign(&u0, &self.params.q);
        let noise = log2_add(ct.noise_log2, self.key_switch_noise_log2());
        Ok(self.output(vec![c0, u1], noise))
    }

    /// Rotates both rows of slots left by `step` (right when negative).
    pub fn rotate_rows(
        &self,
        ct: &Ciphertext,
        step: i64,
        keys: &GaloisKeys,
    ) -> Result<Ciphertext, Error> {
        let g = self.params.galois_element_for_step(step);
        if g == 1 {
            self.check(ct)?;
            let mut r = ct.clone();
            r.seed = None;
            return Ok(r);
        }
        self.apply_galois(ct, g, keys)
    }

    /// Swaps the two rows of slots.
    pub fn rotate_columns(&self, ct: &Ciphertext, keys: &GaloisKeys) -> Result<Ciphertext, Error> {
        self.apply_galois(ct, self.params.galois_element_column_swap(), keys)
    }
}
