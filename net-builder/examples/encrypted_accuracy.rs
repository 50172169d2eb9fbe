//! Runs a shipped model encrypted (CRT over several plaintext moduli) on a test set and checks
//! every output against the integer mirror.
//!
//! cargo run --release -p net-builder --example encrypted_accuracy -- \
//!     models/mnist-cryptonets 10000 3 25 3 5
//! (model folder, images, number of plaintext moduli, their bits, input scale bits, weight bits
//! or `auto` (the largest that fits t); then optionally the layout, `batch` (default: full
//! batches, answers unsanitized, measuring the computation) or `packed` (one image at a time,
//! answers sanitized at λ = 40 as the server does), the degree N, default 8192, and the
//! re-encryption boundaries as in a client config, comma-separated, e.g. `2,5,7,8`)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use he_layers::crypto::arith::generate_primes;
use he_layers::plan::LayoutKind;
use net_builder::data::{idx_images, idx_labels};
use net_builder::eval::argmax;
use net_builder::pipeline::build_crt;
use net_builder::session::{keys_for, InProcess, Session, SessionPlan};
use net_builder::{load_model, BuildOptions, PickleOptions};
use std::path::Path;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    he_layers::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let dir = arg(0, "models/mnist-cryptonets");
    let count: usize = arg(1, "10000").parse()?;
    let k: usize = arg(2, "3").parse()?;
    let bits: u32 = arg(3, "25").parse()?;
    let input_bits: u32 = arg(4, "3").parse()?;
    let weight_bits: Option<u32> = match arg(5, "5").as_str() {
        "auto" => None,
        w => Some(w.parse()?),
    };
    let layout: LayoutKind = serde_json::from_value(serde_json::Value::String(arg(6, "batch")))?;
    let n: usize = arg(7, "8192").parse()?;
    let reencrypt_after: Vec<usize> = arg(8, "")
        .split(',')
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        Path::new(&dir).join("manifest.json"),
    )?)?;
    let test = manifest["test_set"]
        .as_str()
        .ok_or("manifest without test_set")?;
    let labels_path = test.replace("images-idx3", "labels-idx1");
    let spec = load_model(
        &Path::new(&dir).join("model.onnx"),
        &PickleOptions::default(),
    )?;
    let moduli = generate_primes(bits, n, k, &[]).ok_or("no such primes")?;
    let crt = build_crt(
        &spec,
        n,
        &moduli,
        &BuildOptions {
            input_scale_bits: input_bits,
            weight_bits,
            reencrypt_after,
            ..Default::default()
        },
    )?;
    let model = crt.model();
    model.check_overflow(&(0..model.layers().len()))?;
    println!(
        "{}: N={n}, t = {moduli:?} (CRT, capacity 2^{:.1}), log q = {}, inputs × 2^{input_bits}, {}-bit weights",
        spec.name,
        (model.capacity() as f64).log2(),
        model.parameters().total_modulus_bits(),
        crt.components[0].weight_bits
    );
    let (per_run, flood) = match layout {
        LayoutKind::Batch => (n, None),
        LayoutKind::Packed => (1, Some(40)),
    };
    let keys = keys_for(&crt, layout, flood)?;
    // The server's side is compiled once, as the server caches its plans.
    let transport = InProcess::new(&crt, layout, &keys, flood)?;
    let compiled = transport.layout(0).ok_or("no plaintext modulus")?;
    let plan = SessionPlan::from_model(model, compiled, &crt.moduli)?;
    let session = Session::new(plan, keys.iter().map(|k| &k.sk).collect())?;
    let (mut correct, mut agree, mut labels, mut done) = (0usize, 0usize, 0usize, 0usize);
    let start = Instant::now();
    let mut compute = 0.0;
    while done < count {
        let batch = (count - done).min(per_run);
        let x = idx_images(Path::new(test), done, batch)?;
        let y = idx_labels(Path::new(&labels_path), done, batch)?;
        let q = model.quantize_input(&x)?;
        let mirror = model.run_int(0..model.encryptable_prefix(), &q)?;
        let run = session.run_blocking(&transport, &q)?;
        compute += run
            .segments
            .iter()
            .map(|s| s.server_ms / 1000.0)
            .sum::<f64>();
        for (j, &label) in y.iter().enumerate() {
            let enc = run.output.image(j);
            agree += (enc == mirror.image(j)) as usize;
            labels += (argmax(&enc) == argmax(&mirror.image(j))) as usize;
            correct += (argmax(&enc) == label) as usize;
        }
        let s = &run.segments[0];
        if layout == LayoutKind::Packed && done % 100 != 0 {
            done += batch;
            continue;
        }
        println!(
            "  images {done}..{}: min noise budget {:?} bits, encrypt {:.3} s, server {:.3} s, decrypt {:.3} s",
            done + batch,
            s.noise_budget,
            s.encrypt_ms / 1000.0,
            s.server_ms / 1000.0,
            s.decrypt_ms / 1000.0
        );
        done += batch;
    }
    let wall = start.elapsed().as_secs_f64();
    println!(
        "encrypted accuracy {:.2}% on {count} images; {agree}/{count} outputs equal the integer mirror exactly, {labels}/{count} labels equal the mirror's",
        100.0 * correct as f64 / count as f64
    );
    println!(
        "wall {wall:.1} s ({:.2} ms/image), server compute {compute:.1} s ({:.2} ms/image)",
        1000.0 * wall / count as f64,
        1000.0 * compute / count as f64
    );
    if agree != count {
        return Err("some encrypted outputs differ from the mirror".into());
    }
    Ok(())
}
