//! What a scheme represents exactly, as a trait of numeric facts: the model's overflow checks
//! ask it whether an exact worst-case interval fits, whatever the scheme. BFV (and CRT over
//! several plaintext moduli) is [`ModularIntegers`]: integers are exact while |x| < Πt/2.

use crate::tensor::ValueInfo;

/// The numeric facts a scheme offers the layers' intervals.
pub trait NumericDomain {
    /// The largest |integer| held exactly (saturating at `u128::MAX`).
    fn capacity(&self) -> u128;

    /// Whether every integer of the interval is held exactly.
    fn fits(&self, info: &ValueInfo) -> bool {
        info.bound() < self.capacity()
    }

    /// log2 of the capacity, for reports.
    fn capacity_bits(&self) -> f64 {
        (self.capacity() as f64).log2()
    }
}

/// Integers modulo the product of plaintext moduli, centered: exact below half the product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModularIntegers {
    moduli: Vec<u64>,
}

impl ModularIntegers {
    /// The domain of these plaintext moduli (one, or several for CRT).
    pub fn new(moduli: Vec<u64>) -> Self {
        Self { moduli }
    }

    /// The moduli.
    pub fn moduli(&self) -> &[u64] {
        &self.moduli
    }
}

impl NumericDomain for ModularIntegers {
    fn capacity(&self) -> u128 {
        self.moduli
            .iter()
            .fold(1u128, |a, &t| a.saturating_mul(u128::from(t)))
            / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_fits_below_half_the_product_of_the_moduli() {
        let d = ModularIntegers::new(vec![17, 19]);
        assert_eq!(d.capacity(), 161);
        let info = |lo: i128, hi: i128| ValueInfo {
            shape: vec![1],
            scale: 1.0,
            lo,
            hi,
            float_bound: 0.0,
            error_bound: 0.0,
        };
        assert!(d.fits(&info(-160, 160)));
        assert!(!d.fits(&info(-161, 0)));
        assert!(!d.fits(&info(0, 161)));
        // A product past 2^128 saturates instead of wrapping.
        assert_eq!(
            ModularIntegers::new(vec![u64::MAX; 3]).capacity(),
            u128::MAX / 2
        );
    }
}
