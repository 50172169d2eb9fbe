//! Hybrid key switching with one special prime, and the Galois automorphisms (rotations)
//! built on it.

use super::{log2_add, Evaluator};
use crate::encrypt::Ciphertext;
use crate::ensure_level_of;
use crate::keys::{GaloisKeys, KeySwitchingKey};
use crate::poly::{Representation, RnsPoly};
use crate::Error;

impl Evaluator {
    /// Hybrid key switching of c (coefficient form over Q): returns (u0, u1) in NTT form over Q
    /// with u0 + u1 s ≈ c s', at this evaluator's level with a key of this level or above.
    /// `c_ntt`, when the caller has it, is c in NTT form: each digit's
    /// own prime then needs no transform.
    pub(super) fn key_switch(
        &self,
        c: &RnsPoly,
        c_ntt: Option<&RnsPoly>,
        ksk: &KeySwitchingKey,
    ) -> (RnsPoly, RnsPoly) {
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
                let digit: &[u64] = match c_ntt {
                    // The same prime: the digit in NTT form is c's own limb.
                    Some(c_ntt) if j == i => c_ntt.limb(i),
                    _ => {
                        if qi <= mj.value() {
                            tmp.copy_from_slice(src);
                        } else {
                            for (t, &x) in tmp.iter_mut().zip(src) {
                                *t = mj.reduce_flat(x);
                            }
                        }
                        op.forward(&mut tmp);
                        &tmp
                    }
                };
                // A key of a higher level serves this one: its limbs of the dropped primes
                // are skipped, the special prime is its last.
                let kj = if j < l { j } else { ksk.b[i].limb_count() - 1 };
                op.mul_accumulate(acc0.limb_mut(j), digit, ksk.b[i].limb(kj));
                op.mul_accumulate(acc1.limb_mut(j), digit, ksk.a[i].limb(kj));
            }
        }
        // Divide by the special prime with rounding: (acc - [acc]_sp) / sp, in NTT form, where
        // [acc]_sp is the centered residue (−sp added to residues above sp/2).
        let sp_op = &key.ntts()[l];
        let sp = sp_op.modulus().value();
        let half = sp / 2;
        let mut r = vec![0u64; n];
        for acc in [&mut acc0, &mut acc1] {
            r.copy_from_slice(acc.limb(l));
            sp_op.backward(&mut r);
            for j in 0..l {
                let op = &p.q.ntts()[j];
                let m = op.modulus();
                let minus_sp = m.neg(m.reduce(sp));
                for (t, &x) in tmp.iter_mut().zip(&r) {
                    let lift = 0u64.wrapping_sub(u64::from(x > half)) & minus_sp;
                    let s = m.reduce_flat(x) + lift;
                    *t = s.min(s.wrapping_sub(m.value()));
                }
                op.forward(&mut tmp);
                let (inv, inv_s) = p.special_inv_mod_q[j];
                for (a, &t) in acc.limb_mut(j).iter_mut().zip(&tmp) {
                    *a = m.mul_shoup_flat(m.sub_flat(*a, t), inv, inv_s);
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
        ensure_level_of(&self.params, &keys.params)?;
        let ksk = keys
            .keys
            .get(&element)
            .ok_or(Error::MissingGaloisKey { element })?;
        let perm = self.params.ntt_galois_permutation(element);
        let permute = |poly: &RnsPoly| -> RnsPoly {
            let n = perm.len();
            let mut data = Vec::with_capacity(n * poly.limb_count());
            for src in poly.limbs() {
                data.extend(perm.iter().map(|&k| src[k as usize]));
            }
            RnsPoly::from_data(data, n, Representation::Ntt)
        };
        let mut c0 = permute(&ct.polys[0]);
        let c1_ntt = permute(&ct.polys[1]);
        let mut c1 = c1_ntt.clone();
        c1.inverse_ntt(&self.params.q);
        let (u0, u1) = self.key_switch(&c1, Some(&c1_ntt), ksk);
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
