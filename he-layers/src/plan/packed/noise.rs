//! The noise estimator as a backend: a "ciphertext" is the evaluator's log2 noise estimate,
//! and every operation applies the formula the evaluator applies to a real ciphertext. Running
//! a program on it predicts, from the public model alone, the noise every returned ciphertext
//! may carry (what circuit-privacy flooding is sized by) and the budget left after each layer.

use crate::crypto::encrypt::fresh_public_noise;
use crate::crypto::{log2_add, BfvParameters, Evaluator};
use crate::layers::{Backend, LayerError, LinearOps, PlaintextOps, ProductOps, RotationOps};
use std::sync::Arc;

/// Tracks noise estimates for one parameter set.
pub(crate) struct NoiseBackend {
    evaluator: Evaluator,
}

impl NoiseBackend {
    pub(crate) fn new(params: &Arc<BfvParameters>) -> Self {
        Self {
            evaluator: Evaluator::new(params),
        }
    }
}

impl Backend for NoiseBackend {
    type Ciphertext = f64;
}

impl LinearOps for NoiseBackend {
    fn dot(&self, cts: &[&f64], weights: &[i64]) -> Result<Option<f64>, LayerError> {
        let noise = self
            .evaluator
            .estimate_dot_noise(cts.iter().zip(weights).map(|(&&n, &w)| (n, w)));
        Ok((noise > f64::NEG_INFINITY).then_some(noise))
    }

    fn add_assign(&self, a: &mut f64, b: &f64) -> Result<(), LayerError> {
        *a = log2_add(*a, *b);
        Ok(())
    }

    fn add_constant(&self, ct: &mut f64, _c: i128) -> Result<(), LayerError> {
        *ct = self.evaluator.estimate_add_plain_noise(*ct);
        Ok(())
    }

    fn encrypt_constant(&self, _c: i128) -> Result<f64, LayerError> {
        let fresh = fresh_public_noise(self.evaluator.parameters());
        Ok(self.evaluator.estimate_add_plain_noise(fresh))
    }
}

impl ProductOps for NoiseBackend {
    fn square(&self, ct: &f64) -> Result<f64, LayerError> {
        Ok(self.evaluator.estimate_product_noise(*ct, *ct))
    }
}

impl PlaintextOps for NoiseBackend {
    type Plaintext = ();

    fn prepare_plaintext(&self, _values: &[i128]) -> Result<(), LayerError> {
        Ok(())
    }

    fn multiply_plain(&self, ct: &f64, _pt: &()) -> Result<f64, LayerError> {
        // A batch-encoded vector: any coefficient up to t/2, all of them nonzero.
        let p = self.evaluator.parameters();
        Ok(self
            .evaluator
            .estimate_mul_plain_noise(*ct, p.plain_modulus() / 2, p.degree()))
    }

    fn add_plain(&self, ct: &mut f64, _values: &[i128]) -> Result<(), LayerError> {
        *ct = self.evaluator.estimate_add_plain_noise(*ct);
        Ok(())
    }
}

impl RotationOps for NoiseBackend {
    fn rotate(&self, ct: &f64, _step: i64) -> Result<f64, LayerError> {
        Ok(log2_add(*ct, self.evaluator.estimate_key_switch_noise()))
    }
}
