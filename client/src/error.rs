//! Everything that can go wrong on the client side.

use net_builder::session::SessionError;
use net_builder::{FolderError, ImportError, SpecError};
use std::path::{Path, PathBuf};

mod answer;
mod config;
mod keys;

pub use answer::AnswerError;
pub use config::ConfigError;
pub use keys::KeyStoreError;

/// Everything that can go wrong on the client side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The demo's embedded server could not listen.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A config file, the parameters or the inputs of a run are unusable.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A key store on disk is unusable.
    #[error("{0}")]
    Keys(#[from] KeyStoreError),
    /// A model, image or label file could not be imported (boxed: import errors are large
    /// and rare).
    #[error(transparent)]
    Import(Box<ImportError>),
    /// The local model folder could not be loaded (boxed, as import errors).
    #[error(transparent)]
    Folder(Box<FolderError>),
    /// The local model copy could not run the plaintext tail.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The server could not be reached.
    #[error("cannot reach the server at {url}: {source}")]
    Connect {
        /// The server's base URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// A plain-http address off loopback: keys, ciphertexts and tokens would travel in the
    /// clear.
    #[error(
        "{url}: plain http is only for loopback addresses; use https (with --ca-cert for a \
         private CA), or say --insecure-http"
    )]
    PlainHttp {
        /// The server's base URL.
        url: String,
    },
    /// The server's URL is not one.
    #[error("{url}: not a server URL: {reason}")]
    Address {
        /// What was given.
        url: String,
        /// Why.
        reason: String,
    },
    /// A CA certificate (`--ca-cert`) could not be read.
    #[error("CA certificate {}: {reason}", path.display())]
    CaCert {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The server broke the protocol or the model's contract: the run was stopped and the
    /// key set discarded (a server probing with forged answers learns from every reply).
    #[error("{source}; the key set in {} was discarded: generate a new one", dir.display())]
    KeysDiscarded {
        /// The key folder.
        dir: PathBuf,
        /// The violation.
        #[source]
        source: Box<ClientError>,
    },
    /// The server answered with an error.
    #[error("server error {status} ({kind}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Error kind.
        kind: String,
        /// Error message.
        message: String,
        /// Seconds the server asked to wait before a retry (`Retry-After`).
        retry_after: Option<u64>,
    },
    /// An answer that does not follow the protocol.
    #[error("unexpected answer from the server: {0}")]
    Protocol(#[from] AnswerError),
    /// A request or report that could not be written as JSON.
    #[error("cannot encode {what} as JSON: {source}")]
    Encode {
        /// What was encoded.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The pipeline refused or failed.
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl From<FolderError> for ClientError {
    fn from(e: FolderError) -> Self {
        Self::Folder(Box::new(e))
    }
}

impl From<ImportError> for ClientError {
    fn from(e: ImportError) -> Self {
        Self::Import(Box::new(e))
    }
}

pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A JSON encoding failure of `what`.
pub(crate) fn encode(what: &'static str) -> impl Fn(serde_json::Error) -> ClientError {
    move |source| ClientError::Encode { what, source }
}
