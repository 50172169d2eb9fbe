//! Who is calling: with `--api-tokens FILE`, every route but `/health`, `/ready` and
//! `/openapi.json` needs
//! `Authorization: Bearer <token>`, and each token is a tenant with its own key cache (so one
//! tenant's uploads never evict another's keys) and its own quotas (key bytes, key sets,
//! concurrent compute jobs). Without a file the server is open: one tenant, the server's
//! limits.
//!
//! The file is JSON: `{"tenants": [{"name": "alice", "token": "…", "max_key_mb": 512,
//! "max_key_sets": 8, "max_jobs": 2}]}`; tokens of at least 16 characters, each once. Only
//! SHA-256 digests of the tokens are kept.

use crate::error::ApiError;
use crate::keys::KeyCache;
use axum::http::HeaderValue;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Shortest token accepted in a tokens file.
pub const MIN_TOKEN_LEN: usize = 16;

/// One tenant: its keys and its quotas.
#[derive(Debug)]
pub struct Tenant {
    /// The name the tokens file gives it (`open` without a file), for logs.
    pub name: String,
    /// Its uploaded key sets, weighed by resident bytes.
    pub keys: KeyCache,
    /// Resident bytes of keys it may keep.
    pub max_key_bytes: usize,
    jobs: Arc<AtomicUsize>,
    max_jobs: usize,
}

/// A compute job counted against its tenant; dropping it frees the place.
#[derive(Debug)]
pub struct TenantJob(Arc<AtomicUsize>);

impl Drop for TenantJob {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Tenant {
    fn new(name: String, max_key_sets: usize, max_key_bytes: usize, max_jobs: usize) -> Self {
        Self {
            name,
            keys: KeyCache::new(max_key_sets, max_key_bytes),
            max_key_bytes,
            jobs: Arc::new(AtomicUsize::new(0)),
            max_jobs: max_jobs.max(1),
        }
    }

    /// Counts a compute job, or refuses it with 429 when the tenant has its most running.
    pub fn start_job(&self) -> Result<TenantJob, ApiError> {
        self.jobs
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_jobs).then_some(n + 1)
            })
            .map(|_| TenantJob(self.jobs.clone()))
            .map_err(|_| {
                ApiError::over_quota(
                    format!(
                        "this token has {} compute jobs in flight, its most; wait for one to end",
                        self.max_jobs
                    ),
                    1,
                )
            })
    }
}

/// The tenants, by token digest, or the one open tenant.
#[derive(Debug)]
pub struct Tenants {
    by_token: HashMap<[u8; 32], Arc<Tenant>>,
    open: Option<Arc<Tenant>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tenants: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    token: String,
    max_key_mb: Option<usize>,
    max_key_sets: Option<usize>,
    max_jobs: Option<usize>,
}

/// Quotas a tenant gets where the tokens file says nothing (the server's own limits).
#[derive(Clone, Copy, Debug)]
pub struct DefaultQuotas {
    /// Key sets kept.
    pub max_key_sets: usize,
    /// Resident bytes of keys kept.
    pub max_key_bytes: usize,
    /// Compute jobs in flight, per token (an open server has no such quota).
    pub max_jobs: usize,
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Tenants {
    /// No tokens: everyone is one tenant with the server's limits.
    pub fn open(q: DefaultQuotas) -> Self {
        Self {
            by_token: HashMap::new(),
            // No quota of jobs beyond the server's queue: everyone shares it.
            open: Some(Arc::new(Tenant::new(
                "open".into(),
                q.max_key_sets,
                q.max_key_bytes,
                usize::MAX,
            ))),
        }
    }

    /// The tenants of a tokens file.
    pub fn from_file(path: &Path, q: DefaultQuotas) -> std::io::Result<Self> {
        let invalid = |msg: String| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("tokens file {}: {msg}", path.display()),
            )
        };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        let file: TokensFile = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if file.tenants.is_empty() {
            return Err(invalid("no tenants".into()));
        }
        let mut by_token = HashMap::new();
        for t in file.tenants {
            if t.token.len() < MIN_TOKEN_LEN || !t.token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(format!(
                    "tenant {:?}: a token is at least {MIN_TOKEN_LEN} printable ASCII characters",
                    t.name
                )));
            }
            let max_key_bytes = t
                .max_key_mb
                .map_or(q.max_key_bytes, |mb| mb.saturating_mul(1 << 20));
            let tenant = Tenant::new(
                t.name.clone(),
                t.max_key_sets.unwrap_or(q.max_key_sets),
                max_key_bytes,
                t.max_jobs.unwrap_or(q.max_jobs),
            );
            if by_token
                .insert(digest(t.token.as_bytes()), Arc::new(tenant))
                .is_some()
            {
                return Err(invalid(format!(
                    "tenant {:?}: its token is listed twice",
                    t.name
                )));
            }
        }
        Ok(Self {
            by_token,
            open: None,
        })
    }

    /// Whether callers must show a token.
    pub fn require_tokens(&self) -> bool {
        self.open.is_none()
    }

    /// The tenant an `Authorization` header names (the open one when there are no tokens).
    pub fn resolve(&self, authorization: Option<&HeaderValue>) -> Result<Arc<Tenant>, ApiError> {
        if let Some(open) = &self.open {
            return Ok(open.clone());
        }
        let token = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "this server needs a token: send Authorization: Bearer <token>",
                )
            })?;
        self.by_token
            .get(&digest(token.trim().as_bytes()))
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("unknown token"))
    }

    /// Every tenant.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.by_token.values().chain(self.open.iter())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
    use super::*;

    fn quotas() -> DefaultQuotas {
        DefaultQuotas {
            max_key_sets: 4,
            max_key_bytes: 1 << 20,
            max_jobs: 2,
        }
    }

    #[test]
    fn tokens_name_their_tenants_and_bad_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("tenants-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.json");
        std::fs::write(
            &path,
            r#"{"tenants": [{"name": "a", "token": "aaaaaaaaaaaaaaaaaaaa", "max_jobs": 1},
                            {"name": "b", "token": "bbbbbbbbbbbbbbbbbbbb", "max_key_mb": 3}]}"#,
        )
        .unwrap();
        let t = Tenants::from_file(&path, quotas()).unwrap();
        assert!(t.require_tokens());
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        let a = t.resolve(Some(&h("Bearer aaaaaaaaaaaaaaaaaaaa"))).unwrap();
        let b = t.resolve(Some(&h("Bearer bbbbbbbbbbbbbbbbbbbb"))).unwrap();
        assert_eq!((a.name.as_str(), b.name.as_str()), ("a", "b"));
        assert_eq!(b.max_key_bytes, 3 << 20);
        for bad in [
            None,
            Some(h("Bearer nope")),
            Some(h("aaaaaaaaaaaaaaaaaaaa")),
        ] {
            assert_eq!(t.resolve(bad.as_ref()).unwrap_err().status.as_u16(), 401);
        }
        // a's one job is taken; a second is refused with 429 until the first ends.
        let job = a.start_job().unwrap();
        assert_eq!(a.start_job().unwrap_err().status.as_u16(), 429);
        drop(job);
        assert!(a.start_job().is_ok());

        for bad in [
            r#"{"tenants": []}"#,
            r#"{"tenants": [{"name": "a", "token": "short"}]}"#,
            r#"{"tenants": [{"name": "a", "token": "aaaaaaaaaaaaaaaaaaaa"},
                            {"name": "b", "token": "aaaaaaaaaaaaaaaaaaaa"}]}"#,
            r#"{"tenants": [{"name": "a", "token": "aaaaaaaaaaaaaaaaaaaa", "jobs": 1}]}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(Tenants::from_file(&path, quotas()).is_err(), "{bad}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
