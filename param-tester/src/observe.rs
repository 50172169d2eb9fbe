//! What the observer of an in-process run notes: each layer's ciphertexts decrypted and
//! recombined over the plaintext moduli.

use he_layers::model::crt_combine_tensors;
use he_layers::plan::{CompiledLayout, Layout};
use he_layers::tensor::IntTensor;
use net_builder::pipeline::ClientKeys;
use net_builder::session::{decrypt_tensor, min_noise_budget, LayerObservation, Observed};

/// The segment that ends at layer `i` (its last layer), as the plan cuts them.
pub(crate) fn segment_ending(
    model: &he_layers::model::EncodedModel,
    i: usize,
) -> std::ops::Range<usize> {
    he_layers::plan::segments(model)
        .into_iter()
        .find(|r| r.end == i + 1)
        .unwrap_or(i..i + 1)
}

/// What the observer saw of one layer, over every plaintext modulus.
pub(crate) struct Seen {
    /// Decrypted and recombined integers.
    pub(crate) values: IntTensor,
    /// Smallest measured budget.
    pub(crate) budget: u32,
    /// Ciphertexts, all moduli.
    pub(crate) ciphertexts: usize,
    /// Their bytes.
    pub(crate) bytes: usize,
    /// Time, ms (all moduli).
    pub(crate) ms: f64,
}

/// One modulus' share of a [`Seen`].
struct Part {
    values: Option<IntTensor>,
    budget: u32,
    ciphertexts: usize,
    bytes: usize,
    ms: f64,
}

/// Per layer: the segment inputs, the layer outputs and the sanitized answers seen.
pub(crate) struct SeenLayers {
    pub(crate) input: Vec<Option<Seen>>,
    pub(crate) layer: Vec<Option<Seen>>,
    pub(crate) sanitized: Vec<Option<Seen>>,
}

/// Each modulus' share, by what was observed and at which layer.
type PartsByLayer = std::collections::BTreeMap<(Observed, usize), Vec<Option<Part>>>;

/// The observer's notes, decrypted with the client's keys as they come.
pub(crate) struct Observations<'m> {
    model: &'m he_layers::model::EncodedModel,
    moduli: Vec<u64>,
    batch: usize,
    parts: std::sync::Mutex<PartsByLayer>,
}

impl<'m> Observations<'m> {
    pub(crate) fn new(model: &'m he_layers::model::EncodedModel, batch: usize) -> Self {
        Self {
            model,
            moduli: model.plaintext_moduli().to_vec(),
            batch,
            parts: Default::default(),
        }
    }

    pub(crate) fn record(
        &self,
        o: &LayerObservation<'_>,
        keys: &[ClientKeys],
        layouts: &[CompiledLayout],
    ) {
        // Placements depend on the model's structure, not on t: every component's tensors sit
        // where the first component's layout (compiled for `self.model`) says.
        let (Some(k), Some(layout)) = (keys.get(o.component), layouts.first()) else {
            return;
        };
        // What the observed ciphertexts carry: the tensor entering the layer, or leaving it.
        let (info, done) = match o.observed {
            Observed::Input => (self.model.info_before(o.layer), o.layer..o.layer),
            Observed::Layer | Observed::Sanitized => {
                (self.model.info_before(o.layer + 1), o.layer..o.layer + 1)
            }
        };
        let values = layout
            .packing(self.model, &done)
            .and_then(|p| decrypt_tensor(&p, o.cts, &info.shape, self.batch, &k.sk))
            .ok();
        let part = Part {
            values,
            budget: min_noise_budget(o.cts, &k.sk).unwrap_or(0),
            ciphertexts: o.cts.len(),
            bytes: o.wire_bytes,
            ms: o.ms,
        };
        if let Ok(mut parts) = self.parts.lock() {
            let slot = parts
                .entry((o.observed, o.layer))
                .or_insert_with(|| (0..self.moduli.len()).map(|_| None).collect());
            if let Some(s) = slot.get_mut(o.component) {
                *s = Some(part);
            }
        }
    }

    pub(crate) fn into_layers(self) -> SeenLayers {
        let n = self.model.layers().len() + 1;
        let mut out = SeenLayers {
            input: (0..n).map(|_| None).collect(),
            layer: (0..n).map(|_| None).collect(),
            sanitized: (0..n).map(|_| None).collect(),
        };
        let parts = self.parts.into_inner().unwrap_or_default();
        for ((kind, layer), parts) in parts {
            let Some(parts) = parts.into_iter().collect::<Option<Vec<Part>>>() else {
                continue;
            };
            let tensors: Option<Vec<IntTensor>> = parts.iter().map(|p| p.values.clone()).collect();
            let Some(values) = tensors.and_then(|t| crt_combine_tensors(&t, &self.moduli).ok())
            else {
                continue;
            };
            let seen = Seen {
                values,
                budget: parts.iter().map(|p| p.budget).min().unwrap_or(0),
                ciphertexts: parts.iter().map(|p| p.ciphertexts).sum(),
                bytes: parts.iter().map(|p| p.bytes).sum(),
                ms: parts.iter().map(|p| p.ms).sum(),
            };
            let slot = match kind {
                Observed::Input => &mut out.input,
                Observed::Layer => &mut out.layer,
                Observed::Sanitized => &mut out.sanitized,
            };
            if let Some(s) = slot.get_mut(layer) {
                *s = Some(seen);
            }
        }
        out
    }
}
