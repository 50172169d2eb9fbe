//! Stopping a computation from outside: a job whose client went away, or that ran past its
//! deadline, ends at its next homomorphic operation instead of running to the end.
//!
//! [`Stoppable`] wraps any backend and checks a [`StopSignal`] before every operation, so the
//! layouts need not know about it; an operation takes milliseconds, so a stop is honoured
//! within milliseconds.

use super::{Backend, LayerError, LevelOps, LinearOps, PlaintextOps, ProductOps, RotationOps};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Why a computation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Someone called [`StopSignal::stop`] (on a server: the client disconnected).
    Stopped,
    /// The deadline passed.
    Deadline,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Stopped => "stopped",
            Self::Deadline => "past its deadline",
        })
    }
}

/// A flag any thread may raise, and an optional deadline; clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct StopSignal {
    flag: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

impl StopSignal {
    /// A signal that never fires until [`Self::stop`] is called.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same signal, firing also once `at` has passed.
    pub fn with_deadline(mut self, at: Instant) -> Self {
        self.deadline = Some(at);
        self
    }

    /// Raises the flag: every computation checking this signal stops at its next operation.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::Release);
    }

    /// Why the computation must stop, or `None` to go on.
    pub fn reason(&self) -> Option<StopReason> {
        if self.flag.load(Ordering::Acquire) {
            Some(StopReason::Stopped)
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(StopReason::Deadline)
        } else {
            None
        }
    }

    fn check(&self) -> Result<(), LayerError> {
        match self.reason() {
            Some(reason) => Err(LayerError::Stopped { reason }),
            None => Ok(()),
        }
    }
}

/// A backend that checks a [`StopSignal`] before each operation and fails with
/// [`LayerError::Stopped`] once it fires.
#[derive(Debug)]
pub struct Stoppable<'a, B> {
    inner: &'a B,
    signal: StopSignal,
}

impl<'a, B> Stoppable<'a, B> {
    /// `inner`, stopping when `signal` fires.
    pub fn new(inner: &'a B, signal: StopSignal) -> Self {
        Self { inner, signal }
    }
}

impl<B: Backend> Backend for Stoppable<'_, B> {
    type Ciphertext = B::Ciphertext;
}

impl<B: LinearOps> LinearOps for Stoppable<'_, B> {
    fn dot(
        &self,
        cts: &[&Self::Ciphertext],
        weights: &[i64],
    ) -> Result<Option<Self::Ciphertext>, LayerError> {
        self.signal.check()?;
        self.inner.dot(cts, weights)
    }

    fn dot_many(
        &self,
        cts: &[&Self::Ciphertext],
        rows: &[Vec<i64>],
    ) -> Result<Vec<Option<Self::Ciphertext>>, LayerError> {
        self.signal.check()?;
        self.inner.dot_many(cts, rows)
    }

    fn add_assign(&self, a: &mut Self::Ciphertext, b: &Self::Ciphertext) -> Result<(), LayerError> {
        self.inner.add_assign(a, b)
    }

    fn add_constant(&self, ct: &mut Self::Ciphertext, c: i128) -> Result<(), LayerError> {
        self.inner.add_constant(ct, c)
    }

    fn encrypt_constant(&self, c: i128) -> Result<Self::Ciphertext, LayerError> {
        self.signal.check()?;
        self.inner.encrypt_constant(c)
    }
}

impl<B: ProductOps> ProductOps for Stoppable<'_, B> {
    fn square(&self, ct: &Self::Ciphertext) -> Result<Self::Ciphertext, LayerError> {
        self.signal.check()?;
        self.inner.square(ct)
    }
}

impl<B: PlaintextOps> PlaintextOps for Stoppable<'_, B> {
    type Plaintext = B::Plaintext;

    fn prepare_plaintext(&self, values: &[i128]) -> Result<Self::Plaintext, LayerError> {
        self.signal.check()?;
        self.inner.prepare_plaintext(values)
    }

    fn multiply_plain(
        &self,
        ct: &Self::Ciphertext,
        pt: &Self::Plaintext,
    ) -> Result<Self::Ciphertext, LayerError> {
        self.signal.check()?;
        self.inner.multiply_plain(ct, pt)
    }

    fn add_plain(&self, ct: &mut Self::Ciphertext, values: &[i128]) -> Result<(), LayerError> {
        self.inner.add_plain(ct, values)
    }
}

impl<B: RotationOps> RotationOps for Stoppable<'_, B> {
    fn rotate(&self, ct: &Self::Ciphertext, step: i64) -> Result<Self::Ciphertext, LayerError> {
        self.signal.check()?;
        self.inner.rotate(ct, step)
    }
}

impl<B: LevelOps> LevelOps for Stoppable<'_, B> {
    fn level(&self, ct: &Self::Ciphertext) -> usize {
        self.inner.level(ct)
    }

    fn switch_level(
        &self,
        ct: &Self::Ciphertext,
        level: usize,
    ) -> Result<Self::Ciphertext, LayerError> {
        self.signal.check()?;
        self.inner.switch_level(ct, level)
    }
}
