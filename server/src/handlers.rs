//! The routes other than `/compute`: liveness, readiness, metrics, models, plans and keys.

use crate::error::ApiError;
use crate::keys::KeyEntry;
use crate::metrics::Gauges;
use crate::multipart::Parts;
use crate::tenants::Tenant;
use crate::AppState;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use he_layers::crypto::{BfvParameters, GaloisKeys, PublicKey, RelinearizationKey, SecurityLevel};
use he_layers::protocol::{KeysResponse, ModelConfig, KEY_PARTS};
use std::sync::Arc;

/// `GET /health`: the process serves (liveness).
pub async fn health(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    Json(serde_json::json!({
        "status": "ok",
        "models": state.registry.len(),
    }))
}

/// `GET /ready`: 200 while the server takes compute jobs; 503 while it stops or its job queue
/// is full (a load balancer sends the next client elsewhere).
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let (status, why) = if state.stopping() {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping")
    } else if !state.jobs.has_room() {
        (StatusCode::SERVICE_UNAVAILABLE, "job queue full")
    } else {
        (StatusCode::OK, "ready")
    };
    let body = Json(serde_json::json!({
        "status": why,
        "jobs_running": state.jobs.running(),
        "jobs_queued": state.jobs.queued(),
    }));
    (status, body).into_response()
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let (mut keys, mut key_bytes) = (0, 0);
    for t in state.tenants.all() {
        keys += t.keys.len();
        key_bytes += t.keys.weight();
    }
    let text = state.metrics.render(Gauges {
        queued_jobs: state.jobs.queued(),
        running_jobs: state.jobs.running(),
        cached_keys: keys,
        cached_key_bytes: key_bytes,
        cached_plans: state.plans.len(),
    });
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `GET /openapi.json`: the API, described from the protocol's types (made once).
pub async fn openapi() -> Response {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    Json(DOC.get_or_init(crate::openapi::document)).into_response()
}

/// `GET /models`.
pub async fn models(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    Json(state.registry.infos())
}

/// `POST /plan`.
pub async fn plan(
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let cfg: ModelConfig = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("model configuration: {e}")))?;
    let plan = state.compile_plan(cfg).await?;
    Ok(Json(&plan.public).into_response())
}

/// `POST /keys`: a tenant's public keys, parsed and checked off the async workers, kept
/// under their content address. The serialized parts are refused past the tenant's key
/// bytes while they arrive; the parsed keys are weighed by their resident bytes.
pub async fn upload_keys(
    State(state): State<Arc<AppState>>,
    Extension(tenant): Extension<Arc<Tenant>>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut parts = Parts::new(
        &headers,
        multipart,
        &KEY_PARTS,
        tenant.max_key_bytes.saturating_add(crate::KEY_BODY_SLACK),
        state.limits.body_read_timeout,
    )?;
    // A place before the body is read: at most so many uploads are held and parsed at once
    // (each takes a core and its bytes), the rest get 503.
    let waits = state.uploads.would_wait();
    let admission = match state.uploads.admit(1) {
        Ok(a) => a,
        Err(e) => {
            parts.drain().await;
            return Err(e);
        }
    };
    if waits {
        // Others wait behind this place: the body must come at the minimum rate.
        let bytes = tenant.max_key_bytes as f64;
        parts.hurry(
            crate::multipart::MIN_UPLOAD_GRACE
                + std::time::Duration::from_secs_f64(bytes / crate::multipart::MIN_UPLOAD_RATE),
        );
    }
    let mut got: Vec<(String, axum::body::Bytes)> = Vec::new();
    let mut total = 0usize;
    loop {
        match parts.next(tenant.max_key_bytes.saturating_sub(total)).await {
            Ok(Some((name, bytes))) => {
                total += bytes.len();
                got.push((name, bytes));
            }
            Ok(None) => break,
            Err(e) => {
                parts.drain().await;
                return Err(e);
            }
        }
    }
    let allow_insecure = state.allow_insecure;
    let tenant2 = tenant.clone();
    let slot = admission.run().await?;
    let (key_id, entry) = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let part = |name: &str| {
            got.iter()
                .find(|(n, _)| n == name)
                .map(|(_, b)| b.as_ref())
        };
        let key_id = he_layers::protocol::key_id(part);
        if let Some(existing) = tenant2.keys.get(&key_id) {
            return Ok::<_, ApiError>((key_id, existing));
        }
        let need = |name: &str| {
            part(name).ok_or_else(|| {
                ApiError::bad_request("bad_multipart", format!("missing part {name:?}"))
            })
        };
        let params = BfvParameters::from_bytes(need("parameters")?)?;
        if !allow_insecure && params.security() == SecurityLevel::DangerNone {
            return Err(ApiError::unprocessable(
                "invalid_parameters",
                "parameters: this server refuses parameter sets without a security check \
                 (security byte \"none\"); start it with --allow-insecure-parameters for local \
                 experiments",
            ));
        }
        let pk = PublicKey::from_bytes(need("public_key")?, &params)?;
        let rk = part("relinearization_key")
            .map(|b| RelinearizationKey::from_bytes(b, &params))
            .transpose()?;
        let gk = part("galois_keys")
            .map(|b| GaloisKeys::from_bytes(b, &params))
            .transpose()?;
        let entry = KeyEntry::new(params, pk, rk, gk);
        if entry.resident_bytes > tenant2.max_key_bytes {
            return Err(ApiError::too_large(format!(
                "the key set takes {} bytes in memory, over the {} bytes of keys this server \
                 keeps per client",
                entry.resident_bytes, tenant2.max_key_bytes
            )));
        }
        let weight = entry.resident_bytes;
        let (entry, evicted) = tenant2.keys.insert(key_id.clone(), entry, weight);
        for old in evicted {
            tracing::info!(tenant = %tenant2.name, key_id = %old.get(..16).unwrap_or(&old), "key set evicted");
        }
        Ok((key_id, entry))
    })
    .await??;
    tracing::info!(tenant = %tenant.name, key_id = %key_id.get(..16).unwrap_or(&key_id),
        fingerprint = %entry.params.fingerprint_hex(), bytes = total,
        resident = entry.resident_bytes, "keys held");
    Ok(Json(KeysResponse {
        key_id,
        fingerprint: entry.params.fingerprint_hex(),
    })
    .into_response())
}

/// `GET /keys/{key_id}`: 200 with the fingerprint if the tenant's keys are held, else 404.
pub async fn has_keys(
    Extension(tenant): Extension<Arc<Tenant>>,
    Path(key_id): Path<String>,
) -> Result<Response, ApiError> {
    let entry = tenant.keys.get(&key_id).ok_or_else(|| {
        ApiError::not_found(
            "unknown_key",
            "no keys with this key_id: upload them with POST /keys",
        )
    })?;
    Ok(Json(KeysResponse {
        key_id,
        fingerprint: entry.params.fingerprint_hex(),
    })
    .into_response())
}
