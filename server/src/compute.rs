//! `POST /compute`: one segment of a plan on a client's ciphertexts.
//!
//! The JSON part comes first and is judged alone: plan, keys, segment, batch, and from them
//! the exact range of bytes the ciphertext part may take. Only then is the job admitted (503
//! beyond the job queue, 429 beyond the tenant's jobs) and the ciphertexts read, refused the
//! moment they pass that range. The job runs on the blocking pool and stops at its next
//! operation if its client goes away or the request's deadline passes.

use crate::error::ApiError;
use crate::hygiene::LogDetail;
use crate::multipart::Parts;
use crate::tenants::Tenant;
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use he_layers::crypto::sanitize::sanitize;
use he_layers::crypto::{compress_answers, Ciphertext, CompressedCiphertext};
use he_layers::layers::{StopSignal, Stoppable};
use he_layers::plan::{Layout, PROTOCOL_VERSION};
use he_layers::protocol::{ComputeRequest, ComputeResponse, TensorInfo};
use rayon::prelude::*;
use std::sync::Arc;
use std::time::Instant;

/// Largest JSON part of a compute request.
const MAX_REQUEST_PART: usize = 64 << 10;

use crate::multipart::{MIN_UPLOAD_GRACE, MIN_UPLOAD_RATE};

/// The parts of a compute request, in their order.
const PARTS: [&str; 2] = ["request", "ciphertexts"];

/// Raises the stop signal when dropped: the handler's future is dropped when its client
/// disconnects or the request times out, and the job then stops at its next operation.
struct StopOnDrop(StopSignal);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Parses the JSON part; a protocol-1 request (the configuration resent, no `plan_id`) gets
/// an error that says what changed rather than a field-by-field complaint.
fn parse_compute_request(bytes: &[u8]) -> Result<ComputeRequest, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let old = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .is_some_and(|v| v.get("plan_id").is_none() && v.get("net").is_some());
        if old {
            ApiError::bad_request(
                "protocol_version",
                format!(
                    "this server speaks protocol {PROTOCOL_VERSION}: /compute names the plan_id \
                     that POST /plan returns instead of resending the configuration; update the \
                     client"
                ),
            )
        } else {
            ApiError::bad_request("invalid_json", format!("request: {e}"))
        }
    })
}

fn hex64(value: &str, kind: &'static str, what: &str) -> Result<(), ApiError> {
    if value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            kind,
            format!("{what} must be 64 lowercase hex digits"),
        ))
    }
}

/// A multipart/form-data answer, a JSON part and a binary part, streamed without copying
/// the binary.
fn multipart_response(json: Vec<u8>, binary: Vec<u8>) -> Response {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let boundary = loop {
        let b: String = (0..32)
            .map(|_| format!("{:x}", rng.gen_range(0..16u8)))
            .collect();
        let marker = format!("--{b}");
        if !binary.windows(marker.len()).any(|w| w == marker.as_bytes()) {
            break b;
        }
    };
    let mut head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"result\"\r\nContent-Type: \
         application/json\r\n\r\n"
    )
    .into_bytes();
    head.extend_from_slice(&json);
    head.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"ciphertexts\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
    let chunks = [head, binary, tail].map(|c| Ok::<_, std::convert::Infallible>(Bytes::from(c)));
    Response::builder()
        .status(StatusCode::OK)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap_or_else(|_| ApiError::internal("could not build the response").into_response())
}

/// `POST /compute`.
pub async fn compute(
    State(state): State<Arc<AppState>>,
    Extension(tenant): Extension<Arc<Tenant>>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let mut parts = Parts::new(
        &headers,
        multipart,
        &PARTS,
        state.max_body_bytes,
        state.limits.body_read_timeout,
    )?;
    let answer = run_request(&state, &tenant, &mut parts, started).await;
    if answer.is_err() {
        parts.drain().await;
    }
    answer
}

/// Judges, admits, reads and runs one request.
async fn run_request(
    state: &Arc<AppState>,
    tenant: &Tenant,
    parts: &mut Parts,
    started: Instant,
) -> Result<Response, ApiError> {
    let req = parse_compute_request(&parts.require("request", MAX_REQUEST_PART).await?)?;
    let [start, end] = req.layers;

    // Plan, keys, segment and batch: all checked before any ciphertext is read. Everything
    // about the configuration was checked once, when the plan was compiled.
    hex64(
        &req.plan_id,
        "invalid_plan_id",
        "plan_id (as POST /plan returns it)",
    )?;
    hex64(
        &req.key_id,
        "invalid_key_id",
        "key_id (as POST /keys returns it)",
    )?;
    let plan = state.plans.get(&req.plan_id).ok_or_else(|| {
        ApiError::not_found(
            "unknown_plan",
            "no plan with this plan_id (never made, or evicted): POST /plan again",
        )
    })?;
    let keys = tenant.keys.get(&req.key_id).ok_or_else(|| {
        ApiError::not_found(
            "unknown_key",
            "no keys with this key_id (never uploaded, or evicted): upload them with POST /keys",
        )
    })?;
    let component = plan.component(req.plain_modulus)?;
    let params = component.params.clone();
    if params.fingerprint() != keys.params.fingerprint() {
        return Err(ApiError::unprocessable(
            "parameter_mismatch",
            format!(
                "the keys are for parameters {}, the plan's modulus {} is {}",
                keys.params.fingerprint_hex(),
                req.plain_modulus,
                params.fingerprint_hex()
            ),
        ));
    }
    let range = start..end;
    let seg_index = plan.segment_index(&range)?;
    let model = &component.built.model;
    model.check_overflow(&range)?;
    let segment = &component.execution.segments[seg_index];
    let expected =
        segment
            .input_packing
            .ciphertext_count(segment.input.len(), req.batch, params.degree())?;
    if model.layers()[range.clone()].iter().any(|l| l.depth() > 0) && !keys.has_relin {
        return Err(ApiError::unprocessable(
            "missing_key",
            "the layers square ciphertexts: upload a relinearization key with the keys",
        ));
    }
    if let Some(g) = component
        .execution
        .galois_elements
        .iter()
        .find(|g| !keys.galois_elements.contains(g))
    {
        return Err(ApiError::unprocessable(
            "missing_key",
            format!(
                "the plan rotates with Galois element {g}, and the keys hold none for it: \
                 generate Galois keys for every element POST /plan lists"
            ),
        ));
    }
    // Circuit privacy was sized from the public model when the plan was compiled; a segment
    // whose budget cannot absorb the flooding is refused here, before any work.
    let sanitization = match component.sanitization.get(seg_index) {
        Some(Ok(p)) => Some(p.clone()),
        Some(Err(e)) => {
            return Err(ApiError::unprocessable(
                "no_room_for_circuit_privacy",
                format!("layers [{start}, {end}): {e}"),
            ))
        }
        None if plan.sanitized => {
            return Err(ApiError::internal(
                "the plan lacks a sanitization for this segment",
            ))
        }
        None => None,
    };

    // A place in the queue (and within the tenant's jobs) before the ciphertexts are read.
    let tenant_job = tenant.start_job()?;
    let waits = state.jobs.would_wait();
    let admission = state.jobs.admit(state.retry_after())?;
    let (lo, hi) = Ciphertext::batch_len_bounds(&params, expected);
    // A place in the queue is held while the ciphertexts arrive: when the job waits, they
    // must come at a minimum rate, so that slow uploads cannot keep the queue full.
    if waits {
        parts.hurry(
            MIN_UPLOAD_GRACE + std::time::Duration::from_secs_f64(hi as f64 / MIN_UPLOAD_RATE),
        );
    }
    let cts_bytes = parts.require("ciphertexts", hi).await?;
    parts.end().await?;
    let bytes_in = cts_bytes.len();
    if bytes_in < lo {
        return Err(ApiError::unprocessable(
            "input_mismatch",
            format!(
                "{bytes_in} bytes of ciphertexts; layer {start} expects {expected} ciphertexts \
                 ({lo} to {hi} bytes) for {} images in the {} layout",
                req.batch, plan.execution.layout
            ),
        ));
    }
    let slot = admission.run().await?;
    let queued_ms = started.elapsed().as_secs_f64() * 1000.0;

    let signal = StopSignal::new().with_deadline(started + state.limits.request_timeout);
    let _stop_on_drop = StopOnDrop(signal.clone());
    let t0 = Instant::now();
    let plan2 = plan.clone();
    let batch = req.batch;
    let t = req.plain_modulus;
    let accept_compressed = req.accept_compressed;
    let state2 = state.clone();
    let (mut resp, detail) = tokio::task::spawn_blocking(move || {
        // Held until the job really ends, not when its client leaves.
        let _slot = slot;
        let _tenant_job = tenant_job;
        let run = || {
            let component = plan2.component(t)?;
            let mut cts = Ciphertext::batch_from_bytes(&cts_bytes, &params, expected)?;
            drop(cts_bytes);
            if cts.len() != expected {
                return Err(ApiError::unprocessable(
                    "input_mismatch",
                    format!(
                    "{} ciphertexts; layer {start} expects {expected} for {batch} images in the \
                     {} layout",
                    cts.len(),
                    plan2.execution.layout
                ),
                ));
            }
            if let Some(i) = cts.iter().position(|c| c.size() != 2) {
                return Err(ApiError::unprocessable(
                    "input_mismatch",
                    format!(
                        "ciphertext {i} has {} polynomials; fresh ones have 2",
                        cts[i].size()
                    ),
                ));
            }
            // The serialized noise estimate is the client's word: replaced by the fresh bound.
            cts.iter_mut().for_each(Ciphertext::assume_fresh_noise);
            let backend = Stoppable::new(&keys.backend, signal.clone());
            let mut out =
                component
                    .layout
                    .run(&component.built.model, range, batch, cts, &backend)?;
            let t1 = Instant::now();
            if let Some(p) = &sanitization {
                let encryptor = keys.backend.encryptor();
                out = out
                    .par_iter()
                    .map(|c| sanitize(c, encryptor, p))
                    .collect::<Result<_, _>>()
                    .map_err(|e| ApiError::internal(format!("sanitization failed: {e}")))?;
            }
            // Sanitized answers travel compressed to the width their public bound allows, to
            // clients that read them.
            let compressed = match &sanitization {
                Some(p) if accept_compressed => compress_answers(&out, p.noise_log2)
                    .map_err(|e| ApiError::internal(format!("compression failed: {e}")))?,
                _ => None,
            };
            let sanitize_ms = t1.elapsed().as_secs_f64() * 1000.0;
            let compute_ms = t0.elapsed().as_secs_f64() * 1000.0;
            // Every answer is at one level: the sanitization's, or unsanitized where the layout
            // left it (a packed plan may switch down inside the segment).
            let out_params = match out.first() {
                Some(c) => c.parameters().clone(),
                None => params.clone(),
            };
            if out
                .iter()
                .any(|c| c.parameters().level() != out_params.level())
            {
                return Err(ApiError::internal("answers at different levels"));
            }
            let (binary, compressed_bits) = match &compressed {
                Some((bits, small)) => (
                    CompressedCiphertext::batch_to_bytes(small, &out_params, *bits),
                    Some(*bits),
                ),
                None => (Ciphertext::batch_to_bytes(&out, &out_params), None),
            };
            let output = &plan2.execution.segments[seg_index].output;
            let result = ComputeResponse {
                protocol: PROTOCOL_VERSION,
                layers: [start, end],
                output: TensorInfo {
                    shape: output.shape.clone(),
                    batch,
                    scale: output.scale,
                    lo: output.lo,
                    hi: output.hi,
                },
                compute_ms,
                sanitize_ms,
                ciphertexts: out.len(),
                level: out_params.level(),
                sanitization,
                compressed_bits,
            };
            let json =
                serde_json::to_vec(&result).map_err(|e| ApiError::internal(e.to_string()))?;
            let id = plan2.id.get(..12).unwrap_or(&plan2.id);
            let detail = format!(
                "net={} plan={} layers=[{start},{end}) t={t} cts_in={expected} cts_out={} \
             bytes_in={bytes_in} bytes_out={} queued_ms={queued_ms:.0} compute_ms={compute_ms:.0} \
             sanitize_ms={sanitize_ms:.0} level={}",
                plan2.net,
                id,
                out.len(),
                binary.len(),
                out_params.level()
            );
            // The boundary search reads the whole answer: here, off the async workers.
            Ok::<_, ApiError>((multipart_response(json, binary), detail))
        };
        let r = run();
        if let Err(e) = &r {
            if matches!(e.kind, "cancelled" | "compute_timeout") {
                state2.metrics.stopped_job();
            }
        }
        r
    })
    .await??;
    state.metrics.compute(t0.elapsed());
    resp.extensions_mut().insert(LogDetail(detail));
    Ok(resp)
}
