//! Engine bench: prints a Markdown table of median timings and serialized sizes for the 128-bit
//! presets at N = 4096, 8192, 16384, one thread.
//!
//! Run: `cargo bench -p he-layers --bench engine` (optionally `-- 8192` to run one degree).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use he_layers::crypto::arith::NttOperator;
use he_layers::crypto::modswitch::switch_to_level;
use he_layers::crypto::sanitize::{plan_sanitization, sanitize, DEFAULT_FLOOD_BITS};
use he_layers::crypto::{
    BatchEncoder, BfvParameters, Ciphertext, Decryptor, Encryptor, Evaluator, GaloisKeys,
    PublicKey, RelinearizationKey, SecretKey, SymmetricEncryptor,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Median over samples; each sample runs enough iterations to last at least 2 ms.
fn time<F: FnMut()>(mut f: F) -> Duration {
    f();
    let start = Instant::now();
    f();
    let once = start.elapsed().max(Duration::from_nanos(1));
    let per_sample =
        ((Duration::from_millis(2).as_nanos() / once.as_nanos()) as u32).clamp(1, 10_000);
    let samples = ((Duration::from_millis(400).as_nanos() / (once.as_nanos() * per_sample as u128))
        as usize)
        .clamp(5, 200);
    let mut v: Vec<Duration> = (0..samples)
        .map(|_| {
            let s = Instant::now();
            for _ in 0..per_sample {
                f();
            }
            s.elapsed() / per_sample
        })
        .collect();
    v.sort();
    v[v.len() / 2]
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn kb(bytes: usize) -> String {
    format!("{:.1} KB", bytes as f64 / 1000.0)
}

fn main() {
    // Binaries of this workspace keep freed memory in the process (see `tune_allocator`);
    // `HE_LAYERS_DEFAULT_MALLOC=1` measures with glibc defaults instead.
    if std::env::var_os("HE_LAYERS_DEFAULT_MALLOC").is_none() {
        he_layers::tune_allocator();
    }
    let only: Option<usize> = std::env::args().skip(1).find_map(|a| a.parse().ok());
    let degrees: Vec<usize> = [4096usize, 8192, 16384]
        .into_iter()
        .filter(|n| only.is_none_or(|o| o == *n))
        .collect();
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let push = |rows: &mut Vec<(String, Vec<String>)>, name: &str, col: usize, v: String| {
        if let Some(r) = rows.iter_mut().find(|r| r.0 == name) {
            r.1[col] = v;
        } else {
            let mut cells = vec![String::new(); degrees.len()];
            cells[col] = v;
            rows.push((name.to_string(), cells));
        }
    };
    let mut header = Vec::new();
    for (col, &n) in degrees.iter().enumerate() {
        let t = BfvParameters::batching_plain_modulus(n, 20).expect("a 20-bit batching prime");
        let p = BfvParameters::preset(n, t).expect("preset");
        header.push(format!(
            "N={n}, log q={} ({}×{}b + {}b)",
            p.total_modulus_bits(),
            p.moduli().len(),
            64 - p.moduli()[0].leading_zeros(),
            64 - p.special_modulus().leading_zeros()
        ));
        let mut rng = ChaCha8Rng::seed_from_u64(1);

        // NTT, ours and raw tfhe-ntt, on the first ciphertext prime.
        let q = p.moduli()[0];
        let op = NttOperator::try_new(n, q, None).expect("plan");
        let raw = tfhe_ntt::prime64::Plan::try_new(n, q).expect("plan");
        let mut buf: Vec<u64> = (0..n).map(|_| rng.gen_range(0..q)).collect();
        push(
            &mut rows,
            "NTT forward (raw tfhe-ntt)",
            col,
            fmt(time(|| raw.fwd(black_box(&mut buf)))),
        );
        push(
            &mut rows,
            "NTT forward (he-layers)",
            col,
            fmt(time(|| op.forward(black_box(&mut buf)))),
        );
        push(
            &mut rows,
            "NTT inverse (he-layers, normalized)",
            col,
            fmt(time(|| op.backward(black_box(&mut buf)))),
        );

        // Keys.
        push(
            &mut rows,
            "keygen: secret + public",
            col,
            fmt(time(|| {
                let sk = SecretKey::generate(&p);
                black_box(PublicKey::generate(&sk));
            })),
        );
        let sk = SecretKey::generate(&p);
        let pk = PublicKey::generate(&sk);
        push(
            &mut rows,
            "keygen: relinearization key",
            col,
            fmt(time(|| {
                black_box(RelinearizationKey::generate(&sk));
            })),
        );
        let rk = RelinearizationKey::generate(&sk);
        let gk = GaloisKeys::generate(&sk, &[1], false);
        // Sixteen steps of one ciphertext, as a packed layout's rotations of one input.
        let steps16: Vec<i64> = (1..=16).collect();
        let gk16 = GaloisKeys::generate(&sk, &steps16, false);
        let enc = BatchEncoder::try_new(&p).expect("batching");
        let ev = Evaluator::new(&p);
        let half = ((t - 1) / 2) as i64;
        let m: Vec<i64> = (0..n).map(|_| rng.gen_range(-half..=half)).collect();
        let pt = enc.encode(&m).expect("encode");
        let pk_enc = Encryptor::new(&pk);
        let sym = SymmetricEncryptor::new(&sk);
        let dec = Decryptor::new(&sk);
        push(
            &mut rows,
            "encrypt (public key)",
            col,
            fmt(time(|| {
                black_box(pk_enc.encrypt(&pt).expect("encrypt"));
            })),
        );
        push(
            &mut rows,
            "encrypt (seeded, secret key)",
            col,
            fmt(time(|| {
                black_box(sym.encrypt(&pt).expect("encrypt"));
            })),
        );
        let a = sym.encrypt(&pt).expect("encrypt");
        let b = pk_enc.encrypt(&pt).expect("encrypt");
        push(
            &mut rows,
            "decrypt",
            col,
            fmt(time(|| {
                black_box(dec.decrypt(&a).expect("decrypt"));
            })),
        );
        push(
            &mut rows,
            "noise budget",
            col,
            fmt(time(|| {
                black_box(dec.noise_budget(&a).expect("budget"));
            })),
        );
        push(
            &mut rows,
            "encode (batch)",
            col,
            fmt(time(|| {
                black_box(enc.encode(&m).expect("encode"));
            })),
        );
        let lifted = ev.prepare_mul(&pt).expect("prepare");
        push(
            &mut rows,
            "ct × plaintext (prepared)",
            col,
            fmt(time(|| {
                black_box(ev.mul_plain(&a, &lifted).expect("mul"));
            })),
        );
        push(
            &mut rows,
            "ct × scalar",
            col,
            fmt(time(|| {
                black_box(ev.mul_scalar(&a, 12345).expect("mul"));
            })),
        );
        push(
            &mut rows,
            "ct + ct",
            col,
            fmt(time(|| {
                black_box(ev.add(&a, &b).expect("add"));
            })),
        );
        let cts: Vec<Ciphertext> = (0..25)
            .map(|_| sym.encrypt(&pt).expect("encrypt"))
            .collect();
        let refs: Vec<&Ciphertext> = cts.iter().collect();
        let ws: Vec<i64> = (0..25).map(|_| rng.gen_range(-128..128)).collect();
        push(
            &mut rows,
            "dot product, 25 ct × scalar",
            col,
            fmt(time(|| {
                black_box(ev.dot_scalars(&refs, &ws).expect("dot"));
            })),
        );
        push(
            &mut rows,
            "ct × ct + relinearize",
            col,
            fmt(time(|| {
                black_box(ev.multiply(&a, &b, &rk).expect("mul"));
            })),
        );
        push(
            &mut rows,
            "square + relinearize",
            col,
            fmt(time(|| {
                black_box(ev.square(&a, &rk).expect("square"));
            })),
        );
        push(
            &mut rows,
            "rotate rows by 1",
            col,
            fmt(time(|| {
                black_box(ev.rotate_rows(&b, 1, &gk).expect("rotate"));
            })),
        );
        push(
            &mut rows,
            "16 rotations of one ciphertext, one by one",
            col,
            fmt(time(|| {
                for &s in &steps16 {
                    black_box(ev.rotate_rows(&b, s, &gk16).expect("rotate"));
                }
            })),
        );
        push(
            &mut rows,
            "16 rotations of one ciphertext, hoisted",
            col,
            fmt(time(|| {
                black_box(ev.rotate_rows_hoisted(&b, &steps16, &gk16).expect("rotate"));
            })),
        );
        push(
            &mut rows,
            "modulus switch to one prime",
            col,
            fmt(time(|| {
                black_box(switch_to_level(&b, 1).expect("switch"));
            })),
        );
        // A dot product of 25 fresh ciphertexts, as a Conv2d output, sanitized at λ = 40.
        let inputs: Vec<&Ciphertext> = (0..25).map(|_| &a).collect();
        let weights: Vec<i64> = (0..25).map(|i| i - 12).collect();
        let dot = ev.dot_scalars(&inputs, &weights).expect("dot");
        match plan_sanitization(&p, dot.estimated_noise_log2(), DEFAULT_FLOOD_BITS) {
            Ok(plan) => {
                push(
                    &mut rows,
                    "sanitize (switch, re-randomize, flood λ=40)",
                    col,
                    fmt(time(|| {
                        black_box(sanitize(&dot, &pk_enc, &plan).expect("sanitize"));
                    })),
                );
                let clean = sanitize(&dot, &pk_enc, &plan).expect("sanitize");
                push(
                    &mut rows,
                    "size: 25-term dot product, raw → sanitized",
                    col,
                    format!(
                        "{} → {} ({} of {} primes)",
                        kb(dot.to_bytes().len()),
                        kb(clean.to_bytes().len()),
                        plan.level,
                        p.level()
                    ),
                );
                push(
                    &mut rows,
                    "budget of it, raw → sanitized (measured), bits",
                    col,
                    format!(
                        "{} → {}",
                        dec.noise_budget(&dot).expect("budget"),
                        dec.noise_budget(&clean).expect("budget")
                    ),
                );
            }
            Err(e) => push(
                &mut rows,
                "sanitize (switch, re-randomize, flood λ=40)",
                col,
                format!("no room: {:.0} bits short", e.needed - e.available),
            ),
        }
        push(
            &mut rows,
            "size: fresh ciphertext (public key)",
            col,
            kb(b.to_bytes().len()),
        );
        push(
            &mut rows,
            "size: seeded ciphertext",
            col,
            kb(a.to_bytes().len()),
        );
        push(&mut rows, "size: public key", col, kb(pk.to_bytes().len()));
        push(
            &mut rows,
            "size: relinearization key",
            col,
            kb(rk.to_bytes().len()),
        );
        push(
            &mut rows,
            "size: one Galois key",
            col,
            kb(gk.to_bytes().len()),
        );
        push(
            &mut rows,
            "fresh noise budget (seeded / public), bits",
            col,
            format!(
                "{} / {}",
                dec.noise_budget(&a).expect("budget"),
                dec.noise_budget(&b).expect("budget")
            ),
        );
    }
    println!("Engine bench, one thread, 128-bit presets, t = 20-bit batching prime");
    println!();
    println!("| operation | {} |", header.join(" | "));
    println!("|---|{}", "---|".repeat(header.len()));
    for (name, cells) in rows {
        println!("| {name} | {} |", cells.join(" | "));
    }
}
