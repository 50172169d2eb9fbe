//! The noise estimator as a backend: a "ciphertext" is its level and the evaluator's log2 noise
//! estimate, and every operation applies the formula the evaluator of that level applies to a
//! real ciphertext. Running a program on it predicts, from the public model alone, the noise
//! every returned ciphertext may carry (what circuit-privacy flooding is sized by) and the
//! budget left after each layer.

use crate::crypto::encrypt::fresh_public_noise;
use crate::crypto::modswitch::switched_noise_log2;
use crate::crypto::{log2_add, BfvParameters, Evaluator};
use crate::layers::{
    Backend, LayerError, LevelOps, LinearOps, PlaintextOps, ProductOps, RotationOps,
};
use std::sync::Arc;

/// A ciphertext as the estimator sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct NoiseCt {
    /// Ciphertext primes.
    pub(crate) level: usize,
    /// log2 of the noise numerator at that level.
    pub(crate) noise: f64,
}

/// Tracks noise estimates for one parameter set and its levels.
pub(crate) struct NoiseBackend {
    /// The evaluator of level k + 1 at index k; `None` for a level that is no valid parameter
    /// set (too few primes for t).
    evaluators: Vec<Option<Evaluator>>,
}

impl NoiseBackend {
    pub(crate) fn new(params: &Arc<BfvParameters>) -> Self {
        let evaluators = (1..=params.level())
            .map(|k| params.at_level(k).ok().map(|p| Evaluator::new(&p)))
            .collect();
        Self { evaluators }
    }

    /// Whether ciphertexts can be switched down to `level`.
    pub(crate) fn has_level(&self, level: usize) -> bool {
        self.at(level).is_ok()
    }

    /// A fresh encryption's estimate at the top level.
    pub(crate) fn fresh(&self, noise: f64) -> NoiseCt {
        NoiseCt {
            level: self.evaluators.len(),
            noise,
        }
    }

    fn at(&self, level: usize) -> Result<&Evaluator, LayerError> {
        level
            .checked_sub(1)
            .and_then(|k| self.evaluators.get(k))
            .and_then(Option::as_ref)
            .ok_or(LayerError::Inconsistent {
                layer: String::new(),
                what: "a noise estimate at a level the parameters do not have",
            })
    }

    fn top(&self) -> Result<&Evaluator, LayerError> {
        self.at(self.evaluators.len())
    }

    /// The noise numerator a top-level ciphertext would carry for the same budget: what the
    /// sanitization plan, made for the top level, is sized by.
    pub(crate) fn top_equivalent(&self, ct: &NoiseCt) -> Result<f64, LayerError> {
        let here = self.at(ct.level)?.parameters().log2_q();
        Ok(ct.noise + self.top()?.parameters().log2_q() - here)
    }
}

impl Backend for NoiseBackend {
    type Ciphertext = NoiseCt;
}

impl LinearOps for NoiseBackend {
    fn dot(&self, cts: &[&NoiseCt], weights: &[i64]) -> Result<Option<NoiseCt>, LayerError> {
        let Some(level) = cts.iter().map(|c| c.level).min() else {
            return Ok(None);
        };
        let ev = self.at(level)?;
        let noise = ev.estimate_dot_noise(cts.iter().zip(weights).map(|(c, &w)| (c.noise, w)));
        Ok((noise > f64::NEG_INFINITY).then_some(NoiseCt { level, noise }))
    }

    fn add_assign(&self, a: &mut NoiseCt, b: &NoiseCt) -> Result<(), LayerError> {
        let level = a.level.min(b.level);
        let (x, y) = (self.switch_level(a, level)?, self.switch_level(b, level)?);
        *a = NoiseCt {
            level,
            noise: log2_add(x.noise, y.noise),
        };
        Ok(())
    }

    fn add_constant(&self, ct: &mut NoiseCt, _c: i128) -> Result<(), LayerError> {
        ct.noise = self.at(ct.level)?.estimate_add_plain_noise(ct.noise);
        Ok(())
    }

    fn encrypt_constant(&self, _c: i128) -> Result<NoiseCt, LayerError> {
        let top = self.top()?;
        let fresh = fresh_public_noise(top.parameters());
        Ok(self.fresh(top.estimate_add_plain_noise(fresh)))
    }
}

impl ProductOps for NoiseBackend {
    fn square(&self, ct: &NoiseCt) -> Result<NoiseCt, LayerError> {
        Ok(NoiseCt {
            level: ct.level,
            noise: self
                .at(ct.level)?
                .estimate_product_noise(ct.noise, ct.noise),
        })
    }
}

impl PlaintextOps for NoiseBackend {
    type Plaintext = ();

    fn prepare_plaintext(&self, _values: &[i128]) -> Result<(), LayerError> {
        Ok(())
    }

    fn multiply_plain(&self, ct: &NoiseCt, _pt: &()) -> Result<NoiseCt, LayerError> {
        // A batch-encoded vector: any coefficient up to t/2, all of them nonzero.
        let ev = self.at(ct.level)?;
        let p = ev.parameters();
        Ok(NoiseCt {
            level: ct.level,
            noise: ev.estimate_mul_plain_noise(ct.noise, p.plain_modulus() / 2, p.degree()),
        })
    }

    fn add_plain(&self, ct: &mut NoiseCt, _values: &[i128]) -> Result<(), LayerError> {
        ct.noise = self.at(ct.level)?.estimate_add_plain_noise(ct.noise);
        Ok(())
    }
}

impl RotationOps for NoiseBackend {
    fn rotate(&self, ct: &NoiseCt, _step: i64) -> Result<NoiseCt, LayerError> {
        Ok(NoiseCt {
            level: ct.level,
            noise: log2_add(ct.noise, self.at(ct.level)?.estimate_key_switch_noise()),
        })
    }
}

impl LevelOps for NoiseBackend {
    fn level(&self, ct: &NoiseCt) -> usize {
        ct.level
    }

    fn switch_level(&self, ct: &NoiseCt, level: usize) -> Result<NoiseCt, LayerError> {
        if level >= ct.level {
            return Ok(*ct);
        }
        let from = self.at(ct.level)?.parameters();
        self.at(level)?;
        Ok(NoiseCt {
            level,
            noise: switched_noise_log2(from, ct.noise, level),
        })
    }
}
