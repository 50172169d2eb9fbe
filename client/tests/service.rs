//! The real server on a loopback port, driven over HTTP by the real client code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use client::{load_pngs, load_test_set, run_compute, Api, ClientConfig, KeySet};
use he_layers::crypto::Ciphertext;
use he_layers::protocol::{
    ComputeRequest, EncryptionParameters, ModelConfig, QuantizationConfig, TensorInfo,
};
use he_layers::tensor::{EncryptedTensor, IntTensor};
use net_builder::pipeline::build_crt;
use net_builder::{load_model, BuildOptions, PickleOptions};
use std::path::{Path, PathBuf};

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

async fn start_server(max_body_bytes: usize) -> String {
    start_server_with(max_body_bytes, Some(server::DEFAULT_FLOOD_BITS)).await
}

/// The server, with mnist-tiny's operator also allowing re-encryption after its Conv2d and
/// its Square (`--allow-reencrypt mnist-tiny=0,1`).
async fn start_server_with(max_body_bytes: usize, flood_bits: Option<u32>) -> String {
    he_layers::tune_allocator();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = server::ServerConfig {
        models_dir: models(),
        max_body_bytes,
        flood_bits,
        allowed_reencrypt: vec![("mnist-tiny".into(), vec![0, 1])],
        ..Default::default()
    };
    tokio::spawn(async move { server::serve(listener, cfg).await });
    format!("http://{addr}")
}

fn params(json: &str) -> EncryptionParameters {
    serde_json::from_str(json).unwrap()
}

/// The mirror of the same configuration, built locally from the model file.
fn local_mirror(
    net: &str,
    cfg: &ClientConfig,
    weight_bits: u32,
    x: &IntTensor,
    end: usize,
) -> IntTensor {
    let spec = load_model(
        &models().join(net).join("model.onnx"),
        &PickleOptions::default(),
    )
    .unwrap();
    let moduli = cfg.encryption_parameters.plain_moduli().unwrap();
    let opts = BuildOptions {
        input_scale_bits: cfg.quantization.input_scale_bits,
        weight_bits: Some(weight_bits),
        reencrypt_after: cfg.reencrypt_positions.clone(),
        ..Default::default()
    };
    let crt = build_crt(&spec, cfg.encryption_parameters.degree, &moduli, &opts).unwrap();
    crt.model().run_int(0..end, x).unwrap()
}

fn quantize(x: &he_layers::tensor::FloatTensor, bits: u32) -> IntTensor {
    x.map(|&v| (v * (bits as f64).exp2()).round() as i128)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cryptonets_over_http_equals_the_mirror() {
    let address = start_server(1 << 30).await;
    let mut cfg =
        ClientConfig::load(&models().join("configs/mnist-cryptonets.client.json")).unwrap();
    cfg.address = address;
    let mut keys = KeySet::generate(&cfg.encryption_parameters).unwrap();
    let images = load_test_set(
        &models().join("data/mnist-t10k-images-idx3-ubyte.gz"),
        0,
        100,
    )
    .unwrap();
    let report = run_compute(&cfg, &mut keys, None, &images, true)
        .await
        .unwrap();
    assert_eq!(report.segments.len(), 1);
    // Sanitized for circuit privacy: what is left after flooding, at a lower level.
    assert!(report.segments[0].noise_budget.iter().all(|&b| b > 0));
    let q = quantize(&images.tensor, cfg.quantization.input_scale_bits);
    let mirror = local_mirror("mnist-cryptonets", &cfg, report.weight_bits, &q, 6);
    assert_eq!(
        report.integers.as_ref().unwrap(),
        &mirror,
        "decrypted integers equal the mirror"
    );
    let correct = report
        .images
        .iter()
        .filter(|r| r.true_label == Some(r.label))
        .count();
    assert!(correct >= 97, "{correct}/100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lenet1_with_a_reencryption_gives_the_plaintext_labels() {
    let address = start_server(1 << 30).await;
    let cfg = ClientConfig {
        address,
        net: "mnist-lenet1-square".into(),
        encryption_parameters: params(r#"{"m": 8192, "plain_modulus_bits": 40, "sec": 128}"#),
        quantization: QuantizationConfig {
            input_scale_bits: 4,
            weight_bits: None,
        },
        layers: None,
        reencrypt_positions: vec![2],
        model: None,
        scheme: Default::default(),
        layout: Some(he_layers::plan::LayoutKind::Batch),
        connection: Default::default(),
    };
    let dir = models().join("mnist-lenet1-square/samples");
    let paths: Vec<PathBuf> = (0..16).map(|i| dir.join(format!("{i:02}.png"))).collect();
    let images = load_pngs(&paths).unwrap();
    let mut keys = KeySet::generate(&cfg.encryption_parameters).unwrap();
    let report = run_compute(&cfg, &mut keys, None, &images, true)
        .await
        .unwrap();
    // Two segments, a noise budget reported at the boundary and at the end.
    assert_eq!(report.segments.len(), 2);
    assert_eq!(report.segments[0].layers, [0, 3]);
    assert_eq!(report.segments[1].layers, [4, 8]);
    for s in &report.segments {
        assert!(s.noise_budget[0] > 0, "{:?}", s.noise_budget);
    }
    let spec = load_model(
        &models().join("mnist-lenet1-square/model.onnx"),
        &PickleOptions::default(),
    )
    .unwrap();
    let plain = net_builder::eval::float_outputs(&spec, &images.tensor).unwrap();
    for (r, p) in report.images.iter().zip(&plain) {
        assert_eq!(r.label, net_builder::eval::argmax(p), "{}", r.source);
    }
}

/// mnist-tiny under two 17-bit plaintext moduli (room for the packed layout), in `layout`.
fn tiny_crt_config(address: &str, layout: Option<he_layers::plan::LayoutKind>) -> ClientConfig {
    ClientConfig {
        address: address.to_string(),
        net: "mnist-tiny".into(),
        encryption_parameters: params(
            r#"{"degree": 8192, "plain_modulus_bits": 17, "plain_moduli_count": 2}"#,
        ),
        quantization: QuantizationConfig {
            input_scale_bits: 3,
            weight_bits: Some(4),
        },
        layers: None,
        reencrypt_positions: vec![],
        model: None,
        scheme: Default::default(),
        layout,
        connection: Default::default(),
    }
}

fn tiny_config(address: &str) -> ClientConfig {
    ClientConfig {
        address: address.to_string(),
        net: "mnist-tiny".into(),
        encryption_parameters: params(r#"{"degree": 8192, "plain_modulus_bits": 20}"#),
        quantization: QuantizationConfig {
            input_scale_bits: 3,
            weight_bits: Some(4),
        },
        // The Conv2d segment alone: a re-encryption after it, which the server allows.
        layers: Some([0, 1]),
        reencrypt_positions: vec![0],
        model: None,
        scheme: Default::default(),
        layout: Some(he_layers::plan::LayoutKind::Batch),
        connection: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_clients_with_their_own_keys() {
    let address = start_server(1 << 30).await;
    let cfg = tiny_config(&address);
    let test_set = models().join("data/mnist-t10k-images-idx3-ubyte.gz");
    let runs = (0..8).map(|c| {
        let cfg = cfg.clone();
        let test_set = test_set.clone();
        tokio::spawn(async move {
            let mut keys = KeySet::generate(&cfg.encryption_parameters).unwrap();
            let images = load_test_set(&test_set, 10 * c, 10).unwrap();
            let report = run_compute(&cfg, &mut keys, None, &images, true)
                .await
                .unwrap();
            (images, report)
        })
    });
    let results = futures_util::future::join_all(runs).await;
    let mut sources = std::collections::HashSet::new();
    for r in results {
        let (images, report) = r.unwrap();
        let q = quantize(&images.tensor, 3);
        let mirror = local_mirror("mnist-tiny", &cfg, 4, &q, 1);
        assert_eq!(report.integers.as_ref().unwrap(), &mirror);
        sources.insert(report.images[0].source.clone());
    }
    assert_eq!(sources.len(), 8, "each client ran its own images");
    assert_eq!(
        Api::new(&address).unwrap().health().await.unwrap()["status"],
        "ok"
    );
}

/// Sends a raw multipart /compute and returns (status, error kind).
async fn post_compute(
    http: &reqwest::Client,
    address: &str,
    parts: Vec<(&str, Vec<u8>)>,
) -> (u16, String) {
    let mut form = reqwest::multipart::Form::new();
    for (name, bytes) in parts {
        form = form.part(name.to_string(), reqwest::multipart::Part::bytes(bytes));
    }
    let resp = http
        .post(format!("{address}/compute"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    kind_of(resp).await
}

async fn kind_of(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_default();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    let kind = body["error"]["kind"]
        .as_str()
        .unwrap_or("<no JSON error>")
        .to_string();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "status {status}, {} bytes: {body}",
        bytes.len()
    );
    (status, kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_json_errors_and_the_server_survives() {
    let limit = 200 << 20; // one N = 8192 input of mnist-tiny is 140 MB
    let address = start_server(limit).await;
    let api = Api::new(&address).unwrap();
    let http = reqwest::Client::new();
    let cfg = tiny_config(&address);
    let keys = KeySet::generate(&cfg.encryption_parameters).unwrap();
    let c = &keys.components[0];
    let (kr, sent) = api.upload_keys(c).await.unwrap();
    assert!(sent > 0);
    // Keys go up once per key id: the second time the server already holds them.
    let (again, sent_again) = api.upload_keys(c).await.unwrap();
    assert_eq!((again.key_id.as_str(), sent_again), (kr.key_id.as_str(), 0));
    let images =
        load_test_set(&models().join("data/mnist-t10k-images-idx3-ubyte.gz"), 0, 4).unwrap();
    let model = ModelConfig {
        net: cfg.net.clone(),
        encryption_parameters: cfg.encryption_parameters.clone(),
        quantization: cfg.quantization.clone(),
        reencrypt_positions: vec![0],
        scheme: Default::default(),
        layout: Default::default(),
    };
    let plan = api.plan(&model).await.unwrap();
    assert_eq!(plan.protocol, he_layers::plan::PROTOCOL_VERSION);
    assert_eq!(plan.plan_id.len(), 64);
    // The same configuration names the same plan.
    assert_eq!(api.plan(&model).await.unwrap().plan_id, plan.plan_id);
    let input = TensorInfo {
        batch: 4,
        ..plan.input.clone()
    };
    let good = ComputeRequest {
        plan_id: plan.plan_id.clone(),
        plain_modulus: c.params.plain_modulus(),
        key_id: kr.key_id.clone(),
        layers: [0, 1],
        batch: 4,
        accept_compressed: true,
    };
    // The whole model without a re-encryption: a plan whose one segment overflows a 20-bit t.
    let whole_plan = api
        .plan(&ModelConfig {
            reencrypt_positions: vec![],
            ..model.clone()
        })
        .await
        .unwrap();
    assert!(whole_plan.layers.iter().any(|l| l.overflow));
    let q = quantize(&images.tensor, 3);
    let info = he_layers::tensor::ValueInfo {
        shape: input.shape.clone(),
        scale: input.scale,
        lo: input.lo,
        hi: input.hi,
        float_bound: 1.0,
        error_bound: 0.0,
    };
    let enc = EncryptedTensor::encrypt(&q, &info, &c.sk).unwrap();
    let cts = Ciphertext::batch_to_bytes(&enc.cts, &c.params);
    let json = |r: &ComputeRequest| serde_json::to_vec(r).unwrap();

    // The good request works (the baseline the bad ones deviate from).
    let outputs: usize = plan.layers[0].shape.iter().product();
    let (resp, out, _) = api
        .compute(&good, &c.params, cts.clone(), outputs)
        .await
        .unwrap();
    // An answer is checked against the count the plan gives before it is decoded.
    let wrong = api
        .compute(&good, &c.params, cts.clone(), outputs + 1)
        .await;
    assert!(
        matches!(
            wrong,
            Err(client::ClientError::Protocol(
                client::AnswerError::Count { .. }
            ))
        ),
        "{wrong:?}"
    );
    assert_eq!(resp.ciphertexts, out.len());
    // Sanitized: modulus-switched to fewer primes, compressed for the wire, the noise field
    // the server's own public bound with what the compression's roundings add (nothing that
    // depends on the data), still decryptable.
    let sanitization = resp.sanitization.as_ref().unwrap();
    assert!(resp.level < c.params.level() && resp.level == sanitization.level);
    let bits = resp.compressed_bits.unwrap();
    let level = c.params.at_level(resp.level).unwrap();
    assert!((bits as f64) < level.log2_q());
    let lifted = he_layers::crypto::lifted_noise_log2(&level, sanitization.noise_log2, bits);
    assert!(out
        .iter()
        .all(|ct| ct.estimated_noise_log2() == lifted && ct.estimated_whole_budget() >= 1.0));

    let mut cases: Vec<(&str, u16, &str, (u16, String))> = Vec::new();
    macro_rules! case {
        ($name:expr, $status:expr, $kind:expr, $got:expr) => {
            cases.push(($name, $status, $kind, $got));
        };
    }
    // 1. Not multipart at all.
    let r = http
        .post(format!("{address}/compute"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    case!("not multipart", 400, "bad_multipart", kind_of(r).await);
    // 2. A truncated multipart body.
    let body =
        b"--XYZ\r\nContent-Disposition: form-data; name=\"request\"\r\n\r\n{\"net\": \"mnist-ti"
            .to_vec();
    let r = http
        .post(format!("{address}/compute"))
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body(body)
        .send()
        .await
        .unwrap();
    case!("truncated body", 400, "bad_multipart", kind_of(r).await);
    // 3. Wrong part name.
    case!(
        "wrong part name",
        400,
        "bad_multipart",
        post_compute(
            &http,
            &address,
            vec![("req", json(&good)), ("ciphertexts", cts.clone())]
        )
        .await
    );
    // 4. Missing ciphertexts part.
    case!(
        "missing part",
        400,
        "bad_multipart",
        post_compute(&http, &address, vec![("request", json(&good))]).await
    );
    // 5. A part twice.
    case!(
        "duplicate part",
        400,
        "bad_multipart",
        post_compute(
            &http,
            &address,
            vec![
                ("request", json(&good)),
                ("request", json(&good)),
                ("ciphertexts", cts.clone())
            ]
        )
        .await
    );
    // 6. Invalid JSON.
    case!(
        "invalid JSON",
        400,
        "invalid_json",
        post_compute(
            &http,
            &address,
            vec![
                ("request", b"{not json".to_vec()),
                ("ciphertexts", cts.clone())
            ]
        )
        .await
    );
    // 7. An unknown JSON field.
    let mut v: serde_json::Value = serde_json::from_slice(&json(&good)).unwrap();
    v["surprise"] = serde_json::json!(1);
    case!(
        "unknown field",
        400,
        "invalid_json",
        post_compute(
            &http,
            &address,
            vec![
                ("request", serde_json::to_vec(&v).unwrap()),
                ("ciphertexts", cts.clone())
            ]
        )
        .await
    );
    // 8. Garbage ciphertext bytes: of a length no batch of the expected count takes (refused
    // before it is parsed), and of the right length.
    case!(
        "ciphertexts of the wrong length",
        422,
        "input_mismatch",
        post_compute(
            &http,
            &address,
            vec![("request", json(&good)), ("ciphertexts", vec![7u8; 5000])]
        )
        .await
    );
    case!(
        "garbage ciphertexts",
        400,
        "malformed_binary",
        post_compute(
            &http,
            &address,
            vec![
                ("request", json(&good)),
                ("ciphertexts", vec![7u8; cts.len()])
            ]
        )
        .await
    );
    // 9. A coefficient at or above its prime.
    let mut bad = cts.clone();
    let first = he_layers::crypto::serial::HEADER_LEN + 4 + 2 + 8; // batch count, size, flags, noise
    let width = 64 - c.params.moduli()[0].leading_zeros() as usize;
    for bit in 0..width {
        bad[first + 32 + bit / 8] |= 1 << (bit % 8); // after the seed of a seeded ciphertext
    }
    case!(
        "coefficient ≥ prime",
        400,
        "malformed_binary",
        post_compute(
            &http,
            &address,
            vec![("request", json(&good)), ("ciphertexts", bad)]
        )
        .await
    );
    // 9b. Ciphertexts in the format of an older release (version 1, no scheme byte).
    let mut old_format = cts.clone();
    old_format[4] = 1;
    old_format[7] = 0;
    case!(
        "format version 1",
        400,
        "unsupported_format",
        post_compute(
            &http,
            &address,
            vec![("request", json(&good)), ("ciphertexts", old_format)]
        )
        .await
    );
    // 10. Ciphertexts for another parameter set.
    let other = KeySet::generate(&params(r#"{"degree": 4096, "plain_modulus_bits": 19}"#)).unwrap();
    let oc = &other.components[0];
    // The same bytes under the other set's fingerprint (the same size, so only the
    // fingerprint tells them apart).
    let mut foreign = cts.clone();
    foreign[8..40].copy_from_slice(&oc.params.fingerprint());
    case!(
        "wrong fingerprint",
        422,
        "parameter_mismatch",
        post_compute(
            &http,
            &address,
            vec![("request", json(&good)), ("ciphertexts", foreign)]
        )
        .await
    );
    // 11. More images than slots.
    let mut r = good.clone();
    r.batch = c.params.degree() + 1;
    case!(
        "batch over the slots",
        422,
        "input_mismatch",
        post_compute(
            &http,
            &address,
            vec![("request", json(&r)), ("ciphertexts", cts.clone())]
        )
        .await
    );
    // 12. Unknown net (on /plan, where configurations are judged), unknown and malformed plans.
    let r = http
        .post(format!("{address}/plan"))
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(&ModelConfig {
                net: "no-such-net".into(),
                ..model.clone()
            })
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    case!("plan: unknown net", 404, "unknown_net", kind_of(r).await);
    let mut r = good.clone();
    r.plan_id = "ab".repeat(32);
    case!(
        "unknown plan",
        404,
        "unknown_plan",
        post_compute(
            &http,
            &address,
            vec![("request", json(&r)), ("ciphertexts", cts.clone())]
        )
        .await
    );
    let mut r = good.clone();
    r.plan_id = "mnist-tiny".into();
    case!(
        "malformed plan id",
        400,
        "invalid_plan_id",
        post_compute(
            &http,
            &address,
            vec![("request", json(&r)), ("ciphertexts", cts.clone())]
        )
        .await
    );
    // 13. Reversed layer range.
    let mut r = good.clone();
    r.layers = [1, 0];
    case!(
        "reversed range",
        422,
        "invalid_layers",
        post_compute(
            &http,
            &address,
            vec![("request", json(&r)), ("ciphertexts", cts.clone())]
        )
        .await
    );
    // 14. Insecure parameters.
    let r = http
        .post(format!("{address}/plan"))
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(&ModelConfig {
                encryption_parameters: params(
                    r#"{"degree": 4096, "plain_modulus_bits": 20, "coeff_bits": [50, 50, 50]}"#,
                ),
                ..model.clone()
            })
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    case!(
        "plan: insecure parameters",
        422,
        "invalid_parameters",
        kind_of(r).await
    );
    // 15. An unknown (never uploaded) key id.
    let mut r = good.clone();
    r.key_id = "ab".repeat(32);
    case!(
        "unknown key",
        404,
        "unknown_key",
        post_compute(
            &http,
            &address,
            vec![("request", json(&r)), ("ciphertexts", cts.clone())]
        )
        .await
    );
    // 16. A malformed key id.
    let mut r = good.clone();
    r.key_id = "../../etc/passwd".into();
    case!(
        "malformed key id",
        400,
        "invalid_key_id",
        post_compute(
            &http,
            &address,
            vec![("request", json(&r)), ("ciphertexts", cts.clone())]
        )
        .await
    );
    // 17. Fewer ciphertexts than activations.
    let short = Ciphertext::batch_to_bytes(&enc.cts[..100], &c.params);
    case!(
        "too few ciphertexts",
        422,
        "input_mismatch",
        post_compute(
            &http,
            &address,
            vec![("request", json(&good)), ("ciphertexts", short)]
        )
        .await
    );
    // 18. A protocol-1 request (the configuration resent instead of a plan id).
    let old = serde_json::json!({
        "net": "mnist-tiny",
        "encryption_parameters": {"degree": 8192, "plain_modulus_bits": 20},
        "quantization": {"input_scale_bits": 3, "weight_bits": 4},
        "plain_modulus": c.params.plain_modulus(),
        "key_id": kr.key_id,
        "layers": [0, 1],
        "input": {"shape": [1, 28, 28], "batch": 4, "scale": 8.0, "lo": 0, "hi": 8},
    });
    case!(
        "protocol-1 request",
        400,
        "protocol_version",
        post_compute(
            &http,
            &address,
            vec![
                ("request", serde_json::to_vec(&old).unwrap()),
                ("ciphertexts", cts.clone())
            ]
        )
        .await
    );
    // 19. A range over a re-encryption boundary.
    let mut r = good.clone();
    r.layers = [0, 4];
    case!(
        "range over a boundary",
        422,
        "invalid_layers",
        post_compute(
            &http,
            &address,
            vec![("request", json(&r)), ("ciphertexts", cts.clone())]
        )
        .await
    );
    // 20. Predicted overflow (the whole model with a 20-bit t).
    let mut r = good.clone();
    r.plan_id = whole_plan.plan_id.clone();
    r.layers = [0, 4];
    case!(
        "overflow",
        422,
        "overflow",
        post_compute(
            &http,
            &address,
            vec![("request", json(&r)), ("ciphertexts", cts.clone())]
        )
        .await
    );
    // 21. A plain modulus that is not the configuration's.
    let mut r = good.clone();
    r.plain_modulus = 65537;
    case!(
        "foreign plain modulus",
        422,
        "invalid_parameters",
        post_compute(
            &http,
            &address,
            vec![("request", json(&r)), ("ciphertexts", cts.clone())]
        )
        .await
    );
    // 22. An empty batch.
    let mut r = good.clone();
    r.batch = 0;
    case!(
        "empty batch",
        422,
        "input_mismatch",
        post_compute(
            &http,
            &address,
            vec![("request", json(&r)), ("ciphertexts", cts.clone())]
        )
        .await
    );
    // 23. A body over the limit (of a server with a small one: a 200 MB body in flight makes
    // the early answer race the upload).
    let small_limit = 1 << 20;
    let small = start_server_with(small_limit, Some(server::DEFAULT_FLOOD_BITS)).await;
    let r = http
        .post(format!("{small}/compute"))
        .multipart(
            reqwest::multipart::Form::new()
                .part("request", reqwest::multipart::Part::bytes(json(&good)))
                .part(
                    "ciphertexts",
                    reqwest::multipart::Part::bytes(vec![0u8; small_limit + 1024]),
                ),
        )
        .send()
        .await;
    let got = match r {
        Ok(resp) => kind_of(resp).await,
        // The server may close the connection before the whole body is sent.
        Err(e) => (413, format!("connection closed: {e}")),
    };
    cases.push((
        "body over the limit",
        413,
        "too_large",
        (
            got.0,
            if got.1.starts_with("connection closed") {
                "too_large".into()
            } else {
                got.1
            },
        ),
    ));
    // 24. Keys: garbage public key.
    let form = reqwest::multipart::Form::new()
        .part(
            "parameters",
            reqwest::multipart::Part::bytes(c.params.to_bytes()),
        )
        .part("public_key", reqwest::multipart::Part::bytes(vec![1, 2, 3]));
    let r = http
        .post(format!("{address}/keys"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    case!("garbage key", 400, "malformed_binary", kind_of(r).await);
    // 25. Keys: a public key for other parameters.
    let form = reqwest::multipart::Form::new()
        .part(
            "parameters",
            reqwest::multipart::Part::bytes(c.params.to_bytes()),
        )
        .part(
            "public_key",
            reqwest::multipart::Part::bytes(oc.pk.to_bytes()),
        );
    let r = http
        .post(format!("{address}/keys"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    case!(
        "key for other parameters",
        422,
        "parameter_mismatch",
        kind_of(r).await
    );
    // 26. /plan with invalid JSON.
    let r = http
        .post(format!("{address}/plan"))
        .body("[1, 2")
        .send()
        .await
        .unwrap();
    case!("plan: invalid JSON", 400, "invalid_json", kind_of(r).await);
    // 27–33: the server's parameter policy (issue 10): each is a 422 before any work.
    let plan_with = |patch: &dyn Fn(&mut ModelConfig)| {
        let mut m = model.clone();
        patch(&mut m);
        serde_json::to_vec(&m).unwrap()
    };
    let cases_plan: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "plan: degree 0",
            plan_with(&|m| {
                m.encryption_parameters = params(r#"{"degree": 0, "plain_modulus_bits": 20}"#)
            }),
            "invalid_parameters",
        ),
        (
            "plan: degree not a power of two",
            plan_with(&|m| {
                m.encryption_parameters = params(r#"{"degree": 3000, "plain_moduli": [65537]}"#)
            }),
            "invalid_parameters",
        ),
        (
            "plan: 64 primes",
            plan_with(&|m| {
                m.encryption_parameters = params(&format!(
                    r#"{{"degree": 32768, "plain_modulus_bits": 20, "coeff_bits": {:?}}}"#,
                    vec![62u32; 64]
                ))
            }),
            "invalid_parameters",
        ),
        (
            "plan: security none",
            plan_with(&|m| {
                m.encryption_parameters = params(
                    r#"{"degree": 4096, "plain_modulus_bits": 20, "security": "none", "coeff_bits": [36, 36, 37]}"#,
                )
            }),
            "invalid_parameters",
        ),
        (
            "plan: re-encryption position out of range",
            plan_with(&|m| m.reencrypt_positions = vec![usize::MAX]),
            "invalid_model_config",
        ),
        (
            "plan: re-encryption positions unsorted",
            plan_with(&|m| m.reencrypt_positions = vec![2, 1]),
            "invalid_model_config",
        ),
        (
            "plan: weight_bits over the cap",
            plan_with(&|m| m.quantization.weight_bits = Some(62)),
            "invalid_quantization",
        ),
        (
            "plan: input_scale_bits over the cap",
            plan_with(&|m| m.quantization.input_scale_bits = 31),
            "invalid_quantization",
        ),
        (
            "plan: re-encryption position repeated",
            plan_with(&|m| m.reencrypt_positions = vec![1, 1]),
            "invalid_model_config",
        ),
    ];
    for (name, body, kind) in cases_plan {
        let r = http
            .post(format!("{address}/plan"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        case!(name, 422, kind, kind_of(r).await);
    }
    // 35–37: which ranges a client may run is the model owner's decision (issue 10).
    let mut r = good.clone();
    r.layers = [2, 3];
    case!(
        "compute: a range that is not a segment",
        422,
        "range_not_allowed",
        post_compute(
            &http,
            &address,
            vec![("request", json(&r)), ("ciphertexts", cts.clone())]
        )
        .await
    );
    let r = http
        .post(format!("{address}/plan"))
        .header("content-type", "application/json")
        .body(plan_with(&|m| m.reencrypt_positions = vec![2]))
        .send()
        .await
        .unwrap();
    case!(
        "plan: a re-encryption position the owner does not allow",
        422,
        "reencrypt_not_allowed",
        kind_of(r).await
    );
    // 38. A server whose λ the budget cannot absorb refuses before computing (150 bits: more
    // than the CLI accepts, so that even this small segment cannot fit in 172 bits of modulus).
    let strict = start_server_with(limit, Some(150)).await;
    let strict_api = Api::new(&strict).unwrap();
    let (skr, _) = strict_api.upload_keys(c).await.unwrap();
    let strict_plan = strict_api.plan(&model).await.unwrap();
    assert!(strict_plan.circuit_privacy[0].refused.is_some());
    assert!(strict_plan.circuit_privacy[0].sanitization.is_none());
    let mut r = good.clone();
    r.key_id = skr.key_id;
    r.plan_id = strict_plan.plan_id.clone();
    case!(
        "compute: no room for circuit privacy",
        422,
        "no_room_for_circuit_privacy",
        post_compute(
            &http,
            &strict,
            vec![("request", json(&r)), ("ciphertexts", cts.clone())]
        )
        .await
    );

    let mut failures = Vec::new();
    for (name, status, kind, (got_status, got_kind)) in &cases {
        if *status != *got_status || kind != got_kind {
            failures.push(format!(
                "{name}: expected {status} {kind}, got {got_status} {got_kind}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases.len() >= 15);
    // Still alive, and the good request still works.
    assert_eq!(api.health().await.unwrap()["status"], "ok");
    assert!(api.compute(&good, &c.params, cts, outputs).await.is_ok());
}

#[test]
fn keygen_writes_the_secret_key_private_and_reloads() {
    let dir = std::env::temp_dir().join(format!("he-keys-{}", std::process::id()));
    let p = params(r#"{"m": 4096, "plain_modulus_bits": 20, "plain_moduli_count": 2}"#);
    let keys = KeySet::generate(&p).unwrap();
    keys.save(&dir).unwrap();
    for c in &keys.components {
        let sk = dir.join(format!("t{}/secret.key", c.params.plain_modulus()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&sk).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(dir
            .join(format!("t{}/public.key", c.params.plain_modulus()))
            .exists());
    }
    let back = KeySet::load(&dir).unwrap();
    assert!(back.matches(&p).unwrap());
    assert_eq!(
        back.components[1].sk.to_bytes(),
        keys.components[1].sk.to_bytes()
    );
    // Insecure parameters are refused at key generation.
    let bad = params(r#"{"degree": 4096, "t": 65537, "coeff_bits": [60, 60, 60]}"#);
    assert!(KeySet::generate(&bad).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The packed layout over HTTP: `/plan` lists the Galois elements and the packings, the client
/// makes exactly those Galois keys, saves them with its key set, uploads them once; three
/// images (two to a ciphertext, then one) come back sanitized and equal to the mirror.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_packed_over_http_equals_the_mirror_and_keys_go_once() {
    let address = start_server(1 << 30).await;
    let cfg = tiny_crt_config(&address, Some(he_layers::plan::LayoutKind::Packed));
    let plan = Api::new(&address)
        .unwrap()
        .plan(&cfg.model_config(he_layers::plan::LayoutKind::Packed))
        .await
        .unwrap();
    assert!(!plan.galois_elements.is_empty());
    assert_eq!(plan.packings.len(), 1);
    assert!(plan.galois_key_bytes > 0);
    let dir = std::env::temp_dir().join(format!("he-infer-packed-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    KeySet::generate(&cfg.encryption_parameters)
        .unwrap()
        .save(&dir)
        .unwrap();
    let images =
        load_test_set(&models().join("data/mnist-t10k-images-idx3-ubyte.gz"), 0, 3).unwrap();
    let mut keys = KeySet::load(&dir).unwrap();
    let first = run_compute(&cfg, &mut keys, Some(&dir), &images, true)
        .await
        .unwrap();
    assert!(dir
        .join(format!("t{}/galois.key", plan.plain_moduli[0]))
        .exists());
    // Reloaded from disk: the same keys, so the same key id; nothing is uploaded again.
    let mut again = KeySet::load(&dir).unwrap();
    let second = run_compute(&cfg, &mut again, Some(&dir), &images, true)
        .await
        .unwrap();
    assert!(first.keys_upload_bytes as u64 > plan.galois_key_bytes);
    assert_eq!(second.keys_upload_bytes, 0);
    let q = quantize(&images.tensor, cfg.quantization.input_scale_bits);
    let mirror = local_mirror("mnist-tiny", &cfg, first.weight_bits, &q, 4);
    for report in [&first, &second] {
        assert_eq!(report.integers.as_ref(), Some(&mirror));
        assert!(report.segments[0].noise_budget.iter().all(|&b| b > 0));
        // Two image groups, one ciphertext each, per modulus: 4 seeded ciphertexts up.
        assert!(report.segments[0].bytes_up < 4 * 200_000);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without a layout in the config, the client takes the one its cost estimate says is cheaper
/// for the number of images: packed for one image, batch for a full batch (the estimate
/// ranks them so on the plans the server sends); the run still equals the mirror.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_layout_the_cheaper_one_for_the_image_count_is_taken() {
    use he_layers::plan::{estimated_cost, LayoutKind};
    let address = start_server(1 << 30).await;
    let cfg = tiny_crt_config(&address, None);
    let images =
        load_test_set(&models().join("data/mnist-t10k-images-idx3-ubyte.gz"), 0, 1).unwrap();
    let mut keys = KeySet::generate(&cfg.encryption_parameters).unwrap();
    let report = run_compute(&cfg, &mut keys, None, &images, true)
        .await
        .unwrap();
    assert_eq!(
        report.layout,
        LayoutKind::Packed,
        "{}",
        report.layout_reason
    );
    assert!(
        report.layout_reason.contains("1 image"),
        "{}",
        report.layout_reason
    );
    let q = quantize(&images.tensor, cfg.quantization.input_scale_bits);
    let mirror = local_mirror("mnist-tiny", &cfg, report.weight_bits, &q, 4);
    assert_eq!(report.integers.as_ref(), Some(&mirror));

    let api = Api::new(&address).unwrap();
    let limbs = keys.components[0].params.moduli().len();
    let mut costs = Vec::new();
    for layout in [LayoutKind::Batch, LayoutKind::Packed] {
        let plan = api.plan(&cfg.model_config(layout)).await.unwrap();
        let ops: Vec<_> = plan.layers.iter().filter_map(|l| l.ops).collect();
        costs.push([1, 8192].map(|n| estimated_cost(layout, &ops, limbs, 8192, n)));
    }
    let [batch, packed] = [costs[0], costs[1]];
    assert!(packed[0] < batch[0], "one image: {packed:?} vs {batch:?}");
    assert!(
        batch[1] < packed[1],
        "a full batch: {batch:?} vs {packed:?}"
    );
}

/// The packed layout across a re-encryption boundary: the client unpacks the first segment's
/// answer, rescales, and packs the second segment's input (a convolution again);
/// the integers equal the mirror, which rescales at the same boundary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lenet1_packed_with_a_reencryption_equals_the_mirror() {
    let address = start_server(1 << 30).await;
    let cfg = ClientConfig {
        address,
        net: "mnist-lenet1-square".into(),
        encryption_parameters: params(r#"{"degree": 16384, "plain_modulus_bits": 40}"#),
        quantization: QuantizationConfig {
            input_scale_bits: 4,
            weight_bits: None,
        },
        layers: None,
        reencrypt_positions: vec![2],
        model: None,
        scheme: Default::default(),
        layout: Some(he_layers::plan::LayoutKind::Packed),
        connection: Default::default(),
    };
    let images =
        load_test_set(&models().join("data/mnist-t10k-images-idx3-ubyte.gz"), 0, 2).unwrap();
    let mut keys = KeySet::generate(&cfg.encryption_parameters).unwrap();
    let report = run_compute(&cfg, &mut keys, None, &images, true)
        .await
        .unwrap();
    assert_eq!(report.layout, he_layers::plan::LayoutKind::Packed);
    assert_eq!(report.segments.len(), 2);
    assert_eq!(report.segments[1].layers, [4, 8]);
    for s in &report.segments {
        assert!(s.noise_budget[0] > 0, "{:?}", s.noise_budget);
        // Two images share one packed ciphertext group: far below the batch layout's upload.
        assert!(s.bytes_up < 4_000_000, "{}", s.bytes_up);
    }
    let q = quantize(&images.tensor, cfg.quantization.input_scale_bits);
    let mirror = local_mirror("mnist-lenet1-square", &cfg, report.weight_bits, &q, 8);
    assert_eq!(report.integers.as_ref(), Some(&mirror));
}

/// Keys evicted between their upload and the run (another client's uploads filled the
/// server's key cache): the transport uploads the same public keys again, once, and the run
/// completes equal to the mirror; without that it fails with `unknown_key`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_keys_are_uploaded_again_once() {
    use net_builder::session::{Session, SessionPlan};
    he_layers::tune_allocator();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let server_cfg = server::ServerConfig {
        models_dir: models(),
        max_cached_keys: 2,
        ..Default::default()
    };
    tokio::spawn(async move { server::serve(listener, server_cfg).await });
    let layout = he_layers::plan::LayoutKind::Packed;
    let cfg = tiny_crt_config(&address, Some(layout));
    let api = Api::new(&address).unwrap();
    let model_cfg = cfg.model_config(layout);
    let plan = api.plan(&model_cfg).await.unwrap();
    let mut keys = KeySet::generate(&cfg.encryption_parameters).unwrap();
    keys.ensure_galois(&plan.galois_elements).unwrap();
    let mut ids = Vec::new();
    for c in &keys.components {
        ids.push(api.upload_keys(c).await.unwrap().0.key_id);
    }
    // Two key sets of someone else's: the cache holds two, so ours are gone.
    let other = KeySet::generate(&cfg.encryption_parameters).unwrap();
    for c in &other.components {
        api.upload_keys(c).await.unwrap();
    }
    let images =
        load_test_set(&models().join("data/mnist-t10k-images-idx3-ubyte.gz"), 0, 2).unwrap();
    let q = quantize(&images.tensor, cfg.quantization.input_scale_bits);
    let session = Session::new(
        SessionPlan::from_plan(&plan).unwrap(),
        keys.components.iter().map(|c| &c.sk).collect(),
    )
    .unwrap();
    let transport =
        client::HttpTransport::new(api.clone(), model_cfg, plan.clone(), ids, &keys.components);
    let run = session.run(&transport, &q, &|_| {}).await.unwrap();
    let end = plan.encryptable_prefix;
    let weight_bits = plan.weight_bits;
    assert_eq!(
        run.output,
        local_mirror("mnist-tiny", &cfg, weight_bits, &q, end)
    );
}
