//! What one client, or many, may take of the server: connections, time, bytes, compute jobs.
//!
//! Compute jobs pass a [`JobGate`]: at most `max_jobs` run at once, at most `max_queued_jobs`
//! wait behind them, and a job beyond both is refused with 503 and `Retry-After` before its
//! ciphertexts are read, so a flood costs the server no work and no memory beyond reading
//! and dropping the refused bodies.

use crate::error::ApiError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The server's limits (flags of the same names).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Compute jobs running at once (each uses every core through rayon).
    pub max_jobs: usize,
    /// Compute jobs admitted to wait for a running slot; beyond them, 503.
    pub max_queued_jobs: usize,
    /// Open connections; while all are taken a few more are served only the probes, and
    /// further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time to receive a request's headers (slow clients are cut off).
    pub header_read_timeout: Duration,
    /// Time to receive a whole request body.
    pub body_read_timeout: Duration,
    /// Time for a whole request, computing included; a compute job past it is stopped.
    pub request_timeout: Duration,
    /// Largest JSON body (`POST /plan`).
    pub max_json_bytes: usize,
    /// On SIGTERM, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_queued_jobs: 32,
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(600),
            max_json_bytes: 1 << 20,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Admission of compute jobs: a bounded number running, a bounded number waiting.
#[derive(Debug)]
pub struct JobGate {
    what: &'static str,
    running: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
    max_jobs: usize,
    max_admitted: usize,
}

/// A job admitted (running or waiting); dropping it frees its place.
#[derive(Debug)]
pub struct Admission {
    admitted: Arc<AtomicUsize>,
    running: Arc<Semaphore>,
}

/// A running slot, held while the job computes.
#[derive(Debug)]
pub struct JobSlot {
    _permit: OwnedSemaphorePermit,
    _admission: Admission,
}

impl JobGate {
    /// A gate for `max_jobs` running and `max_queued` waiting jobs of a kind (`what`, as
    /// the refusal names them).
    pub fn new(what: &'static str, max_jobs: usize, max_queued: usize) -> Self {
        let max_jobs = max_jobs.max(1);
        Self {
            what,
            running: Arc::new(Semaphore::new(max_jobs)),
            admitted: Arc::new(AtomicUsize::new(0)),
            max_jobs,
            max_admitted: max_jobs.saturating_add(max_queued),
        }
    }

    /// Admits a job, or refuses it with 503 `busy` and a `Retry-After` of `retry_after`
    /// seconds when the running slots and the queue are full.
    pub fn admit(&self, retry_after: u64) -> Result<Admission, ApiError> {
        let taken = self
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_admitted).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(Admission {
                admitted: self.admitted.clone(),
                running: self.running.clone(),
            }),
            Err(_) => Err(ApiError::busy(
                format!(
                    "{} {} are running or waiting, the most this server admits; retry later",
                    self.max_admitted, self.what
                ),
                retry_after,
            )),
        }
    }

    /// Jobs admitted and not yet running.
    pub fn queued(&self) -> usize {
        self.admitted
            .load(Ordering::Acquire)
            .saturating_sub(self.running())
    }

    /// Jobs running.
    pub fn running(&self) -> usize {
        self.max_jobs
            .saturating_sub(self.running.available_permits())
    }

    /// Whether a job admitted now would wait for a slot.
    pub fn would_wait(&self) -> bool {
        self.running.available_permits() == 0
    }

    /// Whether a new job would be admitted now.
    pub fn has_room(&self) -> bool {
        self.admitted.load(Ordering::Acquire) < self.max_admitted
    }

    /// Running slots.
    pub fn max_jobs(&self) -> usize {
        self.max_jobs
    }
}

impl Admission {
    /// Waits for a running slot.
    pub async fn run(self) -> Result<JobSlot, ApiError> {
        let permit = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ApiError::internal(format!("job queue: {e}")))?;
        Ok(JobSlot {
            _permit: permit,
            _admission: self,
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
    use super::*;

    #[tokio::test]
    async fn admits_running_and_queued_jobs_then_refuses_with_retry_after() {
        let gate = JobGate::new("jobs", 1, 1);
        let a = gate.admit(3).unwrap();
        let b = gate.admit(3).unwrap();
        let refused = gate.admit(3).unwrap_err();
        assert_eq!(refused.status.as_u16(), 503);
        assert_eq!(refused.retry_after, Some(3));
        let slot = a.run().await.unwrap();
        assert_eq!((gate.running(), gate.queued()), (1, 1));
        drop(slot);
        let _slot_b = b.run().await.unwrap();
        assert_eq!((gate.running(), gate.queued()), (1, 0));
        assert!(gate.admit(3).is_ok(), "a place freed is taken again");
    }
}
