//! PyCrCNN's model files: whole-model pickles of an `nn.Sequential` saved with
//! `torch.save(model)`, in the zip format (PyTorch ≥ 1.6) and the legacy format, read in pure
//! Rust. Modules are mapped by class name; square activations are custom classes, so which
//! class names mean x² is configurable.

use crate::pickle::{self, Node, Pickle, Value};
use crate::spec::{LayerSpec, ModelSpec};
use crate::ImportError;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

mod error;

pub use error::{ModuleFault, TorchError};

/// Largest model file read.
pub const MAX_PICKLE_BYTES: u64 = 512 << 20;

/// Options for reading a pickled model.
#[derive(Clone, Debug)]
pub struct PickleOptions {
    /// Class names (without module) of custom modules that compute x². PyCrCNN's files use
    /// `Square`.
    pub square_classes: Vec<String>,
    /// The input shape `[C, H, W]` or `[features]`; pickles do not record it. When absent the
    /// smallest square image that fits the model is inferred.
    pub input_shape: Option<Vec<usize>>,
}

impl Default for PickleOptions {
    fn default() -> Self {
        Self {
            square_classes: vec!["Square".into(), "SquareActivation".into(), "Sq".into()],
            input_shape: None,
        }
    }
}

/// How deep `Sequential`s may nest in a pickle.
const MAX_NESTING: usize = 64;

const MODULES: &str = "Sequential, Conv2d, Linear, AvgPool2d, Flatten, BatchNorm1d, BatchNorm2d, \
    Identity, Dropout, a square module (configurable class names), and as plaintext-only layers \
    ReLU, Tanh, MaxPool2d";

/// Storage bytes by key.
type Storages = HashMap<String, (String, Vec<u8>)>;

/// Reads a pickled model file.
pub fn load_pickle(path: &Path, opts: &PickleOptions) -> Result<ModelSpec, ImportError> {
    let meta = std::fs::metadata(path).map_err(|e| ImportError::io(path, e))?;
    if meta.len() > MAX_PICKLE_BYTES {
        return Err(TorchError::TooLarge {
            path: path.to_path_buf(),
            bytes: meta.len(),
            limit: MAX_PICKLE_BYTES,
        }
        .into());
    }
    let bytes = std::fs::read(path).map_err(|e| ImportError::io(path, e))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    read_pickle(&bytes, &name, opts)
}

/// Reads a pickled model from bytes (zip or legacy format).
pub fn read_pickle(
    bytes: &[u8],
    name: &str,
    opts: &PickleOptions,
) -> Result<ModelSpec, ImportError> {
    let (pk, storages) = if bytes.starts_with(b"PK\x03\x04") {
        read_zip(bytes)?
    } else {
        read_legacy(bytes)?
    };
    let mut layers = Vec::new();
    collect_modules(&pk, &pk.root, "", &storages, opts, &mut layers)?;
    let mut spec = ModelSpec {
        name: name.to_string(),
        input_shape: vec![],
        layers,
    };
    spec.input_shape = match &opts.input_shape {
        Some(s) => s.clone(),
        None => infer_input_shape(&spec)?,
    };
    Ok(spec)
}

fn read_zip(bytes: &[u8]) -> Result<(Pickle, Storages), ImportError> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(TorchError::Zip)?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let pkl = names
        .iter()
        .find(|n| n.ends_with("data.pkl"))
        .ok_or(TorchError::NoDataPkl)?
        .clone();
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let mut read = |name: &str| -> Result<Vec<u8>, TorchError> {
        let mut f = zip.by_name(name).map_err(|source| TorchError::ZipEntry {
            entry: name.to_string(),
            source,
        })?;
        if f.size() > MAX_PICKLE_BYTES {
            return Err(TorchError::EntryTooLarge {
                entry: name.to_string(),
                bytes: f.size(),
                limit: MAX_PICKLE_BYTES,
            });
        }
        let mut v = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut v)
            .map_err(|source| TorchError::ZipRead {
                entry: name.to_string(),
                source,
            })?;
        Ok(v)
    };
    let pk = pickle::parse(&read(&pkl)?).map_err(|source| TorchError::Parse {
        part: pkl.clone(),
        source,
    })?;
    let mut storages = Storages::new();
    for n in &names {
        if let Some(key) = n.strip_prefix(&format!("{prefix}data/")) {
            storages.insert(key.to_string(), (String::new(), read(n)?));
        }
    }
    Ok((pk, storages))
}

fn read_legacy(bytes: &[u8]) -> Result<(Pickle, Storages), ImportError> {
    let mut pos = 0;
    let mut next = |part: &str| -> Result<Pickle, TorchError> {
        let p = pickle::parse(bytes.get(pos..).unwrap_or_default()).map_err(|source| {
            TorchError::Parse {
                part: part.to_string(),
                source,
            }
        })?;
        pos += p.consumed;
        Ok(p)
    };
    let magic = next("magic number")?;
    // 0x1950a86a20f9469cfc6c, little-endian.
    let expected = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    if magic.root != Value::BigInt(expected.to_vec()) {
        return Err(TorchError::NotPyTorch.into());
    }
    let _protocol = next("protocol version")?;
    let _sys_info = next("system info")?;
    let model = next("model")?;
    let keys = next("storage keys")?;
    let key_list: Vec<String> = match keys.node(&keys.root) {
        Some(Node::List(l)) => l
            .iter()
            .map(|v| match v {
                Value::Str(s) => Ok(s.clone()),
                other => Err(TorchError::StorageKeyNotString {
                    found: other.clone(),
                }),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(TorchError::StorageKeysNotList.into()),
    };
    // Element sizes come from the storage types named in the model's persistent ids.
    let mut kinds: HashMap<String, String> = HashMap::new();
    for node in &model.nodes {
        if let Node::Object {
            args: Value::Tuple(a),
            ..
        } = node
        {
            if let Some(Value::PersistentId(pid)) = a.first() {
                if let Some((key, kind, _)) = storage_id(pid) {
                    kinds.insert(key, kind);
                }
            }
        }
    }
    let mut storages = Storages::new();
    for key in key_list {
        let kind = kinds
            .get(&key)
            .cloned()
            .unwrap_or_else(|| "FloatStorage".into());
        let width = element_width(&kind)?;
        let hdr = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| TorchError::StorageTruncated { key: key.clone() })?;
        let numel = u64::from_le_bytes(hdr.try_into().unwrap_or([0; 8]));
        pos += 8;
        let len = usize::try_from(numel)
            .ok()
            .and_then(|n| n.checked_mul(width))
            .filter(|&l| pos + l <= bytes.len())
            .ok_or_else(|| TorchError::StorageTruncated { key: key.clone() })?;
        storages.insert(key, (kind, bytes[pos..pos + len].to_vec()));
        pos += len;
    }
    Ok((model, storages))
}

fn element_width(kind: &str) -> Result<usize, TorchError> {
    match kind {
        "FloatStorage" => Ok(4),
        "DoubleStorage" => Ok(8),
        other => Err(TorchError::StorageType {
            kind: other.to_string(),
        }),
    }
}

fn unknown_class(path: &str) -> ImportError {
    TorchError::UnknownClass {
        module: path.to_string(),
    }
    .into()
}

/// ('storage', torch.XStorage, key, location, numel[, view]) → (key, "XStorage", numel).
fn storage_id(pid: &Value) -> Option<(String, String, usize)> {
    let Value::Tuple(t) = pid else { return None };
    match t.as_slice() {
        [Value::Str(tag), Value::Global(_, kind), Value::Str(key), _, Value::Int(numel), ..]
            if tag == "storage" =>
        {
            Some((key.clone(), kind.clone(), usize::try_from(*numel).ok()?))
        }
        _ => None,
    }
}

fn ints(v: &Value) -> Option<Vec<i64>> {
    match v {
        Value::Int(i) => Some(vec![*i]),
        Value::Tuple(t) => t
            .iter()
            .map(|x| match x {
                Value::Int(i) => Some(*i),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Rebuilds a float tensor from `_rebuild_tensor_v2` (possibly wrapped in `_rebuild_parameter`).
fn tensor(pk: &Pickle, v: &Value, storages: &Storages) -> Option<(Vec<usize>, Vec<f32>)> {
    let Node::Object {
        callable: Value::Global(_, f),
        args: Value::Tuple(a),
        ..
    } = pk.node(v)?
    else {
        return None;
    };
    if f.starts_with("_rebuild_parameter") {
        return tensor(pk, a.first()?, storages);
    }
    if f != "_rebuild_tensor_v2" {
        return None;
    }
    let [Value::PersistentId(pid), Value::Int(offset), size, stride, ..] = a.as_slice() else {
        return None;
    };
    let (key, kind, _) = storage_id(pid)?;
    let (_, bytes) = storages.get(&key)?;
    let width = element_width(&kind).ok()?;
    let size: Vec<usize> = ints(size)?
        .into_iter()
        .map(|x| usize::try_from(x).ok())
        .collect::<Option<_>>()?;
    let stride: Vec<usize> = ints(stride)?
        .into_iter()
        .map(|x| usize::try_from(x).ok())
        .collect::<Option<_>>()?;
    // A tensor never holds more elements than its storage (module weights are not broadcast
    // views): a hostile size is refused before anything is allocated.
    let count = size.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    if count > bytes.len() / width.max(1) || stride.len() != size.len() {
        return None;
    }
    let offset = usize::try_from(*offset).ok()?;
    let mut out = Vec::with_capacity(count);
    let mut idx = vec![0usize; size.len()];
    for _ in 0..count {
        let e = idx
            .iter()
            .zip(&stride)
            .try_fold(offset, |acc, (i, s)| acc.checked_add(i.checked_mul(*s)?))?;
        let b = bytes.get(e.checked_mul(width)?..e.checked_add(1)?.checked_mul(width)?)?;
        out.push(if width == 4 {
            f32::from_le_bytes([b[0], b[1], b[2], b[3]])
        } else {
            f64::from_le_bytes(b.try_into().ok()?) as f32
        });
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < size[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Some((size, out))
}

fn collect_modules(
    pk: &Pickle,
    module: &Value,
    path: &str,
    storages: &Storages,
    opts: &PickleOptions,
    layers: &mut Vec<LayerSpec>,
) -> Result<(), ImportError> {
    let Some(Node::Object {
        callable, state, ..
    }) = pk.node(module)
    else {
        return Err(TorchError::NotAnObject {
            module: path.to_string(),
        }
        .into());
    };
    // Zip files name the class as a global; legacy files as a persistent id
    // ('module', class, source file, source).
    let (m, class) = match callable {
        Value::Global(m, c) => (m, c),
        Value::PersistentId(pid) => match pid.as_ref() {
            Value::Tuple(t) => match t.as_slice() {
                [Value::Str(tag), Value::Global(m, c), ..] if tag == "module" => (m, c),
                _ => return Err(unknown_class(path)),
            },
            _ => return Err(unknown_class(path)),
        },
        _ => return Err(unknown_class(path)),
    };
    let state = state.clone().unwrap_or_default();
    let name = if path.is_empty() {
        class.clone()
    } else {
        path.to_string()
    };
    let unsupported = || ImportError::Unsupported {
        node: name.clone(),
        op: format!("{m}.{class}"),
        supported: MODULES,
    };
    let fault = |fault: ModuleFault| -> ImportError {
        TorchError::Module {
            module: name.clone(),
            class: class.clone(),
            fault,
        }
        .into()
    };
    let attr = |k: &str| pk.get(&state, k);
    let attr_ints = |attribute: &'static str| -> Result<Vec<usize>, ImportError> {
        let v = attr(attribute)
            .and_then(ints)
            .ok_or_else(|| fault(ModuleFault::NotIntegers { attribute }))?;
        v.into_iter()
            .map(|value| {
                usize::try_from(value)
                    .map_err(|_| fault(ModuleFault::Negative { attribute, value }))
            })
            .collect()
    };
    let pair = |attribute: &'static str| -> Result<[usize; 2], ImportError> {
        match attr_ints(attribute)?.as_slice() {
            &[a] => Ok([a, a]),
            &[a, b] => Ok([a, b]),
            other => Err(fault(ModuleFault::NotAPair {
                attribute,
                values: other.to_vec(),
            })),
        }
    };
    let param = |k: &str| -> Option<(Vec<usize>, Vec<f32>)> {
        let params = pk.get(&state, "_parameters")?;
        let v = pk.get(params, k)?;
        tensor(pk, v, storages)
    };
    let buffer = |k: &str| -> Option<Vec<f32>> {
        let b = pk.get(&state, "_buffers")?;
        tensor(pk, pk.get(b, k)?, storages).map(|t| t.1)
    };
    let missing = |item: &'static str| fault(ModuleFault::Missing { item });
    if opts.square_classes.iter().any(|c| c == class) {
        layers.push(LayerSpec::Square { name: name.clone() });
        return Ok(());
    }
    match class.as_str() {
        "Sequential" => {
            // A module tree that refers back to itself (legal in a pickle's memo) would
            // recurse for ever: nesting is bounded.
            if path.split('.').count() > MAX_NESTING {
                return Err(missing("_modules (nested too deep, or a cycle)"));
            }
            let children = pk
                .get(&state, "_modules")
                .and_then(|v| pk.items(v))
                .ok_or_else(|| missing("_modules"))?;
            for (k, child) in children {
                let key = match k {
                    Value::Str(s) => s.clone(),
                    other => other.to_string(),
                };
                let child_path = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                collect_modules(pk, child, &child_path, storages, opts, layers)?;
            }
        }
        "Conv2d" => {
            let dilation = attr_ints("dilation")?;
            let groups = attr_ints("groups").unwrap_or(vec![1]);
            if dilation.iter().any(|&d| d != 1) || groups != [1] {
                return Err(fault(ModuleFault::DilatedOrGrouped { dilation, groups }));
            }
            if let Some(Value::Str(mode)) = attr("padding_mode") {
                if mode != "zeros" {
                    return Err(fault(ModuleFault::PaddingMode { mode: mode.clone() }));
                }
            }
            let padding = match attr("padding") {
                Some(Value::Str(s)) if s == "valid" => [0, 0],
                Some(Value::Str(s)) => {
                    return Err(fault(ModuleFault::NamedPadding { padding: s.clone() }))
                }
                _ => pair("padding")?,
            };
            let (wshape, weight) = param("weight").ok_or_else(|| missing("weight"))?;
            let &[oc, ic, kh, kw] = wshape.as_slice() else {
                return Err(fault(ModuleFault::WeightRank {
                    shape: wshape,
                    rank: 4,
                }));
            };
            layers.push(LayerSpec::Conv2d {
                name: name.clone(),
                in_channels: ic,
                out_channels: oc,
                kernel: [kh, kw],
                stride: pair("stride")?,
                padding,
                weight,
                bias: param("bias").map(|b| b.1),
            });
        }
        "Linear" => {
            let (wshape, weight) = param("weight").ok_or_else(|| missing("weight"))?;
            let &[outf, inf] = wshape.as_slice() else {
                return Err(fault(ModuleFault::WeightRank {
                    shape: wshape,
                    rank: 2,
                }));
            };
            layers.push(LayerSpec::Linear {
                name: name.clone(),
                in_features: inf,
                out_features: outf,
                weight,
                bias: param("bias").map(|b| b.1),
            });
        }
        "AvgPool2d" | "MaxPool2d" => {
            let kernel = pair("kernel_size")?;
            let stride = match attr("stride") {
                None | Some(Value::None) => kernel,
                Some(Value::Tuple(t)) if t.is_empty() => kernel,
                _ => pair("stride")?,
            };
            let padding = pair("padding")?;
            if matches!(attr("ceil_mode"), Some(Value::Bool(true))) {
                return Err(fault(ModuleFault::CeilMode));
            }
            if class == "AvgPool2d" {
                if matches!(attr("count_include_pad"), Some(Value::Bool(false)))
                    && padding != [0, 0]
                {
                    return Err(fault(ModuleFault::PadExcludedFromCount));
                }
                if !matches!(attr("divisor_override"), None | Some(Value::None)) {
                    return Err(fault(ModuleFault::DivisorOverride));
                }
                layers.push(LayerSpec::AvgPool2d {
                    name: name.clone(),
                    kernel,
                    stride,
                    padding,
                });
            } else {
                if attr_ints("dilation")
                    .unwrap_or(vec![1])
                    .iter()
                    .any(|&d| d != 1)
                {
                    return Err(fault(ModuleFault::DilatedMaxPool));
                }
                layers.push(LayerSpec::MaxPool2d {
                    name: name.clone(),
                    kernel,
                    stride,
                    padding,
                });
            }
        }
        "Flatten" => {
            let start = attr("start_dim").and_then(ints).unwrap_or(vec![1]);
            let end = attr("end_dim").and_then(ints).unwrap_or(vec![-1]);
            if start != [1] || end != [-1] {
                return Err(fault(ModuleFault::FlattenDims { start, end }));
            }
            layers.push(LayerSpec::Flatten { name: name.clone() });
        }
        "BatchNorm1d" | "BatchNorm2d" => {
            let n = buffer("running_mean")
                .ok_or_else(|| missing("running_mean"))?
                .len();
            let eps = match attr("eps") {
                Some(Value::Float(f)) => *f as f32,
                _ => 1e-5,
            };
            layers.push(LayerSpec::BatchNorm {
                gamma: param("weight").map_or(vec![1.0; n], |t| t.1),
                beta: param("bias").map_or(vec![0.0; n], |t| t.1),
                mean: buffer("running_mean").ok_or_else(|| missing("running_mean"))?,
                var: buffer("running_var").ok_or_else(|| missing("running_var"))?,
                eps,
                name: name.clone(),
            });
        }
        "ReLU" => layers.push(LayerSpec::Relu { name: name.clone() }),
        "Tanh" => layers.push(LayerSpec::Tanh { name: name.clone() }),
        "Identity" | "Dropout" => {}
        _ => return Err(unsupported()),
    }
    Ok(())
}

/// The smallest square `[C, S, S]` image (or `[features]` vector) that the layers accept.
pub fn infer_input_shape(spec: &ModelSpec) -> Result<Vec<usize>, ImportError> {
    let first = spec
        .layers
        .iter()
        .find(|l| {
            !matches!(
                l,
                LayerSpec::Square { .. } | LayerSpec::Relu { .. } | LayerSpec::Tanh { .. }
            )
        })
        .ok_or(TorchError::NoShapeLayer)?;
    match first {
        LayerSpec::Linear { in_features, .. } => Ok(vec![*in_features]),
        LayerSpec::Conv2d { in_channels, .. } => {
            const MAX_SIDE: usize = 1024;
            for s in 1..=MAX_SIDE {
                let trial = ModelSpec {
                    input_shape: vec![*in_channels, s, s],
                    ..spec.clone()
                };
                if trial.validate().is_ok() {
                    return Ok(trial.input_shape);
                }
            }
            Err(TorchError::NoSquareInput { max: MAX_SIDE }.into())
        }
        other => Err(TorchError::FirstLayerNoShape {
            layer: other.describe(),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `_rebuild_tensor_v2(storage "0" of 4 floats, offset, size, stride)` as the arena holds it.
    fn rebuild(offset: i64, size: &[i64], stride: &[i64]) -> (Pickle, Value, Storages) {
        let ints = |v: &[i64]| Value::Tuple(v.iter().map(|&x| Value::Int(x)).collect());
        let pid = Value::PersistentId(Box::new(Value::Tuple(vec![
            Value::Str("storage".into()),
            Value::Global("torch".into(), "FloatStorage".into()),
            Value::Str("0".into()),
            Value::Str("cpu".into()),
            Value::Int(4),
        ])));
        let node = Node::Object {
            callable: Value::Global("torch._utils".into(), "_rebuild_tensor_v2".into()),
            args: Value::Tuple(vec![pid, Value::Int(offset), ints(size), ints(stride)]),
            state: None,
            items: vec![],
            elements: vec![],
        };
        let pk = Pickle {
            nodes: vec![node],
            root: Value::Ref(0),
            consumed: 0,
        };
        let bytes: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let storages = Storages::from([("0".to_string(), ("FloatStorage".to_string(), bytes))]);
        (pk, Value::Ref(0), storages)
    }

    #[test]
    fn a_tensor_is_read_within_its_storage_and_hostile_shapes_are_refused() {
        let (pk, v, st) = rebuild(0, &[2, 2], &[1, 2]);
        assert_eq!(
            tensor(&pk, &v, &st),
            Some((vec![2, 2], vec![1.0, 3.0, 2.0, 4.0]))
        );
        let (pk, v, st) = rebuild(1, &[3], &[1]);
        assert_eq!(tensor(&pk, &v, &st), Some((vec![3], vec![2.0, 3.0, 4.0])));
        for (offset, size, stride) in [
            // More elements than the storage holds (before any allocation), sizes whose
            // product overflows, strides and offsets that leave the storage or overflow.
            (0, vec![1i64 << 31, 1 << 31], vec![0i64, 0]),
            (0, vec![i64::MAX, i64::MAX], vec![1, 1]),
            (0, vec![5], vec![1]),
            (0, vec![2], vec![i64::MAX]),
            (i64::MAX, vec![1], vec![1]),
            (3, vec![2], vec![1]),
            (0, vec![2, 2], vec![1]),
        ] {
            let (pk, v, st) = rebuild(offset, &size, &stride);
            assert_eq!(tensor(&pk, &v, &st), None, "{offset} {size:?} {stride:?}");
        }
    }
}
