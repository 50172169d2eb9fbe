//! Constant tensors: decoding values (inline or external data beside the model), read with a
//! size cap.

use super::error::{NodeFault, OnnxError, TensorFault};
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

/// A node's fault as an import error.
pub(super) fn bad(node: &str, op: &str, fault: NodeFault) -> ImportError {
    OnnxError::Node {
        node: node.to_string(),
        op: op.to_string(),
        fault,
    }
    .into()
}

pub(super) fn read_capped(path: &Path) -> Result<Vec<u8>, ImportError> {
    let meta = std::fs::metadata(path).map_err(|e| ImportError::io(path, e))?;
    if meta.len() > MAX_ONNX_BYTES {
        return Err(OnnxError::TooLarge {
            path: path.to_path_buf(),
            bytes: meta.len(),
            limit: MAX_ONNX_BYTES,
        }
        .into());
    }
    std::fs::read(path).map_err(|e| ImportError::io(path, e))
}

/// Decodes a tensor's values, reading external data relative to `dir`.
pub(super) fn tensor_values(t: &TensorProto, dir: &Path) -> Result<Constant, ImportError> {
    let name = t.name.clone().unwrap_or_default();
    let fail = |fault: TensorFault| -> ImportError {
        OnnxError::Tensor {
            tensor: name.clone(),
            fault,
        }
        .into()
    };
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<_>>()
        .ok_or_else(|| {
            fail(TensorFault::NegativeDimension {
                dims: t.dims.clone(),
            })
        })?;
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| fail(TensorFault::SizeOverflow { dims: dims.clone() }))?;
    let dtype = t.data_type.unwrap_or(0);
    let width = match dtype {
        FLOAT | INT32 => 4,
        INT64 | DOUBLE => 8,
        other => return Err(fail(TensorFault::ElementType { data_type: other })),
    };
    let external;
    let raw: Option<&[u8]> = if t.data_location == Some(1) {
        let get = |k: &str| {
            t.external_data
                .iter()
                .find(|e| e.key.as_deref() == Some(k))
                .and_then(|e| e.value.clone())
        };
        let location = get("location").ok_or_else(|| fail(TensorFault::NoLocation))?;
        let rel = Path::new(&location);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(fail(TensorFault::LocationOutside { location }));
        }
        let number = |key: &'static str, default: usize| -> Result<usize, ImportError> {
            match get(key) {
                None => Ok(default),
                Some(value) => value
                    .parse()
                    .map_err(|source| fail(TensorFault::ExternalField { key, value, source })),
            }
        };
        let offset = number("offset", 0)?;
        let length = number("length", count * width)?;
        let file = read_capped(&dir.join(rel))?;
        let end = offset
            .checked_add(length)
            .filter(|&e| e <= file.len())
            .ok_or_else(|| {
                fail(TensorFault::ExternalShort {
                    location: location.clone(),
                    offset,
                    length,
                    available: file.len(),
                })
            })?;
        external = file[offset..end].to_vec();
        Some(&external)
    } else {
        t.raw_data.as_deref()
    };
    let values: Vec<f64> = match raw {
        Some(bytes) => {
            if bytes.len() != count * width {
                return Err(fail(TensorFault::ByteCount {
                    bytes: bytes.len(),
                    count,
                    width,
                }));
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
        return Err(fail(TensorFault::ValueCount {
            values: values.len(),
            dims,
        }));
    }
    Ok(Constant { dims, values })
}
