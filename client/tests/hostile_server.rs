//! The client against a server that lies: a proxy in front of the real server forwards every
//! call and tampers with the `/compute` answers (counts, fingerprints, layers, sizes,
//! redirects). Each lie ends the run with a clear error, never a panic, and a key set on disk
//! is discarded where the lie is a protocol violation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use client::{load_test_set, run_compute, AnswerError, ClientConfig, ClientError, KeySet};
use he_layers::protocol::{EncryptionParameters, QuantizationConfig};
use net_builder::session::SessionError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// How the proxy lies in `/compute` answers.
#[derive(Clone, Copy, Debug)]
enum Lie {
    /// One ciphertext more announced than sent.
    Count,
    /// The ciphertexts under another parameter set's fingerprint.
    Fingerprint,
    /// Another layer range announced.
    Layers,
    /// 64 MiB of padding after the answer.
    Oversized,
    /// A redirect to the real server.
    Redirect,
    /// The announced count, one ciphertext fewer in the binary part.
    Short,
}

struct Proxy {
    upstream: String,
    lie: Lie,
    http: reqwest::Client,
}

async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    if path == "/compute" && matches!(p.lie, Lie::Redirect) {
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [("location", format!("{}/compute", p.upstream))],
        )
            .into_response();
    }
    let mut up = p
        .http
        .request(parts.method.clone(), format!("{}{path}", p.upstream))
        .body(body);
    for (k, v) in parts.headers.iter() {
        if k != "host" && k != "content-length" {
            up = up.header(k, v);
        }
    }
    let resp = up.send().await.unwrap();
    let status = resp.status();
    let headers: HeaderMap = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    if path != "/compute" || !status.is_success() {
        let mut r = (status, bytes).into_response();
        if let Some(ct) = headers.get("content-type") {
            r.headers_mut().insert("content-type", ct.clone());
        }
        return r;
    }
    let ctype = headers["content-type"].to_str().unwrap().to_string();
    let boundary = multer::parse_boundary(&ctype).unwrap();
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
    let mut mp = multer::Multipart::new(stream, boundary.clone());
    let mut json: serde_json::Value = serde_json::Value::Null;
    let mut binary = Vec::new();
    while let Some(f) = mp.next_field().await.unwrap() {
        match f.name().unwrap_or_default() {
            "result" => json = serde_json::from_slice(&f.bytes().await.unwrap()).unwrap(),
            _ => binary = f.bytes().await.unwrap().to_vec(),
        }
    }
    match p.lie {
        Lie::Count => json["ciphertexts"] = (json["ciphertexts"].as_u64().unwrap() + 1).into(),
        Lie::Fingerprint => binary[8..40].copy_from_slice(&[0xAB; 32]),
        Lie::Layers => json["layers"] = serde_json::json!([0, 2]),
        Lie::Oversized => binary.extend(std::iter::repeat_n(0u8, 64 << 20)),
        Lie::Redirect => {}
        Lie::Short => {
            // A compressed batch: header, count, width, then ciphertexts of one size.
            let n = u32::from_le_bytes(binary[40..44].try_into().unwrap()) as usize;
            let per = (binary.len() - 45) / n;
            binary[40..44].copy_from_slice(&(n as u32 - 1).to_le_bytes());
            binary.truncate(binary.len() - per);
        }
    }
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"result\"\r\n\r\n{json}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"ciphertexts\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&binary);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    ([("content-type", ctype)], Bytes::from(body)).into_response()
}

/// The real server and a lying proxy in front of it; returns the proxy's URL.
async fn lying_server(lie: Lie) -> String {
    he_layers::tune_allocator();
    let real = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", real.local_addr().unwrap());
    let cfg = server::ServerConfig {
        models_dir: models(),
        allowed_reencrypt: vec![("mnist-tiny".into(), vec![0, 1])],
        ..Default::default()
    };
    tokio::spawn(async move { server::serve(real, cfg).await });
    let proxy = Arc::new(Proxy {
        upstream,
        lie,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    });
    let app = axum::Router::new().fallback(forward).with_state(proxy);
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", front.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(front, app).await });
    url
}

fn config(address: &str) -> ClientConfig {
    ClientConfig {
        address: address.into(),
        net: "mnist-tiny".into(),
        encryption_parameters: serde_json::from_str::<EncryptionParameters>(
            r#"{"degree": 8192, "plain_modulus_bits": 17, "plain_moduli_count": 2}"#,
        )
        .unwrap(),
        quantization: QuantizationConfig {
            input_scale_bits: 3,
            weight_bits: Some(4),
        },
        layers: None,
        reencrypt_positions: vec![],
        model: None,
        scheme: Default::default(),
        layout: Some(he_layers::plan::LayoutKind::Packed),
        connection: Default::default(),
    }
}

/// The answer error inside a failed run, if that is what it is.
fn answer_error(e: &ClientError) -> Option<&AnswerError> {
    let inner = match e {
        ClientError::KeysDiscarded { source, .. } => source.as_ref(),
        e => e,
    };
    match inner {
        ClientError::Session(SessionError::Transport { source, .. }) => {
            match source.downcast_ref::<ClientError>()? {
                ClientError::Protocol(a) => Some(a),
                _ => None,
            }
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lie_ends_the_run_with_a_clear_error_and_violations_discard_the_keys() {
    let images =
        load_test_set(&models().join("data/mnist-t10k-images-idx3-ubyte.gz"), 0, 2).unwrap();
    for lie in [
        Lie::Count,
        Lie::Fingerprint,
        Lie::Layers,
        Lie::Oversized,
        Lie::Redirect,
        Lie::Short,
    ] {
        let address = lying_server(lie).await;
        let cfg = config(&address);
        let dir = std::env::temp_dir().join(format!("he-lies-{lie:?}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        KeySet::generate(&cfg.encryption_parameters)
            .unwrap()
            .save(&dir)
            .unwrap();
        let mut keys = KeySet::load(&dir).unwrap();
        let e = run_compute(&cfg, &mut keys, Some(&dir), &images, true)
            .await
            .expect_err("a lying server's answer was used");
        let text = e.to_string();
        match lie {
            Lie::Redirect => {
                // Not followed, and not a violation of the answer's contract: keys kept.
                assert!(
                    matches!(
                        &e,
                        ClientError::Session(SessionError::Transport { source, .. })
                            if matches!(source.downcast_ref::<ClientError>(), Some(ClientError::Server { status: 307, .. }))
                    ),
                    "{lie:?}: {e:?}"
                );
                assert!(dir.join("keyset.json").exists());
            }
            _ => {
                let a = answer_error(&e);
                let expected = match lie {
                    Lie::Count | Lie::Short => matches!(a, Some(AnswerError::Count { .. })),
                    Lie::Fingerprint => matches!(a, Some(AnswerError::Ciphertexts(_))),
                    Lie::Layers => matches!(a, Some(AnswerError::Layers { .. })),
                    Lie::Oversized => matches!(a, Some(AnswerError::TooLarge { .. })),
                    Lie::Redirect => unreachable!(),
                };
                assert!(expected, "{lie:?}: {e:?}");
                assert!(
                    matches!(e, ClientError::KeysDiscarded { .. }),
                    "{lie:?}: {e:?}"
                );
                assert!(text.contains("discarded"), "{text}");
                assert!(
                    !dir.join("keyset.json").exists(),
                    "{lie:?}: the keys are still there"
                );
                assert!(KeySet::load(&dir).is_err());
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
