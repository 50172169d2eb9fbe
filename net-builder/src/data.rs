//! Images from disk: IDX files (the MNIST and Fashion-MNIST formats, gzipped or not) and PNG,
//! as pixel/255 floats in the batch layout the models take.

use crate::ImportError;
use flate2::read::GzDecoder;
use he_layers::tensor::FloatTensor;
use std::io::Read;
use std::path::Path;

mod error;

pub use error::{DataError, IdxFault, PngFault};

/// Largest image file read (a 10,000-image IDX set is 7.8 MB uncompressed).
pub const MAX_DATA_BYTES: u64 = 256 << 20;

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, ImportError> {
    let io = |e| ImportError::io(path, e);
    let raw = std::fs::read(path).map_err(io)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .take(MAX_DATA_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(io)?;
        if out.len() as u64 > MAX_DATA_BYTES {
            return Err(DataError::TooLarge {
                path: path.to_path_buf(),
                limit: MAX_DATA_BYTES,
            }
            .into());
        }
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// An IDX array of unsigned bytes: its dimensions and data.
pub struct Idx {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// The bytes, row-major.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes (type 0x08), gzipped or not.
pub fn read_idx(path: &Path) -> Result<Idx, ImportError> {
    let bytes = read_maybe_gz(path)?;
    let bad = |fault| idx_error(path, fault);
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(IdxFault::NotIdx));
    }
    if bytes[2] != 0x08 {
        return Err(bad(IdxFault::ElementType { code: bytes[2] }));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if ndim == 0 || bytes.len() < header {
        return Err(bad(IdxFault::TruncatedHeader));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let len = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if len != Some(bytes.len() - header) {
        return Err(bad(IdxFault::SizeMismatch {
            dims,
            bytes: bytes.len() - header,
        }));
    }
    Ok(Idx {
        dims,
        data: bytes[header..].to_vec(),
    })
}

fn idx_error(path: &Path, fault: IdxFault) -> ImportError {
    DataError::Idx {
        path: path.to_path_buf(),
        fault,
    }
    .into()
}

fn png_error(path: &Path, fault: PngFault) -> ImportError {
    DataError::Png {
        path: path.to_path_buf(),
        fault,
    }
    .into()
}

/// Images `[count, H, W]` from an IDX file, starting at `first`, as a `[1, H, W]` batch with
/// values pixel/255.
pub fn idx_images(path: &Path, first: usize, count: usize) -> Result<FloatTensor, ImportError> {
    let idx = read_idx(path)?;
    let &[n, h, w] = idx.dims.as_slice() else {
        return Err(idx_error(path, IdxFault::NotImages { dims: idx.dims }));
    };
    let end = first
        .checked_add(count)
        .filter(|&e| e <= n)
        .ok_or_else(|| {
            idx_error(
                path,
                IdxFault::ImageRange {
                    first,
                    end: first.saturating_add(count),
                    available: n,
                },
            )
        })?;
    let images: Vec<Vec<f64>> = (first..end)
        .map(|i| {
            idx.data[i * h * w..(i + 1) * h * w]
                .iter()
                .map(|&p| p as f64 / 255.0)
                .collect()
        })
        .collect();
    FloatTensor::from_images(vec![1, h, w], &images)
        .ok_or_else(|| DataError::InconsistentImages.into())
}

/// Labels from an IDX label file, `count` starting at `first`.
pub fn idx_labels(path: &Path, first: usize, count: usize) -> Result<Vec<usize>, ImportError> {
    let idx = read_idx(path)?;
    if idx.dims.len() != 1 {
        return Err(idx_error(path, IdxFault::NotLabels { dims: idx.dims }));
    }
    idx.data
        .get(first..first.saturating_add(count))
        .map(|s| s.iter().map(|&l| l as usize).collect())
        .ok_or_else(|| {
            idx_error(
                path,
                IdxFault::TooFewLabels {
                    needed: first.saturating_add(count),
                    available: idx.data.len(),
                },
            )
        })
}

/// A PNG image as `[C, H, W]` floats pixel/255: C = 1 for grayscale, 3 for colour (an alpha
/// channel is dropped; 16-bit samples are scaled to 8).
pub fn png_image(path: &Path) -> Result<(Vec<usize>, Vec<f64>), ImportError> {
    let file = std::fs::File::open(path).map_err(|e| ImportError::io(path, e))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let decode = |e| png_error(path, PngFault::Decode(e));
    let mut reader = decoder.read_info().map_err(decode)?;
    let (w, h) = (reader.info().width as usize, reader.info().height as usize);
    const MAX_PIXELS: usize = 4096 * 4096;
    if w.saturating_mul(h) > MAX_PIXELS {
        return Err(png_error(
            path,
            PngFault::TooLarge {
                width: w,
                height: h,
                max_pixels: MAX_PIXELS,
            },
        ));
    }
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).map_err(decode)?;
    let bytes = &buf[..frame.buffer_size()];
    let channels = match frame.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err(png_error(path, PngFault::Palette)),
    };
    let keep = if channels <= 2 { 1 } else { 3 };
    let mut out = vec![0.0; keep * h * w];
    for y in 0..h {
        for x in 0..w {
            for c in 0..keep {
                out[(c * h + y) * w + x] = bytes[(y * w + x) * channels + c] as f64 / 255.0;
            }
        }
    }
    Ok((vec![keep, h, w], out))
}
