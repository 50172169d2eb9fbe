//! Runs one operation in a loop for profiling: `cargo run --release --example profile_mul -- mul|square|rotate|hoisted`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly
use he_layers::crypto::*;
fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "mul".into());
    if std::env::var_os("NO_TUNE").is_none() {
        he_layers::tune_allocator();
    }
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8192);
    let t = BfvParameters::batching_plain_modulus(n, 20).expect("t");
    let p = BfvParameters::preset(n, t).expect("preset");
    let sk = SecretKey::generate(&p);
    let rk = RelinearizationKey::generate(&sk);
    let steps: Vec<i64> = (1..=16).collect();
    let gk = GaloisKeys::generate(&sk, &steps, false);
    let enc = BatchEncoder::try_new(&p).expect("enc");
    let pt = enc.encode(&[1, 2, 3]).expect("pt");
    let a = SymmetricEncryptor::new(&sk).encrypt(&pt).expect("ct");
    let ev = Evaluator::new(&p);
    let start = std::time::Instant::now();
    for _ in 0..200 {
        match what.as_str() {
            "rotate" => drop(ev.rotate_rows(&a, 1, &gk).expect("rot")),
            "hoisted" => drop(ev.rotate_rows_hoisted(&a, &steps, &gk).expect("rot")),
            "hoisted-same" => drop(ev.rotate_rows_hoisted(&a, &[1; 16], &gk).expect("rot")),
            "square" => drop(ev.square(&a, &rk).expect("square")),
            _ => drop(ev.multiply(&a, &a.clone(), &rk).expect("mul")),
        }
    }
    eprintln!(
        "{what}: {:.2} ms each",
        start.elapsed().as_secs_f64() * 1000.0 / 200.0
    );
}
