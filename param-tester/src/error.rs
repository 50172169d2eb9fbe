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
    /// A manifest or arrays file that is not the JSON it should be.
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
    /// A model folder that cannot be served or tested.
    #[error(transparent)]
    Folder(#[from] net_builder::FolderError),
    /// An arrays file whose rows do not hold together.
    #[error("{}: {reason}", path.display())]
    Arrays {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A bound of the automatic choices out of its range.
    #[error("{field} {value}: max_quantization_error is a positive fraction, min_agreement a fraction between 0 and 1")]
    Bound {
        /// The field.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// Images of another shape than the model's input.
    #[error(
        "the images are {images:?}, the model takes {model:?} (for a pickle, give \"input_shape\")"
    )]
    ImageShape {
        /// The images' shape.
        images: Vec<usize>,
        /// The model's input shape.
        model: Vec<usize>,
    },
}
