//! RNS polynomials in coefficient or NTT form, and the samplers that fill them.

use super::arith::RnsBasis;
use rand::{Rng, RngCore};
use rayon::prelude::*;

/// Which representation a polynomial's limbs are in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Representation {
    /// Coefficients, each limb in [0, q_i).
    Coefficient,
    /// NTT slots (the order of `tfhe-ntt`).
    Ntt,
}

/// A polynomial of `Z_Q[X]/(X^N+1)` as residues modulo each prime of a basis, limb after limb
/// in one buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RnsPoly {
    data: Vec<u64>,
    degree: usize,
    representation: Representation,
}

impl RnsPoly {
    /// The zero polynomial with `limbs` limbs.
    pub fn zero(degree: usize, limbs: usize, representation: Representation) -> Self {
        Self {
            data: vec![0; degree * limbs],
            degree,
            representation,
        }
    }

    /// A polynomial from a flat buffer of `limbs * degree` residues.
    pub fn from_data(data: Vec<u64>, degree: usize, representation: Representation) -> Self {
        debug_assert_eq!(data.len() % degree, 0);
        Self {
            data,
            degree,
            representation,
        }
    }

    /// The number of limbs.
    #[inline]
    pub fn limb_count(&self) -> usize {
        self.data.len() / self.degree
    }

    /// Limb i.
    #[inline]
    pub fn limb(&self, i: usize) -> &[u64] {
        &self.data[i * self.degree..(i + 1) * self.degree]
    }

    /// Limb i, mutable.
    #[inline]
    pub fn limb_mut(&mut self, i: usize) -> &mut [u64] {
        &mut self.data[i * self.degree..(i + 1) * self.degree]
    }

    /// All limbs.
    pub fn limbs(&self) -> impl Iterator<Item = &[u64]> {
        self.data.chunks_exact(self.degree)
    }

    /// All limbs, mutable.
    pub fn limbs_mut(&mut self) -> impl Iterator<Item = &mut [u64]> {
        self.data.chunks_exact_mut(self.degree)
    }

    /// The flat buffer.
    pub fn data(&self) -> &[u64] {
        &self.data
    }

    /// The flat buffer, mutable.
    pub(crate) fn data_mut(&mut self) -> &mut [u64] {
        &mut self.data
    }

    /// Keeps only the first `limbs` limbs.
    pub fn truncate_limbs(&mut self, limbs: usize) {
        self.data.truncate(limbs * self.degree);
    }

    /// Transforms to NTT form over `basis` (whose first limbs match this polynomial's), the
    /// limbs in parallel.
    pub fn forward_ntt(&mut self, basis: &RnsBasis) {
        if self.representation == Representation::Ntt {
            return;
        }
        let degree = self.degree;
        let limbs = self.data.par_chunks_exact_mut(degree);
        limbs
            .zip(basis.ntts())
            .for_each(|(limb, op)| op.forward(limb));
        self.representation = Representation::Ntt;
    }

    /// Transforms to coefficient form over `basis`, the limbs in parallel.
    pub fn inverse_ntt(&mut self, basis: &RnsBasis) {
        if self.representation == Representation::Coefficient {
            return;
        }
        let degree = self.degree;
        let limbs = self.data.par_chunks_exact_mut(degree);
        limbs
            .zip(basis.ntts())
            .for_each(|(limb, op)| op.backward(limb));
        self.representation = Representation::Coefficient;
    }

    /// self += other (same representation and basis).
    pub fn add_assign(&mut self, other: &RnsPoly, basis: &RnsBasis) {
        debug_assert_eq!(self.representation, other.representation);
        for ((a, b), m) in self.limbs_mut().zip(other.limbs()).zip(basis.moduli()) {
            for (x, &y) in a.iter_mut().zip(b) {
                *x = m.add(*x, y);
            }
        }
    }

    /// self = 2·self.
    pub fn double_assign(&mut self, basis: &RnsBasis) {
        for (a, m) in self.limbs_mut().zip(basis.moduli()) {
            for x in a.iter_mut() {
                *x = m.add(*x, *x);
            }
        }
    }

    /// self -= other (same representation and basis).
    pub fn sub_assign(&mut self, other: &RnsPoly, basis: &RnsBasis) {
        debug_assert_eq!(self.representation, other.representation);
        for ((a, b), m) in self.limbs_mut().zip(other.limbs()).zip(basis.moduli()) {
            for (x, &y) in a.iter_mut().zip(b) {
                *x = m.sub(*x, y);
            }
        }
    }

    /// self = -self.
    pub fn negate(&mut self, basis: &RnsBasis) {
        for (a, m) in self.limbs_mut().zip(basis.moduli()) {
            for x in a.iter_mut() {
                *x = m.neg(*x);
            }
        }
    }

    /// self = self * other slot-wise (both in NTT form).
    pub fn mul_assign_ntt(&mut self, other: &RnsPoly, basis: &RnsBasis) {
        debug_assert_eq!(self.representation, Representation::Ntt);
        debug_assert_eq!(other.representation, Representation::Ntt);
        let mut acc = vec![0u64; self.degree];
        for ((a, b), op) in self.limbs_mut().zip(other.limbs()).zip(basis.ntts()) {
            acc.iter_mut().for_each(|x| *x = 0);
            op.mul_accumulate(&mut acc, a, b);
            a.copy_from_slice(&acc);
        }
    }

    /// self += a * b slot-wise (all in NTT form).
    pub fn mul_accumulate_ntt(&mut self, a: &RnsPoly, b: &RnsPoly, basis: &RnsBasis) {
        for (((acc, x), y), op) in self
            .limbs_mut()
            .zip(a.limbs())
            .zip(b.limbs())
            .zip(basis.ntts())
        {
            op.mul_accumulate(acc, x, y);
        }
    }

    /// Multiplies every limb by a per-limb constant (Shoup), in any representation.
    pub fn mul_scalar_assign(&mut self, scalar: &[(u64, u64)], basis: &RnsBasis) {
        for ((a, &(w, ws)), m) in self.limbs_mut().zip(scalar).zip(basis.moduli()) {
            for x in a.iter_mut() {
                *x = m.mul_shoup(*x, w, ws);
            }
        }
    }

    /// A polynomial from small signed coefficients, reduced into every limb of `basis`.
    pub fn from_signed(coeffs: &[i64], basis: &RnsBasis, limbs: usize) -> Self {
        let degree = coeffs.len();
        let mut p = Self::zero(degree, limbs, Representation::Coefficient);
        let largest = coeffs.iter().map(|c| c.unsigned_abs()).max().unwrap_or(0);
        for (limb, m) in p.limbs_mut().zip(basis.moduli()) {
            let q = m.value();
            if largest < q {
                // Every coefficient already within (−q, q): add q to the negative ones.
                for (x, &c) in limb.iter_mut().zip(coeffs) {
                    *x = (c as u64).wrapping_add(q & (c >> 63) as u64);
                }
            } else {
                for (x, &c) in limb.iter_mut().zip(coeffs) {
                    *x = m.reduce_i64(c);
                }
            }
        }
        p
    }

    /// A polynomial whose limbs are uniform in [0, q_i), drawn from `rng` limb after limb,
    /// coefficient after coefficient, by rejection sampling (the order seeded objects rely on).
    pub fn sample_uniform<R: RngCore>(
        rng: &mut R,
        degree: usize,
        basis: &RnsBasis,
        limbs: usize,
        representation: Representation,
    ) -> Self {
        let mut p = Self::zero(degree, limbs, representation);
        for (limb, m) in p.limbs_mut().zip(basis.moduli()) {
            let q = m.value();
            let mask = u64::MAX >> q.leading_zeros();
            for x in limb.iter_mut() {
                *x = loop {
                    let v = rng.next_u64() & mask;
                    if v < q {
                        break v;
                    }
                };
            }
        }
        p
    }
}

/// Standard deviation of the error distribution (HE standard).
pub const ERROR_STD_DEV: f64 = 3.2;
/// The error sampler clips at this many standard deviations.
pub const ERROR_CLIP: f64 = 6.0;

/// Samples N coefficients uniform in {-1, 0, 1}.
pub fn sample_ternary<R: RngCore>(rng: &mut R, degree: usize) -> Vec<i64> {
    (0..degree)
        .map(|_| {
            // Rejection from 2 bits keeps the three values exactly equiprobable.
            loop {
                let v = rng.next_u32() & 3;
                if v < 3 {
                    break v as i64 - 1;
                }
            }
        })
        .collect()
}

/// Samples N coefficients from a rounded normal of standard deviation σ = 3.2, clipped at 6σ.
/// Each is sampled once as a signed integer, so every limb gets the same error.
pub fn sample_error<R: RngCore>(rng: &mut R, degree: usize) -> Vec<i64> {
    let bound = ERROR_STD_DEV * ERROR_CLIP;
    let mut out = Vec::with_capacity(degree);
    while out.len() < degree {
        // Box–Muller: two normals from two uniforms in (0, 1].
        let u1: f64 = 1.0 - rng.gen::<f64>();
        let u2: f64 = rng.gen::<f64>();
        let r = (-2.0 * u1.ln()).sqrt() * ERROR_STD_DEV;
        let theta = std::f64::consts::TAU * u2;
        for z in [r * theta.cos(), r * theta.sin()] {
            if z.abs() <= bound && out.len() < degree {
                out.push(z.round() as i64);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn samplers_have_the_right_shape() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let s = sample_ternary(&mut rng, 30_000);
        for v in [-1, 0, 1] {
            let c = s.iter().filter(|&&x| x == v).count();
            assert!((9_000..11_000).contains(&c), "{v}: {c}");
        }
        let e = sample_error(&mut rng, 100_000);
        let max = e.iter().map(|x| x.abs()).max().unwrap();
        assert!(max <= 19);
        let var = e.iter().map(|&x| (x * x) as f64).sum::<f64>() / e.len() as f64;
        // Rounding adds 1/12 to the variance of the continuous normal.
        assert!((var - (3.2f64 * 3.2 + 1.0 / 12.0)).abs() < 0.3, "{var}");
    }
}
