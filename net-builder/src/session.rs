//! One client pipeline: quantized input → encrypt under every plaintext modulus → compute each
//! segment through a [`Transport`] → decrypt → CRT → the re-encryption boundary's rescale →
//! encrypt again, until the last segment. The client (over HTTP), the parameter tester, the
//! examples and the tests (in process, [`InProcess`]) all run it; nothing else strings these
//! steps together.

use crate::pipeline::{ClientKeys, CrtModel};
use he_layers::crypto::sanitize::{
    plan_sanitization, sanitize, NoRoomForFlooding, SanitizationPlan,
};
use he_layers::crypto::stats::{snapshot, OpCounts};
use he_layers::crypto::{compress_answers, Ciphertext, CompressedCiphertext, SecretKey};
use he_layers::layers::PackedBackend;
use he_layers::layers::{
    reencrypt_rescale, BfvBackend, BfvSlotDecryptor, BfvSlotEncryptor, EncodedLayer, LayerError,
};
use he_layers::model::{crt_combine_tensors, EncodedModel, ModelError};
use he_layers::plan::{self, CompiledLayout, Layout, LayoutKind, Packing};
use he_layers::protocol::{Plan, Runs, TensorInfo};
use he_layers::tensor::{IntTensor, ValueInfo};
use rayon::prelude::*;
use serde::Serialize;
use std::future::Future;
use std::ops::Range;
use std::time::Instant;

/// Why a session could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The model, a layer or the layout refused.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The transport (the server, or the in-process runner) failed.
    #[error("segment {layers:?}: {source}")]
    Transport {
        /// The segment.
        layers: Range<usize>,
        /// What went wrong.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A plan that does not describe a runnable pipeline.
    #[error("the plan is not usable: {0}")]
    Plan(&'static str),
    /// The requested layers contain no whole segment.
    #[error("layers {requested:?} contain no whole segment of the plan ({segments:?})")]
    NoSegment {
        /// Requested range.
        requested: Range<usize>,
        /// The plan's segments.
        segments: Vec<Range<usize>>,
    },
    /// A segment's answers cannot be sanitized (the server would refuse it).
    #[error("layers {layers:?}: no room for circuit privacy: {reason}")]
    NoRoomForCircuitPrivacy {
        /// The segment.
        layers: Range<usize>,
        /// The engine's explanation, with the fixes.
        reason: NoRoomForFlooding,
    },
    /// A decrypted answer holds a value outside the interval the public model predicts for it:
    /// the server computed something else (or tampered with it). Nothing of it is re-encrypted
    /// or returned: a server that may later see outputs would otherwise learn from what the
    /// client sends back.
    #[error(
        "segment {layers:?}: decrypted value {value} at {index} lies outside the predicted \
         interval [{lo}, {hi}]; the answer is not this model's, the run is aborted"
    )]
    OutOfInterval {
        /// The segment.
        layers: Range<usize>,
        /// Flat index (image-major) of the first such value.
        index: usize,
        /// The value.
        value: i128,
        /// The predicted interval.
        lo: i128,
        /// The predicted interval.
        hi: i128,
    },
}

/// The client's rescale at a re-encryption boundary.
#[derive(Clone, Debug, PartialEq)]
pub struct Boundary {
    /// The boundary's layer index.
    pub layer: usize,
    /// Bits divided by.
    pub rescale_bits: u32,
    /// The facts after it (the next segment's input).
    pub output: ValueInfo,
}

impl Boundary {
    /// Applies the rescale ([`reencrypt_rescale`]).
    pub fn apply(&self, x: &IntTensor) -> IntTensor {
        reencrypt_rescale(x, self.rescale_bits)
    }
}

/// One segment as the client sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionSegment {
    /// Layers `[start, end)` the server runs.
    pub layers: Range<usize>,
    /// Facts of its input.
    pub input: ValueInfo,
    /// Facts of its output.
    pub output: ValueInfo,
    /// How the client packs its input.
    pub input_packing: Packing,
    /// How the answer is packed.
    pub output_packing: Packing,
    /// The re-encryption boundary right after it, if another segment follows.
    pub boundary: Option<Boundary>,
}

/// What a client needs of a plan: the layout, the moduli and the segments with their facts
/// (no weights).
#[derive(Clone, Debug, PartialEq)]
pub struct SessionPlan {
    /// The layout.
    pub layout: LayoutKind,
    /// The plaintext moduli, in the order of the keys.
    pub plain_moduli: Vec<u64>,
    /// The segments, in order.
    pub segments: Vec<SessionSegment>,
}

fn info_of(shape: &[usize], scale: f64, lo: i128, hi: i128) -> ValueInfo {
    ValueInfo {
        shape: shape.to_vec(),
        scale,
        lo,
        hi,
        float_bound: 0.0,
        error_bound: 0.0,
    }
}

/// The facts a `/plan` answer gives of a tensor.
pub fn tensor_info(t: &TensorInfo) -> ValueInfo {
    info_of(&t.shape, t.scale, t.lo, t.hi)
}

impl SessionPlan {
    /// From a server's `/plan` answer.
    pub fn from_plan(plan: &Plan) -> Result<Self, SessionError> {
        let mut segments = Vec::with_capacity(plan.segments.len());
        let mut input = tensor_info(&plan.input);
        for (si, &[start, end]) in plan.segments.iter().enumerate() {
            let last = end
                .checked_sub(1)
                .and_then(|i| plan.layers.get(i))
                .filter(|_| start < end)
                .ok_or(SessionError::Plan("a segment outside the layers"))?;
            let output = info_of(&last.shape, last.scale, last.lo, last.hi);
            let boundary = match plan
                .layers
                .get(end)
                .filter(|l| l.runs == Runs::Reencrypt && end < plan.encryptable_prefix)
            {
                Some(l) => Some(Boundary {
                    layer: end,
                    rescale_bits: l.rescale_bits.ok_or(SessionError::Plan(
                        "a re-encryption boundary without rescale_bits",
                    ))?,
                    output: info_of(&l.shape, l.scale, l.lo, l.hi),
                }),
                None => None,
            };
            if let Some(prev) = segments
                .last()
                .map(|s: &SessionSegment| s.boundary.as_ref().map_or(s.layers.end, |b| b.layer + 1))
            {
                if start != prev {
                    return Err(SessionError::Plan(
                        "segments do not follow one another across their boundaries",
                    ));
                }
            }
            let next_input = boundary.as_ref().map(|b| b.output.clone());
            let (input_packing, output_packing) = match plan.layout {
                LayoutKind::Batch => (Packing::Batch, Packing::Batch),
                LayoutKind::Packed => {
                    let p = plan
                        .packings
                        .get(si)
                        .ok_or(SessionError::Plan("a packed segment without its packings"))?;
                    let unusable = SessionError::Plan("a packing that does not fit its tensor");
                    (
                        Packing::from_info(&p.input, input.len()).ok_or(unusable)?,
                        Packing::from_info(&p.output, output.len())
                            .ok_or(SessionError::Plan("a packing that does not fit its tensor"))?,
                    )
                }
            };
            segments.push(SessionSegment {
                layers: start..end,
                input: input.clone(),
                output,
                input_packing,
                output_packing,
                boundary,
            });
            if let Some(n) = next_input {
                input = n;
            }
        }
        if segments.is_empty() {
            return Err(SessionError::Plan("no segment"));
        }
        Ok(Self {
            layout: plan.layout,
            plain_moduli: plan.plain_moduli.clone(),
            segments,
        })
    }

    /// From a locally built model (in-process runs) and its layout.
    pub fn from_model(
        model: &EncodedModel,
        layout: &CompiledLayout,
        plain_moduli: &[u64],
    ) -> Result<Self, SessionError> {
        let segments: Vec<SessionSegment> = plan::segments(model)
            .into_iter()
            .map(|r| -> Result<SessionSegment, SessionError> {
                Ok(SessionSegment {
                    input: model.info_before(r.start).clone(),
                    output: model.info_before(r.end).clone(),
                    input_packing: layout.packing(model, &(r.start..r.start))?,
                    output_packing: layout.packing(model, &r)?,
                    boundary: match model.layers().get(r.end) {
                        Some(EncodedLayer::Reencrypt(b)) if r.end < model.encryptable_prefix() => {
                            Some(Boundary {
                                layer: r.end,
                                rescale_bits: b.rescale_bits,
                                output: model.info_before(r.end + 1).clone(),
                            })
                        }
                        _ => None,
                    },
                    layers: r,
                })
            })
            .collect::<Result<_, _>>()?;
        if segments.is_empty() {
            return Err(SessionError::Plan("no segment"));
        }
        Ok(Self {
            layout: layout.kind(),
            plain_moduli: plain_moduli.to_vec(),
            segments,
        })
    }

    /// Only the segments wholly inside `layers` (the server runs whole segments only).
    pub fn restricted(mut self, layers: Range<usize>) -> Result<Self, SessionError> {
        let all: Vec<Range<usize>> = self.segments.iter().map(|s| s.layers.clone()).collect();
        self.segments
            .retain(|s| s.layers.start >= layers.start && s.layers.end <= layers.end);
        if self.segments.is_empty() {
            return Err(SessionError::NoSegment {
                requested: layers,
                segments: all,
            });
        }
        // The boundary after the last segment kept runs only if the requested layers reach
        // past it.
        if let Some(last) = self.segments.last_mut() {
            if last.layers.end >= layers.end {
                last.boundary = None;
            }
        }
        Ok(self)
    }

    /// The input the first segment expects.
    pub fn input(&self) -> &ValueInfo {
        &self.segments[0].input
    }
}

/// One segment, for one plaintext modulus, handed to a transport.
#[derive(Debug)]
pub struct SegmentCall {
    /// Segment index in the session plan.
    pub segment: usize,
    /// Its layers.
    pub layers: Range<usize>,
    /// Component (plaintext modulus) index.
    pub component: usize,
    /// The plaintext modulus.
    pub plain_modulus: u64,
    /// Images in the slots.
    pub batch: usize,
    /// The encrypted input.
    pub cts: Vec<Ciphertext>,
    /// Ciphertexts the answer must hold (the segment's output in its packing): a transport
    /// refuses another count, and caps what it reads by it.
    pub answer_ciphertexts: usize,
}

/// What came back for one call.
#[derive(Debug)]
pub struct SegmentAnswer {
    /// The (sanitized) result.
    pub cts: Vec<Ciphertext>,
    /// Server compute time, ms (sanitization included).
    pub server_ms: f64,
    /// Of which sanitization, ms.
    pub sanitize_ms: f64,
    /// Bytes sent.
    pub bytes_up: usize,
    /// Bytes received.
    pub bytes_down: usize,
}

/// Runs one segment for one plaintext modulus somewhere: a server over HTTP, or this process.
pub trait Transport: Sync {
    /// Computes the call's layers on its ciphertexts.
    fn compute(
        &self,
        call: SegmentCall,
    ) -> impl Future<Output = Result<SegmentAnswer, SessionError>> + Send;

    /// Computes one segment's calls, one per plaintext modulus, concurrently where the
    /// transport can (a server gets them as concurrent requests); `done` is told after each
    /// answer. The default awaits them together.
    fn compute_all(
        &self,
        calls: Vec<SegmentCall>,
        done: &(dyn Fn() + Sync),
    ) -> impl Future<Output = Vec<Result<SegmentAnswer, SessionError>>> + Send {
        futures_util::future::join_all(calls.into_iter().map(move |call| {
            let answer = self.compute(call);
            async move {
                let answer = answer.await;
                done();
                answer
            }
        }))
    }
}

/// Stages a session reports as it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Encrypting a segment's input.
    Encrypt,
    /// Waiting for the transport.
    Compute,
    /// Decrypting and recombining.
    Decrypt,
}

/// Progress: `done` of `total` plaintext moduli finished `stage` for `segment`.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Segment index.
    pub segment: usize,
    /// The stage.
    pub stage: Stage,
    /// Moduli done.
    pub done: usize,
    /// Moduli in all.
    pub total: usize,
}

/// What one segment cost and left.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentReport {
    /// Layers the server ran.
    pub layers: [usize; 2],
    /// Noise budget left in the results (bits, smallest ciphertext), per plaintext modulus.
    pub noise_budget: Vec<u32>,
    /// Client encryption time, ms.
    pub encrypt_ms: f64,
    /// Server compute time, ms (summed over plaintext moduli).
    pub server_ms: f64,
    /// Of which sanitization, ms.
    pub sanitize_ms: f64,
    /// Round trip of the calls, ms (concurrent over moduli).
    pub round_trip_ms: f64,
    /// Decryption, noise measurement and CRT recombination, ms.
    pub decrypt_ms: f64,
    /// Bytes sent.
    pub bytes_up: usize,
    /// Bytes received.
    pub bytes_down: usize,
}

/// The result of a session run.
#[derive(Clone, Debug)]
pub struct SessionRun {
    /// The exact integers after the last segment.
    pub output: IntTensor,
    /// Their facts.
    pub output_info: ValueInfo,
    /// One report per segment.
    pub segments: Vec<SegmentReport>,
}

/// Packs and encrypts a tensor ([`Packing::encrypt`]).
pub fn encrypt_tensor(
    packing: &Packing,
    x: &IntTensor,
    sk: &SecretKey,
) -> Result<Vec<Ciphertext>, ModelError> {
    let encryptor = BfvSlotEncryptor::new(sk).map_err(|e| ModelError::from(LayerError::from(e)))?;
    packing.encrypt(x, &encryptor)
}

/// Decrypts and unpacks a tensor of `shape` ([`Packing::decrypt`]).
pub fn decrypt_tensor(
    packing: &Packing,
    cts: &[Ciphertext],
    shape: &[usize],
    images: usize,
    sk: &SecretKey,
) -> Result<IntTensor, ModelError> {
    let decryptor = BfvSlotDecryptor::new(sk).map_err(|e| ModelError::from(LayerError::from(e)))?;
    packing.decrypt(cts, shape, images, &decryptor)
}

/// Runs layers of a segment in a layout ([`Layout::run`]).
pub fn run_layers<B: PackedBackend>(
    layout: &CompiledLayout,
    model: &EncodedModel,
    layers: Range<usize>,
    images: usize,
    cts: Vec<B::Ciphertext>,
    backend: &B,
) -> Result<Vec<B::Ciphertext>, ModelError> {
    layout.run(model, layers, images, cts, backend)
}

/// The smallest measured noise budget over ciphertexts (needs the secret key).
pub fn min_noise_budget(cts: &[Ciphertext], sk: &SecretKey) -> Result<u32, ModelError> {
    let dec = he_layers::crypto::Decryptor::new(sk);
    cts.par_iter()
        .map(|ct| dec.noise_budget(ct))
        .try_reduce(|| u32::MAX, |a, b| Ok(a.min(b)))
        .map_err(|e| ModelError::from(LayerError::from(e)))
}

/// A client's run of a plan with its secret keys (one per plaintext modulus, in order).
pub struct Session<'k> {
    plan: SessionPlan,
    secret_keys: Vec<&'k SecretKey>,
}

impl<'k> Session<'k> {
    /// A session; the keys must match the plan's moduli.
    pub fn new(plan: SessionPlan, secret_keys: Vec<&'k SecretKey>) -> Result<Self, SessionError> {
        let moduli: Vec<u64> = secret_keys
            .iter()
            .map(|k| k.parameters().plain_modulus())
            .collect();
        if moduli != plan.plain_moduli {
            return Err(SessionError::Plan(
                "the secret keys are not for the plan's plaintext moduli, in order",
            ));
        }
        Ok(Self { plan, secret_keys })
    }

    /// The plan.
    pub fn plan(&self) -> &SessionPlan {
        &self.plan
    }

    /// Runs every segment on `x` (the quantized input, every image), re-encrypting between
    /// segments. `progress` hears of each stage as the moduli finish it.
    pub async fn run<T: Transport>(
        &self,
        transport: &T,
        x: &IntTensor,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<SessionRun, SessionError> {
        let batch = x.batch();
        let total = self.secret_keys.len();
        let mut x = x.clone();
        let mut info = self.plan.input().clone();
        let mut reports = Vec::with_capacity(self.plan.segments.len());
        for (si, seg) in self.plan.segments.iter().enumerate() {
            if x.shape() != seg.input.shape.as_slice() {
                return Err(ModelError::InputShape {
                    layer: seg.layers.start,
                    expected: seg.input.shape.clone(),
                    found: x.shape().to_vec(),
                    found_ciphertexts: x.len(),
                }
                .into());
            }
            let t0 = Instant::now();
            let mut inputs = Vec::with_capacity(total);
            for (m, sk) in self.secret_keys.iter().enumerate() {
                inputs.push(encrypt_tensor(&seg.input_packing, &x, sk)?);
                progress(Progress {
                    segment: si,
                    stage: Stage::Encrypt,
                    done: m + 1,
                    total,
                });
            }
            let encrypt_ms = t0.elapsed().as_secs_f64() * 1000.0;

            let t1 = Instant::now();
            let computed = std::sync::atomic::AtomicUsize::new(0);
            let computed = &computed;
            let calls = inputs
                .into_iter()
                .zip(&self.secret_keys)
                .enumerate()
                .map(|(m, (cts, sk))| {
                    Ok(SegmentCall {
                        segment: si,
                        layers: seg.layers.clone(),
                        component: m,
                        plain_modulus: self.plan.plain_moduli[m],
                        batch,
                        answer_ciphertexts: seg.output_packing.ciphertext_count(
                            seg.output.len(),
                            batch,
                            sk.parameters().degree(),
                        )?,
                        cts,
                    })
                })
                .collect::<Result<Vec<_>, ModelError>>()?;
            let done = || {
                let done = computed.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                progress(Progress {
                    segment: si,
                    stage: Stage::Compute,
                    done,
                    total,
                });
            };
            let answers = transport
                .compute_all(calls, &done)
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
            let round_trip_ms = t1.elapsed().as_secs_f64() * 1000.0;

            let t2 = Instant::now();
            let mut parts = Vec::with_capacity(total);
            let mut noise_budget = Vec::with_capacity(total);
            for (m, (a, sk)) in answers.iter().zip(&self.secret_keys).enumerate() {
                noise_budget.push(min_noise_budget(&a.cts, sk)?);
                parts.push(decrypt_tensor(
                    &seg.output_packing,
                    &a.cts,
                    &seg.output.shape,
                    batch,
                    sk,
                )?);
                progress(Progress {
                    segment: si,
                    stage: Stage::Decrypt,
                    done: m + 1,
                    total,
                });
            }
            x = crt_combine_tensors(&parts, &self.plan.plain_moduli)?;
            // Honest answers never leave the exact worst-case interval: anything else is
            // refused before it is used or re-encrypted.
            let (lo, hi) = (seg.output.lo, seg.output.hi);
            if let Some((index, &value)) =
                x.data().iter().enumerate().find(|(_, &v)| v < lo || v > hi)
            {
                return Err(SessionError::OutOfInterval {
                    layers: seg.layers.clone(),
                    index,
                    value,
                    lo,
                    hi,
                });
            }
            info = seg.output.clone();
            if let Some(b) = &seg.boundary {
                x = b.apply(&x);
                info = b.output.clone();
            }
            let decrypt_ms = t2.elapsed().as_secs_f64() * 1000.0;
            reports.push(SegmentReport {
                layers: [seg.layers.start, seg.layers.end],
                noise_budget,
                encrypt_ms,
                server_ms: answers.iter().map(|a| a.server_ms).sum(),
                sanitize_ms: answers.iter().map(|a| a.sanitize_ms).sum(),
                round_trip_ms,
                decrypt_ms,
                bytes_up: answers.iter().map(|a| a.bytes_up).sum(),
                bytes_down: answers.iter().map(|a| a.bytes_down).sum(),
            });
        }
        Ok(SessionRun {
            output: x,
            output_info: info,
            segments: reports,
        })
    }

    /// [`Self::run`] for callers without an async runtime (the transport must not need one,
    /// as [`InProcess`] does not).
    pub fn run_blocking<T: Transport>(
        &self,
        transport: &T,
        x: &IntTensor,
    ) -> Result<SessionRun, SessionError> {
        futures_executor::block_on(self.run(transport, x, &|_| {}))
    }
}

/// Which ciphertexts an [`InProcess`] observer is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Observed {
    /// A segment's input as received (`layer` is the segment's first layer).
    Input,
    /// The output of `layer`.
    Layer,
    /// The sanitized answer of the segment (`layer` is its last layer).
    Sanitized,
}

/// The server's sanitization of every segment's answers, `[segment][component]`, sized from
/// the public model as the server sizes it; a segment without room for it is refused here, as
/// the server refuses it. `None` (or λ = 0): nothing.
pub fn plan_circuit_privacy(
    crt: &CrtModel,
    layouts: &[CompiledLayout],
    flood_bits: Option<u32>,
) -> Result<Vec<Vec<SanitizationPlan>>, SessionError> {
    let Some(bits) = flood_bits.filter(|&b| b > 0) else {
        return Ok(Vec::new());
    };
    // Each component's own plan: its noise bound per segment, in its layout.
    let plans = crt
        .components
        .iter()
        .zip(layouts)
        .map(|(c, l)| l.compile(&c.model))
        .collect::<Result<Vec<_>, _>>()?;
    plan::segments(crt.model())
        .iter()
        .enumerate()
        .map(|(i, r)| {
            crt.components
                .iter()
                .zip(&plans)
                .map(|(c, p)| {
                    let noise = p
                        .segments
                        .get(i)
                        .map(|s| s.noise_log2)
                        .ok_or(SessionError::Plan("a segment the layout did not plan"))?;
                    plan_sanitization(c.model.parameters(), noise, bits).map_err(|e| {
                        SessionError::NoRoomForCircuitPrivacy {
                            layers: r.clone(),
                            reason: e,
                        }
                    })
                })
                .collect()
        })
        .collect()
}

/// Keys for every component of `crt` in `layout`, compiled for a server flooding with
/// `flood_bits` (`None`: unsanitized): each with the Galois keys its plan lists.
pub fn keys_for(
    crt: &CrtModel,
    layout: LayoutKind,
    flood_bits: Option<u32>,
) -> Result<Vec<ClientKeys>, SessionError> {
    crt.components
        .iter()
        .map(|c| {
            let plan =
                CompiledLayout::for_flood(layout, &c.model, flood_bits)?.compile(&c.model)?;
            ClientKeys::generate_for(c.model.parameters(), &plan.galois_elements)
                .map_err(|e| SessionError::Model(ModelError::from(LayerError::from(e))))
        })
        .collect()
}

/// What an [`InProcess`] observer is shown: a segment's input, each layer's output, the
/// sanitized answer.
pub struct LayerObservation<'a> {
    /// The layer (see [`Observed`]).
    pub layer: usize,
    /// Component (plaintext modulus) index.
    pub component: usize,
    /// Which ciphertexts these are.
    pub observed: Observed,
    /// The ciphertexts after it (sanitized ones as the client has them: compressed for the
    /// wire and lifted back).
    pub cts: &'a [Ciphertext],
    /// What they take on the wire, bytes (compressed, for sanitized ones).
    pub wire_bytes: usize,
    /// Time the layer (or the sanitization) took, ms.
    pub ms: f64,
    /// The engine's operations it performed (process-wide counters, so only exact when
    /// nothing else runs).
    pub ops: OpCounts,
}

/// The server's side, in this process: the encoded models of a [`CrtModel`], the backends of
/// the client's public keys, and the sanitization the server would apply (planned at
/// construction, refused there as the server refuses it).
pub struct InProcess<'a> {
    crt: &'a CrtModel,
    /// One compiled layout per component.
    layouts: Vec<CompiledLayout>,
    backends: Vec<BfvBackend>,
    /// [segment][component], empty without circuit privacy.
    sanitization: Vec<Vec<SanitizationPlan>>,
    segments: Vec<Range<usize>>,
    observer: Option<&'a (dyn Fn(LayerObservation<'_>) + Sync)>,
}

impl<'a> InProcess<'a> {
    /// The runner for a model in a layout and the client's keys; `flood_bits` is the
    /// server's λ (`None`: answers unsanitized, as `--danger-no-circuit-privacy`).
    pub fn new(
        crt: &'a CrtModel,
        layout: LayoutKind,
        keys: &[ClientKeys],
        flood_bits: Option<u32>,
    ) -> Result<Self, SessionError> {
        if keys.len() != crt.components.len()
            || keys
                .iter()
                .zip(&crt.components)
                .any(|(k, c)| k.pk.parameters().fingerprint() != c.model.parameters().fingerprint())
        {
            return Err(SessionError::Plan(
                "one key set per plaintext modulus, for its parameter set, in order",
            ));
        }
        let segments = plan::segments(crt.model());
        let layouts = crt
            .components
            .iter()
            .map(|c| CompiledLayout::for_flood(layout, &c.model, flood_bits))
            .collect::<Result<Vec<_>, _>>()?;
        let sanitization = plan_circuit_privacy(crt, &layouts, flood_bits)?;
        Ok(Self {
            crt,
            layouts,
            backends: keys.iter().map(ClientKeys::backend).collect(),
            sanitization,
            segments,
            observer: None,
        })
    }

    /// Runs layer by layer, showing every layer's ciphertexts to `observer` (the parameter
    /// tester measures noise and values there).
    pub fn observed(mut self, observer: &'a (dyn Fn(LayerObservation<'_>) + Sync)) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The layout compiled for a component.
    pub fn layout(&self, component: usize) -> Option<&CompiledLayout> {
        self.layouts.get(component)
    }

    /// The sanitization planned for a segment and component, if any.
    pub fn sanitization(
        &self,
        layers: &Range<usize>,
        component: usize,
    ) -> Option<&SanitizationPlan> {
        let i = self.segments.iter().position(|s| s == layers)?;
        self.sanitization.get(i)?.get(component)
    }

    fn run_call(&self, call: SegmentCall) -> Result<SegmentAnswer, SessionError> {
        let transport = |e: ModelError| SessionError::Transport {
            layers: call.layers.clone(),
            source: Box::new(e),
        };
        let component = self
            .crt
            .components
            .get(call.component)
            .ok_or(SessionError::Plan("no such plaintext modulus"))?;
        let backend = self
            .backends
            .get(call.component)
            .ok_or(SessionError::Plan("no keys for this plaintext modulus"))?;
        let layout = self
            .layouts
            .get(call.component)
            .ok_or(SessionError::Plan("no layout for this plaintext modulus"))?;
        // As the server: only whole segments run, so every answer is sanitized as planned.
        if !self.segments.contains(&call.layers) {
            return Err(SessionError::NoSegment {
                requested: call.layers.clone(),
                segments: self.segments.clone(),
            });
        }
        let model = &component.model;
        let bytes_up = call.cts.iter().map(Ciphertext::serialized_len).sum();
        let t0 = Instant::now();
        let mut cts = call.cts;
        match self.observer {
            None => {
                cts = run_layers(layout, model, call.layers.clone(), call.batch, cts, backend)
                    .map_err(transport)?;
            }
            Some(observe) => {
                observe(LayerObservation {
                    layer: call.layers.start,
                    component: call.component,
                    observed: Observed::Input,
                    cts: &cts,
                    wire_bytes: bytes_up,
                    ms: 0.0,
                    ops: OpCounts::default(),
                });
                for layer in call.layers.clone() {
                    let t = Instant::now();
                    let before = snapshot();
                    cts = run_layers(layout, model, layer..layer + 1, call.batch, cts, backend)
                        .map_err(transport)?;
                    observe(LayerObservation {
                        layer,
                        component: call.component,
                        observed: Observed::Layer,
                        cts: &cts,
                        wire_bytes: cts.iter().map(Ciphertext::serialized_len).sum(),
                        ms: t.elapsed().as_secs_f64() * 1000.0,
                        ops: snapshot() - before,
                    });
                }
            }
        }
        let t1 = Instant::now();
        let before = snapshot();
        let mut sanitize_ms = 0.0;
        let mut server_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let mut bytes_down = cts.iter().map(Ciphertext::serialized_len).sum();
        if let Some(p) = self.sanitization(&call.layers, call.component) {
            let encryptor = backend.encryptor();
            cts = cts
                .par_iter()
                .map(|c| sanitize(c, encryptor, p))
                .collect::<Result<_, _>>()
                .map_err(|e| transport(ModelError::from(LayerError::from(e))))?;
            bytes_down = cts.iter().map(Ciphertext::serialized_len).sum();
            // As the server: sanitized answers travel compressed; the client lifts them back.
            let compressed = compress_answers(&cts, p.noise_log2)
                .map_err(|e| transport(ModelError::from(LayerError::from(e))))?;
            sanitize_ms = t1.elapsed().as_secs_f64() * 1000.0;
            server_ms = t0.elapsed().as_secs_f64() * 1000.0;
            if let Some((bits, small)) = compressed {
                bytes_down = small.first().map_or(0, |c| {
                    CompressedCiphertext::batch_serialized_len(c.parameters(), bits, small.len())
                });
                // The client's part: lifting back.
                cts = small.iter().map(CompressedCiphertext::decompress).collect();
            }
            if let Some(observe) = self.observer {
                observe(LayerObservation {
                    layer: call.layers.end - 1,
                    component: call.component,
                    observed: Observed::Sanitized,
                    cts: &cts,
                    wire_bytes: bytes_down,
                    ms: sanitize_ms,
                    ops: snapshot() - before,
                });
            }
        }
        Ok(SegmentAnswer {
            bytes_down,
            cts,
            server_ms,
            sanitize_ms,
            bytes_up,
        })
    }
}

impl Transport for InProcess<'_> {
    fn compute(
        &self,
        call: SegmentCall,
    ) -> impl Future<Output = Result<SegmentAnswer, SessionError>> + Send {
        std::future::ready(self.run_call(call))
    }

    /// Unobserved, the plaintext moduli run on parallel threads, as a server runs concurrent
    /// requests; observed, one after another (the operation counts are process-wide).
    fn compute_all(
        &self,
        calls: Vec<SegmentCall>,
        done: &(dyn Fn() + Sync),
    ) -> impl Future<Output = Vec<Result<SegmentAnswer, SessionError>>> + Send {
        let run = |call| {
            let answer = self.run_call(call);
            done();
            answer
        };
        std::future::ready(if self.observer.is_some() {
            calls.into_iter().map(run).collect()
        } else {
            calls.into_par_iter().map(run).collect()
        })
    }
}

/// Runs the encryptable prefix of a locally built model on `x` (quantized input), segment by
/// segment, in process: the session over [`InProcess`] with the server's sanitization at
/// `flood_bits` (`None`: unsanitized).
pub fn run_local(
    crt: &CrtModel,
    layout: LayoutKind,
    keys: &[ClientKeys],
    x: &IntTensor,
    flood_bits: Option<u32>,
) -> Result<SessionRun, SessionError> {
    let transport = InProcess::new(crt, layout, keys, flood_bits)?;
    let compiled = transport
        .layout(0)
        .ok_or(SessionError::Plan("no plaintext modulus"))?;
    let plan = SessionPlan::from_model(crt.model(), compiled, &crt.moduli)?;
    let session = Session::new(plan, keys.iter().map(|k| &k.sk).collect())?;
    session.run_blocking(&transport, x)
}
