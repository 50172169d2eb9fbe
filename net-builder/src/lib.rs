//! `net-builder`: imports models exported from PyTorch into a [`ModelSpec`] (ONNX from either
//! exporter, or PyCrCNN's whole-model pickles), validates them, folds BatchNorm, runs the float
//! reference, and builds an [`he_layers::model::EncodedModel`] for a parameter set.
#![warn(missing_docs)]

pub mod build;
pub mod data;
pub mod eval;
pub mod folder;
pub mod onnx;
pub mod pickle;
pub mod pipeline;
pub mod session;
pub mod spec;
pub mod torch;

pub use build::{build_model, BuildError, BuildOptions, BuiltModel};
pub use data::DataError;
pub use folder::{load_folder, FolderError, FolderOptions, Manifest, ModelFolder};
pub use onnx::OnnxError;
pub use spec::{LayerSpec, ModelSpec, SpecError};
pub use torch::{PickleOptions, TorchError};

use std::path::{Path, PathBuf};

/// Why a model file could not be imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A node or module type that has no mapping.
    #[error("node {node}: op type {op} is not supported; supported: {supported}")]
    Unsupported {
        /// Node or module name.
        node: String,
        /// Its op type or class.
        op: String,
        /// What is supported.
        supported: &'static str,
    },
    /// A malformed or unsupported ONNX construct.
    #[error("ONNX: {0}")]
    Onnx(#[from] OnnxError),
    /// A malformed or unsupported pickle.
    #[error("PyTorch pickle: {0}")]
    Pickle(#[from] TorchError),
    /// An image or label file is unusable.
    #[error("data: {0}")]
    Data(#[from] DataError),
    /// The imported model does not hold together.
    #[error(transparent)]
    Spec(#[from] SpecError),
}

impl ImportError {
    /// A file that could not be read.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Imports a model file: `.onnx` through the ONNX reader, anything else (`.pt`, `.pth`) as a
/// PyTorch pickle. The result is validated and its BatchNorms folded.
pub fn load_model(path: &Path, pickle_opts: &PickleOptions) -> Result<ModelSpec, ImportError> {
    let spec = match path.extension().and_then(|e| e.to_str()) {
        Some("onnx") => onnx::load_onnx(path)?,
        _ => torch::load_pickle(path, pickle_opts)?,
    };
    spec.validate()?;
    let folded = spec.fold_batchnorm()?;
    folded.validate()?;
    Ok(folded)
}
