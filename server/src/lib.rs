//! The encrypted-inference REST server: `GET /health`, `/ready`, `/metrics`, `/models`,
//! `/keys/{id}`; `POST /plan`, `/keys`, `/compute` (DESIGN.md §6).
//!
//! Every request is parsed into typed values and checked before any work; every error,
//! the framework's included, is `{"error": {"kind", "message"}}` with its status and the
//! request's `x-request-id`. Heavy work (parsing keys and ciphertexts, hashing, computing,
//! serializing) runs on the blocking pool, behind a bounded job queue, so `/health` answers
//! while requests compute. No log line carries a ciphertext or a key.
#![warn(missing_docs)]

pub mod cache;
pub mod compute;
pub mod error;
pub mod handlers;
pub mod hygiene;
pub mod keys;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod multipart;
pub mod openapi;
pub mod plans;
pub mod registry;
pub mod tenants;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use error::ApiError;
pub use he_layers::crypto::sanitize::DEFAULT_FLOOD_BITS;
use he_layers::crypto::SecurityLevel;
use he_layers::protocol::ModelConfig;
use limits::JobGate;
pub use limits::Limits;
use metrics::Metrics;
use plans::{PlanCache, ServedPlan};
use registry::Registry;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tenants::{DefaultQuotas, Tenants};

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Folder of model folders: `<net>/model.onnx` or `<net>/model.pt`, and
    /// `<net>/manifest.json` ([`net_builder::folder`]).
    pub models_dir: PathBuf,
    /// Largest `/compute` body, bytes; larger bodies are refused with 413 before they are
    /// read (and each request's ciphertexts are held to the exact size its segment takes).
    pub max_body_bytes: usize,
    /// Most key sets kept (per tenant, with tokens).
    pub max_cached_keys: usize,
    /// Most bytes of keys kept, as they take memory (per tenant, with tokens).
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
    /// Connections, time, bytes and jobs.
    pub limits: Limits,
    /// Bearer tokens and per-tenant quotas (`--api-tokens`); `None`: open to anyone.
    pub api_tokens: Option<PathBuf>,
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
            limits: Limits::default(),
            api_tokens: None,
        }
    }
}

/// Shared state.
#[derive(Debug)]
pub struct AppState {
    /// The models.
    pub registry: Registry,
    /// The tenants and their keys.
    pub tenants: Tenants,
    /// Compiled plans, by id.
    pub plans: PlanCache,
    /// Compute jobs running and waiting.
    pub jobs: JobGate,
    /// Key uploads being parsed and waiting (their bodies are held): as many running as
    /// jobs, as many waiting.
    pub uploads: JobGate,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// The limits served under.
    pub limits: Limits,
    /// At most this many plans compile at once (each builds a model per plaintext modulus).
    compiles: Arc<tokio::sync::Semaphore>,
    /// Whether parameter sets without a security check are accepted.
    allow_insecure: bool,
    /// λ of circuit privacy (`None`: returned unsanitized).
    flood_bits: Option<u32>,
    /// Set once a shutdown began.
    stopping: AtomicBool,
    /// Largest `/compute` body.
    max_body_bytes: usize,
}

/// Bytes of multipart framing allowed around a key set.
pub const KEY_BODY_SLACK: usize = 64 << 10;

impl AppState {
    /// Loads the models (and the tokens file) and prepares empty caches.
    pub fn new(config: &ServerConfig) -> std::io::Result<Self> {
        let mut registry = Registry::load(&config.models_dir, config.max_cached_models)?;
        for (net, positions) in &config.allowed_reencrypt {
            registry
                .allow_positions(net, positions)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        }
        let limits = config.limits.clone();
        let quotas = DefaultQuotas {
            max_key_sets: config.max_cached_keys,
            max_key_bytes: config.max_cached_key_bytes,
            // A token's own jobs: a few, so that one tenant cannot take the whole queue.
            max_jobs: limits.max_jobs.max(2),
        };
        let tenants = match &config.api_tokens {
            Some(path) => Tenants::from_file(path, quotas)?,
            None => Tenants::open(quotas),
        };
        Ok(Self {
            registry,
            tenants,
            // Weighed by components: a plan pins one encoded model per plaintext modulus, so
            // the plans together hold no more models than the model cache allows.
            plans: PlanCache::new(config.max_cached_models, config.max_cached_models.max(8)),
            jobs: JobGate::new("compute jobs", limits.max_jobs, limits.max_queued_jobs),
            uploads: JobGate::new("key uploads", limits.max_jobs, limits.max_jobs),
            metrics: Metrics::default(),
            limits,
            compiles: Arc::new(tokio::sync::Semaphore::new(2)),
            allow_insecure: config.allow_insecure_parameters,
            flood_bits: config.flood_bits,
            stopping: AtomicBool::new(false),
            max_body_bytes: config.max_body_bytes,
        })
    }

    /// Whether a shutdown began.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Marks the shutdown begun (`/ready` answers 503 from now on).
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Seconds a client refused for a full queue should wait: the queue's expected drain
    /// time, from the mean job so far, 1 to 60.
    pub fn retry_after(&self) -> u64 {
        let per_slot = (self.jobs.queued() + 1) as f64 / self.jobs.max_jobs() as f64;
        (self.metrics.mean_compute().as_secs_f64() * per_slot)
            .ceil()
            .clamp(1.0, 60.0) as u64
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
}

/// Resolves the caller's tenant (401 without a valid token where tokens are required) for
/// the handlers.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    match state
        .tenants
        .resolve(req.headers().get(header::AUTHORIZATION))
    {
        Ok(t) => {
            req.extensions_mut().insert(t);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// The router: every route with its body limit, tenants, timeouts, JSON errors, request ids
/// and the request log.
///
/// A server that accepts insecure parameter sets or returns unsanitized answers says so in
/// every answer, in the header [`WARNING_HEADER`].
pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    use std::time::Duration;
    use tower_http::catch_panic::CatchPanicLayer;
    use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
    let mut warnings = Vec::new();
    if state.allow_insecure {
        warnings.push("this server accepts parameter sets without a security check");
    }
    if state.flood_bits.is_none() {
        warnings.push("this server returns answers without circuit privacy: they reveal the model");
    }
    let limits = &state.limits;
    // Serialized keys are smaller than resident ones: a set within a tenant's quota fits.
    let key_body = state
        .tenants
        .all()
        .map(|t| t.max_key_bytes)
        .max()
        .unwrap_or(0)
        .saturating_add(KEY_BODY_SLACK);
    // Routes that need a tenant; /health and /ready stay open for probes.
    let tenant_routes = Router::new()
        .route("/metrics", get(handlers::metrics))
        .route("/models", get(handlers::models))
        .route(
            "/plan",
            post(handlers::plan).layer(DefaultBodyLimit::max(limits.max_json_bytes)),
        )
        .route(
            "/keys",
            post(handlers::upload_keys).layer(DefaultBodyLimit::max(key_body)),
        )
        .route("/keys/{key_id}", get(handlers::has_keys))
        .route(
            "/compute",
            post(compute::compute).layer(DefaultBodyLimit::max(max_body_bytes)),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ));
    let router = Router::new()
        .route("/health", get(handlers::health))
        .route("/ready", get(handlers::ready))
        .route("/openapi.json", get(handlers::openapi))
        .merge(tenant_routes)
        .layer(CatchPanicLayer::custom(hygiene::panic_response))
        // A body that stalls between frames, and a request past its time, are cut off (the
        // compute job itself stops at its deadline, see compute.rs); multipart bodies meet
        // their own, sooner, timeouts first (408, multipart.rs).
        .layer(RequestBodyTimeoutLayer::new(
            multipart::SILENCE + Duration::from_secs(5),
        ))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout + Duration::from_secs(5),
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            hygiene::hygiene,
        ));
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

/// What a connection beyond the cap is served: the probes, and 503 for everything else.
pub(crate) fn probe_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(handlers::health))
        .route("/ready", get(handlers::ready))
        .fallback(|| async {
            ApiError::busy(
                "the server is at its connection limit: only /health and /ready are served on \
                 this connection; retry later",
                1,
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            hygiene::hygiene,
        ))
        .with_state(state)
}

/// The response header in which a server run with `--allow-insecure-parameters` or
/// `--danger-no-circuit-privacy` says so.
pub const WARNING_HEADER: &str = "x-he-warning";

/// Serves plain HTTP on an already bound listener until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, config: ServerConfig) -> std::io::Result<()> {
    serve_until(listener, config, None, std::future::pending()).await
}

/// Serves on a bound listener, through TLS when an acceptor is given, until `shutdown`
/// resolves; then requests in flight may finish within the grace period.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let state = Arc::new(AppState::new(&config)?);
    let app = router(state.clone(), config.max_body_bytes);
    listen::run(listener, tls, app, state, config.limits.clone(), shutdown).await
}

/// Whether serving on `addr` exposes the server to anyone who can reach it: anything but a
/// loopback address, without both TLS and tokens.
pub fn exposed(addr: &SocketAddr, tls: bool, tokens: bool) -> bool {
    let guarded = tls && tokens;
    !(addr.ip().is_loopback() || guarded)
}

impl AppState {
    /// The plan of a configuration: from the cache, or compiled (every check on the
    /// configuration happens here) and cached under its id.
    pub(crate) async fn compile_plan(
        self: &Arc<Self>,
        cfg: ModelConfig,
    ) -> Result<Arc<ServedPlan>, ApiError> {
        self.check_security(cfg.encryption_parameters.security.0)?;
        // The permit goes with the compilation: a client that leaves does not free it while
        // the compilation still runs.
        let permit = self
            .compiles
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ApiError::internal(format!("compile queue: {e}")))?;
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
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
