//! Images and where they came from: PNG files or an IDX test set.

use crate::*;
use he_layers::tensor::FloatTensor;
use std::path::{Path, PathBuf};

/// Images and where they came from.
pub struct Images {
    /// The images, `[C, H, W]` each, values in [0, 1].
    pub tensor: FloatTensor,
    /// A name per image.
    pub names: Vec<String>,
    /// True labels, when known.
    pub labels: Vec<Option<usize>>,
}

/// Loads PNG files.
pub fn load_pngs(paths: &[PathBuf]) -> Result<Images, ClientError> {
    let mut shape = None;
    let mut data = Vec::new();
    for p in paths {
        let (s, px) = net_builder::data::png_image(p)?;
        let first = shape.get_or_insert(s.clone());
        if first != &s {
            return Err(ConfigError::ImageShapeDiffers {
                path: p.clone(),
                shape: s,
                first: first.clone(),
            }
            .into());
        }
        data.push(px);
    }
    let shape = shape.ok_or(ConfigError::NoImages)?;
    Ok(Images {
        tensor: FloatTensor::from_images(shape, &data).ok_or(ConfigError::InconsistentImages)?,
        names: paths.iter().map(|p| p.display().to_string()).collect(),
        labels: vec![None; paths.len()],
    })
}

/// Loads images (and labels, from the sibling `…labels-idx1…` file if present) from an IDX
/// test set.
pub fn load_test_set(path: &Path, index: usize, count: usize) -> Result<Images, ClientError> {
    let tensor = net_builder::data::idx_images(path, index, count)?;
    let name = path.display().to_string();
    let label_path = PathBuf::from(name.replace("images-idx3", "labels-idx1"));
    let labels = if label_path != path && label_path.exists() {
        net_builder::data::idx_labels(&label_path, index, count)?
            .into_iter()
            .map(Some)
            .collect()
    } else {
        vec![None; count]
    };
    Ok(Images {
        tensor,
        names: (index..index + count)
            .map(|i| format!("{name}#{i}"))
            .collect(),
        labels,
    })
}
