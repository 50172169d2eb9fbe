//! `server`: serves encrypted inference over the models in a folder.

use clap::Parser;
use server::ServerConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Encrypted-inference server: runs a model's layers on BFV ciphertexts it cannot read.
///
/// Loads every model folder `<models>/<net>/` at start (`model.onnx`, or a PyCrCNN `model.pt`
/// whose manifest.json gives its input_shape), logging each folder it skips and why. Clients upload their public keys
/// (POST /keys), ask what a configuration will do (POST /plan), and send ciphertexts with the
/// layer range to run (POST /compute). Plain HTTP by default, for loopback; give --tls-cert and
/// --tls-key to serve HTTPS, and --api-tokens to require bearer tokens. On any address but
/// loopback the server refuses to start without both, unless told --insecure-open.
/// Probes: GET /health (liveness), /ready (readiness), /metrics (Prometheus). SIGTERM or
/// Ctrl-C stops it gracefully. Log level from RUST_LOG (default info).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    /// Folder of models: <net>/model.onnx or <net>/model.pt, with <net>/manifest.json (for a
    /// pickle: "input_shape", and "square_classes" for custom x² modules).
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// Largest request body in MiB; larger requests are refused with 413.
    #[arg(long, default_value_t = 512)]
    max_body_mb: usize,
    /// Most clients' key sets kept in memory (least recently used evicted).
    #[arg(long, default_value_t = 64)]
    max_cached_keys: usize,
    /// Most MiB of serialized keys kept in memory.
    #[arg(long, default_value_t = 1024)]
    max_cached_key_mb: usize,
    /// Accept parameter sets without a security check (`"security": "none"` in a request, or
    /// security byte 0 in uploaded keys). For local experiments only: without this flag they
    /// are refused with 422.
    #[arg(long)]
    allow_insecure_parameters: bool,
    /// λ of circuit privacy, in bits: every returned ciphertext is modulus-switched,
    /// re-randomized and flooded with noise 2^λ times the bound the server computes for it,
    /// so it reveals nothing of the weights but the result. Configurations whose noise budget
    /// cannot absorb it are refused with 422 (POST /plan shows what fits).
    #[arg(long, default_value_t = server::DEFAULT_FLOOD_BITS,
          value_parser = clap::value_parser!(u32).range(0..=128))]
    flood_bits: u32,
    /// Return results WITHOUT circuit privacy (no final modulus switching, re-randomization
    /// or flooding): any client can then read the model's weights off the answers. For
    /// benchmarks only; required for --flood-bits 0.
    #[arg(long)]
    danger_no_circuit_privacy: bool,
    /// Let clients of a model re-encrypt after these layers of the float model, beyond the
    /// positions its manifest allows: NET=P1,P2,… (repeatable). Each boundary shows the client
    /// that layer's activations; only whole segments between allowed boundaries can be run.
    #[arg(long, value_name = "NET=POSITIONS", value_parser = parse_allowed)]
    allow_reencrypt: Vec<(String, Vec<usize>)>,
    /// Compute jobs run at once (each uses every core); default: the number of cores.
    #[arg(long)]
    max_jobs: Option<usize>,
    /// Compute jobs that may wait for a slot; beyond them, 503 with Retry-After.
    #[arg(long, default_value_t = 32)]
    max_queued_jobs: usize,
    /// Connections open at once; further ones wait in the kernel's backlog.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers.
    #[arg(long, default_value_t = 10)]
    header_timeout_secs: u64,
    /// Seconds a client has to send a whole request body.
    #[arg(long, default_value_t = 120)]
    body_timeout_secs: u64,
    /// Seconds a whole request may take, computing included (a job past it is stopped).
    #[arg(long, default_value_t = 600)]
    request_timeout_secs: u64,
    /// On SIGTERM, seconds requests in flight may take to finish.
    #[arg(long, default_value_t = 30)]
    shutdown_grace_secs: u64,
    /// Bearer tokens, one tenant each, with its own keys and quotas: JSON
    /// {"tenants": [{"name", "token", "max_key_mb"?, "max_key_sets"?, "max_jobs"?}]}.
    #[arg(long, value_name = "FILE")]
    api_tokens: Option<PathBuf>,
    /// Serve on a non-loopback address without TLS and tokens: anyone who reaches it may use
    /// it, and traffic travels in the clear.
    #[arg(long)]
    insecure_open: bool,
    /// PEM certificate chain for HTTPS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// Parses NET=P1,P2,….
fn parse_allowed(s: &str) -> Result<(String, Vec<usize>), String> {
    let (net, list) = s
        .split_once('=')
        .ok_or("expected NET=POSITIONS, e.g. mnist-lenet1-square=2")?;
    let positions = list
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<usize>()
                .map_err(|e| format!("position {p:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((net.to_string(), positions))
}

#[tokio::main]
async fn main() -> ExitCode {
    he_layers::tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.flood_bits == 0 && !args.danger_no_circuit_privacy {
        eprintln!(
            "server: --flood-bits 0 disables circuit privacy; say so with \
             --danger-no-circuit-privacy"
        );
        return ExitCode::FAILURE;
    }
    if args.danger_no_circuit_privacy {
        tracing::warn!(
            "circuit privacy is OFF (--danger-no-circuit-privacy): clients can read the \
             weights off every answer"
        );
    } else if args.flood_bits < server::DEFAULT_FLOOD_BITS {
        tracing::warn!(
            flood_bits = args.flood_bits,
            "flooding below the default of {} bits weakens circuit privacy",
            server::DEFAULT_FLOOD_BITS
        );
    }
    let tls = args.tls_cert.is_some();
    if server::exposed(&args.addr, tls, args.api_tokens.is_some()) && !args.insecure_open {
        eprintln!(
            "server: {} is not a loopback address, and the server would run without {}: give \
             --tls-cert/--tls-key and --api-tokens, or say --insecure-open",
            args.addr,
            match (tls, args.api_tokens.is_some()) {
                (false, false) => "TLS and tokens",
                (false, true) => "TLS",
                _ => "tokens",
            }
        );
        return ExitCode::FAILURE;
    }
    let defaults = server::Limits::default();
    let limits = server::Limits {
        max_jobs: args.max_jobs.unwrap_or(defaults.max_jobs).max(1),
        max_queued_jobs: args.max_queued_jobs,
        max_connections: args.max_connections.max(1),
        header_read_timeout: Duration::from_secs(args.header_timeout_secs.max(1)),
        body_read_timeout: Duration::from_secs(args.body_timeout_secs.max(1)),
        request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
        ..defaults
    };
    let config = ServerConfig {
        models_dir: args.models.clone(),
        max_body_bytes: args.max_body_mb.saturating_mul(1 << 20),
        max_cached_keys: args.max_cached_keys,
        max_cached_key_bytes: args.max_cached_key_mb.saturating_mul(1 << 20),
        allow_insecure_parameters: args.allow_insecure_parameters,
        flood_bits: (!args.danger_no_circuit_privacy).then_some(args.flood_bits),
        allowed_reencrypt: args.allow_reencrypt.clone(),
        limits,
        api_tokens: args.api_tokens.clone(),
        ..Default::default()
    };
    let result = run(args.addr, config, args.tls_cert, args.tls_key).await;
    match result {
        Ok(()) => {
            tracing::info!("server stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "server stopped");
            eprintln!("server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    addr: SocketAddr,
    config: ServerConfig,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> std::io::Result<()> {
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(server::listen::tls_acceptor(&cert, &key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %addr, tls = tls.is_some(), tokens = config.api_tokens.is_some(), "serving");
    server::serve_until(listener, config, tls, shutdown_signal()).await
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown signal received");
}
