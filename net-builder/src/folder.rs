//! A model folder, as the server serves and the tester reads it: `model.onnx` (its weights
//! perhaps in `model.onnx.data` beside it) or a PyCrCNN-style whole-model pickle `model.pt`,
//! and a `manifest.json` with what the file does not record.

use crate::{load_model, ImportError, ModelSpec, PickleOptions};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// What a model folder's `manifest.json` says (every field optional).
#[derive(Clone, Debug, Deserialize)]
pub struct Manifest {
    /// Class names.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Accepted input range.
    #[serde(default = "unit_range")]
    pub input_range: [f64; 2],
    /// Recommended re-encryption positions.
    #[serde(default)]
    pub reencrypt_positions: Vec<usize>,
    /// Positions (layers of the float model) after which the owner lets clients re-encrypt,
    /// that is, see the intermediate activations. Default: the recommended ones. A client may
    /// run only the segments these boundaries cut, never an arbitrary range.
    #[serde(default)]
    pub allowed_reencrypt_positions: Option<Vec<usize>>,
    /// The input shape `[C, H, W]` or `[features]`: a pickle does not record it, so a
    /// `model.pt` folder needs it.
    #[serde(default)]
    pub input_shape: Option<Vec<usize>>,
    /// Class names of the pickle's custom modules that compute x² (besides `Square`,
    /// `SquareActivation` and `Sq`).
    #[serde(default)]
    pub square_classes: Vec<String>,
}

fn unit_range() -> [f64; 2] {
    [0.0, 1.0]
}

/// A folder without a manifest: inputs in [0, 1], nothing else said.
impl Default for Manifest {
    fn default() -> Self {
        Self {
            classes: Vec::new(),
            input_range: unit_range(),
            reencrypt_positions: Vec::new(),
            allowed_reencrypt_positions: None,
            input_shape: None,
            square_classes: Vec::new(),
        }
    }
}

/// A model folder, loaded.
#[derive(Debug)]
pub struct ModelFolder {
    /// The imported, validated, BatchNorm-folded spec.
    pub spec: ModelSpec,
    /// The manifest (defaults where the folder has none).
    pub manifest: Manifest,
    /// The model file read (`model.onnx` or `model.pt`).
    pub model_file: PathBuf,
    /// Every file the model was loaded from, the manifest included: what a digest of the
    /// model covers.
    pub files: Vec<PathBuf>,
}

/// Why a folder is not a model folder, or its model cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FolderError {
    /// Neither model file is there.
    #[error("{}: no model.onnx or model.pt", dir.display())]
    NoModel {
        /// The folder.
        dir: PathBuf,
    },
    /// Both model files are there: which one is meant is not for the server to guess.
    #[error("{}: both model.onnx and model.pt; keep one", dir.display())]
    TwoModels {
        /// The folder.
        dir: PathBuf,
    },
    /// A pickle without the input shape it does not record.
    #[error(
        "{}: a PyTorch pickle does not record its input shape; add \"input_shape\": [C, H, W] \
         (or [features]) to manifest.json",
        dir.display()
    )]
    NoInputShape {
        /// The folder.
        dir: PathBuf,
    },
    /// The manifest cannot be read or parsed.
    #[error("{}: {reason}", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The model file cannot be imported.
    #[error("{}: {source}{hint}", path.display())]
    Import {
        /// The model file.
        path: PathBuf,
        /// Why (boxed: import errors are large and rare).
        #[source]
        source: Box<ImportError>,
        /// What to add to the manifest, where that would help.
        hint: &'static str,
    },
}

/// How a folder's pickle gets the facts it does not record.
#[derive(Clone, Debug, Default)]
pub struct FolderOptions {
    /// An input shape that overrides the manifest's (the tester's config).
    pub input_shape: Option<Vec<usize>>,
    /// Square classes besides the defaults and the manifest's.
    pub square_classes: Vec<String>,
    /// Whether a pickle without a known input shape is refused (the server) rather than given
    /// the smallest square image that fits (the tester, which says so).
    pub require_input_shape: bool,
}

/// Whether the folder holds a model file at all (a folder without one is not a model folder).
pub fn has_model(dir: &Path) -> bool {
    dir.join("model.onnx").is_file() || dir.join("model.pt").is_file()
}

/// Loads a model folder: `model.onnx` or `model.pt`, with `manifest.json` when present.
pub fn load_folder(dir: &Path, opts: &FolderOptions) -> Result<ModelFolder, FolderError> {
    let onnx = dir.join("model.onnx");
    let pickle = dir.join("model.pt");
    let model_file = match (onnx.is_file(), pickle.is_file()) {
        (true, true) => {
            return Err(FolderError::TwoModels {
                dir: dir.to_path_buf(),
            })
        }
        (true, false) => onnx,
        (false, true) => pickle,
        (false, false) => {
            return Err(FolderError::NoModel {
                dir: dir.to_path_buf(),
            })
        }
    };
    let manifest_path = dir.join("manifest.json");
    let mut files = vec![model_file.clone()];
    let data = dir.join("model.onnx.data");
    if data.is_file() {
        files.push(data);
    }
    let manifest = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => {
            files.push(manifest_path.clone());
            serde_json::from_str(&text).map_err(|e| FolderError::Manifest {
                path: manifest_path.clone(),
                reason: e.to_string(),
            })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
        Err(e) => {
            return Err(FolderError::Manifest {
                path: manifest_path,
                reason: e.to_string(),
            })
        }
    };
    let is_pickle = model_file.extension().is_some_and(|e| e == "pt");
    let input_shape = opts
        .input_shape
        .clone()
        .or_else(|| manifest.input_shape.clone());
    if is_pickle && input_shape.is_none() && opts.require_input_shape {
        return Err(FolderError::NoInputShape {
            dir: dir.to_path_buf(),
        });
    }
    let mut pickle_opts = PickleOptions::default();
    pickle_opts
        .square_classes
        .extend(manifest.square_classes.iter().cloned());
    pickle_opts
        .square_classes
        .extend(opts.square_classes.iter().cloned());
    pickle_opts.input_shape = input_shape;
    let mut spec = load_model(&model_file, &pickle_opts).map_err(|source| {
        let hint = match &source {
            ImportError::Unsupported { .. } if is_pickle => {
                " (a custom module computing x² is named in manifest.json's \"square_classes\")"
            }
            ImportError::Spec(_) if is_pickle => {
                " (is manifest.json's \"input_shape\" the one the model was trained on?)"
            }
            _ => "",
        };
        FolderError::Import {
            path: model_file.clone(),
            source: Box::new(source),
            hint,
        }
    })?;
    // The model is the folder's (the file is always called model).
    if let Some(name) = dir.file_name() {
        spec.name = name.to_string_lossy().into_owned();
    }
    Ok(ModelFolder {
        spec,
        manifest,
        model_file,
        files,
    })
}
