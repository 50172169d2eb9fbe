//! ONNX import in pure Rust: the few onnx.proto messages we need, decoded with `prost`, and a
//! mapping of the node patterns `torch.onnx.export` emits for a Sequential of supported layers
//! (both the TorchScript exporter, `dynamo=False`, and the dynamo exporter, whose weights may sit
//! in `model.onnx.data` beside the model).

use crate::spec::{LayerSpec, ModelSpec};
use crate::ImportError;
use prost::Message;
use std::collections::HashMap;
use std::path::Path;

mod attributes;
mod error;
#[allow(missing_docs)]
mod proto;
mod tensor;

pub use error::{NodeFault, OnnxError, TensorFault};

use attributes::{attr, attr_int, attr_ints, pads, pair};
use tensor::{bad, read_capped, tensor_values, Constant};

/// Largest ONNX file or external-data file read.
pub const MAX_ONNX_BYTES: u64 = 512 << 20;

/// The op types this importer maps, for error messages.
pub const SUPPORTED_OPS: &str = "Conv, Gemm, MatMul+Add, AveragePool, Pad (zeros, before a pool), \
    Flatten, Reshape (to [N, features]), Mul(x, x), Pow(x, 2), BatchNormalization, Identity, \
    Constant, and as plaintext-only layers Relu, Tanh, MaxPool";

/// Reads an ONNX model file (and its external data beside it) into a `ModelSpec`.
pub fn load_onnx(path: &Path) -> Result<ModelSpec, ImportError> {
    let bytes = read_capped(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    // models/<net>/model.onnx is named after its folder.
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().trim_end_matches(".dynamo").to_string())
        .unwrap_or_else(|| "model".into());
    let name = match (stem.as_str(), dir.file_name()) {
        ("model", Some(d)) => d.to_string_lossy().into_owned(),
        _ => stem,
    };
    read_onnx(&bytes, dir, &name)
}

/// Reads ONNX bytes; external data is looked up in `dir`.
pub fn read_onnx(bytes: &[u8], dir: &Path, name: &str) -> Result<ModelSpec, ImportError> {
    let model = proto::ModelProto::decode(bytes).map_err(OnnxError::Decode)?;
    let graph = model.graph.ok_or(OnnxError::NoGraph)?;
    let mut constants: HashMap<String, Constant> = HashMap::new();
    for t in &graph.initializer {
        let c = tensor_values(t, dir)?;
        constants.insert(t.name.clone().unwrap_or_default(), c);
    }
    // The data input: the first graph input that is not an initializer.
    let input = graph
        .input
        .iter()
        .find(|i| !constants.contains_key(i.name.as_deref().unwrap_or_default()))
        .ok_or(OnnxError::NoDataInput)?;
    let dims: Vec<Option<usize>> = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .map(|d| d.dim_value.filter(|&v| v > 0).map(|v| v as usize))
                .collect()
        })
        .unwrap_or_default();
    if dims.len() < 2 || dims[1..].iter().any(Option::is_none) {
        return Err(OnnxError::InputShape { dims }.into());
    }
    let input_shape: Vec<usize> = dims[1..].iter().map(|d| d.unwrap_or(0)).collect();

    let mut current = input.name.clone().unwrap_or_default();
    let mut layers: Vec<LayerSpec> = Vec::new();
    let mut pending_pad: Option<(String, [usize; 2])> = None;
    let mut pending_matmul: Option<(String, usize, usize, Vec<f32>)> = None;
    for n in &graph.node {
        let op = n.op_type.clone().unwrap_or_default();
        let node = n
            .name
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| n.output.first().cloned())
            .unwrap_or_else(|| op.clone());
        if let Some(domain) = n
            .domain
            .as_deref()
            .filter(|d| !d.is_empty() && *d != "ai.onnx")
        {
            return Err(bad(
                &node,
                &op,
                NodeFault::CustomDomain {
                    domain: domain.to_string(),
                },
            ));
        }
        let out = n.output.first().cloned().unwrap_or_default();
        if op == "Constant" {
            let t = attr(n, "value")
                .and_then(|a| a.t.as_ref())
                .map(|t| tensor_values(t, dir))
                .transpose()?
                .or_else(|| {
                    attr(n, "value_float").and_then(|a| a.f).map(|f| Constant {
                        dims: vec![],
                        values: vec![f as f64],
                    })
                })
                .or_else(|| {
                    attr(n, "value_ints").map(|a| Constant {
                        dims: vec![a.ints.len()],
                        values: a.ints.iter().map(|&v| v as f64).collect(),
                    })
                })
                .ok_or_else(|| bad(&node, &op, NodeFault::ConstantWithoutValue))?;
            constants.insert(out, t);
            continue;
        }
        // Every other node takes the current activation as its data input.
        let data_inputs: Vec<&String> = n
            .input
            .iter()
            .filter(|i| !i.is_empty() && !constants.contains_key(*i))
            .collect();
        let uses_current = data_inputs.iter().all(|i| **i == current) && !data_inputs.is_empty();
        if !uses_current {
            return Err(bad(
                &node,
                &op,
                NodeFault::NotAChain {
                    inputs: n.input.clone(),
                    previous: current,
                },
            ));
        }
        let constant = |i: usize| -> Result<&Constant, ImportError> {
            n.input
                .get(i)
                .and_then(|name| constants.get(name))
                .ok_or_else(|| bad(&node, &op, NodeFault::InputNotConstant { index: i }))
        };
        let to_f32 = |c: &Constant| c.values.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        if op != "Add" {
            // A MatMul not followed by a bias Add is a Linear without bias.
            if let Some((name, in_features, out_features, weight)) = pending_matmul.take() {
                layers.push(LayerSpec::Linear {
                    name,
                    in_features,
                    out_features,
                    weight,
                    bias: None,
                });
            }
        }
        if pending_pad.is_some() && !matches!(op.as_str(), "AveragePool" | "MaxPool") {
            return Err(bad(&node, &op, NodeFault::PadNotBeforePool));
        }
        match op.as_str() {
            "Identity" => {}
            "Conv" => {
                let group = attr_int(n, "group").unwrap_or(1);
                if group != 1 {
                    return Err(bad(&node, &op, NodeFault::GroupedConv { group }));
                }
                if let Some(dilations) =
                    attr_ints(n, "dilations").filter(|d| d.iter().any(|&x| x != 1))
                {
                    return Err(bad(&node, &op, NodeFault::DilatedConv { dilations }));
                }
                let w = constant(1)?;
                let &[oc, ic, kh, kw] = w.dims.as_slice() else {
                    return Err(bad(
                        &node,
                        &op,
                        NodeFault::WeightRank {
                            shape: w.dims.clone(),
                            rank: 4,
                        },
                    ));
                };
                let bias = if n.input.len() > 2 && !n.input[2].is_empty() {
                    Some(to_f32(constant(2)?))
                } else {
                    None
                };
                let stride = pair(
                    &attr_ints(n, "strides").unwrap_or(vec![1, 1]),
                    &node,
                    &op,
                    "strides",
                )?;
                layers.push(LayerSpec::Conv2d {
                    name: node.clone(),
                    in_channels: ic,
                    out_channels: oc,
                    kernel: [kh, kw],
                    stride,
                    padding: pads(n, &node, &op)?,
                    weight: to_f32(w),
                    bias,
                });
            }
            "Gemm" => {
                let alpha = attr(n, "alpha").and_then(|a| a.f).unwrap_or(1.0);
                let beta = attr(n, "beta").and_then(|a| a.f).unwrap_or(1.0);
                if attr_int(n, "transA").unwrap_or(0) != 0 {
                    return Err(bad(&node, &op, NodeFault::TransA));
                }
                let w = constant(1)?;
                let &[d0, d1] = w.dims.as_slice() else {
                    return Err(bad(
                        &node,
                        &op,
                        NodeFault::WeightRank {
                            shape: w.dims.clone(),
                            rank: 2,
                        },
                    ));
                };
                let trans_b = attr_int(n, "transB").unwrap_or(0) != 0;
                let (outf, inf) = if trans_b { (d0, d1) } else { (d1, d0) };
                let mut weight = vec![0f32; outf * inf];
                for o in 0..outf {
                    for i in 0..inf {
                        let v = if trans_b {
                            w.values[o * inf + i]
                        } else {
                            w.values[i * outf + o]
                        };
                        weight[o * inf + i] = (v * alpha as f64) as f32;
                    }
                }
                let bias = if n.input.len() > 2 && !n.input[2].is_empty() {
                    let b = constant(2)?;
                    if b.values.len() != outf {
                        return Err(bad(
                            &node,
                            &op,
                            NodeFault::BiasShape {
                                values: b.values.len(),
                                outputs: outf,
                            },
                        ));
                    }
                    Some(b.values.iter().map(|&v| (v * beta as f64) as f32).collect())
                } else {
                    None
                };
                layers.push(LayerSpec::Linear {
                    name: node.clone(),
                    in_features: inf,
                    out_features: outf,
                    weight,
                    bias,
                });
            }
            "MatMul" => {
                let w = constant(1)?;
                let &[inf, outf] = w.dims.as_slice() else {
                    return Err(bad(
                        &node,
                        &op,
                        NodeFault::WeightRank {
                            shape: w.dims.clone(),
                            rank: 2,
                        },
                    ));
                };
                let mut weight = vec![0f32; outf * inf];
                for o in 0..outf {
                    for i in 0..inf {
                        weight[o * inf + i] = w.values[i * outf + o] as f32;
                    }
                }
                pending_matmul = Some((node.clone(), inf, outf, weight));
            }
            "Add" => {
                let Some((mname, inf, outf, weight)) = pending_matmul.take() else {
                    return Err(bad(&node, &op, NodeFault::AddWithoutMatMul));
                };
                let b = n
                    .input
                    .iter()
                    .find_map(|i| constants.get(i))
                    .ok_or_else(|| bad(&node, &op, NodeFault::BiasNotConstant))?;
                if b.values.len() != outf {
                    return Err(bad(
                        &node,
                        &op,
                        NodeFault::BiasShape {
                            values: b.values.len(),
                            outputs: outf,
                        },
                    ));
                }
                layers.push(LayerSpec::Linear {
                    name: mname,
                    in_features: inf,
                    out_features: outf,
                    weight,
                    bias: Some(to_f32(b)),
                });
            }
            "Pad" => {
                let mode = attr(n, "mode")
                    .and_then(|a| a.s.clone())
                    .unwrap_or_else(|| b"constant".to_vec());
                let p: Vec<i64> = match attr_ints(n, "pads") {
                    Some(p) => p,
                    None => constant(1)?.values.iter().map(|&v| v as i64).collect(),
                };
                let value = n
                    .input
                    .get(2)
                    .and_then(|i| constants.get(i))
                    .map_or(0.0, |c| c.values.first().copied().unwrap_or(0.0));
                // NCHW pads: [n0, c0, h0, w0, n1, c1, h1, w1].
                match p.as_slice() {
                    &[0, 0, h0, w0, 0, 0, h1, w1]
                        if mode == b"constant"
                            && value == 0.0
                            && h0 == h1
                            && w0 == w1
                            && h0 >= 0
                            && w0 >= 0 =>
                    {
                        pending_pad = Some((node.clone(), [h0 as usize, w0 as usize]));
                    }
                    _ => {
                        return Err(bad(
                            &node,
                            &op,
                            NodeFault::Pad {
                                pads: p,
                                mode: String::from_utf8_lossy(&mode).into_owned(),
                                value,
                            },
                        ))
                    }
                }
            }
            "AveragePool" | "MaxPool" => {
                if attr_int(n, "ceil_mode").unwrap_or(0) != 0 {
                    return Err(bad(&node, &op, NodeFault::CeilMode));
                }
                let kernel = pair(
                    &attr_ints(n, "kernel_shape").unwrap_or_default(),
                    &node,
                    &op,
                    "kernel_shape",
                )?;
                let stride = pair(
                    &attr_ints(n, "strides").unwrap_or(vec![1, 1]),
                    &node,
                    &op,
                    "strides",
                )?;
                let mut padding = pads(n, &node, &op)?;
                if let Some((_, p)) = pending_pad.take() {
                    if padding != [0, 0] {
                        return Err(bad(&node, &op, NodeFault::PadBeforePaddedPool));
                    }
                    padding = p;
                } else if op == "AveragePool"
                    && padding != [0, 0]
                    && attr_int(n, "count_include_pad").unwrap_or(0) == 0
                {
                    return Err(bad(&node, &op, NodeFault::PadExcludedFromCount));
                }
                layers.push(if op == "AveragePool" {
                    LayerSpec::AvgPool2d {
                        name: node.clone(),
                        kernel,
                        stride,
                        padding,
                    }
                } else {
                    LayerSpec::MaxPool2d {
                        name: node.clone(),
                        kernel,
                        stride,
                        padding,
                    }
                });
            }
            "Flatten" => {
                let axis = attr_int(n, "axis").unwrap_or(1);
                if axis != 1 {
                    return Err(bad(&node, &op, NodeFault::FlattenAxis { axis }));
                }
                layers.push(LayerSpec::Flatten { name: node.clone() });
            }
            "Reshape" => {
                let shape = constant(1)?;
                if shape.values.len() != 2 {
                    return Err(bad(
                        &node,
                        &op,
                        NodeFault::ReshapeTarget {
                            shape: shape.values.clone(),
                        },
                    ));
                }
                layers.push(LayerSpec::Flatten { name: node.clone() });
            }
            "Mul" => {
                if n.input.len() != 2 || n.input[0] != n.input[1] {
                    return Err(bad(&node, &op, NodeFault::MulNotSquare));
                }
                layers.push(LayerSpec::Square { name: node.clone() });
            }
            "Pow" => {
                let e = constant(1)?;
                if e.values != [2.0] {
                    return Err(bad(
                        &node,
                        &op,
                        NodeFault::PowExponent {
                            exponent: e.values.clone(),
                        },
                    ));
                }
                layers.push(LayerSpec::Square { name: node.clone() });
            }
            "BatchNormalization" => {
                if attr_int(n, "training_mode").unwrap_or(0) != 0 {
                    return Err(bad(&node, &op, NodeFault::TrainingBatchNorm));
                }
                let eps = attr(n, "epsilon").and_then(|a| a.f).unwrap_or(1e-5);
                layers.push(LayerSpec::BatchNorm {
                    name: node.clone(),
                    gamma: to_f32(constant(1)?),
                    beta: to_f32(constant(2)?),
                    mean: to_f32(constant(3)?),
                    var: to_f32(constant(4)?),
                    eps,
                });
            }
            "Relu" => layers.push(LayerSpec::Relu { name: node.clone() }),
            "Tanh" => layers.push(LayerSpec::Tanh { name: node.clone() }),
            other => {
                return Err(ImportError::Unsupported {
                    node,
                    op: other.to_string(),
                    supported: SUPPORTED_OPS,
                })
            }
        }
        current = out;
    }
    if let Some((name, in_features, out_features, weight)) = pending_matmul {
        layers.push(LayerSpec::Linear {
            name,
            in_features,
            out_features,
            weight,
            bias: None,
        });
    }
    if let Some((node, _)) = pending_pad {
        return Err(OnnxError::TrailingPad { node }.into());
    }
    Ok(ModelSpec {
        name: name.to_string(),
        input_shape,
        layers,
    })
}
