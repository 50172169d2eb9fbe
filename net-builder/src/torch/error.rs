//! Why a pickled PyTorch model could not be imported: the file, its storages, or a module.

use crate::pickle::{PickleError, Value};
use std::path::PathBuf;

/// A malformed or unsupported PyTorch pickle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TorchError {
    /// The model file is over the size limit.
    #[error("{} is {bytes} bytes, over the {limit}-byte limit", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// The limit ([`super::MAX_PICKLE_BYTES`]).
        limit: u64,
    },
    /// An entry of the model's zip is over the size limit.
    #[error("{entry} is too large: {bytes} bytes, over the {limit}-byte limit")]
    EntryTooLarge {
        /// The zip entry.
        entry: String,
        /// Its uncompressed size.
        bytes: u64,
        /// The limit ([`super::MAX_PICKLE_BYTES`]).
        limit: u64,
    },
    /// A file that starts like a zip but does not open as one.
    #[error("not a readable zip: {0}")]
    Zip(#[source] zip::result::ZipError),
    /// The zip holds no `data.pkl`.
    #[error("the zip has no data.pkl")]
    NoDataPkl,
    /// A zip entry that cannot be opened.
    #[error("{entry}: {source}")]
    ZipEntry {
        /// The entry.
        entry: String,
        /// Why.
        #[source]
        source: zip::result::ZipError,
    },
    /// A zip entry that cannot be read.
    #[error("{entry}: {source}")]
    ZipRead {
        /// The entry.
        entry: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A pickle that does not parse.
    #[error("{part}: {source}")]
    Parse {
        /// Which pickle: the zip's `data.pkl` entry, or a part of a legacy file (magic
        /// number, protocol version, system info, model, storage keys).
        part: String,
        /// The parser's error.
        #[source]
        source: PickleError,
    },
    /// Neither a zip nor a legacy PyTorch file.
    #[error("not a PyTorch file: neither a zip nor the legacy magic number")]
    NotPyTorch,
    /// A legacy file's storage key that is not a string.
    #[error("storage key {found} is not a string")]
    StorageKeyNotString {
        /// The value found.
        found: Value,
    },
    /// A legacy file's storage keys that are not a list.
    #[error("storage keys are not a list")]
    StorageKeysNotList,
    /// A legacy file's storage that ends early.
    #[error("storage {key} is truncated")]
    StorageTruncated {
        /// The storage's key.
        key: String,
    },
    /// A storage of elements other than f32 or f64.
    #[error("storage type {kind} is not supported (FloatStorage, DoubleStorage are)")]
    StorageType {
        /// The storage class.
        kind: String,
    },
    /// A module that is not a pickled object.
    #[error("module {module:?} is not a pickled object")]
    NotAnObject {
        /// The module's path in the model (empty: the root).
        module: String,
    },
    /// A module whose class cannot be read.
    #[error("module {module:?} has an unknown class reference")]
    UnknownClass {
        /// The module's path in the model (empty: the root).
        module: String,
    },
    /// A module that is malformed or maps to no supported layer.
    #[error("{module} ({class}): {fault}")]
    Module {
        /// The module's path in the model (its class for the root).
        module: String,
        /// Its class name.
        class: String,
        /// What is wrong with it.
        #[source]
        fault: ModuleFault,
    },
    /// No layer fixes the input shape.
    #[error("no layer fixes the input shape; give it explicitly")]
    NoShapeLayer,
    /// No square input up to the search limit fits the model.
    #[error("no square input up to {max}×{max} fits; give the input shape")]
    NoSquareInput {
        /// The largest side tried.
        max: usize,
    },
    /// The first shaping layer does not fix the input shape.
    #[error("the first layer ({layer}) does not fix the input shape; give it explicitly")]
    FirstLayerNoShape {
        /// The layer's description.
        layer: String,
    },
}

/// What is wrong with a pickled module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleFault {
    /// An attribute that is absent or not integers.
    #[error("attribute {attribute} is missing or not integers")]
    NotIntegers {
        /// The attribute.
        attribute: &'static str,
    },
    /// An attribute with a negative value.
    #[error("negative {attribute} {value}")]
    Negative {
        /// The attribute.
        attribute: &'static str,
        /// The value.
        value: i64,
    },
    /// An attribute that is not one or two numbers.
    #[error("{attribute} {values:?} is not 1 or 2 numbers")]
    NotAPair {
        /// The attribute.
        attribute: &'static str,
        /// Its values.
        values: Vec<usize>,
    },
    /// A parameter, buffer or attribute the class needs is absent.
    #[error("{item} is missing")]
    Missing {
        /// The parameter, buffer or attribute.
        item: &'static str,
    },
    /// A dilated or grouped convolution.
    #[error(
        "dilated or grouped convolutions are not supported (dilation {dilation:?}, groups \
         {groups:?})"
    )]
    DilatedOrGrouped {
        /// The `dilation` attribute.
        dilation: Vec<usize>,
        /// The `groups` attribute.
        groups: Vec<usize>,
    },
    /// A padding mode other than zeros.
    #[error("padding mode {mode} is not supported")]
    PaddingMode {
        /// The `padding_mode` attribute.
        mode: String,
    },
    /// A padding given by name other than `valid`.
    #[error("padding {padding:?} is not supported")]
    NamedPadding {
        /// The `padding` attribute.
        padding: String,
    },
    /// A weight of another rank.
    #[error("weight shape {shape:?} is not {rank}-D")]
    WeightRank {
        /// Its shape.
        shape: Vec<usize>,
        /// The rank the class takes.
        rank: usize,
    },
    /// A pool with `ceil_mode`.
    #[error("ceil_mode is not supported")]
    CeilMode,
    /// An average pool that pads without counting the padding.
    #[error("count_include_pad=False with padding is not supported")]
    PadExcludedFromCount,
    /// An average pool with `divisor_override`.
    #[error("divisor_override is not supported")]
    DivisorOverride,
    /// A dilated max pool.
    #[error("dilated max pooling is not supported")]
    DilatedMaxPool,
    /// A Flatten of other dimensions.
    #[error("only Flatten(1, -1) is supported, got start_dim {start:?}, end_dim {end:?}")]
    FlattenDims {
        /// The `start_dim` attribute.
        start: Vec<i64>,
        /// The `end_dim` attribute.
        end: Vec<i64>,
    },
}
