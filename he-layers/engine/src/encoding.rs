//! Plaintexts and the batch encoder: N slots as a 2 × N/2 matrix of integers mod t, mapped to
//! polynomial coefficients by an NTT modulo t.

use super::params::BfvParameters;
use super::poly::{Representation, RnsPoly};
use super::Error;
use std::sync::Arc;

/// A plaintext polynomial: N coefficients in [0, t).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plaintext {
    pub(crate) params: Arc<BfvParameters>,
    pub(crate) coeffs: Vec<u64>,
}

impl Plaintext {
    /// A plaintext from coefficients, each reduced mod t.
    pub fn from_coefficients(params: &Arc<BfvParameters>, coeffs: &[u64]) -> Result<Self, Error> {
        if coeffs.len() > params.degree() {
            return Err(Error::TooManyValues {
                given: coeffs.len(),
                slots: params.degree(),
            });
        }
        let mut c: Vec<u64> = coeffs.iter().map(|&x| params.plain.reduce(x)).collect();
        c.resize(params.degree(), 0);
        Ok(Self {
            params: params.clone(),
            coeffs: c,
        })
    }

    /// The coefficients in [0, t).
    pub fn coefficients(&self) -> &[u64] {
        &self.coeffs
    }

    /// Whether every coefficient is zero.
    pub fn is_zero(&self) -> bool {
        self.coeffs.iter().all(|&c| c == 0)
    }

    /// The parameter set.
    pub fn parameters(&self) -> &Arc<BfvParameters> {
        &self.params
    }

    /// Δ m: the plaintext scaled into the ciphertext modulus as round(Q m / t), coefficient
    /// form over the ciphertext primes.
    pub(crate) fn scaled(&self) -> RnsPoly {
        self.scaled_at(&self.params)
    }

    /// [`Self::scaled`] over the primes of `p`: this plaintext's parameter set or a level of it.
    pub(crate) fn scaled_at(&self, p: &BfvParameters) -> RnsPoly {
        let t = p.plain_modulus() as u128;
        let mut out = RnsPoly::zero(p.degree(), p.q.len(), Representation::Coefficient);
        // round(Q m / t) = floor(Q/t) m + round((Q mod t) m / t).
        let fix: Vec<u64> = self
            .coeffs
            .iter()
            .map(|&m| ((p.q_mod_t as u128 * m as u128 + t / 2) / t) as u64)
            .collect();
        for ((limb, m), &(d, ds)) in out.limbs_mut().zip(p.q.moduli()).zip(&p.delta) {
            for ((x, &c), &f) in limb.iter_mut().zip(&self.coeffs).zip(&fix) {
                *x = m.add(m.mul_shoup(c, d, ds), m.reduce(f));
            }
        }
        out
    }

    /// The centered lift of m, coefficient form over the ciphertext primes of `p` (this
    /// plaintext's parameter set or a level of it).
    pub(crate) fn lifted_at(&self, p: &BfvParameters) -> RnsPoly {
        let centered: Vec<i64> = self.coeffs.iter().map(|&c| p.plain.center(c)).collect();
        RnsPoly::from_signed(&centered, &p.q, p.q.len())
    }
}

/// A plaintext prepared once for additions: Δ m in NTT form. Reusable across ciphertexts.
#[derive(Clone, Debug)]
pub struct ScaledPlaintext {
    pub(crate) params: Arc<BfvParameters>,
    pub(crate) poly: RnsPoly,
}

/// A plaintext prepared once for multiplications: its centered lift in NTT form, and its largest
/// coefficient (for the noise estimate).
#[derive(Clone, Debug)]
pub struct LiftedPlaintext {
    pub(crate) params: Arc<BfvParameters>,
    pub(crate) poly: RnsPoly,
    pub(crate) max_abs: u64,
    pub(crate) nonzero: usize,
}

/// Encodes vectors of signed integers into the N slots of a plaintext, and back.
#[derive(Clone, Debug)]
pub struct BatchEncoder {
    params: Arc<BfvParameters>,
}

impl BatchEncoder {
    /// An encoder; fails when t does not allow batching.
    pub fn try_new(params: &Arc<BfvParameters>) -> Result<Self, Error> {
        if !params.supports_batching() {
            return Err(Error::NoBatching {
                plain_modulus: params.plain_modulus(),
                two_n: 2 * params.degree(),
            });
        }
        Ok(Self {
            params: params.clone(),
        })
    }

    /// Number of slots (N): row 0 is slots 0..N/2, row 1 is N/2..N.
    pub fn slot_count(&self) -> usize {
        self.params.degree()
    }

    /// Encodes up to N values, each in [-(t-1)/2, (t-1)/2]; missing slots are zero.
    pub fn encode(&self, values: &[i64]) -> Result<Plaintext, Error> {
        let p = &self.params;
        let n = p.degree();
        if values.len() > n {
            return Err(Error::TooManyValues {
                given: values.len(),
                slots: n,
            });
        }
        let t = p.plain_modulus();
        let half = (t - 1) / 2;
        let mut slots = vec![0u64; n];
        for (i, &v) in values.iter().enumerate() {
            if v.unsigned_abs() > half {
                return Err(Error::ValueOutOfRange {
                    index: i,
                    value: v as i128,
                    plain_modulus: t,
                });
            }
            slots[p.slot_to_plain_ntt[i] as usize] = p.plain.reduce_i64(v);
        }
        if let Some(op) = &p.plain_ntt {
            op.backward(&mut slots);
        }
        Ok(Plaintext {
            params: p.clone(),
            coeffs: slots,
        })
    }

    /// Decodes the N slots as centered integers.
    pub fn decode(&self, pt: &Plaintext) -> Vec<i64> {
        let p = &self.params;
        let mut evals = pt.coeffs.clone();
        if let Some(op) = &p.plain_ntt {
            op.forward(&mut evals);
        }
        p.slot_to_plain_ntt
            .iter()
            .map(|&k| p.plain.center(evals[k as usize]))
            .collect()
    }

    /// Decodes the N slots as residues in [0, t).
    pub fn decode_unsigned(&self, pt: &Plaintext) -> Vec<u64> {
        let p = &self.params;
        let mut evals = pt.coeffs.clone();
        if let Some(op) = &p.plain_ntt {
            op.forward(&mut evals);
        }
        p.slot_to_plain_ntt
            .iter()
            .map(|&k| evals[k as usize])
            .collect()
    }
}
