//! Why an ONNX file could not be imported: the file, a constant tensor, or a node.

use std::path::PathBuf;

/// A malformed or unsupported ONNX construct.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// The model or an external-data file is over the size limit.
    #[error("{} is {bytes} bytes, over the {limit}-byte limit", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// The limit ([`super::MAX_ONNX_BYTES`]).
        limit: u64,
    },
    /// The bytes are not an ONNX protobuf.
    #[error("not a valid ONNX protobuf: {0}")]
    Decode(#[source] prost::DecodeError),
    /// The model holds no graph.
    #[error("the model has no graph")]
    NoGraph,
    /// Every graph input is an initializer.
    #[error("the graph has no data input")]
    NoDataInput,
    /// The data input's shape is not `[batch, …]` with known sizes.
    #[error("the input's shape {dims:?} is not [batch, …] with known sizes")]
    InputShape {
        /// Its dimensions (`None`: symbolic or unknown).
        dims: Vec<Option<usize>>,
    },
    /// A Pad that no pool follows.
    #[error("the graph ends with a Pad (node {node})")]
    TrailingPad {
        /// The Pad node.
        node: String,
    },
    /// A constant tensor (initializer or `Constant` value) is unusable.
    #[error("tensor {tensor}: {fault}")]
    Tensor {
        /// The tensor's name.
        tensor: String,
        /// What is wrong with it.
        #[source]
        fault: TensorFault,
    },
    /// A node is malformed or maps to no supported layer.
    #[error("node {node} ({op}): {fault}")]
    Node {
        /// The node's name (or its first output, or its op).
        node: String,
        /// Its op type.
        op: String,
        /// What is wrong with it.
        #[source]
        fault: NodeFault,
    },
}

/// What is wrong with a constant tensor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TensorFault {
    /// A dimension below zero.
    #[error("negative dimension in {dims:?}")]
    NegativeDimension {
        /// The dimensions as stored.
        dims: Vec<i64>,
    },
    /// The element count does not fit `usize`.
    #[error("size of shape {dims:?} overflows")]
    SizeOverflow {
        /// The dimensions.
        dims: Vec<usize>,
    },
    /// An element type other than float, double, int32, int64.
    #[error("element type {data_type} is not supported (float, double, int32, int64 are)")]
    ElementType {
        /// The ONNX `TensorProto.DataType` code.
        data_type: i32,
    },
    /// External data without a `location` entry.
    #[error("external data without a location")]
    NoLocation,
    /// External data outside the model's folder.
    #[error("external data location {location:?} must be a file beside the model")]
    LocationOutside {
        /// The location as given.
        location: String,
    },
    /// An external-data `offset` or `length` that is not a number.
    #[error("bad {key} {value:?}")]
    ExternalField {
        /// `offset` or `length`.
        key: &'static str,
        /// The value as given.
        value: String,
        /// Why it does not parse.
        #[source]
        source: std::num::ParseIntError,
    },
    /// External data shorter than its offset and length.
    #[error(
        "external data {location} is shorter than offset + length ({offset} + {length}; the \
         file has {available} bytes)"
    )]
    ExternalShort {
        /// The file beside the model.
        location: String,
        /// Offset asked for.
        offset: usize,
        /// Length asked for.
        length: usize,
        /// The file's size.
        available: usize,
    },
    /// Raw bytes that are not `count` elements of `width` bytes.
    #[error("{bytes} bytes for {count} elements of {width} bytes")]
    ByteCount {
        /// Bytes found.
        bytes: usize,
        /// Elements the shape holds.
        count: usize,
        /// Bytes per element.
        width: usize,
    },
    /// Typed values that do not fill the shape.
    #[error("{values} values for shape {dims:?}")]
    ValueCount {
        /// Values found.
        values: usize,
        /// The shape.
        dims: Vec<usize>,
    },
}

/// What is wrong with a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeFault {
    /// An operator domain other than the default.
    #[error("custom domain {domain:?} is not supported")]
    CustomDomain {
        /// The domain.
        domain: String,
    },
    /// A `Constant` node without a tensor, float or ints value.
    #[error("a constant without a tensor value")]
    ConstantWithoutValue,
    /// The node does not take the previous layer's output.
    #[error(
        "its inputs {inputs:?} are not the output of the previous layer ({previous}); only a \
         chain of layers (a Sequential) is supported"
    )]
    NotAChain {
        /// The node's inputs.
        inputs: Vec<String>,
        /// The previous layer's output.
        previous: String,
    },
    /// An input that must be a constant (weights, a shape, an exponent) is not one.
    #[error("input {index} must be a constant (weights)")]
    InputNotConstant {
        /// The input's position.
        index: usize,
    },
    /// A weight tensor of another rank.
    #[error("weight shape {shape:?} is not {rank}-D")]
    WeightRank {
        /// Its shape.
        shape: Vec<usize>,
        /// The rank the op takes.
        rank: usize,
    },
    /// A Pad that a pool does not follow.
    #[error("a Pad is supported only right before a pool")]
    PadNotBeforePool,
    /// A grouped convolution.
    #[error("grouped convolution (group {group}) is not supported")]
    GroupedConv {
        /// The `group` attribute.
        group: i64,
    },
    /// A dilated convolution.
    #[error("dilated convolution (dilations {dilations:?}) is not supported")]
    DilatedConv {
        /// The `dilations` attribute.
        dilations: Vec<i64>,
    },
    /// A Gemm with `transA`.
    #[error("transA is not supported")]
    TransA,
    /// A bias that is not one value per output.
    #[error(
        "only a per-output bias vector is supported (got {values} values for {outputs} outputs)"
    )]
    BiasShape {
        /// Values in the bias.
        values: usize,
        /// Outputs of the layer.
        outputs: usize,
    },
    /// An Add that is not a MatMul's bias.
    #[error("an Add is supported only as the bias of a MatMul")]
    AddWithoutMatMul,
    /// A MatMul's bias that is not a constant.
    #[error("the bias must be a constant")]
    BiasNotConstant,
    /// A Pad other than symmetric zero padding of H and W.
    #[error(
        "only symmetric zero padding of H and W is supported, got {pads:?} (mode {mode}, value \
         {value})"
    )]
    Pad {
        /// The `pads`, NCHW begins then ends.
        pads: Vec<i64>,
        /// The `mode` attribute.
        mode: String,
        /// The padding value.
        value: f64,
    },
    /// A pool with `ceil_mode`.
    #[error("ceil_mode is not supported")]
    CeilMode,
    /// A Pad before a pool that pads too.
    #[error("a Pad followed by a padded pool is not supported")]
    PadBeforePaddedPool,
    /// An AveragePool that pads without counting the padding.
    #[error(
        "padding without count_include_pad has a varying divisor; export with \
         count_include_pad=True"
    )]
    PadExcludedFromCount,
    /// A Flatten on another axis.
    #[error("only Flatten with axis 1 is supported, got axis {axis}")]
    FlattenAxis {
        /// The `axis` attribute.
        axis: i64,
    },
    /// A Reshape to something other than `[batch, features]`.
    #[error("only a reshape to [batch, features] is supported, got {shape:?}")]
    ReshapeTarget {
        /// The target shape.
        shape: Vec<f64>,
    },
    /// A Mul of two different tensors.
    #[error("only Mul(x, x), a square, is supported")]
    MulNotSquare,
    /// A Pow with an exponent other than 2.
    #[error("only the exponent 2 is supported, got {exponent:?}")]
    PowExponent {
        /// The exponent tensor's values.
        exponent: Vec<f64>,
    },
    /// A BatchNormalization in training mode.
    #[error("training-mode batch normalization is not supported")]
    TrainingBatchNorm,
    /// An attribute that should be two non-negative numbers.
    #[error("{attribute} {values:?} is not two non-negative numbers")]
    NotAPair {
        /// The attribute.
        attribute: &'static str,
        /// Its values.
        values: Vec<i64>,
    },
    /// An `auto_pad` other than `NOTSET`.
    #[error("auto_pad {auto_pad} is not supported")]
    AutoPad {
        /// The attribute's value.
        auto_pad: String,
    },
    /// Padding that differs between the two sides.
    #[error("asymmetric padding {pads:?} is not supported")]
    AsymmetricPadding {
        /// The `pads` attribute, begins then ends.
        pads: Vec<i64>,
    },
}
