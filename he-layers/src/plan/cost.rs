//! What running a compiled plan is expected to cost, from its operation counts alone, so that a
//! client can choose the cheaper layout for its number of images before anything is encrypted.
//!
//! The unit is one NTT of one limb (N residues). Per operation, with `l` limbs in the
//! ciphertext modulus (the engine's hybrid key switching with one special prime):
//! - a key switch (rotation or relinearization): one inverse NTT, `l·(l+1)` forward NTTs of
//!   the digits, `2l` for the division by the special prime;
//! - a ciphertext product (tensoring with base extension, before its relinearization): about
//!   `8l` NTTs;
//! - a plaintext product: the plaintext's encoding into `l` limbs (`l + 1` NTTs) and `2l`
//!   pointwise products of N residues (~ 0.15 NTT each);
//! - a scalar product (a term of a dot product): `2l` multiply-adds of N residues (~ 0.15 NTT each).
//!
//! These weights rank layouts; they are not a timing. The crossovers they predict are compared
//! with measured ones in README ("The packed layout").

use super::{LayoutKind, StepOps};

/// One pointwise pass over N residues, in NTT units.
const POINTWISE: f64 = 0.15;

/// The expected cost of one ciphertext group's operations (NTT units) with `limbs` limbs.
pub fn step_cost(ops: &StepOps, limbs: usize) -> f64 {
    // At the step's own level when a layout switched down.
    let l = match ops.level {
        0 => limbs as f64,
        level => level.min(limbs as u64) as f64,
    };
    let key_switch = 1.0 + l * (l + 1.0) + 2.0 * l;
    let ct_product = 8.0 * l;
    let plain_product = (l + 1.0) + 2.0 * l * POINTWISE;
    let scalar_product = 2.0 * l * POINTWISE;
    key_switch * ops.key_switches as f64
        + ct_product * ops.ciphertext_products as f64
        + plain_product * ops.plaintext_products as f64
        + scalar_product * ops.scalar_products as f64
}

/// Images one group of ciphertexts holds: every slot in the batch layout, one row each in the
/// packed layout.
pub fn images_per_group(layout: LayoutKind, degree: usize) -> usize {
    match layout {
        LayoutKind::Batch => degree,
        LayoutKind::Packed => super::packing::ROWS,
    }
}

/// The expected cost (NTT units) of running `steps` (one group's operations per layer) on
/// `images` images: one run per group.
pub fn estimated_cost<'a>(
    layout: LayoutKind,
    steps: impl IntoIterator<Item = &'a StepOps>,
    limbs: usize,
    degree: usize,
    images: usize,
) -> f64 {
    let per_group: f64 = steps.into_iter().map(|s| step_cost(s, limbs)).sum();
    let groups = images.div_ceil(images_per_group(layout, degree).max(1));
    per_group * groups as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(key_switches: u64, plaintext_products: u64) -> StepOps {
        StepOps {
            key_switches,
            plaintext_products,
            ..StepOps::default()
        }
    }

    #[test]
    fn a_key_switch_costs_its_ntts_and_more_limbs_cost_more() {
        assert_eq!(step_cost(&ops(1, 0), 3), 1.0 + 12.0 + 6.0);
        assert!(step_cost(&ops(0, 1), 4) > step_cost(&ops(0, 1), 3));
        // A step switched down to 3 of 8 primes costs what it costs at 3.
        let low = StepOps {
            level: 3,
            ..ops(1, 0)
        };
        assert_eq!(step_cost(&low, 8), step_cost(&ops(1, 0), 3));
    }

    #[test]
    fn groups_are_counted_per_layout() {
        let steps = [ops(1, 0)];
        let one = estimated_cost(LayoutKind::Packed, &steps, 3, 8192, 1);
        assert_eq!(estimated_cost(LayoutKind::Packed, &steps, 3, 8192, 2), one);
        assert_eq!(
            estimated_cost(LayoutKind::Packed, &steps, 3, 8192, 3),
            2.0 * one
        );
        assert_eq!(
            estimated_cost(LayoutKind::Batch, &steps, 3, 8192, 8192),
            one
        );
        assert_eq!(
            estimated_cost(LayoutKind::Batch, &steps, 3, 8192, 8193),
            2.0 * one
        );
    }
}
