//! Products by integer scalars and fused dot products (lazy 128-bit reduction; a u64 path
//! with an AVX-512 kernel for small weights).

use super::{log2_add, Evaluator};
use crate::encrypt::Ciphertext;
use crate::poly::{Representation, RnsPoly};
use crate::Error;

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

impl Evaluator {
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

    /// The noise estimate of Σ w_k ct_k from (noise of ct_k, w_k) pairs (weights taken
    /// centered mod t, as the products are).
    pub fn estimate_dot_noise(&self, terms: impl IntoIterator<Item = (f64, i64)>) -> f64 {
        terms
            .into_iter()
            .map(|(n, w)| n + (self.center_mod_t(w).unsigned_abs() as f64).log2())
            .fold(f64::NEG_INFINITY, log2_add)
    }

    /// ct · w for an integer w, without transforms. w ≡ 0 mod t would be transparent and is
    /// refused.
    pub fn mul_scalar(&self, ct: &Ciphertext, w: i64) -> Result<Ciphertext, Error> {
        self.check(ct)?;
        let w = self.center_mod_t(w);
        if w == 0 {
            return Err(Error::TransparentResult);
        }
        crate::stats::scalar_products(1);
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
        crate::stats::scalar_products(terms.len() as u64);
        let noise = self.estimate_dot_noise(terms.iter().map(|(c, w)| (c.noise_log2, *w)));
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
                crate::stats::scalar_products(terms);
                let noise = self.estimate_dot_noise(
                    cts.iter()
                        .zip(row)
                        .filter(|(_, &w)| w != 0)
                        .map(|(c, &w)| (c.noise_log2, w)),
                );
                results.push(Some(self.output(polys, noise)));
            }
        }
        Ok(results)
    }
}
