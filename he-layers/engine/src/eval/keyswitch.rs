//! Hybrid key switching with one special prime, and the Galois automorphisms (rotations)
//! built on it.

use super::{log2_add, Evaluator};
use crate::arith::kernels::{self, Kernel};
use crate::encrypt::Ciphertext;
use crate::ensure_level_of;
use crate::keys::{GaloisKeys, KeySwitchingKey};
use crate::poly::{Representation, RnsPoly};
use crate::Error;
use rayon::prelude::*;

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
        let p = &self.params;
        let n = p.degree();
        let key = &p.key;
        let kernel = Kernel::best().for_moduli(n, key.moduli());
        // The same prime: the digit in NTT form is c's own limb.
        self.switch_by_prime(ksk, c_ntt, |j, digits| {
            let op = &key.ntts()[j];
            let mj = op.modulus();
            for (i, out) in digits.chunks_mut(n).enumerate() {
                if c_ntt.is_some() && i == j {
                    continue;
                }
                let src = c.limb(i);
                if p.q.moduli()[i].value() <= mj.value() {
                    out.copy_from_slice(src);
                } else {
                    kernels::reduce(kernel, out, src, mj);
                }
                op.forward(out);
            }
        })
    }

    /// The key switch's inner products prime by prime of the key basis, in parallel, then the
    /// division by the special prime. `digits_at(j, buf)` writes the l digits at prime j (NTT
    /// form) into `buf`; where `own` is given, its limb j (j < l) is digit j and `buf`'s is not
    /// read.
    fn switch_by_prime(
        &self,
        ksk: &KeySwitchingKey,
        own: Option<&RnsPoly>,
        digits_at: impl Fn(usize, &mut [u64]) + Sync,
    ) -> (RnsPoly, RnsPoly) {
        crate::stats::key_switch();
        let p = &self.params;
        let n = p.degree();
        let key = &p.key;
        let (l, k) = (p.q.len(), key.len());
        let kernel = Kernel::best().for_moduli(n, key.moduli());
        let mut acc0 = RnsPoly::zero(n, k, Representation::Ntt);
        let mut acc1 = RnsPoly::zero(n, k, Representation::Ntt);
        let limbs = acc0
            .data_mut()
            .par_chunks_mut(n)
            .zip(acc1.data_mut().par_chunks_mut(n));
        // One digit buffer per rayon split, not per prime.
        let scratch = || vec![0u64; l * n];
        limbs
            .enumerate()
            .for_each_init(scratch, |digits, (j, (o0, o1))| {
                digits_at(j, digits);
                let xs: Vec<&[u64]> = digits
                    .chunks(n)
                    .enumerate()
                    .map(|(i, d)| match own {
                        Some(own) if i == j => own.limb(i),
                        _ => d,
                    })
                    .collect();
                let (bs, as_) = key_limbs(ksk, j, l);
                kernels::dot_slots2(kernel, o0, o1, &xs, &bs, &as_, key.ntts()[j].modulus());
            });
        self.mod_down([acc0, acc1])
    }

    /// The digits of c (coefficient form over Q; `c_ntt` its NTT form) for key switching,
    /// once: per prime q_i of Q, [c]_{q_i} lifted to every prime of the key basis and
    /// transformed. A rotation's key switch then permutes them instead of redoing the
    /// (l × (l + 1) NTT) decomposition: the automorphism maps a digit d_i ≡ c (mod q_i) with
    /// |d_i| < q_i to σ(d_i) ≡ σ(c) (mod q_i), as small, so Σ σ(d_i) ksk_i is σ(c)'s switch.
    fn decompose(&self, c: &RnsPoly, c_ntt: &RnsPoly) -> Vec<RnsPoly> {
        let p = &self.params;
        let n = p.degree();
        let key = &p.key;
        let (l, k) = (p.q.len(), key.len());
        let kernel = Kernel::best().for_moduli(n, key.moduli());
        (0..l)
            .into_par_iter()
            .map(|i| {
                let src = c.limb(i);
                let qi = p.q.moduli()[i].value();
                let mut digit = RnsPoly::zero(n, k, Representation::Ntt);
                for j in 0..k {
                    let op = &key.ntts()[j];
                    let mj = op.modulus();
                    let out = digit.limb_mut(j);
                    if j == i {
                        out.copy_from_slice(c_ntt.limb(i));
                        continue;
                    }
                    if qi <= mj.value() {
                        out.copy_from_slice(src);
                    } else {
                        kernels::reduce(kernel, out, src, mj);
                    }
                    op.forward(out);
                }
                digit
            })
            .collect()
    }

    /// Key switching from hoisted digits ([`Self::decompose`]), each permuted by `perm` (the
    /// automorphism in NTT form) on the way into the inner product.
    fn key_switch_digits(
        &self,
        digits: &[RnsPoly],
        perm: &[u32],
        ksk: &KeySwitchingKey,
    ) -> (RnsPoly, RnsPoly) {
        let n = self.params.degree();
        self.switch_by_prime(ksk, None, |j, permuted| {
            for (out, digit) in permuted.chunks_mut(n).zip(digits) {
                let src = digit.limb(j);
                for (t, &x) in out.iter_mut().zip(perm) {
                    *t = src[x as usize];
                }
            }
        })
    }

    /// Divides accumulators over the key basis (Q and the special prime, NTT form) by the
    /// special prime with rounding, back to Q; the two in parallel.
    fn mod_down(&self, accs: [RnsPoly; 2]) -> (RnsPoly, RnsPoly) {
        let p = &self.params;
        let n = p.degree();
        let key = &p.key;
        let l = p.q.len();
        let [mut acc0, mut acc1] = accs;
        // Divide by the special prime with rounding: (acc - [acc]_sp) / sp, in NTT form, where
        // [acc]_sp is the centered residue (−sp added to residues above sp/2).
        let sp_op = &key.ntts()[l];
        let sp = sp_op.modulus().value();
        let half = sp / 2;
        let kernel = Kernel::best().for_moduli(n, key.moduli());
        let divide = |acc: &mut RnsPoly| {
            let mut r = acc.limb(l).to_vec();
            sp_op.backward(&mut r);
            let limbs = acc.data_mut()[..l * n].par_chunks_mut(n);
            let scratch = || vec![0u64; n];
            limbs.enumerate().for_each_init(scratch, |tmp, (j, limb)| {
                let op = &p.q.ntts()[j];
                let m = op.modulus();
                let minus_sp = m.neg(m.reduce(sp));
                kernels::lift_centered(kernel, tmp, &r, half, minus_sp, m);
                op.forward(tmp);
                let (inv, _) = p.special_inv_mod_q[j];
                kernels::sub_mul_const(kernel, limb, tmp, inv, m);
            });
            acc.truncate_limbs(l);
        };
        rayon::join(|| divide(&mut acc0), || divide(&mut acc1));
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
        let mut c0 = permute_ntt(&ct.polys[0], &perm);
        let c1_ntt = permute_ntt(&ct.polys[1], &perm);
        let mut c1 = c1_ntt.clone();
        c1.inverse_ntt(&self.params.q);
        let (u0, u1) = self.key_switch(&c1, Some(&c1_ntt), ksk);
        c0.add_assign(&u0, &self.params.q);
        let noise = log2_add(ct.noise_log2, self.estimate_key_switch_noise());
        Ok(self.output(vec![c0, u1], noise))
    }

    /// Rotates both rows of slots left by each of `steps`, with one key-switching
    /// decomposition for all of them (hoisted): each rotation then costs its inner products
    /// and the division by the special prime, not the digits' l × (l + 1) NTTs. The results
    /// decrypt as [`Self::rotate_rows`]'s do, with the same noise bound (their ciphertexts
    /// differ: a digit's representative is permuted rather than recomputed).
    pub fn rotate_rows_hoisted(
        &self,
        ct: &Ciphertext,
        steps: &[i64],
        keys: &GaloisKeys,
    ) -> Result<Vec<Ciphertext>, Error> {
        self.check_linear(ct)?;
        ensure_level_of(&self.params, &keys.params)?;
        let elements: Vec<u64> = steps
            .iter()
            .map(|&s| self.params.galois_element_for_step(s))
            .collect();
        // Every key first: a missing one fails before any work.
        let ksks = elements
            .iter()
            .filter(|&&g| g != 1)
            .map(|&g| {
                keys.keys
                    .get(&g)
                    .map(|k| (g, k))
                    .ok_or(Error::MissingGaloisKey { element: g })
            })
            .collect::<Result<std::collections::HashMap<u64, &KeySwitchingKey>, Error>>()?;
        let digits = if ksks.is_empty() {
            Vec::new()
        } else {
            let mut c1 = ct.polys[1].clone();
            c1.inverse_ntt(&self.params.q);
            self.decompose(&c1, &ct.polys[1])
        };
        let noise = log2_add(ct.noise_log2, self.estimate_key_switch_noise());
        elements
            .par_iter()
            .map(|&g| {
                let Some(ksk) = ksks.get(&g) else {
                    let mut r = ct.clone();
                    r.seed = None;
                    return Ok(r);
                };
                let perm = self.params.ntt_galois_permutation(g);
                let (u0, u1) = self.key_switch_digits(&digits, &perm, ksk);
                let mut c0 = permute_ntt(&ct.polys[0], &perm);
                c0.add_assign(&u0, &self.params.q);
                Ok(self.output(vec![c0, u1], noise))
            })
            .collect()
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

/// The key's limbs at prime j of the key basis for every digit: (b, a). A key of a higher level
/// serves this one: its limbs of the dropped primes are skipped, the special prime is its last.
fn key_limbs(ksk: &KeySwitchingKey, j: usize, l: usize) -> (Vec<&[u64]>, Vec<&[u64]>) {
    (0..l)
        .map(|i| {
            let kj = if j < l { j } else { ksk.b[i].limb_count() - 1 };
            (ksk.b[i].limb(kj), ksk.a[i].limb(kj))
        })
        .unzip()
}

/// A polynomial in NTT form under the automorphism whose NTT-slot permutation is `perm`.
fn permute_ntt(poly: &RnsPoly, perm: &[u32]) -> RnsPoly {
    let n = perm.len();
    let mut data = Vec::with_capacity(n * poly.limb_count());
    for src in poly.limbs() {
        data.extend(perm.iter().map(|&k| src[k as usize]));
    }
    RnsPoly::from_data(data, n, Representation::Ntt)
}
