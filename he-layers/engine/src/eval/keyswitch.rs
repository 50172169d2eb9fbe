//! Hybrid key switching with one special prime, and the Galois automorphisms (rotations)
//! built on it.

use super::{log2_add, Evaluator};
use crate::encrypt::Ciphertext;
use crate::ensure_same;
use crate::keys::{GaloisKeys, KeySwitchingKey};
use crate::poly::{Representation, RnsPoly};
use crate::Error;

impl Evaluator {
    /// Hybrid key switching of c (coefficient form over Q): returns (u0, u1) in NTT form over Q
    /// with u0 + u1 s ≈ c s'.
    pub(super) fn key_switch(&self, c: &RnsPoly, ksk: &KeySwitchingKey) -> (RnsPoly, RnsPoly) {
        crate::stats::key_switch();
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
        let noise = log2_add(ct.noise_log2, self.estimate_key_switch_noise());
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
