//! The server under hostile use, over raw TCP where a well-behaved client cannot misbehave:
//! framework rejections as JSON with request ids, probes and metrics, a full job queue
//! answered 503 with Retry-After, slow uploads cut off, jobs stopped at their deadline or
//! when their client goes away, tokens and tenants, and a graceful stop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use client::{load_test_set, Api, ClientConfig, KeySet};
use he_layers::crypto::Ciphertext;
use he_layers::protocol::{ComputeRequest, EncryptionParameters, QuantizationConfig};
use he_layers::tensor::{EncryptedTensor, ValueInfo};
use server::{Limits, ServerConfig};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// A server on a loopback port with these limits (and `edit` applied to its settings).
async fn start(limits: Limits, edit: impl FnOnce(&mut ServerConfig)) -> String {
    he_layers::tune_allocator();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = ServerConfig {
        models_dir: models(),
        limits,
        allowed_reencrypt: vec![("mnist-tiny".into(), vec![0, 1])],
        ..Default::default()
    };
    edit(&mut cfg);
    tokio::spawn(async move { server::serve(listener, cfg).await });
    addr.to_string()
}

/// A request ready to send, with what its answer takes.
struct Prepared {
    req: ComputeRequest,
    cts: Vec<u8>,
    params: std::sync::Arc<he_layers::crypto::BfvParameters>,
    answer_ciphertexts: usize,
}

/// mnist-tiny's first segment (its Conv2d), batch layout, N = 8192: a real request and its
/// ciphertexts, keys uploaded (with `token` where the server wants one).
async fn prepare(addr: &str, token: Option<&str>) -> Prepared {
    let base = format!("http://{addr}");
    let api = match token {
        Some(t) => Api::with_token(&base, t).unwrap(),
        None => Api::new(&base).unwrap(),
    };
    let cfg = ClientConfig {
        address: base.clone(),
        net: "mnist-tiny".into(),
        encryption_parameters: serde_json::from_str::<EncryptionParameters>(
            r#"{"degree": 8192, "plain_modulus_bits": 20}"#,
        )
        .unwrap(),
        quantization: QuantizationConfig {
            input_scale_bits: 3,
            weight_bits: Some(4),
        },
        layers: Some([0, 1]),
        reencrypt_positions: vec![0],
        model: None,
        scheme: Default::default(),
        layout: Some(he_layers::plan::LayoutKind::Batch),
        connection: Default::default(),
    };
    let keys = KeySet::generate(&cfg.encryption_parameters).unwrap();
    let c = &keys.components[0];
    let (kr, _) = api.upload_keys(c).await.unwrap();
    let plan = api
        .plan(&cfg.model_config(he_layers::plan::LayoutKind::Batch))
        .await
        .unwrap();
    let images =
        load_test_set(&models().join("data/mnist-t10k-images-idx3-ubyte.gz"), 0, 1).unwrap();
    let q = images.tensor.map(|&v| (v * 8.0).round() as i128);
    let info = ValueInfo {
        shape: plan.input.shape.clone(),
        scale: plan.input.scale,
        lo: plan.input.lo,
        hi: plan.input.hi,
        float_bound: 1.0,
        error_bound: 0.0,
    };
    let enc = EncryptedTensor::encrypt(&q, &info, &c.sk).unwrap();
    let req = ComputeRequest {
        plan_id: plan.plan_id,
        plain_modulus: c.params.plain_modulus(),
        key_id: kr.key_id,
        layers: [0, 1],
        batch: 1,
        accept_compressed: true,
    };
    Prepared {
        req,
        cts: Ciphertext::batch_to_bytes(&enc.cts, &c.params),
        params: c.params.clone(),
        answer_ciphertexts: plan.layers[0].shape.iter().product(),
    }
}

async fn compute_request(addr: &str, token: Option<&str>) -> (ComputeRequest, Vec<u8>) {
    let p = prepare(addr, token).await;
    (p.req, p.cts)
}

const BOUNDARY: &str = "hostileboundary7f3a";

/// A multipart /compute body: the request part, then the ciphertext part's head, its bytes
/// and the closing boundary (separately, so a test can send some and stall).
fn body_pieces(req: &ComputeRequest) -> (Vec<u8>, Vec<u8>) {
    let mut head =
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"request\"\r\n\r\n")
            .into_bytes();
    head.extend_from_slice(&serde_json::to_vec(req).unwrap());
    head.extend_from_slice(
        format!("\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"ciphertexts\"\r\n\r\n")
            .as_bytes(),
    );
    let tail = format!("\r\n--{BOUNDARY}--\r\n").into_bytes();
    (head, tail)
}

/// The request line and headers of a /compute with a body of `len` bytes.
fn compute_headers(addr: &str, len: usize, extra: &str) -> Vec<u8> {
    format!(
        "POST /compute HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; \
         boundary={BOUNDARY}\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// Sends a whole /compute request (headers and body) and returns the connection.
async fn send_whole(addr: &str, req: &ComputeRequest, cts: &[u8]) -> TcpStream {
    let (head, tail) = body_pieces(req);
    let len = head.len() + cts.len() + tail.len();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&compute_headers(addr, len, "")).await.unwrap();
    s.write_all(&head).await.unwrap();
    s.write_all(cts).await.unwrap();
    s.write_all(&tail).await.unwrap();
    s
}

/// Reads an HTTP/1.1 answer to its end: status, headers (lowercase names), body.
async fn read_answer(s: &mut TcpStream) -> (u16, Vec<(String, String)>, serde_json::Value) {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (status, headers, json)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn get(
    addr: &str,
    path: &str,
    extra: &str,
) -> (u16, Vec<(String, String)>, serde_json::Value) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    read_answer(&mut s).await
}

async fn metrics(addr: &str) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_rejections_are_json_and_every_answer_has_a_request_id() {
    let addr = start(Limits::default(), |_| {}).await;
    let kind = |v: &serde_json::Value| v["error"]["kind"].as_str().unwrap_or("").to_string();

    let (status, headers, body) = get(&addr, "/no/such/route", "x-request-id: trace-42\r\n").await;
    assert_eq!((status, kind(&body).as_str()), (404, "unknown_route"));
    assert_eq!(header(&headers, "x-request-id"), Some("trace-42"));
    assert_eq!(header(&headers, "content-type"), Some("application/json"));

    // A wrong method, a JSON body over /plan's small limit, a bad id: all JSON, all with ids.
    let http = reqwest::Client::new();
    let r = http
        .delete(format!("http://{addr}/plan"))
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 16, "a fresh id: {id}");
    assert_eq!(r.status().as_u16(), 405);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(kind(&v), "method_not_allowed");
    let r = http
        .post(format!("http://{addr}/plan"))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(kind(&v), "too_large");
    let (status, headers, body) = get(&addr, "/health", "x-request-id: not a sane id\r\n").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    assert_ne!(header(&headers, "x-request-id"), Some("not a sane id"));
    let (status, _, body) = get(&addr, "/ready", "").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    let (status, _, doc) = get(&addr, "/openapi.json", "").await;
    assert_eq!((status, doc["openapi"].as_str()), (200, Some("3.1.0")));
    assert!(doc["paths"]["/compute"]["post"].is_object());

    let text = metrics(&addr).await;
    for needle in [
        "he_requests_total{route=\"unmatched\",status=\"404\"} 1",
        "he_requests_total{route=\"/plan\",status=\"405\"} 1",
        "he_requests_total{route=\"/plan\",status=\"413\"} 1",
        "he_errors_total{kind=\"too_large\"} 1",
        "he_jobs_queued 0",
        "# TYPE he_compute_seconds histogram",
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_and_a_stalled_upload_is_cut_off() {
    let limits = Limits {
        max_jobs: 1,
        max_queued_jobs: 0,
        body_read_timeout: Duration::from_secs(3),
        ..Limits::default()
    };
    let addr = start(limits, |_| {}).await;
    let (req, cts) = compute_request(&addr, None).await;
    let (head, tail) = body_pieces(&req);
    let len = head.len() + cts.len() + tail.len();

    // A client sends its request part and half its ciphertexts, then stalls: it holds the
    // one job place, so the next is refused at once, before its ciphertexts are read.
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(&compute_headers(&addr, len, ""))
        .await
        .unwrap();
    stalled.write_all(&head).await.unwrap();
    stalled.write_all(&cts[..cts.len() / 2]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, body) = get(&addr, "/ready", "").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (503, Some("job queue full"))
    );

    let started = Instant::now();
    let mut second = TcpStream::connect(&addr).await.unwrap();
    second
        .write_all(&compute_headers(&addr, len, ""))
        .await
        .unwrap();
    second.write_all(&head).await.unwrap();
    let (status, headers, body) = read_answer(&mut second).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["kind"], "busy");
    assert!(header(&headers, "retry-after").is_some_and(|s| s.parse::<u64>().is_ok()));
    assert!(started.elapsed() < Duration::from_secs(2));

    // The stalled upload passes the body timeout: 408, JSON, and the place is free again.
    let (status, _, body) = read_answer(&mut stalled).await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (408, Some("timeout"))
    );
    let (status, _, _) = get(&addr, "/ready", "").await;
    assert_eq!(status, 200);

    // A body that says it is larger than the limit is refused unread.
    let mut huge = TcpStream::connect(&addr).await.unwrap();
    huge.write_all(&compute_headers(&addr, 1 << 40, ""))
        .await
        .unwrap();
    let (status, _, body) = read_answer(&mut huge).await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (413, Some("too_large"))
    );

    // Ciphertexts longer than the segment's input can be (twice the seeded size and more)
    // are refused as soon as they pass it, without the rest being buffered.
    let mut long = TcpStream::connect(&addr).await.unwrap();
    let extra = cts.len() + (1 << 20);
    long.write_all(&compute_headers(&addr, len + extra, ""))
        .await
        .unwrap();
    long.write_all(&head).await.unwrap();
    long.write_all(&cts).await.unwrap();
    let _ = long.write_all(&vec![0u8; extra]).await;
    let _ = long.write_all(&tail).await;
    let (status, _, body) = read_answer(&mut long).await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (413, Some("too_large"))
    );

    // And the honest request, whole, still works.
    let mut ok = send_whole(&addr, &req, &cts).await;
    let (status, _, body) = read_answer(&mut ok).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_stop_at_their_deadline_and_when_their_client_goes_away() {
    // A request timeout shorter than any computation: the job stops at its first operation.
    let limits = Limits {
        request_timeout: Duration::from_millis(1),
        ..Limits::default()
    };
    let addr = start(limits, |_| {}).await;
    let (req, cts) = compute_request(&addr, None).await;
    let mut s = send_whole(&addr, &req, &cts).await;
    let (status, headers, body) = read_answer(&mut s).await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (503, Some("compute_timeout"))
    );
    assert!(header(&headers, "retry-after").is_some());
    assert_eq!(metric(&metrics(&addr).await, "he_jobs_stopped_total"), 1);

    // A client that sends a whole request and leaves: its job stops before its end.
    let addr = start(Limits::default(), |_| {}).await;
    let (req, cts) = compute_request(&addr, None).await;
    let s = send_whole(&addr, &req, &cts).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics(&addr).await;
        if metric(&text, "he_jobs_stopped_total") == 1 {
            assert_eq!(
                metric(&text, "he_compute_seconds_count"),
                0,
                "the job ran to its end"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job was not stopped:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A tokens file for two tenants, `a` with room for two key sets.
fn tokens_file() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("he-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokens.json");
    std::fs::write(
        &path,
        r#"{"tenants": [
            {"name": "a", "token": "token-of-tenant-a-0123", "max_key_sets": 2},
            {"name": "b", "token": "token-of-tenant-b-4567", "max_key_sets": 2}
        ]}"#,
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_tenants_keep_their_own_keys_and_strangers_are_refused() {
    let tokens = tokens_file();
    let addr = start(Limits::default(), |c| c.api_tokens = Some(tokens.clone())).await;
    let base = format!("http://{addr}");
    const A: &str = "token-of-tenant-a-0123";
    const B: &str = "token-of-tenant-b-4567";

    // Probes are open; everything else wants a known token.
    assert_eq!(get(&addr, "/health", "").await.0, 200);
    for extra in [
        "",
        "Authorization: Bearer wrong-token-000000\r\n",
        "Authorization: token-of-tenant-a-0123\r\n",
    ] {
        let (status, _, body) = get(&addr, "/models", extra).await;
        assert_eq!(
            (status, body["error"]["kind"].as_str()),
            (401, Some("unauthorized")),
            "{extra}"
        );
    }
    let (status, _, _) = get(&addr, "/models", &format!("Authorization: Bearer {A}\r\n")).await;
    assert_eq!(status, 200);

    // Tenant a's request runs; tenant b cannot see or use a's keys.
    let Prepared {
        req,
        cts,
        params,
        answer_ciphertexts: n,
    } = prepare(&addr, Some(A)).await;
    let api_a = Api::with_token(&base, A).unwrap();
    let api_b = Api::with_token(&base, B).unwrap();
    let ok = api_a.compute(&req, &params, cts.clone(), n).await;
    assert!(ok.is_ok(), "{:?}", ok.err());
    let stolen = api_b.compute(&req, &params, cts.clone(), n).await;
    assert!(
        matches!(&stolen, Err(client::ClientError::Server { status: 404, kind, .. }) if kind == "unknown_key"),
        "{stolen:?}"
    );
    // b floods its own key cache; a's keys stay.
    for _ in 0..3 {
        let keys = KeySet::generate(
            &serde_json::from_str(r#"{"degree": 2048, "plain_modulus_bits": 16}"#).unwrap(),
        )
        .unwrap();
        api_b.upload_keys(&keys.components[0]).await.unwrap();
    }
    assert!(api_a.compute(&req, &params, cts, n).await.is_ok());
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(A)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&text, "he_cached_keys"),
        3,
        "a's one set and b's last two:\n{text}"
    );
    let _ = std::fs::remove_dir_all(tokens.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_lets_the_request_in_flight_finish_and_takes_no_new_ones() {
    he_layers::tune_allocator();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cfg = ServerConfig {
        models_dir: models(),
        allowed_reencrypt: vec![("mnist-tiny".into(), vec![0, 1])],
        ..Default::default()
    };
    let server = tokio::spawn(server::serve_until(listener, cfg, None, async {
        let _ = stopped.await;
    }));
    let (req, cts) = compute_request(&addr, None).await;
    let mut s = send_whole(&addr, &req, &cts).await;
    // Stopped while its job runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&addr, "/ready", "").await.2["jobs_running"] != 1 {
        assert!(Instant::now() < deadline, "the job never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();
    // No new connection is taken during the grace period.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(&addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after the stop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, _, _) = read_answer(&mut s).await;
    assert_eq!(status, 200, "the request in flight finished");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(&addr).await.is_err(),
        "no new connection after the stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_connection_taken_the_probes_still_answer() {
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let addr = start(limits, |_| {}).await;
    // One slow client holds the only place (its headers never end).
    let mut hog = TcpStream::connect(&addr).await.unwrap();
    hog.write_all(b"GET /models HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    let (status, _, body) = get(&addr, "/health", "").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    // At once, not after the hog's header timeout (10 s) frees its place.
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    let (status, _, body) = get(&addr, "/models", "").await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (503, Some("busy"))
    );
    drop(hog);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_jobs_gets_429_and_stalled_key_uploads_fill_their_gate() {
    let dir = std::env::temp_dir().join(format!("he-quota-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens.json");
    const A: &str = "token-with-one-job-00000";
    std::fs::write(
        &tokens,
        format!(r#"{{"tenants": [{{"name": "a", "token": "{A}", "max_jobs": 1}}]}}"#),
    )
    .unwrap();
    let limits = Limits {
        max_jobs: 1,
        body_read_timeout: Duration::from_secs(5),
        ..Limits::default()
    };
    let addr = start(limits, |c| c.api_tokens = Some(tokens.clone())).await;
    let (req, cts) = compute_request(&addr, Some(A)).await;
    let (head, tail) = body_pieces(&req);
    let len = head.len() + cts.len() + tail.len();
    let auth = format!("Authorization: Bearer {A}\r\n");

    // The token's one job is held by a stalled upload; its next job is refused with 429.
    let mut first = TcpStream::connect(&addr).await.unwrap();
    first
        .write_all(&compute_headers(&addr, len, &auth))
        .await
        .unwrap();
    first.write_all(&head).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut second = TcpStream::connect(&addr).await.unwrap();
    second
        .write_all(&compute_headers(&addr, len, &auth))
        .await
        .unwrap();
    second.write_all(&head).await.unwrap();
    let (status, headers, body) = read_answer(&mut second).await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (429, Some("over_quota")),
        "{body}"
    );
    assert!(header(&headers, "retry-after").is_some());
    drop(first);

    // Key uploads: one parsed and one waiting at most (max_jobs 1); stalled, they fill the
    // gate and the next upload is refused with 503 before its body is read.
    let key_head = |n: usize| {
        format!(
            "POST /keys HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: multipart/form-data; \
             boundary={BOUNDARY}\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n--{BOUNDARY}\r\n\
             Content-Disposition: form-data; name=\"parameters\"\r\n\r\nHE"
        )
        .into_bytes()
    };
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(&key_head(1 << 20)).await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut third = TcpStream::connect(&addr).await.unwrap();
    third.write_all(&key_head(1 << 20)).await.unwrap();
    let (status, _, body) = read_answer(&mut third).await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (503, Some("busy")),
        "{body}"
    );
    drop(held);
    let _ = std::fs::remove_dir_all(&dir);
}
