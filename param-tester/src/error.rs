//! Why the tester could not load what a configuration names.

use std::path::PathBuf;

/// Why a tester configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TesterError {
    /// The model or a data file could not be imported.
    #[error(transparent)]
    Import(#[from] net_builder::ImportError),
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A manifest that is not JSON.
    #[error("{}: {source}", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// A parameter set whose fields do not describe encryption parameters.
    #[error("encryption parameters: {0}")]
    Parameters(#[source] serde_json::Error),
    /// Image files of different shapes.
    #[error("the image files have different shapes")]
    InconsistentImages,
}
