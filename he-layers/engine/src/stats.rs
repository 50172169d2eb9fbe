//! Process-wide counts of the expensive operations, for benches and profiles: NTTs, key
//! switches, ciphertext products and scalar products. Relaxed atomics, one increment per
//! operation (an NTT is ~15 µs, so the count costs nothing measurable).

use std::ops::Sub;
use std::sync::atomic::{AtomicU64, Ordering};

static NTTS: AtomicU64 = AtomicU64::new(0);
static KEY_SWITCHES: AtomicU64 = AtomicU64::new(0);
static CT_PRODUCTS: AtomicU64 = AtomicU64::new(0);
static SCALAR_PRODUCTS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn ntt() {
    NTTS.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn key_switch() {
    KEY_SWITCHES.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn ct_product() {
    CT_PRODUCTS.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn scalar_products(n: u64) {
    SCALAR_PRODUCTS.fetch_add(n, Ordering::Relaxed);
}

/// Operation counts since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Forward and inverse NTTs of one limb (N residues).
    pub ntts: u64,
    /// Key switches (relinearizations and rotations).
    pub key_switches: u64,
    /// Ciphertext × ciphertext products (tensor products).
    pub ct_products: u64,
    /// Ciphertext × integer products (terms of dot products included).
    pub scalar_products: u64,
}

/// The counts now.
pub fn snapshot() -> OpCounts {
    OpCounts {
        ntts: NTTS.load(Ordering::Relaxed),
        key_switches: KEY_SWITCHES.load(Ordering::Relaxed),
        ct_products: CT_PRODUCTS.load(Ordering::Relaxed),
        scalar_products: SCALAR_PRODUCTS.load(Ordering::Relaxed),
    }
}

impl Sub for OpCounts {
    type Output = OpCounts;
    fn sub(self, o: OpCounts) -> OpCounts {
        OpCounts {
            ntts: self.ntts.saturating_sub(o.ntts),
            key_switches: self.key_switches.saturating_sub(o.key_switches),
            ct_products: self.ct_products.saturating_sub(o.ct_products),
            scalar_products: self.scalar_products.saturating_sub(o.scalar_products),
        }
    }
}

impl std::ops::Add for OpCounts {
    type Output = OpCounts;
    fn add(self, o: OpCounts) -> OpCounts {
        OpCounts {
            ntts: self.ntts + o.ntts,
            key_switches: self.key_switches + o.key_switches,
            ct_products: self.ct_products + o.ct_products,
            scalar_products: self.scalar_products + o.scalar_products,
        }
    }
}
