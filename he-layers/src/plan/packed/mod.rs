//! The packed layout: one image's activations spread across the slots of a few ciphertexts
//! (two images per ciphertext, one per row), so one image costs a few ciphertexts instead of
//! one per activation.
//!
//! The client arranges a first convolution's input by taps (im2col), which turns the
//! convolution into one scalar product per tap and rotation; every other affine layer is the
//! diagonal method with baby-step / giant-step rotations, folded (hybrid) where that is
//! cheaper; Square is slot-wise; Flatten renames. Intermediate ciphertexts may be "dirty"
//! (nonzero where no value is placed); the next affine step reads only placed columns, and the
//! last layer of every segment is computed with plaintext diagonals only, so what returns to
//! the client holds nothing but the outputs. The integer mirror is the batch layout's:
//! decrypted outputs equal it exactly.

mod compile;
mod execute;
mod noise;
mod placement;
mod program;

pub use placement::Placement;

use super::cost::step_cost;
use super::packing::ROWS;
use super::{
    segments, ExecutionPlan, LayerStep, Layout, LayoutKind, Packing, SchemeKind, SegmentPlan,
    StepOps,
};
use crate::crypto::sanitize::{plan_sanitization, DEFAULT_FLOOD_BITS};
use crate::layers::{LayerError, PackedBackend};
use crate::model::{EncodedModel, ModelError};
use compile::{compile_segment, Choices, Consulted};
use noise::{NoiseBackend, NoiseCt};
use program::{PackedProgram, PackedStep};
use std::ops::Range;

/// The packed layout, compiled for one encoded model (its programs, one per segment).
#[derive(Clone, Debug)]
pub struct PackedLayout {
    model_name: String,
    layers: usize,
    fingerprint: [u8; 32],
    width: usize,
    programs: Vec<(Range<usize>, PackedProgram)>,
}

fn inconsistent(what: &'static str) -> ModelError {
    ModelError::Layer(LayerError::Inconsistent {
        layer: String::new(),
        what,
    })
}

impl PackedLayout {
    /// Compiles every segment of `model` for its parameter set.
    pub fn new(model: &EncodedModel) -> Result<Self, ModelError> {
        Self::for_flood(model, Some(DEFAULT_FLOOD_BITS))
    }

    /// Compiles every segment for a server flooding its answers with `flood_bits` of
    /// statistical distance (`None`: answers unsanitized, only decryptable): the choices that
    /// spend budget and the levels switched to leave exactly that room.
    pub fn for_flood(model: &EncodedModel, flood_bits: Option<u32>) -> Result<Self, ModelError> {
        let flood = flood_bits.unwrap_or(0);
        let width = model.parameters().degree() / 2;
        let limbs = model.parameters().moduli().len();
        let programs = segments(model)
            .into_iter()
            .map(|r| {
                // The cheapest program whose answer can still be sanitized with the server's
                // λ (the cheaper choices spend budget); the most frugal one if none can.
                let mut best: Option<(f64, PackedProgram)> = None;
                let mut program = None;
                // Choices the first compilation did not consult give the same program.
                let mut consulted = None;
                for choices in Choices::ALL {
                    let first = Choices::ALL[0];
                    if consulted.is_some_and(|c: Consulted| {
                        (!c.mixing && choices.mix_channels != first.mix_channels)
                            || (!c.mask && choices.mask_last != first.mask_last)
                    }) {
                        continue;
                    }
                    let (candidate, used) = compile_segment(model, r.clone(), width, choices)?;
                    consulted.get_or_insert(used);
                    let noise = segment_noise(model, &candidate, width)?
                        .last()
                        .copied()
                        .unwrap_or(f64::INFINITY);
                    if plan_sanitization(model.parameters(), noise, flood).is_ok() {
                        let cost = segment_cost(&candidate, limbs);
                        if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                            best = Some((cost, candidate.clone()));
                        }
                    }
                    program = Some(candidate);
                }
                let program = best.map(|(_, p)| p).or(program);
                let mut program = program.ok_or_else(|| inconsistent("no packed program"))?;
                plan_levels(model, &mut program, width, flood)?;
                Ok((r, program))
            })
            .collect::<Result<_, ModelError>>()?;
        Ok(Self {
            model_name: model.name().to_string(),
            layers: model.layers().len(),
            fingerprint: model.parameters().fingerprint(),
            width,
            programs,
        })
    }

    /// Ciphertexts one image group (up to two images) takes entering each segment.
    pub fn input_ciphertexts(&self) -> Vec<usize> {
        self.programs.iter().map(|(_, p)| p.input.cts).collect()
    }

    /// The rotation steps the plan performs (left positive), sorted.
    pub fn rotation_steps(&self) -> Vec<i64> {
        let mut out: Vec<i64> = self
            .programs
            .iter()
            .flat_map(|(_, p)| p.rotation_steps())
            .map(|s| s.rem_euclid(self.width as i64))
            .filter(|&s| s != 0)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn check_model(&self, model: &EncodedModel) -> Result<(), ModelError> {
        if model.name() != self.model_name
            || model.layers().len() != self.layers
            || model.parameters().fingerprint() != self.fingerprint
        {
            return Err(inconsistent(
                "a packed layout used with a model it was not compiled for",
            ));
        }
        Ok(())
    }

    /// The program of the segment holding `layer`, and the layer's index in it.
    fn program_at(
        &self,
        model: &EncodedModel,
        layer: usize,
    ) -> Result<(&Range<usize>, &PackedProgram, usize), ModelError> {
        self.check_model(model)?;
        self.programs
            .iter()
            .find(|(r, _)| r.start <= layer && layer <= r.end)
            .map(|(r, p)| (r, p, layer - r.start))
            .ok_or_else(|| ModelError::Range {
                start: layer,
                end: layer,
                reason: "no encrypted segment holds this layer".into(),
            })
    }

    /// The program for running `layers`: inside one segment.
    fn program_for(
        &self,
        model: &EncodedModel,
        layers: &Range<usize>,
    ) -> Result<(&PackedProgram, Range<usize>), ModelError> {
        let (seg, program, from) = self.program_at(model, layers.start)?;
        if layers.end > seg.end || layers.end < layers.start {
            return Err(ModelError::Range {
                start: layers.start,
                end: layers.end,
                reason: format!(
                    "the packed layout runs within one segment ({}..{})",
                    seg.start, seg.end
                ),
            });
        }
        Ok((program, from..from + layers.len()))
    }
}

/// Predicted noise (log2, largest over ciphertexts, as a top-level ciphertext with the same
/// budget would carry it) after each layer of a segment, from fresh symmetric noise at its start.
fn segment_noise(
    model: &EncodedModel,
    program: &PackedProgram,
    width: usize,
) -> Result<Vec<f64>, ModelError> {
    let backend = NoiseBackend::new(model.parameters());
    let fresh = crate::crypto::encrypt::fresh_symmetric_noise(model.parameters());
    let mut cts = vec![backend.fresh(fresh); program.input.cts];
    let names = step_names(model, program);
    let mut out = Vec::with_capacity(program.steps.len());
    for (k, (step, _)) in program.steps.iter().enumerate() {
        let name = names.get(k).copied().unwrap_or("");
        let level = program.levels.get(k).copied().flatten();
        cts = execute::run_steps([(step, level, name)], cts, width, &backend)?;
        out.push(worst(&backend, &cts)?);
    }
    Ok(out)
}

fn step_names<'a>(model: &'a EncodedModel, program: &PackedProgram) -> Vec<&'a str> {
    model.layers()[program.start..]
        .iter()
        .map(|l| l.name())
        .collect()
}

/// The largest top-equivalent noise over `cts`.
fn worst(backend: &NoiseBackend, cts: &[NoiseCt]) -> Result<f64, ModelError> {
    cts.iter().try_fold(f64::NEG_INFINITY, |m, c| {
        Ok(m.max(backend.top_equivalent(c)?))
    })
}

/// Chooses where the program switches down: before every linear step and square, the lowest
/// level from which the rest of the segment, run without further switching, still ends with an
/// answer that can be sanitized with `flood_bits` at a level no higher than its own (greedy:
/// later steps may switch further).
fn plan_levels(
    model: &EncodedModel,
    program: &mut PackedProgram,
    width: usize,
    flood_bits: u32,
) -> Result<(), ModelError> {
    let params = model.parameters();
    let backend = NoiseBackend::new(params);
    let fresh = crate::crypto::encrypt::fresh_symmetric_noise(params);
    let names = step_names(model, program);
    let name = |k: usize| names.get(k).copied().unwrap_or("");
    let fits = |cts: Vec<NoiseCt>, from: usize| -> Result<bool, ModelError> {
        let rest = program.steps[from..]
            .iter()
            .enumerate()
            .map(|(i, (s, _))| (s, None, name(from + i)));
        let end = execute::run_steps(rest, cts, width, &backend)?;
        // The plan may not ask for a level above the answer's own (its whole-bit budget can
        // be a bit higher there): sanitization only switches down.
        let lowest = end.iter().map(|c| c.level).min().unwrap_or(0);
        Ok(
            plan_sanitization(params, worst(&backend, &end)?, flood_bits)
                .is_ok_and(|plan| plan.level <= lowest),
        )
    };
    let mut levels = vec![None; program.steps.len()];
    let mut cts = vec![backend.fresh(fresh); program.input.cts];
    for (k, (step, _)) in program.steps.iter().enumerate() {
        if !matches!(step, PackedStep::Rename) {
            let current = cts.iter().map(|c| c.level).max().unwrap_or(0);
            for level in (1..current).filter(|&l| backend.has_level(l)) {
                let switched = execute::switch_all(cts.clone(), level, &backend)?;
                if fits(switched.clone(), k)? {
                    levels[k] = Some(level);
                    cts = switched;
                    break;
                }
            }
        }
        cts = execute::run_steps([(step, None, name(k))], cts, width, &backend)?;
    }
    program.levels = levels;
    Ok(())
}

/// What a program is expected to cost ([`step_cost`], NTT units): its steps at the top level,
/// and each ciphertext it returns as much as [`RETURNED_CT_KEY_SWITCHES`] key switches.
fn segment_cost(program: &PackedProgram, limbs: usize) -> f64 {
    let steps: f64 = program
        .steps
        .iter()
        .map(|(step, placement)| step_cost(&step_ops(step, placement.cts), limbs))
        .sum();
    let returned = program.steps.last().map_or(0, |(_, p)| p.cts);
    let key_switch = step_cost(
        &StepOps {
            key_switches: 1,
            ..StepOps::default()
        },
        limbs,
    );
    steps + RETURNED_CT_KEY_SWITCHES * key_switch * returned as f64
}

/// What one returned ciphertext costs beyond the server's time, in key switches: the bytes on
/// the wire (a sanitized ciphertext at N = 8192 is ≈ 100–200 KB, 10–15 ms at 100 Mbit/s,
/// against ≈ 1.3 ms per key switch here) and the client's decryption.
const RETURNED_CT_KEY_SWITCHES: f64 = 10.0;

/// Operations of one step per image group.
fn step_ops(step: &PackedStep, cts_out: usize) -> StepOps {
    match step {
        PackedStep::Linear(l) => l.ops(),
        PackedStep::Square => StepOps {
            ciphertexts_out: cts_out as u64,
            ciphertext_products: cts_out as u64,
            key_switches: cts_out as u64,
            ..StepOps::default()
        },
        PackedStep::Rename => StepOps {
            ciphertexts_out: cts_out as u64,
            ..StepOps::default()
        },
    }
}

impl Layout for PackedLayout {
    fn kind(&self) -> LayoutKind {
        LayoutKind::Packed
    }

    fn compile(&self, model: &EncodedModel) -> Result<ExecutionPlan, ModelError> {
        self.check_model(model)?;
        let params = model.parameters();
        let fresh_budget =
            params.log2_q() - crate::crypto::encrypt::fresh_symmetric_noise(params) - 1.0;
        let prefix = model.encryptable_prefix();
        let mut steps: Vec<LayerStep> = (0..prefix)
            .map(|index| LayerStep {
                index,
                ops: StepOps::default(),
                predicted_budget_bits: fresh_budget,
            })
            .collect();
        let mut segments = Vec::with_capacity(self.programs.len());
        for (range, program) in &self.programs {
            let noise = segment_noise(model, program, self.width)?;
            let mut level = None;
            for (k, ((step, placement), &n)) in program.steps.iter().zip(&noise).enumerate() {
                level = program.levels.get(k).copied().flatten().or(level);
                if let Some(s) = steps.get_mut(range.start + k) {
                    s.ops = StepOps {
                        level: level.map_or(0, |l| l as u64),
                        ..step_ops(step, placement.cts)
                    };
                    s.predicted_budget_bits = params.log2_q() - n - 1.0;
                }
            }
            let output_packing = program
                .placement_after(program.steps.len())
                .cloned()
                .ok_or_else(|| inconsistent("a segment without steps"))?;
            segments.push(SegmentPlan {
                layers: range.clone(),
                input: model.info_before(range.start).clone(),
                output: model.info_before(range.end).clone(),
                noise_log2: noise.last().copied().unwrap_or(f64::NEG_INFINITY),
                input_packing: Packing::Packed(program.input.clone()),
                output_packing: Packing::Packed(output_packing),
            });
        }
        let mut galois_elements: Vec<u64> = self
            .rotation_steps()
            .into_iter()
            .map(|s| params.galois_element_for_step(s))
            .filter(|&g| g != 1)
            .collect();
        galois_elements.sort_unstable();
        galois_elements.dedup();
        Ok(ExecutionPlan {
            scheme: SchemeKind::Bfv,
            layout: LayoutKind::Packed,
            segments,
            steps,
            galois_elements,
        })
    }

    fn packing(&self, model: &EncodedModel, layers: &Range<usize>) -> Result<Packing, ModelError> {
        let (program, steps) = self.program_for(model, layers)?;
        program
            .placement_after(steps.end)
            .cloned()
            .map(Packing::Packed)
            .ok_or_else(|| inconsistent("a layer past its segment"))
    }

    fn run<B: PackedBackend>(
        &self,
        model: &EncodedModel,
        layers: Range<usize>,
        images: usize,
        cts: Vec<B::Ciphertext>,
        backend: &B,
    ) -> Result<Vec<B::Ciphertext>, ModelError> {
        model.check_range(&layers)?;
        model.check_overflow(&layers)?;
        let (program, steps) = self.program_for(model, &layers)?;
        let place = program
            .placement_after(steps.start)
            .ok_or_else(|| inconsistent("a layer past its segment"))?;
        let expected = images.div_ceil(ROWS) * place.cts;
        if cts.len() != expected || images == 0 {
            return Err(ModelError::CiphertextCount {
                expected,
                found: cts.len(),
            });
        }
        let names: Vec<&str> = model.layers()[layers.clone()]
            .iter()
            .map(|l| l.name())
            .collect();
        let mut out = Vec::new();
        let mut rest = cts;
        while !rest.is_empty() {
            let tail = rest.split_off(place.cts.min(rest.len()));
            let group = std::mem::replace(&mut rest, tail);
            let chain = program.steps[steps.clone()]
                .iter()
                .zip(&program.levels[steps.clone()])
                .zip(names.iter().copied())
                .map(|(((s, _), &level), name)| (s, level, name));
            out.extend(execute::run_steps(chain, group, self.width, backend)?);
        }
        Ok(out)
    }
}
