//! Accuracy of a model on labelled images: the float reference, and the integer mirror of the
//! encoded model (its encryptable prefix, then the float reference for a plaintext tail).

use crate::build::BuiltModel;
use crate::data::DataError;
use crate::spec::ModelSpec;
use crate::ImportError;
use he_layers::tensor::FloatTensor;
use ndarray::{ArrayD, IxDyn};

/// Accuracy figures over a set of images.
#[derive(Clone, Debug, PartialEq)]
pub struct Accuracy {
    /// Images evaluated.
    pub images: usize,
    /// Fraction the float reference labels correctly.
    pub float: f64,
    /// Fraction the integer mirror labels correctly.
    pub mirror: f64,
    /// Fraction where the mirror's label equals the float model's.
    pub agreement: f64,
    /// The mirror's predicted labels.
    pub mirror_labels: Vec<usize>,
}

/// Index of the largest value (first on ties).
pub fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

fn to_array(x: &FloatTensor) -> ArrayD<f64> {
    let mut shape = vec![x.batch()];
    shape.extend(x.shape());
    let mut data = Vec::with_capacity(x.data().len());
    for j in 0..x.batch() {
        data.extend(x.image(j));
    }
    ArrayD::from_shape_vec(IxDyn(&shape), data).unwrap_or_else(|_| ArrayD::zeros(IxDyn(&[0])))
}

/// The float reference's outputs, one row per image.
pub fn float_outputs(spec: &ModelSpec, x: &FloatTensor) -> Result<Vec<Vec<f64>>, ImportError> {
    let y = spec.forward(&to_array(x), 0..spec.layers.len())?;
    let n = x.batch();
    let per = y.len() / n.max(1);
    let flat = y.as_standard_layout().iter().copied().collect::<Vec<_>>();
    Ok(flat.chunks(per.max(1)).map(|c| c.to_vec()).collect())
}

/// The integer mirror's outputs, one row per image, as floats (integer / scale); a plaintext
/// tail after the encryptable prefix runs in the float reference.
pub fn mirror_outputs(
    spec: &ModelSpec,
    built: &BuiltModel,
    x: &FloatTensor,
) -> Result<Vec<Vec<f64>>, ImportError> {
    let model = &built.model;
    let prefix = model.encryptable_prefix();
    let q = model.quantize_input(x).map_err(DataError::Model)?;
    let y = model.run_int(0..prefix, &q).map_err(DataError::Model)?;
    let scale = model.info_before(prefix).scale;
    let yf = y.map(|&v| v as f64 / scale);
    let tail_start = built.spec_index[..prefix]
        .iter()
        .rev()
        .find_map(|&i| i)
        .map_or(0, |i| i + 1);
    if tail_start >= spec.layers.len() {
        return Ok((0..yf.batch()).map(|j| yf.image(j)).collect());
    }
    let rest = spec.forward(&to_array(&yf), tail_start..spec.layers.len())?;
    let n = yf.batch();
    let per = rest.len() / n.max(1);
    let flat = rest
        .as_standard_layout()
        .iter()
        .copied()
        .collect::<Vec<_>>();
    Ok(flat.chunks(per.max(1)).map(|c| c.to_vec()).collect())
}

/// Float and mirror accuracy over images and labels, in chunks of `chunk` images.
pub fn accuracy(
    spec: &ModelSpec,
    built: &BuiltModel,
    images: &FloatTensor,
    labels: &[usize],
    chunk: usize,
) -> Result<Accuracy, ImportError> {
    let n = images.batch().min(labels.len());
    let (mut f_ok, mut m_ok, mut agree) = (0usize, 0usize, 0usize);
    let mut mirror_labels = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let end = (start + chunk.max(1)).min(n);
        let imgs: Vec<Vec<f64>> = (start..end).map(|j| images.image(j)).collect();
        let x = FloatTensor::from_images(images.shape().to_vec(), &imgs)
            .ok_or(DataError::InconsistentImages)?;
        let f = float_outputs(spec, &x)?;
        let m = mirror_outputs(spec, built, &x)?;
        for (k, (fr, mr)) in f.iter().zip(&m).enumerate() {
            let (fl, ml) = (argmax(fr), argmax(mr));
            f_ok += (fl == labels[start + k]) as usize;
            m_ok += (ml == labels[start + k]) as usize;
            agree += (fl == ml) as usize;
            mirror_labels.push(ml);
        }
        start = end;
    }
    let d = n.max(1) as f64;
    Ok(Accuracy {
        images: n,
        float: f_ok as f64 / d,
        mirror: m_ok as f64 / d,
        agreement: agree as f64 / d,
        mirror_labels,
    })
}
