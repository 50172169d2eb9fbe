//! Throughput bench: a shipped model encrypted on a full batch (N test images) in the batch
//! layout, with its shipped client config (models/configs/<net>.client.json). Prints per layer
//! the wall time and the counts of NTTs, key switches, scalar products and ciphertext products;
//! the total per image; client encryption and decryption per image; bytes up and down per image;
//! and checks every output against the integer mirror.
//!
//! cargo bench -p net-builder --bench throughput                            # cryptonets, tiny
//! cargo bench -p net-builder --bench throughput -- mnist-cryptonets 3x25   # override the moduli
//!
//! Latency mode (`--latency`): the packed layout on one image (`--images=K` for more), answers
//! sanitized at λ = 40 as the server does, with `configs/<net>.packed.client.json` when the model
//! ships one, the degree from `--degree=N` (default: the config's).
//! Prints per layer the wall time, rotations, key switches, plaintext and scalar products and
//! NTTs, the server's time per segment, the client's encryption and decryption, bytes up and
//! down, and the key bytes (relinearization and Galois keys, sent once per key id).
//!
//! The server's wall time is measured again with the plaintext moduli run concurrently (as the
//! server runs a client's concurrent requests), `--repeat=K` times (minimum and median).
//!
//! cargo bench -p net-builder --bench throughput -- mnist-tiny 2x17 --latency
//! cargo bench -p net-builder --bench throughput -- mnist-cryptonets --latency --repeat=5
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use he_layers::crypto::stats::OpCounts;
use he_layers::plan::Layout;
use he_layers::plan::LayoutKind;
use he_layers::protocol::{EncryptionParameters, QuantizationConfig};
use net_builder::data::idx_images;
use net_builder::pipeline::build_crt_on;
use net_builder::session::{keys_for, InProcess, LayerObservation, Observed, Session, SessionPlan};
use net_builder::{load_model, BuildOptions, PickleOptions};
use std::path::Path;
use std::sync::Mutex;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    he_layers::tune_allocator();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let all: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| -> Option<String> {
        all.iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_string))
    };
    let latency = all.iter().any(|a| a == "--latency");
    let layout_kind = if latency {
        LayoutKind::Packed
    } else {
        LayoutKind::Batch
    };
    let args: Vec<String> = all
        .iter()
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .collect();
    let nets: Vec<String> = match args.first() {
        Some(n) => vec![n.clone()],
        None => vec!["mnist-cryptonets".into(), "mnist-tiny".into()],
    };
    let override_moduli = args.get(1).cloned();
    for net in nets {
        // Latency mode reads the model's packed config when it ships one.
        let packed_cfg = root.join(format!("models/configs/{net}.packed.client.json"));
        let cfg_path = if latency && packed_cfg.is_file() {
            packed_cfg
        } else {
            root.join(format!("models/configs/{net}.client.json"))
        };
        let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(cfg_path)?)?;
        let mut params: EncryptionParameters =
            serde_json::from_value(cfg["encryption_parameters"].clone())?;
        if let Some(m) = &override_moduli {
            let (k, b) = m
                .split_once('x')
                .ok_or("moduli override is KxBITS, e.g. 2x37")?;
            params.plain_moduli = vec![];
            params.plain_moduli_count = Some(k.parse()?);
            params.plain_modulus_bits = Some(b.parse()?);
        }
        if let Some(d) = flag("degree") {
            params.degree = d.parse()?;
            params.coeff_bits = None;
        }
        let quant: QuantizationConfig = serde_json::from_value(cfg["quantization"].clone())?;
        // The config's re-encryption boundaries (PyCrCNN's spelling too): one segment each.
        let boundaries = [&cfg["reencrypt_positions"], &cfg["rencrypt_positions"]];
        let reencrypt_after: Vec<usize> = match boundaries.into_iter().find(|v| !v.is_null()) {
            Some(v) => serde_json::from_value(v.clone())?,
            None => Vec::new(),
        };
        let moduli = params.plain_moduli()?;
        // A full batch, as far as the test set goes (10,000 images; N = 16384 holds more); in
        // latency mode one image unless told.
        let n = if latency {
            flag("images").map_or(Ok(1), |v| v.parse())?
        } else {
            params.degree.min(10_000)
        };
        let slots = params.degree;
        let spec = load_model(
            &root.join(format!("models/{net}/model.onnx")),
            &PickleOptions::default(),
        )?;
        // The parameter sets the server builds from this config (its coeff_bits included).
        let crt = build_crt_on(
            &spec,
            &params.resolve()?,
            &BuildOptions {
                input_scale_bits: quant.input_scale_bits,
                weight_bits: quant.weight_bits,
                reencrypt_after,
                ..Default::default()
            },
        )?;
        let model = crt.model();
        let end = model.encryptable_prefix();
        model.check_overflow(&(0..end))?;
        let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            root.join(format!("models/{net}/manifest.json")),
        )?)?;
        let test_set = root.join(manifest["test_set"].as_str().ok_or("no test set")?);
        let x = idx_images(&test_set, 0, n)?;
        let q = model.quantize_input(&x)?;
        // Latency mode sanitizes as the server does; the batch mode measures the computation.
        let flood = latency.then_some(40);
        let keys = keys_for(&crt, layout_kind, flood)?;
        let key_bytes: usize = keys
            .iter()
            .map(|k| k.rk.to_bytes().len() + k.galois.as_ref().map_or(0, |g| g.to_bytes().len()))
            .sum();
        let threads = rayon::current_num_threads();
        println!(
            "\n{net}: {layout_kind} layout, {n} images, N={slots}, log q={}, plaintext moduli {moduli:?} (CRT {}), inputs × 2^{}, {}-bit weights, {threads} threads",
            model.parameters().total_modulus_bits(),
            moduli.len(),
            quant.input_scale_bits,
            crt.components[0].weight_bits,
        );
        // The session in process, unsanitized (this measures the computation), observed layer
        // by layer: wall time and operation counts per layer, over every plaintext modulus.
        let per_layer: Mutex<Vec<(f64, OpCounts)>> = Mutex::new(vec![Default::default(); end]);
        let observe = |o: LayerObservation<'_>| {
            if let (Ok(mut rows), Observed::Layer) = (per_layer.lock(), o.observed) {
                if let Some(row) = rows.get_mut(o.layer) {
                    row.0 += o.ms / 1000.0;
                    row.1 = row.1 + o.ops;
                }
            }
        };
        let transport = InProcess::new(&crt, layout_kind, &keys, flood)?.observed(&observe);
        let layout = transport.layout(0).ok_or("no plaintext modulus")?;
        let compiled = layout.compile(model)?;
        let plan = SessionPlan::from_model(model, layout, &crt.moduli)?;
        let session = Session::new(plan, keys.iter().map(|k| &k.sk).collect())?;
        let run = session.run_blocking(&transport, &q)?;
        println!();
        println!(
            "| layer | wall | NTTs | key switches | rotations (plan) | pt products (plan) | scalar products | ct products |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        let rows = per_layer.into_inner().map_err(|_| "lock")?;
        let mut total = 0.0;
        let mut all = OpCounts::default();
        for (i, (s, d)) in rows.iter().enumerate() {
            total += s;
            all = all + *d;
            let ops = compiled.steps.get(i).map(|s| s.ops).unwrap_or_default();
            println!(
                "| {i} {} | {s:.3} s | {} | {} | {} | {} | {} | {} |",
                model.layers()[i].describe(),
                d.ntts,
                d.key_switches,
                ops.rotations * moduli.len() as u64,
                ops.plaintext_products * moduli.len() as u64,
                d.scalar_products,
                d.ct_products
            );
        }
        println!(
            "| **total** | **{total:.3} s = {:.3} ms/image** | {} | {} | | | {} | {} |",
            1000.0 * total / n as f64,
            all.ntts,
            all.key_switches,
            all.scalar_products,
            all.ct_products
        );
        let server_s = run.segments.iter().map(|s| s.server_ms).sum::<f64>() / 1000.0;
        let sanitize_s = run.segments.iter().map(|s| s.sanitize_ms).sum::<f64>() / 1000.0;
        println!(
            "server compute {server_s:.3} s (sanitization {sanitize_s:.3} s) for {n} images; keys: relinearization + Galois {:.2} MB (sent once per key id, {} Galois elements)",
            key_bytes as f64 / 1e6,
            compiled.galois_elements.len()
        );
        // Unobserved, the plaintext moduli run concurrently, as a server runs the client's
        // concurrent requests: the latency a client sees from the server.
        // `--repeat=K` runs it K times (this machine is shared: the minimum and the median).
        let repeat: usize = flag("repeat").map_or(Ok(1), |v| v.parse())?;
        let concurrent = InProcess::new(&crt, layout_kind, &keys, flood)?;
        let mut walls = Vec::with_capacity(repeat);
        for _ in 0..repeat.max(1) {
            let rerun = session.run_blocking(&concurrent, &q)?;
            assert_eq!(rerun.output, run.output, "the concurrent run differs");
            walls.push(rerun.segments.iter().map(|s| s.round_trip_ms).sum::<f64>() / 1000.0);
        }
        walls.sort_by(f64::total_cmp);
        let (wall_s, median_s) = (walls[0], walls[walls.len() / 2]);
        println!(
            "server wall with the {} plaintext moduli concurrently: {wall_s:.3} s for {n} images ({:.1} ms/image; minimum of {}, median {median_s:.3} s)",
            moduli.len(),
            1000.0 * wall_s / n as f64,
            walls.len()
        );
        let seg = |f: fn(&net_builder::session::SegmentReport) -> f64| -> f64 {
            run.segments.iter().map(f).sum()
        };
        let (encrypt_s, decrypt_s) = (
            seg(|s| s.encrypt_ms) / 1000.0,
            seg(|s| s.decrypt_ms) / 1000.0,
        );
        let up: usize = run.segments.iter().map(|s| s.bytes_up).sum();
        let down: usize = run.segments.iter().map(|s| s.bytes_down).sum();
        let mirror = model.run_int(0..end, &q)?;
        let equal = (0..n)
            .filter(|&j| run.output.image(j) == mirror.image(j))
            .count();
        println!();
        println!(
            "client: encrypt {:.3} ms/image, decrypt and measure noise {:.4} ms/image; upload {:.1} KB/image, download {:.2} KB/image; {equal}/{n} outputs equal the integer mirror",
            1000.0 * encrypt_s / n as f64,
            1000.0 * decrypt_s / n as f64,
            up as f64 / n as f64 / 1000.0,
            down as f64 / n as f64 / 1000.0
        );
        // How close to the limit: the NTTs alone at the engine bench's single-thread time
        // (15.4 µs at N = 8192), spread over the threads.
        let floor = all.ntts as f64 * 15.4e-6 * (slots as f64 / 8192.0) / threads as f64;
        println!(
            "NTT floor: {} NTTs ≈ {floor:.2} s on {threads} threads = {:.0}% of the wall time",
            all.ntts,
            100.0 * floor / total
        );
        if equal != n {
            return Err("encrypted outputs differ from the mirror".into());
        }
    }
    Ok(())
}
