//! Why an image or label file, or a run of the integer mirror on it, is unusable.

use he_layers::model::ModelError;
use std::path::PathBuf;

/// An image or label file is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A gzipped file that decompresses to more than the limit.
    #[error("{} is too large: over {limit} bytes uncompressed", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit ([`super::MAX_DATA_BYTES`]).
        limit: u64,
    },
    /// An IDX file that is malformed or holds something else than asked for.
    #[error("{}: {fault}", path.display())]
    Idx {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        fault: IdxFault,
    },
    /// A PNG file that cannot be used.
    #[error("{}: {fault}", path.display())]
    Png {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        fault: PngFault,
    },
    /// Images of different sizes put in one batch.
    #[error("inconsistent image sizes")]
    InconsistentImages,
    /// The integer mirror refused the images (quantizing or running them).
    #[error("{0}")]
    Model(#[from] ModelError),
}

/// What is wrong with an IDX file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdxFault {
    /// No IDX magic number.
    #[error("not an IDX file")]
    NotIdx,
    /// An element type other than unsigned bytes.
    #[error("only unsigned-byte IDX data (type 0x08) is supported, found type 0x{code:02x}")]
    ElementType {
        /// The type code found.
        code: u8,
    },
    /// The header ends early or has no dimensions.
    #[error("truncated header")]
    TruncatedHeader,
    /// The data is not as long as the dimensions say.
    #[error("the size does not match the dimensions {dims:?} ({bytes} data bytes)")]
    SizeMismatch {
        /// The dimensions.
        dims: Vec<usize>,
        /// Bytes after the header.
        bytes: usize,
    },
    /// Not a 3-D image array.
    #[error("expected images [count, height, width], found {dims:?}")]
    NotImages {
        /// The dimensions found.
        dims: Vec<usize>,
    },
    /// Images past the end of the file.
    #[error("images {first}..{end} requested, the file has {available}")]
    ImageRange {
        /// First image asked for.
        first: usize,
        /// One past the last image asked for.
        end: usize,
        /// Images in the file.
        available: usize,
    },
    /// Not a 1-D label array.
    #[error("not a label file (dimensions {dims:?})")]
    NotLabels {
        /// The dimensions found.
        dims: Vec<usize>,
    },
    /// Labels past the end of the file.
    #[error("fewer than {needed} labels (the file has {available})")]
    TooFewLabels {
        /// Labels needed (first + count).
        needed: usize,
        /// Labels in the file.
        available: usize,
    },
}

/// What is wrong with a PNG file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PngFault {
    /// The decoder refused it.
    #[error("{0}")]
    Decode(#[source] png::DecodingError),
    /// More pixels than the limit.
    #[error("image too large ({width}×{height}; at most {max_pixels} pixels)")]
    TooLarge {
        /// Width.
        width: usize,
        /// Height.
        height: usize,
        /// The limit.
        max_pixels: usize,
    },
    /// A palette image left after expansion.
    #[error("palette images are not supported")]
    Palette,
}
