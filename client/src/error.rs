//! Everything that can go wrong on the client side.

use net_builder::session::SessionError;
use std::path::Path;

/// Everything that can go wrong on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A file could not be read or written.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A config or key file is malformed.
    #[error("{0}")]
    Config(String),
    /// The server could not be reached.
    #[error("cannot reach the server at {0}: {1}")]
    Connect(String, String),
    /// The server answered with an error.
    #[error("server error {status} ({kind}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Error kind.
        kind: String,
        /// Error message.
        message: String,
    },
    /// An answer that does not follow the protocol.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// Cryptographic failure (wrong keys, …).
    #[error("{0}")]
    Crypto(String),
    /// The pipeline refused or failed.
    #[error(transparent)]
    Session(#[from] SessionError),
}

pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |e| ClientError::Io(path.display().to_string(), e)
}
