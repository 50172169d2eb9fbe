//! Engine bench: prints a Markdown table of median timings and serialized sizes for the 128-bit
//! presets at N = 4096, 8192, 16384, one thread (or `--threads=K`).
//!
//! Next to every timing of an operation that runs NTTs it prints the operation's NTT-count
//! floor (the number of limb NTTs it performs, counted, times one NTT's median) and the ratio.
//!
//! Run: `cargo bench -p he-layers --bench engine` (optionally `-- 8192` to run one degree).
//! `-- --threads=2` lets one operation use two threads (its limbs and digits in parallel).
//! `-- --peers` runs at t = 65537, as the peer benches in `../shared/peers/` do, and adds a
//! section per degree whose rows carry fhe.rs's operation names, for `compare.py` (see
//! `he-layers/benches/side_by_side.sh`).
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

/// A timing with the operation's NTT-count floor: the NTTs one call performs (counted) times
/// one NTT's median `ntt`.
fn counted<F: FnMut()>(ntt: Duration, mut f: F) -> (Duration, String) {
    let before = he_layers::crypto::stats::snapshot();
    f();
    let ntts = (he_layers::crypto::stats::snapshot() - before).ntts;
    let d = time(f);
    if ntts == 0 {
        return (d, fmt(d));
    }
    let floor = ntt * ntts as u32;
    let ratio = d.as_secs_f64() / floor.as_secs_f64();
    (
        d,
        format!(
            "{} ({ntts} NTTs, floor {}, {ratio:.2}×)",
            fmt(d),
            fmt(floor)
        ),
    )
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
    let peers = std::env::args().any(|a| a == "--peers");
    // One thread unless `--threads=K`: the engine runs the limbs and digits of one operation
    // in parallel on rayon's pool, and the table compares single-thread timings.
    let threads: usize = std::env::args()
        .find_map(|a| a.strip_prefix("--threads=").and_then(|v| v.parse().ok()))
        .unwrap_or(1);
    // Inside a pool, as the layouts run the engine.
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("the bench's thread pool")
        .install(|| run(threads, peers));
}

fn run(threads: usize, peers: bool) {
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
    // Per degree: (section header, rows named as fhe.rs names them, median ms).
    let mut peer_sections: Vec<(String, Vec<(&str, String)>)> = Vec::new();
    for (col, &n) in degrees.iter().enumerate() {
        let t = if peers {
            65537
        } else {
            BfvParameters::batching_plain_modulus(n, 20).expect("a 20-bit batching prime")
        };
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
        let fwd = time(|| op.forward(black_box(&mut buf)));
        let inv = time(|| op.backward(black_box(&mut buf)));
        push(&mut rows, "NTT forward (he-layers)", col, fmt(fwd));
        push(
            &mut rows,
            "NTT inverse (he-layers, normalized)",
            col,
            fmt(inv),
        );
        // The unit of every floor: the mean of one forward and one inverse transform.
        let ntt = (fwd + inv) / 2;
        let mut peer: Vec<(&str, String)> = Vec::new();
        let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1e3);
        // Times `f`, with its floor, into the table row `name` and, when `fhe` names it, the
        // peers' section.
        let mut op_row = |rows: &mut Vec<(String, Vec<String>)>,
                          name: &str,
                          fhe: Option<&'static str>,
                          f: &mut dyn FnMut()| {
            let (d, cell) = counted(ntt, f);
            push(rows, name, col, cell);
            if let Some(fhe) = fhe {
                peer.push((fhe, ms(d)));
            }
        };

        // Keys.
        op_row(&mut rows, "keygen: secret + public", None, &mut || {
            let sk = SecretKey::generate(&p);
            black_box(PublicKey::generate(&sk));
        });
        let sk = SecretKey::generate(&p);
        let pk = PublicKey::generate(&sk);
        op_row(
            &mut rows,
            "keygen: relinearization key",
            Some("keygen relin"),
            &mut || {
                black_box(RelinearizationKey::generate(&sk));
            },
        );
        op_row(
            &mut rows,
            "keygen: Galois keys (row swap + step 1)",
            Some("keygen galois (rows + cols by 1)"),
            &mut || {
                black_box(GaloisKeys::generate(&sk, &[1], true));
            },
        );
        let rk = RelinearizationKey::generate(&sk);
        let gk = GaloisKeys::generate(&sk, &[1], true);
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
        op_row(
            &mut rows,
            "encrypt (public key)",
            Some("encrypt (public key)"),
            &mut || {
                black_box(pk_enc.encrypt(&pt).expect("encrypt"));
            },
        );
        op_row(
            &mut rows,
            "encrypt (seeded, secret key)",
            Some("encrypt (secret key, seeded)"),
            &mut || {
                black_box(sym.encrypt(&pt).expect("encrypt"));
            },
        );
        let a = sym.encrypt(&pt).expect("encrypt");
        let b = pk_enc.encrypt(&pt).expect("encrypt");
        op_row(&mut rows, "decrypt", Some("decrypt"), &mut || {
            black_box(dec.decrypt(&a).expect("decrypt"));
        });
        op_row(&mut rows, "noise budget", None, &mut || {
            black_box(dec.noise_budget(&a).expect("budget"));
        });
        op_row(
            &mut rows,
            "encode (batch)",
            Some("encode (SIMD, N slots)"),
            &mut || {
                black_box(enc.encode(&m).expect("encode"));
            },
        );
        let lifted = ev.prepare_mul(&pt).expect("prepare");
        op_row(
            &mut rows,
            "ct × plaintext (prepared)",
            Some("mul ct x pt (pt pre-encoded, NTT form)"),
            &mut || {
                black_box(ev.mul_plain(&a, &lifted).expect("mul"));
            },
        );
        op_row(
            &mut rows,
            "ct × scalar",
            Some("mul ct x scalar (= ct x constant pt)"),
            &mut || {
                black_box(ev.mul_scalar(&a, 12345).expect("mul"));
            },
        );
        op_row(&mut rows, "ct + ct", Some("add ct+ct"), &mut || {
            black_box(ev.add(&a, &b).expect("add"));
        });
        let cts: Vec<Ciphertext> = (0..25)
            .map(|_| sym.encrypt(&pt).expect("encrypt"))
            .collect();
        let refs: Vec<&Ciphertext> = cts.iter().collect();
        let ws: Vec<i64> = (0..25).map(|_| rng.gen_range(-128..128)).collect();
        op_row(&mut rows, "dot product, 25 ct × scalar", None, &mut || {
            black_box(ev.dot_scalars(&refs, &ws).expect("dot"));
        });
        op_row(
            &mut rows,
            "ct × ct, no relinearization",
            Some("mul ct x ct (tensor + scale, no relin)"),
            &mut || {
                black_box(ev.multiply_no_relin(&a, &b).expect("mul"));
            },
        );
        let three = ev.multiply_no_relin(&a, &b).expect("mul");
        op_row(
            &mut rows,
            "relinearize",
            Some("relinearize (incl. clone of 3-poly ct)"),
            &mut || {
                black_box(ev.relinearize(&three, &rk).expect("relin"));
            },
        );
        op_row(
            &mut rows,
            "ct × ct + relinearize",
            Some("mul + relin (Multiplicator)"),
            &mut || {
                black_box(ev.multiply(&a, &b, &rk).expect("mul"));
            },
        );
        op_row(
            &mut rows,
            "square, no relinearization",
            Some("square (no relin)"),
            &mut || {
                black_box(ev.multiply_no_relin(&a, &a).expect("square"));
            },
        );
        op_row(&mut rows, "square + relinearize", None, &mut || {
            black_box(ev.square(&a, &rk).expect("square"));
        });
        op_row(
            &mut rows,
            "rotate rows by 1",
            Some("rotate columns by 1"),
            &mut || {
                black_box(ev.rotate_rows(&b, 1, &gk).expect("rotate"));
            },
        );
        op_row(
            &mut rows,
            "swap the two rows",
            Some("rotate rows (swap the two rows)"),
            &mut || {
                black_box(ev.rotate_columns(&b, &gk).expect("rotate"));
            },
        );
        op_row(
            &mut rows,
            "16 rotations of one ciphertext, one by one",
            None,
            &mut || {
                for &s in &steps16 {
                    black_box(ev.rotate_rows(&b, s, &gk16).expect("rotate"));
                }
            },
        );
        op_row(
            &mut rows,
            "16 rotations of one ciphertext, hoisted",
            None,
            &mut || {
                black_box(ev.rotate_rows_hoisted(&b, &steps16, &gk16).expect("rotate"));
            },
        );
        op_row(&mut rows, "modulus switch to one prime", None, &mut || {
            black_box(switch_to_level(&b, 1).expect("switch"));
        });
        let last = switch_to_level(&b, 1).expect("switch");
        peer.push((
            "ct bytes, fresh pk-encrypted (`to_bytes`, protobuf, bit-packed)",
            b.to_bytes().len().to_string(),
        ));
        peer.push((
            "ct bytes, fresh sk-encrypted (seeded c1)",
            a.to_bytes().len().to_string(),
        ));
        peer.push((
            "ct bytes, after mod-switch to last level (1 prime)",
            last.to_bytes().len().to_string(),
        ));
        peer_sections.push((
            format!(
                "ours (he-layers) BFV N={n}, t={t}, log2 q={} ({} primes + special)",
                p.total_modulus_bits(),
                p.moduli().len()
            ),
            peer,
        ));
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
            kb(GaloisKeys::generate(&sk, &[1], false).to_bytes().len()),
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
    let t_text = if peers {
        "t = 65537"
    } else {
        "t = 20-bit batching prime"
    };
    let thread_text = if threads == 1 {
        "one thread".to_string()
    } else {
        format!("{threads} threads")
    };
    println!("Engine bench, {thread_text}, 128-bit presets, {t_text}");
    println!();
    println!(
        "Floors: the NTTs one call performs × one NTT (mean of forward and inverse); the ratio is time / floor."
    );
    println!();
    println!("| operation | {} |", header.join(" | "));
    println!("|---|{}", "---|".repeat(header.len()));
    for (name, cells) in rows {
        println!("| {name} | {} |", cells.join(" | "));
    }
    if peers {
        for (head, rows) in peer_sections {
            println!();
            println!("### {head}");
            println!();
            println!("| op | median ms |");
            println!("|---|---:|");
            for (op, v) in rows {
                println!("| {op} | {v} |");
            }
        }
    }
}
