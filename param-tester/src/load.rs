//! Loading the model and images a configuration names.

use crate::*;
use he_layers::tensor::FloatTensor;
use net_builder::{FolderOptions, ModelSpec, PickleOptions};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A loaded model with its manifest facts.
pub struct Loaded {
    /// The spec.
    pub spec: ModelSpec,
    /// Input range.
    pub input_range: [f64; 2],
    /// The images.
    pub images: FloatTensor,
    /// Labels when known.
    pub labels: Option<Vec<usize>>,
    /// A reference run's outputs per image (an arrays file's `"outputs"`, PyTorch's say).
    pub reference_outputs: Option<Vec<Vec<f64>>>,
    /// Whether a pickle's input shape was guessed (the smallest square image that fits):
    /// neither the config nor a manifest gave it.
    pub input_shape_guessed: bool,
}

/// An arrays file: flattened images, with what a reference run said of them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Arrays {
    /// One flattened image per row.
    inputs: Vec<Vec<f64>>,
    /// Their shape (default: the model's).
    #[serde(default)]
    input_shape: Option<Vec<usize>>,
    /// A reference run's outputs, one row per image.
    #[serde(default)]
    outputs: Option<Vec<Vec<f64>>>,
    /// True labels.
    #[serde(default)]
    labels: Option<Vec<usize>>,
}

fn read_arrays(path: &Path) -> Result<(PathBuf, Arrays), TesterError> {
    let text = std::fs::read_to_string(path).map_err(|source| TesterError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let a = serde_json::from_str(&text).map_err(|source| TesterError::Manifest {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((path.to_path_buf(), a))
}

/// Loads the model and images a config names (paths relative to `base`).
pub fn load(cfg: &TesterConfig, base: &Path) -> Result<Loaded, TesterError> {
    cfg.check()?;
    let model = base.join(&cfg.model);
    // An arrays file's shape stands for a pickle's when the config gives none.
    let arrays = match &cfg.images {
        ImagesConfig::Arrays { arrays } => Some(read_arrays(&base.join(arrays))?),
        _ => None,
    };
    let input_shape = cfg
        .input_shape
        .clone()
        .or_else(|| arrays.as_ref().and_then(|(_, a)| a.input_shape.clone()));
    let (spec, input_range, guessed) = if model.is_dir() {
        let folder = net_builder::load_folder(
            &model,
            &FolderOptions {
                input_shape: input_shape.clone(),
                square_classes: cfg.square_classes.clone(),
                require_input_shape: false,
            },
        )?;
        let guessed = folder.model_file.extension().is_some_and(|e| e == "pt")
            && input_shape.is_none()
            && folder.manifest.input_shape.is_none();
        (folder.spec, folder.manifest.input_range, guessed)
    } else {
        let mut opts = PickleOptions::default();
        opts.square_classes
            .extend(cfg.square_classes.iter().cloned());
        opts.input_shape = input_shape.clone();
        let is_onnx = model.extension().is_some_and(|e| e == "onnx");
        let spec = net_builder::load_model(&model, &opts)?;
        (spec, [0.0, 1.0], !is_onnx && input_shape.is_none())
    };
    let mut reference_outputs = None;
    let (images, labels) = match &cfg.images {
        ImagesConfig::TestSet {
            test_set,
            index,
            count,
        } => {
            let path = base.join(test_set);
            let x = net_builder::data::idx_images(&path, *index, *count)?;
            let lp = PathBuf::from(
                path.display()
                    .to_string()
                    .replace("images-idx3", "labels-idx1"),
            );
            let y = if lp != path && lp.exists() {
                Some(net_builder::data::idx_labels(&lp, *index, *count)?)
            } else {
                None
            };
            (x, y)
        }
        ImagesConfig::Arrays { .. } => {
            let Some((path, a)) = arrays else {
                return Err(TesterError::InconsistentImages);
            };
            let shape = a.input_shape.unwrap_or_else(|| spec.input_shape.clone());
            let x = FloatTensor::from_images(shape, &a.inputs).ok_or(TesterError::Arrays {
                path: path.clone(),
                reason: "the rows do not all have the input shape's size",
            })?;
            let n = a.inputs.len();
            if a.outputs.as_ref().is_some_and(|o| o.len() != n)
                || a.labels.as_ref().is_some_and(|l| l.len() != n)
            {
                return Err(TesterError::Arrays {
                    path,
                    reason: "\"outputs\" and \"labels\" need one row per input",
                });
            }
            reference_outputs = a.outputs;
            (x, a.labels)
        }
        ImagesConfig::Files(files) => {
            let mut shape = None;
            let mut data = Vec::new();
            for f in files {
                let (s, px) = net_builder::data::png_image(&base.join(f))?;
                shape.get_or_insert(s);
                data.push(px);
            }
            let x = FloatTensor::from_images(shape.unwrap_or_default(), &data)
                .ok_or(TesterError::InconsistentImages)?;
            (x, None)
        }
    };
    if images.shape() != spec.input_shape.as_slice() {
        return Err(TesterError::ImageShape {
            images: images.shape().to_vec(),
            model: spec.input_shape.clone(),
        });
    }
    Ok(Loaded {
        spec,
        input_range,
        images,
        labels,
        reference_outputs,
        input_shape_guessed: guessed,
    })
}
