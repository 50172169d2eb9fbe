//! Where a packed tensor's values sit: for every activation, the (ciphertext, column) spots
//! holding a copy of it. A ciphertext's slots are two rows of `N/2` columns; row r holds image
//! r of the ciphertext's group, so every rotation and every plaintext acts on both images alike.

/// One copy of a value: which ciphertext of the group, which column of its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Spot {
    /// Ciphertext index within the group.
    pub(crate) ct: u32,
    /// Column, below the row width.
    pub(crate) col: u32,
}

/// A channel-planar tensor `[C, H, W]` on an affine grid: channel c's value (y, x) sits at
/// column `base_c + y·sy + x·sx` (mod the row width) of ciphertext `ct_c`. Convolutions and
/// poolings on a grid share one rotation per kernel tap across all positions.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Grid {
    /// Per channel: ciphertext and column of (0, 0).
    pub(crate) channels: Vec<(u32, i64)>,
    /// Height and width of each channel.
    pub(crate) hw: [usize; 2],
    /// Column step per row and per column of the image.
    pub(crate) step: [i64; 2],
}

/// Where every activation of one image group's tensor sits (the packed layout's
/// [`Packing`](crate::plan::Packing)).
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// Ciphertexts per group.
    pub(crate) cts: usize,
    /// Columns per row.
    pub(crate) width: usize,
    /// Per activation, its copies (the first is the one read back; an activation no layer
    /// reads may have none).
    pub(crate) copies: Vec<Vec<Spot>>,
    /// Per ciphertext: whether columns holding no copy may be nonzero ("dirty": the partial
    /// sums a cheaper step leaves; the next linear step never reads them).
    pub(crate) dirty: Vec<bool>,
    /// The grid, for channel-planar tensors placed on one.
    pub(crate) grid: Option<Grid>,
    /// For the client's arrangement of a convolution's input: its output positions P (tap k
    /// of position p at flat spot k·P + p).
    pub(crate) im2col: Option<usize>,
}

impl Placement {
    /// Activation a at column a of ciphertext 0, a + width at ciphertext 1, and so on; a
    /// `[C, H, W]` shape gets the grid this is (channels one after another).
    pub(crate) fn compact(shape: &[usize], width: usize) -> Self {
        let len: usize = shape.iter().product();
        let copies: Vec<Vec<Spot>> = (0..len).map(|a| vec![spot_at(a, width)]).collect();
        let cts = len.div_ceil(width).max(1);
        let grid = match shape {
            &[c, h, w] if len <= width => Some(Grid {
                channels: (0..c).map(|ch| (0, (ch * h * w) as i64)).collect(),
                hw: [h, w],
                step: [w as i64, 1],
            }),
            _ => None,
        };
        Self {
            cts,
            width,
            copies,
            dirty: vec![false; cts],
            grid,
            im2col: None,
        }
    }

    /// Each channel of a `[C, H, W]` output in a ciphertext of its own, value (y, x) at
    /// column y·W + x.
    pub(crate) fn per_channel(channels: usize, hw: [usize; 2], width: usize) -> Self {
        let plane = hw[0] * hw[1];
        let copies = (0..channels * plane)
            .map(|a| {
                vec![Spot {
                    ct: (a / plane) as u32,
                    col: (a % plane) as u32,
                }]
            })
            .collect();
        Self {
            cts: channels.max(1),
            width,
            copies,
            dirty: vec![false; channels.max(1)],
            grid: Some(Grid {
                channels: (0..channels).map(|c| (c as u32, 0)).collect(),
                hw,
                step: [hw[1] as i64, 1],
            }),
            im2col: None,
        }
    }

    /// Each channel in a ciphertext of its own, on the grid `grid` (its `channels` give the
    /// columns of (0, 0); the caller checks the positions are distinct modulo the width).
    pub(crate) fn on_grid(grid: Grid, width: usize) -> Self {
        let [h, w] = grid.hw;
        let mut copies = Vec::with_capacity(grid.channels.len() * h * w);
        for &(ct, base) in &grid.channels {
            for y in 0..h {
                for x in 0..w {
                    let col = (base + y as i64 * grid.step[0] + x as i64 * grid.step[1])
                        .rem_euclid(width as i64);
                    copies.push(vec![Spot {
                        ct,
                        col: col as u32,
                    }]);
                }
            }
        }
        let cts = grid
            .channels
            .iter()
            .map(|&(ct, _)| ct as usize + 1)
            .max()
            .unwrap_or(1);
        Self {
            cts,
            width,
            copies,
            dirty: vec![false; cts],
            grid: Some(grid),
            im2col: None,
        }
    }

    /// The client's arrangement of a convolution's input (im2col): tap k of output position p
    /// at flat spot k·P + p, for `taps[p][k]` = the input activation it reads (`None`:
    /// padding, left zero). Activations no tap reads are placed after the taps, so the input
    /// still reads back whole. `None` if it does not fit in `max_cts` ciphertexts.
    pub(crate) fn im2col(
        inputs: usize,
        taps: &[Vec<Option<usize>>],
        width: usize,
        max_cts: usize,
    ) -> Option<Self> {
        let positions = taps.len();
        let per = taps.first().map_or(0, Vec::len);
        let mut copies: Vec<Vec<Spot>> = vec![Vec::new(); inputs];
        for (p, row) in taps.iter().enumerate() {
            for (k, tap) in row.iter().enumerate() {
                if let Some(&i) = tap.as_ref() {
                    copies.get_mut(i)?.push(spot_at(k * positions + p, width));
                }
            }
        }
        let mut next = per * positions;
        for c in copies.iter_mut().filter(|c| c.is_empty()) {
            c.push(spot_at(next, width));
            next += 1;
        }
        for c in &mut copies {
            c.sort_unstable();
        }
        let cts = next.div_ceil(width).max(1);
        if cts > max_cts {
            return None;
        }
        Some(Self {
            cts,
            width,
            copies,
            dirty: vec![false; cts],
            grid: None,
            im2col: Some(positions),
        })
    }

    /// Number of activations.
    pub fn len(&self) -> usize {
        self.copies.len()
    }

    /// Whether there are no activations.
    pub fn is_empty(&self) -> bool {
        self.copies.is_empty()
    }

    /// Ciphertexts per group of two images.
    pub fn ciphertexts(&self) -> usize {
        self.cts
    }

    /// Columns per row of slots.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Per activation, its copies as flat indices ct · width + column (what `/plan` sends).
    pub fn flat_copies(&self) -> Vec<Vec<u64>> {
        self.copies
            .iter()
            .map(|c| {
                c.iter()
                    .map(|s| s.ct as u64 * self.width as u64 + s.col as u64)
                    .collect()
            })
            .collect()
    }

    /// A placement received from a server: `ciphertexts` per group, rows of `width` columns,
    /// per activation its flat copies. `None` unless every copy lies inside and no spot
    /// holds two values (a client never trusts what it did not compute).
    pub fn from_flat(ciphertexts: usize, width: usize, copies: &[Vec<u64>]) -> Option<Self> {
        if width == 0 || ciphertexts == 0 {
            return None;
        }
        let total = (ciphertexts as u64).checked_mul(width as u64)?;
        let mut seen = std::collections::HashSet::new();
        let copies = copies
            .iter()
            .map(|c| {
                c.iter()
                    .map(|&f| {
                        (f < total && seen.insert(f)).then(|| Spot {
                            ct: (f / width as u64) as u32,
                            col: (f % width as u64) as u32,
                        })
                    })
                    .collect::<Option<Vec<_>>>()
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            cts: ciphertexts,
            width,
            copies,
            dirty: vec![false; ciphertexts],
            grid: None,
            im2col: None,
        })
    }

    /// The slot vectors of every ciphertext of `x` (image 2g + r in row r of group g).
    pub(crate) fn slot_vectors(&self, x: &crate::tensor::IntTensor) -> Vec<Vec<i128>> {
        let images = x.batch();
        let rows = crate::plan::packing::ROWS;
        (0..images.div_ceil(rows))
            .flat_map(|g| {
                let mut v = vec![vec![0i128; rows * self.width]; self.cts];
                for (a, copies) in self.copies.iter().enumerate() {
                    let values = x.activation(a);
                    for r in 0..rows.min(images - g * rows) {
                        let value = values[g * rows + r];
                        for s in copies {
                            v[s.ct as usize][r * self.width + s.col as usize] = value;
                        }
                    }
                }
                v
            })
            .collect()
    }

    /// Reads every activation's first copy back from decrypted slots (`[activation ·
    /// images + image]`).
    pub(crate) fn read_back(
        &self,
        slots: &[Vec<i128>],
        images: usize,
    ) -> Result<Vec<i128>, crate::model::ModelError> {
        let rows = crate::plan::packing::ROWS;
        let missing = || crate::model::ModelError::CiphertextCount {
            expected: self.cts * images.div_ceil(rows),
            found: slots.len(),
        };
        let mut data = vec![0i128; self.len() * images];
        for a in 0..self.len() {
            let Some(s) = self.primary(a) else {
                continue;
            };
            for j in 0..images {
                let (g, r) = (j / rows, j % rows);
                data[a * images + j] = *slots
                    .get(g * self.cts + s.ct as usize)
                    .and_then(|v| v.get(r * self.width + s.col as usize))
                    .ok_or_else(missing)?;
            }
        }
        Ok(data)
    }

    /// The spot read back for activation a.
    pub(crate) fn primary(&self, a: usize) -> Option<Spot> {
        self.copies.get(a).and_then(|c| c.first().copied())
    }
}

/// The spot of flat index i when ciphertexts are filled one after another.
pub(crate) fn spot_at(i: usize, width: usize) -> Spot {
    Spot {
        ct: (i / width) as u32,
        col: (i % width) as u32,
    }
}
