//! Why a key store on disk is unusable.

use he_layers::crypto::SerialError;
use std::path::PathBuf;

/// A key store on disk is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// `keyset.json` does not parse.
    #[error("{}: {source}", path.display())]
    Metadata {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// `keyset.json` names a folder outside the store.
    #[error("{}: bad folder {folder:?}", path.display())]
    Folder {
        /// `keyset.json`.
        path: PathBuf,
        /// The folder named.
        folder: String,
    },
    /// A parameter or key file that does not decode for its parameter set.
    #[error("{}: {source}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: SerialError,
    },
    /// The Galois keys a plan asks for cannot be made (its elements are not automorphisms of
    /// these parameters).
    #[error("cannot make the Galois keys the plan lists: {0}")]
    Galois(#[source] he_layers::crypto::Error),
    /// A component whose parameters differ from what `keyset.json` records.
    #[error("{}: parameters do not match keyset.json", dir.display())]
    ParametersMismatch {
        /// The component's folder.
        dir: PathBuf,
    },
}
