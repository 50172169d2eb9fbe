//! The client: key store on disk, the REST calls, and the compute loop — quantize and
//! batch-encode images, encrypt (seeded) under every plaintext modulus, send each encrypted
//! segment to the server, and between segments decrypt, recombine (CRT), measure the noise
//! budget, rescale and re-encrypt. The secret key never leaves this process.
#![warn(missing_docs)]

mod api;
mod compute;
mod config;
mod connection;
mod error;
mod http;
mod images;
mod keystore;
mod retry;

pub use api::Api;
pub use compute::{run_compute, ComputeReport, ImageResult};
pub use config::ClientConfig;
pub use connection::Connection;
pub(crate) use error::{encode, io};
pub use error::{AnswerError, ClientError, ConfigError, KeyStoreError};
pub use http::HttpTransport;
pub use images::{load_pngs, load_test_set, Images};
pub use keystore::{write_private, ComponentKeys, KeySet};
