//! The encrypted-inference REST server: `GET /health`, `GET /models`, `POST /plan`,
//! `POST /keys`, `POST /compute` (DESIGN.md §6).
//!
//! Every request is parsed into typed values and checked before any work; errors are
//! `{"error": {"kind", "message"}}` with 400/404/413/422/500. Heavy work runs on the blocking
//! pool (and rayon inside it), so `/health` answers while a request computes. No log line
//! carries a ciphertext or a key.
#![warn(missing_docs)]

pub mod cache;
pub mod error;
pub mod keys;
pub mod plans;
pub mod registry;

use axum::body::Body;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use error::ApiError;
use he_layers::crypto::sanitize::sanitize;
pub use he_layers::crypto::sanitize::DEFAULT_FLOOD_BITS;
use he_layers::crypto::{
    compress_answers, BfvParameters, Ciphertext, CompressedCiphertext, GaloisKeys, PublicKey,
    RelinearizationKey, SecurityLevel,
};
use he_layers::plan::{Layout, PROTOCOL_VERSION};
use he_layers::protocol::{ComputeRequest, ComputeResponse, KeysResponse, ModelConfig, TensorInfo};
use keys::{KeyCache, KeyEntry};
use plans::{PlanCache, ServedPlan};
use rayon::prelude::*;
use registry::Registry;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Folder holding `<net>/model.onnx` and `<net>/manifest.json`.
    pub models_dir: PathBuf,
    /// Largest request body, bytes; larger bodies are refused with 413 before they are read.
    pub max_body_bytes: usize,
    /// Most key sets kept.
    pub max_cached_keys: usize,
    /// Most bytes of serialized keys kept.
    pub max_cached_key_bytes: usize,
    /// Most encoded models (per configuration) kept.
    pub max_cached_models: usize,
    /// Accept parameter sets without a security check (`security: "none"`), from requests and
    /// uploaded keys alike. Off by default: such sets are refused with 422.
    pub allow_insecure_parameters: bool,
    /// Extra re-encryption positions clients may use, per model (beyond its manifest's).
    pub allowed_reencrypt: Vec<(String, Vec<usize>)>,
    /// λ of circuit privacy: every returned ciphertext is flooded with noise 2^λ times its
    /// bound. `None` returns results unsanitized, which hands the weights to the client: for
    /// benchmarks only (`--danger-no-circuit-privacy`).
    pub flood_bits: Option<u32>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            models_dir: PathBuf::from("models"),
            max_body_bytes: 512 << 20,
            max_cached_keys: 64,
            max_cached_key_bytes: 1 << 30,
            max_cached_models: 32,
            allow_insecure_parameters: false,
            flood_bits: Some(DEFAULT_FLOOD_BITS),
            allowed_reencrypt: Vec::new(),
        }
    }
}

/// Shared state.
#[derive(Debug)]
pub struct AppState {
    /// The models.
    pub registry: Registry,
    /// Uploaded keys.
    pub keys: KeyCache,
    /// Compiled plans, by id.
    pub plans: PlanCache,
    /// At most this many plans compile at once (each builds a model per plaintext modulus).
    compiles: tokio::sync::Semaphore,
    /// Request counter for log lines.
    next_id: AtomicU64,
    /// Largest key set accepted (the key cache's byte limit).
    max_key_bytes: usize,
    /// Whether parameter sets without a security check are accepted.
    allow_insecure: bool,
    /// λ of circuit privacy (`None`: returned unsanitized).
    flood_bits: Option<u32>,
}

impl AppState {
    /// Loads the models and prepares empty caches.
    pub fn new(config: &ServerConfig) -> std::io::Result<Self> {
        let mut registry = Registry::load(&config.models_dir, config.max_cached_models)?;
        for (net, positions) in &config.allowed_reencrypt {
            registry
                .allow_positions(net, positions)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        }
        Ok(Self {
            registry,
            keys: KeyCache::new(config.max_cached_keys, config.max_cached_key_bytes),
            // Weighed by components: a plan pins one encoded model per plaintext modulus, so
            // the plans together hold no more models than the model cache allows.
            plans: PlanCache::new(config.max_cached_models, config.max_cached_models.max(8)),
            compiles: tokio::sync::Semaphore::new(2),
            next_id: AtomicU64::new(1),
            max_key_bytes: config.max_cached_key_bytes,
            allow_insecure: config.allow_insecure_parameters,
            flood_bits: config.flood_bits,
        })
    }

    /// Refuses a parameter set that skips the security check unless the server allows it.
    fn check_security(&self, level: SecurityLevel) -> Result<(), ApiError> {
        if level == SecurityLevel::DangerNone && !self.allow_insecure {
            return Err(ApiError::unprocessable(
                "invalid_parameters",
                "this server refuses parameter sets without a security check (security \"none\"); \
                 use 128, 192 or 256, or start the server with --allow-insecure-parameters for \
                 local experiments",
            ));
        }
        Ok(())
    }

    fn request_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// The router with every route and the body limit.
///
/// A server that accepts insecure parameter sets or returns unsanitized answers says so in
/// every answer, in the header [`WARNING_HEADER`].
pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    let mut warnings = Vec::new();
    if state.allow_insecure {
        warnings.push("this server accepts parameter sets without a security check");
    }
    if state.flood_bits.is_none() {
        warnings.push("this server returns answers without circuit privacy: they reveal the model");
    }
    let router = Router::new()
        .route("/health", get(health))
        .route("/models", get(models))
        .route("/plan", post(plan))
        .route("/keys", post(upload_keys))
        .route("/keys/{key_id}", get(has_keys))
        .route("/compute", post(compute))
        .layer(DefaultBodyLimit::max(max_body_bytes));
    let router = match header::HeaderValue::from_str(&warnings.join("; ")) {
        Ok(value) if !warnings.is_empty() => {
            router.layer(axum::middleware::map_response(move |mut r: Response| {
                let value = value.clone();
                async move {
                    r.headers_mut().insert(WARNING_HEADER, value);
                    r
                }
            }))
        }
        _ => router,
    };
    router.with_state(state)
}

/// The response header in which a server run with `--allow-insecure-parameters` or
/// `--danger-no-circuit-privacy` says so.
pub const WARNING_HEADER: &str = "x-he-warning";

/// Serves plain HTTP on an already bound listener until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, config: ServerConfig) -> std::io::Result<()> {
    let state = Arc::new(AppState::new(&config)?);
    axum::serve(listener, router(state, config.max_body_bytes)).await
}

/// Serves HTTPS with a PEM certificate chain and key (rustls).
pub async fn serve_tls(
    addr: SocketAddr,
    config: ServerConfig,
    cert: PathBuf,
    key: PathBuf,
) -> std::io::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let state = Arc::new(AppState::new(&config)?);
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
    axum_server::bind_rustls(addr, tls)
        .serve(router(state, config.max_body_bytes).into_make_service())
        .await
}

async fn health(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    Json(serde_json::json!({
        "status": "ok",
        "models": state.registry.len(),
        "cached_keys": state.keys.len(),
    }))
}

async fn models(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    Json(state.registry.infos())
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("{what}: {e}")))
}

async fn plan(
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let cfg: ModelConfig = parse_json(&body, "model configuration")?;
    let plan = state.compile_plan(cfg).await?;
    Ok(Json(&plan.public).into_response())
}

impl AppState {
    /// The plan of a configuration: from the cache, or compiled (every check on the
    /// configuration happens here) and cached under its id.
    async fn compile_plan(self: &Arc<Self>, cfg: ModelConfig) -> Result<Arc<ServedPlan>, ApiError> {
        self.check_security(cfg.encryption_parameters.security.0)?;
        let _permit = self
            .compiles
            .acquire()
            .await
            .map_err(|e| ApiError::internal(format!("compile queue: {e}")))?;
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let fingerprints = cfg
                .encryption_parameters
                .resolve()?
                .iter()
                .map(|p| p.fingerprint())
                .collect::<Vec<_>>();
            let digest = state.registry.get(&cfg.net)?.digest;
            let id = plans::plan_id(&cfg, &digest, &fingerprints)?;
            if let Some(p) = state.plans.get(&id) {
                return Ok(p);
            }
            let plan = plans::compile(&state.registry, &cfg, id, state.flood_bits)?;
            let weight = plan.components.len();
            Ok(state.plans.insert(plan.id.clone(), plan, weight).0)
        })
        .await?
    }
}

/// Reads every part of a multipart body into (name, bytes), with errors as JSON. The whole
/// body (within the size limit) is read before the parts are judged, so a client still
/// sending gets the error answer rather than a closed connection.
async fn read_parts(
    multipart: Result<Multipart, MultipartRejection>,
    allowed: &[&str],
) -> Result<Vec<(String, axum::body::Bytes)>, ApiError> {
    let mut mp = multipart.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!("request body over the limit: {e}"))
        } else {
            ApiError::bad_request(
                "bad_multipart",
                format!("expected multipart/form-data: {e}"),
            )
        }
    })?;
    let mut parts: Vec<(String, axum::body::Bytes)> = Vec::new();
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::too_large(format!(
                    "request body over the limit: {e}"
                )))
            }
            Err(e) => return Err(ApiError::bad_request("bad_multipart", e.body_text())),
        };
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(format!("request body over the limit: {e}"))
            } else {
                ApiError::bad_request("bad_multipart", e.body_text())
            }
        })?;
        parts.push((name, bytes));
    }
    for (i, (name, _)) in parts.iter().enumerate() {
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::bad_request(
                "bad_multipart",
                format!(
                    "unexpected part {name:?}; the parts are {}",
                    allowed.join(", ")
                ),
            ));
        }
        if parts[..i].iter().any(|(n, _)| n == name) {
            return Err(ApiError::bad_request(
                "bad_multipart",
                format!("part {name:?} appears twice"),
            ));
        }
    }
    Ok(parts)
}

/// A part's bytes, shared (no copy).
fn part_bytes(
    parts: &[(String, axum::body::Bytes)],
    name: &str,
) -> Result<axum::body::Bytes, ApiError> {
    parts
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, b)| b.clone())
        .ok_or_else(|| ApiError::bad_request("bad_multipart", format!("missing part {name:?}")))
}

fn part<'a>(parts: &'a [(String, axum::body::Bytes)], name: &str) -> Result<&'a [u8], ApiError> {
    parts
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, b)| b.as_ref())
        .ok_or_else(|| ApiError::bad_request("bad_multipart", format!("missing part {name:?}")))
}

async fn upload_keys(
    State(state): State<Arc<AppState>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let id = state.request_id();
    let parts = read_parts(multipart, &he_layers::protocol::KEY_PARTS).await?;
    let total: usize = parts.iter().map(|(_, b)| b.len()).sum();
    if total > state.max_key_bytes {
        return Err(ApiError::too_large(format!(
            "the key set is {total} bytes, over the server's key cache of {} bytes",
            state.max_key_bytes
        )));
    }
    let key_id = he_layers::protocol::key_id(|name| {
        parts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_ref())
    });
    if let Some(existing) = state.keys.get(&key_id) {
        return Ok(Json(KeysResponse {
            key_id,
            fingerprint: existing.params.fingerprint_hex(),
        })
        .into_response());
    }
    let params_bytes = part(&parts, "parameters")?.to_vec();
    let pk_bytes = part(&parts, "public_key")?.to_vec();
    let rk_bytes = parts
        .iter()
        .find(|(n, _)| n == "relinearization_key")
        .map(|(_, b)| b.to_vec());
    let gk_bytes = parts
        .iter()
        .find(|(n, _)| n == "galois_keys")
        .map(|(_, b)| b.to_vec());
    let allow_insecure = state.allow_insecure;
    let entry = tokio::task::spawn_blocking(move || -> Result<KeyEntry, ApiError> {
        let params = BfvParameters::from_bytes(&params_bytes)?;
        if !allow_insecure && params.security() == SecurityLevel::DangerNone {
            return Err(ApiError::unprocessable(
                "invalid_parameters",
                "parameters: this server refuses parameter sets without a security check \
                 (security byte \"none\"); start it with --allow-insecure-parameters for local \
                 experiments",
            ));
        }
        let pk = PublicKey::from_bytes(&pk_bytes, &params)?;
        let rk = rk_bytes
            .map(|b| RelinearizationKey::from_bytes(&b, &params).map_err(ApiError::from))
            .transpose()?;
        let gk = gk_bytes
            .map(|b| GaloisKeys::from_bytes(&b, &params).map_err(ApiError::from))
            .transpose()?;
        Ok(KeyEntry::new(params, pk, rk, gk, total))
    })
    .await??;
    let fingerprint = entry.params.fingerprint_hex();
    tracing::info!(request = id, key_id = %&key_id[..16], fingerprint = %fingerprint, bytes = total, "keys stored");
    let (_, evicted) = state.keys.insert(key_id.clone(), entry, total);
    for old in evicted {
        tracing::info!(key_id = %&old[..16.min(old.len())], "key set evicted");
    }
    Ok(Json(KeysResponse {
        key_id,
        fingerprint,
    })
    .into_response())
}

/// `GET /keys/{key_id}`: 200 with the fingerprint if the server holds the keys, else 404.
async fn has_keys(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(key_id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let entry = state.keys.get(&key_id).ok_or_else(|| {
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

/// A multipart/form-data answer: a JSON part and a binary part.
fn multipart_response(json: &[u8], binary: &[u8]) -> Response {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let boundary = loop {
        let b: String = (0..32)
            .map(|_| format!("{:x}", rng.gen_range(0..16u8)))
            .collect();
        let marker = format!("--{b}");
        if !binary.windows(marker.len()).any(|w| w == marker.as_bytes()) {
            break b;
        }
    };
    let mut body = Vec::with_capacity(binary.len() + json.len() + 400);
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"result\"\r\nContent-Type: application/json\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(json);
    body.extend_from_slice(
        format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"ciphertexts\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(binary);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Response::builder()
        .status(StatusCode::OK)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap_or_else(|_| ApiError::internal("could not build the response").into_response())
}

/// Parses the JSON part of `/compute`; a protocol-1 request (the configuration resent, no
/// `plan_id`) gets an error that says what changed rather than a field-by-field complaint.
fn parse_compute_request(bytes: &[u8]) -> Result<ComputeRequest, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let old = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .is_some_and(|v| v.get("plan_id").is_none() && v.get("net").is_some());
        if old {
            ApiError::bad_request(
                "protocol_version",
                format!(
                    "this server speaks protocol {PROTOCOL_VERSION}: /compute names the plan_id \
                     that POST /plan returns instead of resending the configuration; update the \
                     client"
                ),
            )
        } else {
            ApiError::bad_request("invalid_json", format!("request: {e}"))
        }
    })
}

fn hex64(value: &str, kind: &'static str, what: &str) -> Result<(), ApiError> {
    if value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            kind,
            format!("{what} must be 64 lowercase hex digits"),
        ))
    }
}

async fn compute(
    State(state): State<Arc<AppState>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let id = state.request_id();
    let started = Instant::now();
    let parts = read_parts(multipart, &["request", "ciphertexts"]).await?;
    let req = parse_compute_request(part(&parts, "request")?)?;
    let cts_bytes = part_bytes(&parts, "ciphertexts")?;
    let bytes_in = cts_bytes.len();
    let [start, end] = req.layers;

    // Plan, keys, segment and batch: all checked before any ciphertext work. Everything about
    // the configuration was checked once, when the plan was compiled.
    hex64(
        &req.plan_id,
        "invalid_plan_id",
        "plan_id (as POST /plan returns it)",
    )?;
    hex64(
        &req.key_id,
        "invalid_key_id",
        "key_id (as POST /keys returns it)",
    )?;
    let plan = state.plans.get(&req.plan_id).ok_or_else(|| {
        ApiError::not_found(
            "unknown_plan",
            "no plan with this plan_id (never made, or evicted): POST /plan again",
        )
    })?;
    let keys = state.keys.get(&req.key_id).ok_or_else(|| {
        ApiError::not_found(
            "unknown_key",
            "no keys with this key_id (never uploaded, or evicted): upload them with POST /keys",
        )
    })?;
    let component = plan.component(req.plain_modulus)?;
    let params = component.params.clone();
    if params.fingerprint() != keys.params.fingerprint() {
        return Err(ApiError::unprocessable(
            "parameter_mismatch",
            format!(
                "the keys are for parameters {}, the plan's modulus {} is {}",
                keys.params.fingerprint_hex(),
                req.plain_modulus,
                params.fingerprint_hex()
            ),
        ));
    }
    let range = start..end;
    let seg_index = plan.segment_index(&range)?;
    let model = &component.built.model;
    model.check_overflow(&range)?;
    let segment = &component.execution.segments[seg_index];
    let expected =
        segment
            .input_packing
            .ciphertext_count(segment.input.len(), req.batch, params.degree())?;
    if model.layers()[range.clone()].iter().any(|l| l.depth() > 0) && !keys.has_relin {
        return Err(ApiError::unprocessable(
            "missing_key",
            "the layers square ciphertexts: upload a relinearization key with the keys",
        ));
    }
    if let Some(g) = component
        .execution
        .galois_elements
        .iter()
        .find(|g| !keys.galois_elements.contains(g))
    {
        return Err(ApiError::unprocessable(
            "missing_key",
            format!(
                "the plan rotates with Galois element {g}, and the keys hold none for it: \
                 generate Galois keys for every element POST /plan lists"
            ),
        ));
    }
    // Circuit privacy was sized from the public model when the plan was compiled; a segment
    // whose budget cannot absorb the flooding is refused here, before any work.
    let sanitization = match component.sanitization.get(seg_index) {
        Some(Ok(p)) => Some(p.clone()),
        Some(Err(e)) => {
            return Err(ApiError::unprocessable(
                "no_room_for_circuit_privacy",
                format!("layers [{start}, {end}): {e}"),
            ))
        }
        None if plan.sanitized => {
            return Err(ApiError::internal(
                "the plan lacks a sanitization for this segment",
            ))
        }
        None => None,
    };
    let params2 = params.clone();
    let cts = tokio::task::spawn_blocking(move || {
        let mut cts = Ciphertext::batch_from_bytes(&cts_bytes, &params2, expected)?;
        // The serialized noise estimate is the client's word: replaced by the fresh bound.
        cts.iter_mut().for_each(Ciphertext::assume_fresh_noise);
        Ok::<_, ApiError>(cts)
    })
    .await??;
    if cts.len() != expected {
        return Err(ApiError::unprocessable(
            "input_mismatch",
            format!(
                "{} ciphertexts; layer {start} expects {expected} for {} images in the {} layout",
                cts.len(),
                req.batch,
                plan.execution.layout
            ),
        ));
    }

    let t0 = Instant::now();
    let plan2 = plan.clone();
    let keys2 = keys.clone();
    let sanitization2 = sanitization.clone();
    let batch = req.batch;
    let t = req.plain_modulus;
    let accept_compressed = req.accept_compressed;
    let (out, compressed, sanitize_ms) = tokio::task::spawn_blocking(move || {
        let component = plan2.component(t)?;
        let mut out =
            component
                .layout
                .run(&component.built.model, range, batch, cts, &keys2.backend)?;
        let t1 = Instant::now();
        if let Some(p) = &sanitization2 {
            let encryptor = keys2.backend.encryptor();
            out = out
                .par_iter()
                .map(|c| sanitize(c, encryptor, p))
                .collect::<Result<_, _>>()
                .map_err(|e| ApiError::internal(format!("sanitization failed: {e}")))?;
        }
        // Sanitized answers travel compressed to the width their public bound allows, to
        // clients that read them.
        let compressed = match &sanitization2 {
            Some(p) if accept_compressed => compress_answers(&out, p.noise_log2)
                .map_err(|e| ApiError::internal(format!("compression failed: {e}")))?,
            _ => None,
        };
        Ok::<_, ApiError>((out, compressed, t1.elapsed().as_secs_f64() * 1000.0))
    })
    .await??;
    let compute_ms = t0.elapsed().as_secs_f64() * 1000.0;
    // Every answer is at one level: the sanitization's, or unsanitized where the layout left
    // it (a packed plan may switch down inside the segment).
    let out_params = match out.first() {
        Some(c) => c.parameters().clone(),
        None => params.clone(),
    };
    if out
        .iter()
        .any(|c| c.parameters().level() != out_params.level())
    {
        return Err(ApiError::internal("answers at different levels"));
    }
    let (binary, compressed_bits) = match &compressed {
        Some((bits, small)) => (
            CompressedCiphertext::batch_to_bytes(small, &out_params, *bits),
            Some(*bits),
        ),
        None => (Ciphertext::batch_to_bytes(&out, &out_params), None),
    };
    let output = &segment.output;
    let result = ComputeResponse {
        protocol: PROTOCOL_VERSION,
        layers: [start, end],
        output: TensorInfo {
            shape: output.shape.clone(),
            batch,
            scale: output.scale,
            lo: output.lo,
            hi: output.hi,
        },
        compute_ms,
        sanitize_ms,
        ciphertexts: out.len(),
        level: out_params.level(),
        sanitization,
        compressed_bits,
    };
    let json = serde_json::to_vec(&result).map_err(|e| ApiError::internal(e.to_string()))?;
    tracing::info!(
        request = id,
        net = %plan.net,
        plan = %&plan.id[..12],
        layers = ?[start, end],
        plain_modulus = t,
        ciphertexts_in = expected,
        ciphertexts_out = out.len(),
        bytes_in,
        bytes_out = binary.len(),
        compute_ms = compute_ms as u64,
        sanitize_ms = sanitize_ms as u64,
        level = out_params.level(),
        total_ms = started.elapsed().as_millis() as u64,
        "compute"
    );
    Ok(multipart_response(&json, &binary))
}
