//! The smallest change that would fix a failing set.

use crate::*;
use he_layers::layers::EncodedLayer;
use net_builder::pipeline::CrtModel;

pub(crate) fn fix_for_overflow(set: &ParameterSet, layer: usize, crt: &CrtModel) -> String {
    let model = crt.model();
    let bound = model.info_before(layer + 1).bound_bits();
    let cap = (model.capacity() as f64).log2();
    let squares_before = model.layers()[..=layer]
        .iter()
        .filter(|l| matches!(l, EncodedLayer::Square(_)))
        .count();
    let extra = (bound - cap).ceil().max(1.0);
    format!(
        "plaintext capacity short by {extra:.0} bits at layer {layer}: use another plaintext modulus (CRT) or {extra:.0} more bits of t; or lower input_scale_bits (now {}) or weight_bits{}{}",
        set.input_scale_bits.map_or("auto".into(), |b| b.to_string()),
        set.weight_bits.map_or(String::new(), |w| format!(" (now {w})")),
        if squares_before > 0 { "; or re-encrypt (with a rescale) before the squares that grow it" } else { "" }
    )
}

pub(crate) fn fix_for_noise(crt: &CrtModel, set: &ParameterSet, layer: usize) -> String {
    let model = crt.model();
    // The spec index of the layer before the exhausted one: re-encrypting there gives it a
    // fresh budget.
    let spec_idx = crt.components[0].spec_index[..layer]
        .iter()
        .rev()
        .find_map(|&i| i);
    let mut fixes = Vec::new();
    if let Some(s) = spec_idx {
        if !set.reencrypt_positions.contains(&s) {
            let mut pos = set.reencrypt_positions.clone();
            pos.push(s);
            pos.sort_unstable();
            fixes.push(format!(
                "re-encrypt after layer {s} (reencrypt_positions {pos:?})"
            ));
        }
    }
    if set.degree < 32768 {
        fixes.push(format!("or a larger N ({})", set.degree * 2));
    }
    let _ = model;
    format!(
        "noise budget exhausted at layer {layer}: {}",
        fixes.join(", ")
    )
}
