//! Load bench: the server binary under honest and hostile clients at once.
//!
//! ```sh
//! cargo build --release -p server && cargo run --release -p client --example load -- \
//!     [--seconds 120] [--honest 100] [--hostile 20] [--server target/release/server]
//! ```
//!
//! Starts the server (tokens: one tenant for the honest clients, one for the hostile ones),
//! then for the given time: `--honest` clients, each with its own keys, classify one image
//! at a time in mnist-tiny's packed layout and check every answer against the exact integer
//! mirror; `--hostile` connections send slow uploads, oversized and garbage bodies, and
//! key floods; a probe asks `/health` every 50 ms. Prints a table: honest results (right,
//! wrong, lost), retries after 503/429, what the hostile calls got, `/health` latency
//! percentiles, and the server's peak resident memory against its configured limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use client::{load_test_set, run_compute, Api, ClientConfig, KeySet};
use net_builder::pipeline::build_crt;
use net_builder::{load_model, BuildOptions, PickleOptions};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOSTILE_TOKEN: &str = "load-bench-hostile-tenant-token";

/// Honest client i's token (each is a tenant of its own).
fn honest_token(i: usize) -> String {
    format!("load-bench-honest-tenant-{i:04}")
}

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Tally {
    right: AtomicU64,
    wrong: AtomicU64,
    lost: AtomicU64,
    lost_why: Mutex<BTreeMap<String, u64>>,
    hostile: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn hostile(&self, what: &str, status: u16) {
        *self
            .hostile
            .lock()
            .unwrap()
            .entry(format!("{what}: {status}"))
            .or_default() += 1;
    }
}

/// Sends raw bytes and returns the status of the answer (0: none, the connection closed).
async fn raw(addr: &str, bytes: &[u8], hold: Option<Duration>) -> u16 {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return 0;
    };
    if s.write_all(bytes).await.is_err() {
        return 0;
    }
    if let Some(d) = hold {
        tokio::time::sleep(d).await;
    }
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(180), s.read(&mut buf))
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn post(addr: &str, path: &str, ctype: &str, len: usize, extra: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {HOSTILE_TOKEN}\r\n\
         Content-Type: {ctype}\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// One hostile connection's loop: each round one of the attacks.
async fn hostile(addr: String, until: Instant, tally: Arc<Tally>, seed: u64) {
    let mut round = seed;
    let flood_params =
        serde_json::from_str(r#"{"degree": 2048, "plain_modulus_bits": 16}"#).unwrap();
    let api = Api::with_token(&format!("http://{addr}"), HOSTILE_TOKEN).unwrap();
    while Instant::now() < until {
        round += 1;
        match round % 5 {
            0 => {
                // A slow upload: headers and a few bytes, then nothing until cut off.
                let mut bytes = post(
                    &addr,
                    "/compute",
                    "multipart/form-data; boundary=x",
                    100 << 20,
                    "",
                );
                bytes.extend_from_slice(
                    b"--x\r\nContent-Disposition: form-data; name=\"request\"\r\n\r\n{",
                );
                let s = raw(&addr, &bytes, Some(Duration::from_secs(1))).await;
                tally.hostile("slow upload", s);
            }
            1 => {
                // A body over the limit, announced.
                let s = raw(
                    &addr,
                    &post(
                        &addr,
                        "/compute",
                        "multipart/form-data; boundary=x",
                        1 << 40,
                        "",
                    ),
                    None,
                )
                .await;
                tally.hostile("oversized body", s);
            }
            2 => {
                // Garbage: random bytes as a multipart body and as JSON.
                let junk: Vec<u8> = (0..100_000u32)
                    .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                    .collect();
                let mut bytes = post(
                    &addr,
                    "/compute",
                    "multipart/form-data; boundary=x",
                    junk.len(),
                    "",
                );
                bytes.extend_from_slice(&junk);
                tally.hostile("garbage multipart", raw(&addr, &bytes, None).await);
                let mut bytes = post(&addr, "/plan", "application/json", 5000, "");
                bytes.extend_from_slice(&junk[..5000]);
                tally.hostile("garbage JSON", raw(&addr, &bytes, None).await);
            }
            3 => {
                // A key flood: fresh small key sets, one after another.
                for _ in 0..3 {
                    let keys = KeySet::generate(&flood_params).unwrap();
                    let s = match api.upload_keys(&keys.components[0]).await {
                        Ok(_) => 200,
                        Err(client::ClientError::Server { status, .. }) => status,
                        Err(_) => 0,
                    };
                    tally.hostile("key flood", s);
                }
            }
            _ => {
                // Headers that never end.
                let s = raw(
                    &addr,
                    b"POST /compute HTTP/1.1\r\nHost: x\r\nX-Slow: ",
                    Some(Duration::from_secs(1)),
                )
                .await;
                tally.hostile("slow headers", s);
            }
        }
    }
}

fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    he_layers::tune_allocator();
    let seconds: u64 = arg("--seconds", 120);
    let honest: usize = arg("--honest", 100);
    let hostile_n: usize = arg("--hostile", 20);
    let server_bin: PathBuf = arg("--server", PathBuf::from("target/release/server"));
    let models = PathBuf::from("models");
    let key_mb: usize = arg("--key-mb", 96);

    // The server, with tokens: each honest client is a tenant (its own key cache of
    // --key-mb), the hostile connections share one with a small quota.
    let dir = std::env::temp_dir().join(format!("he-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens.json");
    let mut tenants: Vec<String> = (0..honest)
        .map(|i| {
            format!(
                r#"{{"name": "honest-{i}", "token": "{}", "max_key_mb": {key_mb}, "max_key_sets": 2}}"#,
                honest_token(i)
            )
        })
        .collect();
    tenants.push(format!(
        r#"{{"name": "hostile", "token": "{HOSTILE_TOKEN}", "max_key_mb": 64, "max_key_sets": 8, "max_jobs": 4}}"#
    ));
    std::fs::write(
        &tokens,
        format!(r#"{{"tenants": [{}]}}"#, tenants.join(",\n")),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let max_queued = 32;
    let mut child = std::process::Command::new(&server_bin)
        .args(["--addr", &addr, "--models", "models", "--api-tokens"])
        .arg(&tokens)
        .args([
            "--max-queued-jobs",
            &max_queued.to_string(),
            "--body-timeout-secs",
            "20",
        ])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (cargo build --release -p server first)",
                server_bin.display()
            )
        });
    let base = format!("http://{addr}");
    let api = Api::with_token(&base, &honest_token(0)).unwrap();
    let started = Instant::now();
    while api.health().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The honest clients' config, keys and images, and the mirror's answers.
    let mut cfg =
        ClientConfig::load(&models.join("configs/mnist-tiny.packed.client.json")).unwrap();
    cfg.address = base.clone();

    let images = load_test_set(
        &models.join("data/mnist-t10k-images-idx3-ubyte.gz"),
        0,
        honest,
    )
    .unwrap();
    let layout = cfg.layout.unwrap_or(he_layers::plan::LayoutKind::Packed);
    let plan = api.plan(&cfg.model_config(layout)).await.unwrap();
    let spec = load_model(
        &models.join("mnist-tiny/model.onnx"),
        &PickleOptions::default(),
    )
    .unwrap();
    let moduli = cfg.encryption_parameters.plain_moduli().unwrap();
    let opts = BuildOptions {
        input_scale_bits: cfg.quantization.input_scale_bits,
        weight_bits: Some(plan.weight_bits),
        reencrypt_after: cfg.reencrypt_positions.clone(),
        ..Default::default()
    };
    let crt = build_crt(&spec, cfg.encryption_parameters.degree, &moduli, &opts).unwrap();
    let q = images
        .tensor
        .map(|&v| (v * (cfg.quantization.input_scale_bits as f64).exp2()).round() as i128);
    let mirror = crt.model().run_int(0..plan.encryptable_prefix, &q).unwrap();
    eprintln!("generating {honest} key sets…");
    let t_keys = Instant::now();
    // With their Galois keys, so that what the clock measures is the server.
    let key_sets: Vec<KeySet> = (0..honest)
        .map(|_| {
            let mut k = KeySet::generate(&cfg.encryption_parameters).unwrap();
            k.ensure_galois(&plan.galois_elements).unwrap();
            k
        })
        .collect();
    eprintln!(
        "keys in {:.1} s; load for {seconds} s",
        t_keys.elapsed().as_secs_f64()
    );

    let tally = Arc::new(Tally::default());
    let until = Instant::now() + Duration::from_secs(seconds);
    let done = Arc::new(AtomicBool::new(false));
    // /health every 50 ms.
    // The probe runs on a thread and runtime of its own: the clients' encryption, which
    // runs on this runtime's workers, must not delay the probe's own timers.
    let probe = {
        let base = base.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let http = reqwest::Client::new();
                let mut lat = Vec::new();
                let mut failed = 0;
                while !done.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match http
                        .get(format!("{base}/health"))
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await
                    {
                        Ok(r) if r.status().is_success() => {
                            lat.push(t.elapsed().as_secs_f64() * 1000.0)
                        }
                        _ => failed += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (lat, failed)
            })
        })
    };
    let mut tasks = Vec::new();
    for i in 0..hostile_n {
        tasks.push(tokio::spawn(hostile(
            addr.clone(),
            until,
            tally.clone(),
            i as u64,
        )));
    }
    for (i, mut keys) in key_sets.into_iter().enumerate() {
        let mut cfg = cfg.clone();
        cfg.connection.token = Some(honest_token(i));
        let tally = tally.clone();
        let image = client::Images {
            tensor: he_layers::tensor::FloatTensor::from_images(
                images.tensor.shape().to_vec(),
                &[images.tensor.image(i)],
            )
            .unwrap(),
            names: vec![format!("image {i}")],
            labels: vec![None],
        };
        let want = mirror.image(i);
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                match run_compute(&cfg, &mut keys, None, &image, true).await {
                    Ok(r) => {
                        let got = r.integers.map(|t| t.image(0));
                        if got.as_deref() == Some(want.as_slice()) {
                            tally.right.fetch_add(1, Ordering::Relaxed);
                        } else {
                            tally.wrong.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        tally.lost.fetch_add(1, Ordering::Relaxed);
                        *tally
                            .lost_why
                            .lock()
                            .unwrap()
                            .entry(e.to_string().chars().take(160).collect())
                            .or_default() += 1;
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    done.store(true, Ordering::Relaxed);
    let (mut lat, failed) = probe.join().unwrap();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let metrics = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(honest_token(0))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rss = peak_rss_mb(child.id());
    let _ = child.kill();
    let _ = child.wait();

    println!("\n## Load: {honest} honest clients (mnist-tiny packed, own keys) + {hostile_n} hostile connections, {seconds} s\n");
    println!("| | |\n|---|---:|");
    let right = tally.right.load(Ordering::Relaxed);
    println!(
        "| honest answers equal to the mirror | {right} ({:.1}/s) |",
        right as f64 / seconds as f64
    );
    println!(
        "| honest answers wrong | {} |",
        tally.wrong.load(Ordering::Relaxed)
    );
    println!(
        "| honest runs lost | {} |",
        tally.lost.load(Ordering::Relaxed)
    );
    for (why, n) in tally.lost_why.lock().unwrap().iter() {
        println!("| — {why} | {n} |");
    }
    // What the server answered, by route and status (503 and 429 were retried).
    for l in metrics
        .lines()
        .filter(|l| l.starts_with("he_requests_total"))
    {
        if let Some((k, v)) = l.rsplit_once(' ') {
            println!(
                "| server {} | {v} |",
                k.trim_start_matches("he_requests_total")
            );
        }
    }
    for (what, n) in tally.hostile.lock().unwrap().iter() {
        println!("| hostile {what} | {n} |");
    }
    println!("| /health probes: p50 / p99 / max | {:.1} / {:.1} / {:.1} ms ({} probes, {failed} failed) |", pct(0.5), pct(0.99), lat.last().copied().unwrap_or(f64::NAN), lat.len());
    println!(
        "| server peak RSS | {rss:.0} MB (limits: key caches {honest} × {key_mb} MB + 64 MB; jobs and key uploads: cores running + {max_queued} queued each) |"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
