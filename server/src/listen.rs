//! The accept loop: plain HTTP or HTTPS (rustls) over one listener, at most
//! `max_connections` connections open, headers within `header_read_timeout`, and a graceful
//! stop: when the shutdown future resolves, no new connection is taken, `/ready` answers 503,
//! and requests in flight may finish within `shutdown_grace`.

use crate::limits::Limits;
use crate::AppState;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// Connections kept for probes while every other place is taken.
const PROBE_CONNECTIONS: usize = 8;

/// How long a probe connection may take to send its headers.
const PROBE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS acceptor from a PEM certificate chain and a PEM private key (HTTP/1.1 only).
pub fn tls_acceptor(cert: &Path, key: &Path) -> std::io::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}: {e}"))
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid(&format!("certificate {}", cert.display()), &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(&format!("certificate {}", cert.display()), &e))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| invalid(&format!("private key {}", key.display()), &e))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid("TLS certificate and key", &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` (through TLS when `tls` is given) until `shutdown` resolves,
/// then lets requests in flight finish within the grace period.
pub async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    state: Arc<AppState>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let probes = Arc::new(Semaphore::new(PROBE_CONNECTIONS));
    let probe_app = crate::probe_router(state.clone());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A free place first; while every place is taken, one of the few kept for probes
        // (served only /health and /ready, briefly); beyond both, connections wait in the
        // kernel's backlog.
        let full = connections.available_permits() == 0;
        let (mut permit, mut probe) = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => (p, false),
                Err(_) => break,
            },
            p = probes.clone().acquire_owned(), if full => match p {
                Ok(p) => (p, true),
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A regular place freed while this connection was awaited: it gets that instead.
        if probe {
            if let Ok(p) = connections.clone().try_acquire_owned() {
                (permit, probe) = (p, false);
            }
        }
        let (service_app, header_timeout, handshake) = if probe {
            (
                probe_app.clone(),
                PROBE_HEADER_TIMEOUT,
                PROBE_HEADER_TIMEOUT,
            )
        } else {
            (app.clone(), limits.header_read_timeout, HANDSHAKE_TIMEOUT)
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let service = TowerToHyperService::new(service_app);
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            state.metrics.connection(true);
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            serve_connection(s, service, watcher, header_timeout, !probe).await
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
                None => serve_connection(stream, service, watcher, header_timeout, !probe).await,
            }
            state.metrics.connection(false);
        });
    }
    drop(listener);
    state.begin_shutdown();
    tracing::info!(
        connections = graceful.count(),
        grace_s = limits.shutdown_grace.as_secs(),
        "stopping: no new connections; requests in flight may finish"
    );
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over: stopping with requests in flight");
    }
    Ok(())
}

/// One connection, HTTP/1.1 (with keep-alive unless a probe's); headers must arrive within
/// `header_timeout`.
async fn serve_connection<I>(
    io: I,
    service: TowerToHyperService<Router>,
    watcher: hyper_util::server::graceful::Watcher,
    header_timeout: Duration,
    keep_alive: bool,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(keep_alive);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
