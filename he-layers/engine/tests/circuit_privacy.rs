//! Circuit privacy as a two-sample test: two weight sets that give the same outputs on the
//! same inputs, (a, b) and (b, a) on two encryptions of the same values. The client knows the
//! errors e1, e2 of its inputs, so the statistic z = noise · (e1 − e2) per coefficient has mean
//! (a − b)σ² for one set and (b − a)σ² for the other. Welch's t on the two samples tells the
//! sets apart from raw results and from results that were only re-randomized; after full
//! sanitization it is a standard normal draw (|t| < 5 but once in 1.7 million runs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use he_engine::sanitize::{plan_sanitization, sanitize, SanitizationPlan};
use he_engine::{
    BatchEncoder, BfvParameters, Ciphertext, Decryptor, Encryptor, Evaluator, PublicKey, SecretKey,
    SecurityLevel, SymmetricEncryptor,
};
use std::sync::Arc;

/// Welch's t statistic of two samples.
fn welch_t(x: &[f64], y: &[f64]) -> f64 {
    let stats = |v: &[f64]| {
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (n - 1.0);
        (m, var, n)
    };
    let (mx, vx, nx) = stats(x);
    let (my, vy, ny) = stats(y);
    (mx - my) / (vx / nx + vy / ny).sqrt()
}

struct Setup {
    params: Arc<BfvParameters>,
    sk: SecretKey,
    encryptor: Encryptor,
    evaluator: Evaluator,
}

fn setup() -> Setup {
    let params =
        BfvParameters::with_bit_sizes(8192, 65537, &[50, 50, 50], 50, SecurityLevel::Bits128)
            .unwrap();
    let sk = SecretKey::generate(&params);
    let pk = PublicKey::generate(&sk);
    Setup {
        evaluator: Evaluator::new(&params),
        encryptor: Encryptor::new(&pk),
        params,
        sk,
    }
}

/// For `rounds` fresh input pairs: the z samples of the answers of (a, b) and of (b, a),
/// after `treat`.
fn samples(
    s: &Setup,
    rounds: usize,
    treat: &dyn Fn(&Ciphertext) -> Ciphertext,
) -> (Vec<f64>, Vec<f64>) {
    let (a, b) = (9i64, -9i64);
    let encoder = BatchEncoder::try_new(&s.params).unwrap();
    let values: Vec<i64> = (0..8192).map(|i| i % 100).collect();
    let pt = encoder.encode(&values).unwrap();
    let sym = SymmetricEncryptor::new(&s.sk);
    let dec = Decryptor::new(&s.sk);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let c1 = sym.encrypt(&pt).unwrap();
        let c2 = sym.encrypt(&pt).unwrap();
        let e1 = dec.noise_coefficients(&c1).unwrap();
        let e2 = dec.noise_coefficients(&c2).unwrap();
        for (w, out) in [([a, b], &mut first), ([b, a], &mut second)] {
            let r = treat(&s.evaluator.dot_scalars(&[&c1, &c2], &w).unwrap());
            // Both weight sets compute 9x − 9x = 0.
            assert!(encoder
                .decode(&dec.decrypt(&r).unwrap())
                .iter()
                .all(|&v| v == 0));
            let noise = dec.noise_coefficients(&r).unwrap();
            out.extend(
                noise
                    .iter()
                    .zip(e1.iter().zip(&e2))
                    .map(|(v, (x, y))| v * (x - y)),
            );
        }
    }
    (first, second)
}

#[test]
fn swapped_weights_are_told_apart_from_raw_and_rerandomized_answers_not_sanitized_ones() {
    let s = setup();
    let noise = {
        let zero = s.encryptor.encrypt_zero();
        s.evaluator
            .dot_scalars(&[&zero, &zero], &[9, -9])
            .unwrap()
            .estimated_noise_log2()
            .max(he_engine::encrypt::fresh_symmetric_noise(&s.params) + (18f64).log2())
    };

    let (x, y) = samples(&s, 2, &|c| c.clone());
    let raw = welch_t(&x, &y);
    assert!(raw > 20.0, "raw answers: t = {raw:.1}");

    let top = s.params.level();
    let rerandomize_only = SanitizationPlan {
        level: top,
        from_level: top,
        flood_bits: 0,
        flood_log2: 0,
        noise_log2: noise,
        budget_bits: 1.0,
    };
    let (x, y) = samples(&s, 2, &|c| {
        sanitize(c, &s.encryptor, &rerandomize_only).unwrap()
    });
    let rerandomized = welch_t(&x, &y);
    assert!(
        rerandomized > 5.0,
        "re-randomized only: t = {rerandomized:.1}"
    );

    let plan = plan_sanitization(&s.params, noise, 40).unwrap();
    let (x, y) = samples(&s, 2, &|c| sanitize(c, &s.encryptor, &plan).unwrap());
    let sanitized = welch_t(&x, &y);
    eprintln!(
        "Welch t: raw {raw:.1}, re-randomized only {rerandomized:.1}, sanitized {sanitized:.2}"
    );
    assert!(
        sanitized.abs() < 5.0,
        "sanitized: t = {sanitized:.2} with {plan:?}"
    );
}
