//! `server`: serves encrypted inference over the models in a folder.

use clap::Parser;
use server::ServerConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Encrypted-inference server: runs a model's layers on BFV ciphertexts it cannot read.
///
/// Loads every `<models>/<net>/model.onnx` at start. Clients upload their public keys
/// (POST /keys), ask what a configuration will do (POST /plan), and send ciphertexts with the
/// layer range to run (POST /compute). Plain HTTP by default, for loopback; give --tls-cert and
/// --tls-key to serve HTTPS. Log level from RUST_LOG (default info).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    /// Folder of models: <net>/model.onnx with <net>/manifest.json.
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
    /// PEM certificate chain for HTTPS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
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
    let config = ServerConfig {
        models_dir: args.models.clone(),
        max_body_bytes: args.max_body_mb.saturating_mul(1 << 20),
        max_cached_keys: args.max_cached_keys,
        max_cached_key_bytes: args.max_cached_key_mb.saturating_mul(1 << 20),
        allow_insecure_parameters: args.allow_insecure_parameters,
        ..Default::default()
    };
    let result = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => {
            tracing::info!(addr = %args.addr, "serving HTTPS");
            server::serve_tls(args.addr, config, cert, key).await
        }
        _ => match tokio::net::TcpListener::bind(args.addr).await {
            Ok(listener) => {
                tracing::info!(addr = %args.addr, "serving HTTP");
                server::serve(listener, config).await
            }
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server stopped");
            eprintln!("server: {e}");
            ExitCode::FAILURE
        }
    }
}
