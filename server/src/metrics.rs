//! Counters and gauges for `GET /metrics`, in Prometheus' text format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the compute-time histogram's buckets, seconds.
const COMPUTE_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// What the server counts.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    compute_buckets: [AtomicU64; COMPUTE_BUCKETS.len()],
    compute_count: AtomicU64,
    compute_micros: AtomicU64,
    open_connections: AtomicU64,
    stopped_jobs: AtomicU64,
}

/// Values read at the moment of a scrape.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gauges {
    /// Compute jobs waiting for a slot.
    pub queued_jobs: usize,
    /// Compute jobs running.
    pub running_jobs: usize,
    /// Key sets held.
    pub cached_keys: usize,
    /// Resident bytes of the key sets held.
    pub cached_key_bytes: usize,
    /// Plans held.
    pub cached_plans: usize,
}

impl Metrics {
    /// Counts an answered request by route (the matched pattern, not the raw path) and status.
    pub fn request(&self, route: &str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_string(), status)).or_default() += 1;
        }
    }

    /// Counts an error answer by kind.
    pub fn error(&self, kind: &'static str) {
        if let Ok(mut m) = self.errors.lock() {
            *m.entry(kind).or_default() += 1;
        }
    }

    /// Records one finished compute job's time.
    pub fn compute(&self, took: Duration) {
        let s = took.as_secs_f64();
        for (b, le) in self.compute_buckets.iter().zip(COMPUTE_BUCKETS) {
            if s <= le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.compute_count.fetch_add(1, Ordering::Relaxed);
        self.compute_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Mean compute time so far (1 s before the first job), for `Retry-After`.
    pub fn mean_compute(&self) -> Duration {
        let n = self.compute_count.load(Ordering::Relaxed);
        if n == 0 {
            return Duration::from_secs(1);
        }
        Duration::from_micros(self.compute_micros.load(Ordering::Relaxed) / n)
    }

    /// Counts a compute job stopped before its end (client gone, or past its deadline).
    pub fn stopped_job(&self) {
        self.stopped_jobs.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection opened (`true`) or closed.
    pub fn connection(&self, opened: bool) {
        if opened {
            self.open_connections.fetch_add(1, Ordering::Relaxed);
        } else {
            self.open_connections.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The text a scrape returns.
    pub fn render(&self, g: Gauges) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP he_requests_total Requests answered, by route and status.\n\
             # TYPE he_requests_total counter"
        );
        if let Ok(m) = self.requests.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "he_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP he_errors_total Error answers, by kind.\n# TYPE he_errors_total counter"
        );
        if let Ok(m) = self.errors.lock() {
            for (kind, n) in m.iter() {
                let _ = writeln!(out, "he_errors_total{{kind=\"{kind}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP he_jobs_stopped_total Compute jobs stopped before their end (client gone, \
             or past the request timeout).\n# TYPE he_jobs_stopped_total counter\n\
             he_jobs_stopped_total {}",
            self.stopped_jobs.load(Ordering::Relaxed)
        );
        let gauges: [(&str, &str, u64); 6] = [
            (
                "he_jobs_queued",
                "Compute jobs waiting for a slot.",
                g.queued_jobs as u64,
            ),
            (
                "he_jobs_running",
                "Compute jobs running.",
                g.running_jobs as u64,
            ),
            ("he_cached_keys", "Key sets held.", g.cached_keys as u64),
            (
                "he_cached_key_bytes",
                "Resident bytes of the key sets held.",
                g.cached_key_bytes as u64,
            ),
            (
                "he_cached_plans",
                "Compiled plans held.",
                g.cached_plans as u64,
            ),
            (
                "he_open_connections",
                "Connections open.",
                self.open_connections.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP he_compute_seconds Time of compute jobs (homomorphic work and \
             sanitization).\n# TYPE he_compute_seconds histogram"
        );
        for (b, le) in self.compute_buckets.iter().zip(COMPUTE_BUCKETS) {
            let _ = writeln!(
                out,
                "he_compute_seconds_bucket{{le=\"{le}\"}} {}",
                b.load(Ordering::Relaxed)
            );
        }
        let count = self.compute_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "he_compute_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "he_compute_seconds_sum {}",
            self.compute_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "he_compute_seconds_count {count}");
        out
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.request("/compute", 200);
        m.request("/compute", 200);
        m.request("/plan", 413);
        m.error("too_large");
        m.compute(Duration::from_millis(300));
        m.compute(Duration::from_secs(7));
        let text = m.render(Gauges {
            queued_jobs: 2,
            cached_key_bytes: 99,
            ..Default::default()
        });
        for line in [
            "he_requests_total{route=\"/compute\",status=\"200\"} 2",
            "he_requests_total{route=\"/plan\",status=\"413\"} 1",
            "he_errors_total{kind=\"too_large\"} 1",
            "he_jobs_queued 2",
            "he_cached_key_bytes 99",
            "he_compute_seconds_bucket{le=\"0.25\"} 0",
            "he_compute_seconds_bucket{le=\"0.5\"} 1",
            "he_compute_seconds_bucket{le=\"10\"} 2",
            "he_compute_seconds_bucket{le=\"+Inf\"} 2",
            "he_compute_seconds_sum 7.3",
            "he_compute_seconds_count 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert_eq!(m.mean_compute(), Duration::from_millis(3650));
    }
}
