//! The batch layout's encrypted forward of each layer: every activation is one ciphertext
//! (slot j: image j), so Conv2d and Linear are fused dot products with integer scalars, Square
//! is one product per ciphertext, AvgPool2d a window sum and Flatten a renaming. The layers
//! only describe (connections, biases, windows); the operations are chosen here.

use crate::layers::{shape_error, Affine, EncodedLayer, HeBackend, LayerError};
use crate::tensor::EncryptedTensor;
use rayon::prelude::*;

/// One layer on a batch-layout tensor: the layer's ciphertexts, with the shape, scale and
/// interval its `output_info` predicts.
pub(crate) fn forward_layer<B: HeBackend>(
    layer: &EncodedLayer,
    x: &EncryptedTensor<B::Ciphertext>,
    backend: &B,
) -> Result<EncryptedTensor<B::Ciphertext>, LayerError> {
    let out = layer.output_info(&x.info())?;
    let expected: usize = x.shape.iter().product();
    if x.cts.len() != expected {
        return Err(shape_error(
            layer.name(),
            format!("{expected} ciphertexts"),
            &x.shape,
        ));
    }
    let cts = match layer {
        EncodedLayer::Conv2d(_) | EncodedLayer::Linear(_) => match layer.affine() {
            Some(a) => affine(a, x, backend),
            None => Err(LayerError::Inconsistent {
                layer: layer.name().to_string(),
                what: "an affine layer without its description",
            }),
        },
        EncodedLayer::Square(_) => x.cts.par_iter().map(|c| backend.square(c)).collect(),
        EncodedLayer::AvgPool2d(p) => window_sums(&p.windows(&x.shape)?, x, backend),
        EncodedLayer::Flatten(_) => Ok(x.cts.clone()),
        EncodedLayer::Reencrypt(l) => Err(LayerError::ClientOnly {
            layer: l.name.clone(),
        }),
        EncodedLayer::PlaintextOnly(l) => Err(LayerError::PlaintextOnly {
            layer: l.name.clone(),
            kind: l.kind.to_string(),
        }),
    }
    .map_err(|e| e.in_layer(layer.name()))?;
    Ok(EncryptedTensor {
        shape: out.shape,
        batch: x.batch,
        cts,
        scale: out.scale,
        lo: out.lo,
        hi: out.hi,
    })
}

/// Outputs that read the same inputs in the same order, with their weight rows.
struct OutputGroup {
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    rows: Vec<Vec<i64>>,
}

/// out[o] = Σ w · x[i] + bias[o]: one fused dot product per output, in parallel.
fn affine<B: HeBackend>(
    a: &(dyn Affine + Sync),
    x: &EncryptedTensor<B::Ciphertext>,
    backend: &B,
) -> Result<Vec<B::Ciphertext>, LayerError> {
    let out_len: usize = a.out_shape(&x.shape)?.iter().product();
    // Outputs reading the same inputs in the same order (every output of a Linear, every
    // channel at one position of a Conv2d) are computed together, up to six at a time, so each
    // input is read once per block instead of once per output.
    let mut groups: Vec<OutputGroup> = Vec::new();
    let mut index: std::collections::HashMap<Vec<usize>, usize> = Default::default();
    let mut conns = Vec::new();
    for o in 0..out_len {
        conns.clear();
        a.connections(&x.shape, o, &mut conns);
        let inputs: Vec<usize> = conns.iter().map(|&(i, _)| i).collect();
        let weights: Vec<i64> = conns.iter().map(|&(_, w)| w).collect();
        let g = *index.entry(inputs.clone()).or_insert_with(|| {
            groups.push(OutputGroup {
                inputs,
                outputs: Vec::new(),
                rows: Vec::new(),
            });
            groups.len() - 1
        });
        groups[g].outputs.push(o);
        groups[g].rows.push(weights);
    }
    const BLOCK: usize = 6;
    // One task per block: (group, first output of the block).
    let tasks: Vec<(&OutputGroup, usize)> = groups
        .iter()
        .flat_map(|g| {
            (0..g.outputs.len())
                .step_by(BLOCK)
                .map(move |start| (g, start))
        })
        .collect();
    let done = tasks
        .into_par_iter()
        .map(|(g, start)| {
            let end = (start + BLOCK).min(g.outputs.len());
            let (outs, rows) = (&g.outputs[start..end], &g.rows[start..end]);
            let refs: Vec<&B::Ciphertext> = g.inputs.iter().map(|&i| &x.cts[i]).collect();
            let results = backend.dot_many(&refs, rows)?;
            outs.iter()
                .zip(results)
                .map(|(&o, r)| {
                    let bias = a.bias_of(&x.shape, o);
                    let ct = match r {
                        Some(mut ct) => {
                            backend.add_constant(&mut ct, bias)?;
                            ct
                        }
                        // Every weight is zero: a product would be transparent, so the output
                        // is a fresh encryption of the bias instead.
                        None => backend.encrypt_constant(bias)?,
                    };
                    Ok((o, ct))
                })
                .collect::<Result<Vec<_>, LayerError>>()
        })
        .collect::<Result<Vec<_>, LayerError>>()?;
    let mut slots: Vec<Option<B::Ciphertext>> = (0..out_len).map(|_| None).collect();
    for (o, ct) in done.into_iter().flatten() {
        slots[o] = Some(ct);
    }
    slots
        .into_iter()
        .map(|c| {
            c.ok_or_else(|| LayerError::Inconsistent {
                layer: a.layer_name().to_string(),
                what: "an output was not computed",
            })
        })
        .collect()
}

/// One dot product with unit weights per window (average pooling; the divisor is in the scale).
fn window_sums<B: HeBackend>(
    windows: &[Vec<usize>],
    x: &EncryptedTensor<B::Ciphertext>,
    backend: &B,
) -> Result<Vec<B::Ciphertext>, LayerError> {
    windows
        .par_iter()
        .map(|idx| {
            let refs: Vec<&B::Ciphertext> = idx.iter().map(|&i| &x.cts[i]).collect();
            match backend.dot(&refs, &vec![1; refs.len()])? {
                Some(ct) => Ok(ct),
                None => backend.encrypt_constant(0),
            }
        })
        .collect()
}
