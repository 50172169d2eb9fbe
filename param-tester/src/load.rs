//! Loading the model and images a configuration names.

use crate::*;
use he_layers::tensor::FloatTensor;
use net_builder::{ModelSpec, PickleOptions};
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
}

/// Loads the model and images a config names (paths relative to `base`).
pub fn load(cfg: &TesterConfig, base: &Path) -> Result<Loaded, TesterError> {
    let model = base.join(&cfg.model);
    let (file, manifest) = if model.is_dir() {
        (model.join("model.onnx"), Some(model.join("manifest.json")))
    } else {
        (model.clone(), None)
    };
    let spec = net_builder::load_model(&file, &PickleOptions::default())?;
    let mut input_range = [0.0, 1.0];
    if let Some(m) = manifest.filter(|m| m.exists()) {
        let text = std::fs::read_to_string(&m).map_err(|source| TesterError::Io {
            path: m.clone(),
            source,
        })?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| TesterError::Manifest {
                path: m.clone(),
                source,
            })?;
        if let (Some(a), Some(b)) = (v["input_range"][0].as_f64(), v["input_range"][1].as_f64()) {
            input_range = [a, b];
        }
    }
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
    Ok(Loaded {
        spec,
        input_range,
        images,
        labels,
    })
}
