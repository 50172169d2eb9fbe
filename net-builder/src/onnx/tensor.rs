//! Constant tensors: decoding values (inline or external data beside the model), read with a
//! size cap.

use super::proto::TensorProto;
use super::MAX_ONNX_BYTES;
use crate::ImportError;
use std::path::Path;

pub(super) const FLOAT: i32 = 1;
pub(super) const INT32: i32 = 6;
pub(super) const INT64: i32 = 7;
pub(super) const DOUBLE: i32 = 11;

/// A constant tensor: shape and values as f64 (weights, shapes and exponents all fit).
#[derive(Clone, Debug)]
pub(super) struct Constant {
    pub(super) dims: Vec<usize>,
    pub(super) values: Vec<f64>,
}

pub(super) fn bad(node: &str, op: &str, what: impl Into<String>) -> ImportError {
    ImportError::Onnx(format!("node {node} ({op}): {}", what.into()))
}

pub(super) fn read_capped(path: &Path) -> Result<Vec<u8>, ImportError> {
    let meta =
        std::fs::metadata(path).map_err(|e| ImportError::Io(path.display().to_string(), e))?;
    if meta.len() > MAX_ONNX_BYTES {
        return Err(ImportError::Onnx(format!(
            "{} is {} bytes, over the {MAX_ONNX_BYTES}-byte limit",
            path.display(),
            meta.len()
        )));
    }
    std::fs::read(path).map_err(|e| ImportError::Io(path.display().to_string(), e))
}

/// Decodes a tensor's values, reading external data relative to `dir`.
pub(super) fn tensor_values(t: &TensorProto, dir: &Path) -> Result<Constant, ImportError> {
    let name = t.name.clone().unwrap_or_default();
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| {
            usize::try_from(d)
                .map_err(|_| ImportError::Onnx(format!("tensor {name}: negative dimension")))
        })
        .collect::<Result<_, _>>()?;
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| ImportError::Onnx(format!("tensor {name}: size overflows")))?;
    let dtype = t.data_type.unwrap_or(0);
    let width = match dtype {
        FLOAT | INT32 => 4,
        INT64 | DOUBLE => 8,
        other => {
            return Err(ImportError::Onnx(format!(
                "tensor {name}: element type {other} is not supported (float, double, int32, int64 are)"
            )))
        }
    };
    let external;
    let raw: Option<&[u8]> = if t.data_location == Some(1) {
        let get = |k: &str| {
            t.external_data
                .iter()
                .find(|e| e.key.as_deref() == Some(k))
                .and_then(|e| e.value.clone())
        };
        let location = get("location").ok_or_else(|| {
            ImportError::Onnx(format!("tensor {name}: external data without a location"))
        })?;
        let rel = Path::new(&location);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(ImportError::Onnx(format!(
                "tensor {name}: external data location {location:?} must be a file beside the model"
            )));
        }
        let offset: usize = get("offset")
            .map_or(Ok(0), |v| v.parse())
            .map_err(|_| ImportError::Onnx(format!("tensor {name}: bad offset")))?;
        let length: usize = match get("length") {
            Some(v) => v
                .parse()
                .map_err(|_| ImportError::Onnx(format!("tensor {name}: bad length")))?,
            None => count * width,
        };
        let file = read_capped(&dir.join(rel))?;
        let end = offset
            .checked_add(length)
            .filter(|&e| e <= file.len())
            .ok_or_else(|| {
                ImportError::Onnx(format!(
                    "tensor {name}: external data {location} is shorter than offset + length"
                ))
            })?;
        external = file[offset..end].to_vec();
        Some(&external)
    } else {
        t.raw_data.as_deref()
    };
    let values: Vec<f64> = match raw {
        Some(bytes) => {
            if bytes.len() != count * width {
                return Err(ImportError::Onnx(format!(
                    "tensor {name}: {} bytes for {count} elements of {width} bytes",
                    bytes.len()
                )));
            }
            bytes
                .chunks_exact(width)
                .map(|c| match dtype {
                    FLOAT => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
                    INT32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
                    INT64 => {
                        i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64
                    }
                    _ => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
                })
                .collect()
        }
        None => match dtype {
            FLOAT => t.float_data.iter().map(|&v| v as f64).collect(),
            INT32 => t.int32_data.iter().map(|&v| v as f64).collect(),
            INT64 => t.int64_data.iter().map(|&v| v as f64).collect(),
            _ => t.double_data.clone(),
        },
    };
    if values.len() != count {
        return Err(ImportError::Onnx(format!(
            "tensor {name}: {} values for shape {dims:?}",
            values.len()
        )));
    }
    Ok(Constant { dims, values })
}
