//! Circuit privacy, tested as an attacker would try it: a client of its own, with its own keys
//! and seeded inputs, asks the real server for a Linear segment and tries to read the weights
//! off the answer. Against a server started with `--danger-no-circuit-privacy` both attacks
//! recover every weight exactly; against the default server (λ = 40) their estimates are no
//! better than a guess.
//!
//! Criterion for "no better than a guess": the estimate recovers no weight exactly beyond
//! chance (fewer than 5 % of them) and its correlation with the true weights is below 5/√K
//! for K weights, five standard deviations of the correlation of an independent guess (a false
//! failure about once in three million runs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// a test, bench or example fails loudly

// Gaussian elimination reads best with row and column indices.
#![allow(clippy::needless_range_loop)]

use client::{Api, KeySet};
use he_layers::crypto::arith::Modulus;
use he_layers::crypto::{Ciphertext, Decryptor};
use he_layers::layers::EncodedLayer;
use he_layers::protocol::{ComputeRequest, EncryptionParameters, ModelConfig};
use he_layers::tensor::{EncryptedTensor, IntTensor, ValueInfo};
use net_builder::{build_model, load_model, BuildOptions, PickleOptions};
use std::path::{Path, PathBuf};

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// The real server with mnist-tiny's operator allowing a re-encryption after its Flatten,
/// so its last segment is the Linear(256 → 10) layer alone.
async fn start_server(flood_bits: Option<u32>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = server::ServerConfig {
        models_dir: models(),
        flood_bits,
        allowed_reencrypt: vec![("mnist-tiny".into(), vec![2])],
        ..Default::default()
    };
    tokio::spawn(async move { server::serve(listener, cfg).await });
    format!("http://{addr}")
}

fn model_config() -> ModelConfig {
    ModelConfig {
        net: "mnist-tiny".into(),
        encryption_parameters: serde_json::from_str::<EncryptionParameters>(
            r#"{"degree": 8192, "plain_modulus_bits": 20}"#,
        )
        .unwrap(),
        quantization: serde_json::from_str(r#"{"input_scale_bits": 3, "weight_bits": 4}"#).unwrap(),
        reencrypt_positions: vec![2],
        scheme: Default::default(),
        layout: Default::default(),
    }
}

/// The integer weights the server holds (what the attacker wants), rows of 256.
fn true_weights(
    cfg: &ModelConfig,
    params: &std::sync::Arc<he_layers::crypto::BfvParameters>,
) -> Vec<Vec<i64>> {
    let spec = load_model(
        &models().join("mnist-tiny/model.onnx"),
        &PickleOptions::default(),
    )
    .unwrap();
    let opts = BuildOptions {
        input_scale_bits: 3,
        weight_bits: Some(4),
        reencrypt_after: cfg.reencrypt_positions.clone(),
        ..Default::default()
    };
    let built = build_model(&spec, params, &opts).unwrap();
    match &built.model.layers()[4] {
        EncodedLayer::Linear(l) => l
            .weights
            .chunks(l.in_features)
            .map(<[i64]>::to_vec)
            .collect(),
        other => panic!("layer 4 is {}", other.name()),
    }
}

/// What the attacker gets: its inputs (seeded encryptions of zero) and the server's answer
/// for the segment [4, 5).
struct Exchange {
    inputs: Vec<Ciphertext>,
    outputs: Vec<Ciphertext>,
    keys: KeySet,
    weights: Vec<Vec<i64>>,
}

async fn exchange(flood_bits: Option<u32>) -> Exchange {
    let address = start_server(flood_bits).await;
    let api = Api::new(&address).unwrap();
    let model = model_config();
    let keys = KeySet::generate(&model.encryption_parameters).unwrap();
    let c = &keys.components[0];
    let (kr, _) = api.upload_keys(c).await.unwrap();
    let plan = api.plan(&model).await.unwrap();
    assert_eq!(plan.segments, vec![[0, 3], [4, 5]]);
    let before = &plan.layers[3];
    let info = ValueInfo {
        shape: before.shape.clone(),
        scale: before.scale,
        lo: before.lo,
        hi: before.hi,
        float_bound: 1.0,
        error_bound: 0.0,
    };
    let batch = 16;
    let zeros = IntTensor::from_data(before.shape.clone(), batch, vec![0; 256 * batch]).unwrap();
    let enc = EncryptedTensor::encrypt(&zeros, &info, &c.sk).unwrap();
    let req = ComputeRequest {
        plan_id: plan.plan_id.clone(),
        plain_modulus: c.params.plain_modulus(),
        key_id: kr.key_id,
        layers: [4, 5],
        batch,
        accept_compressed: true,
    };
    let (resp, outputs, _) = api
        .compute(
            &req,
            &c.params,
            Ciphertext::batch_to_bytes(&enc.cts, &c.params),
            plan.layers[4].shape.iter().product(),
        )
        .await
        .unwrap();
    assert_eq!(resp.sanitization.is_some(), flood_bits.is_some());
    let weights = true_weights(&model, &c.params);
    Exchange {
        inputs: enc.cts,
        outputs,
        keys,
        weights,
    }
}

/// Solves A x = b mod p (A square, p prime) by Gaussian elimination; None if singular.
fn solve_mod(mut a: Vec<Vec<u64>>, mut b: Vec<u64>, p: u64) -> Option<Vec<u64>> {
    let m = Modulus::try_new(p)?;
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).find(|&r| a[r][col] != 0)?;
        a.swap(col, pivot);
        b.swap(col, pivot);
        let inv = m.inv(a[col][col])?;
        for j in col..n {
            a[col][j] = m.mul(a[col][j], inv);
        }
        b[col] = m.mul(b[col], inv);
        for r in 0..n {
            if r != col && a[r][col] != 0 {
                let f = a[r][col];
                for j in col..n {
                    a[r][j] = m.sub(a[r][j], m.mul(f, a[col][j]));
                }
                b[r] = m.sub(b[r], m.mul(f, b[col]));
            }
        }
    }
    Some(b)
}

/// Attack 1: c1 of each answer is Σ_k w_k c1_k, linear in the client's own c1_k. In NTT form
/// modulo the first prime every slot is one equation; 256 slots give the 256 weights of a row.
fn linear_system_on_c1(x: &Exchange) -> Vec<Vec<i64>> {
    let k = x.inputs.len();
    let q0 = x.keys.components[0].params.moduli()[0];
    let rows: Vec<Vec<u64>> = (0..k)
        .map(|slot| {
            x.inputs
                .iter()
                .map(|c| c.ntt_residues(1, 0).expect("two polynomials")[slot])
                .collect()
        })
        .collect();
    x.outputs
        .iter()
        .map(|out| {
            let c1 = out.ntt_residues(1, 0).expect("two polynomials");
            let rhs: Vec<u64> = c1[..k].to_vec();
            solve_mod(rows.clone(), rhs, q0)
                .unwrap_or_else(|| vec![0; k])
                .into_iter()
                .map(|v| {
                    if v > q0 / 2 {
                        v as i64 - q0 as i64
                    } else {
                        v as i64
                    }
                })
                .collect()
        })
        .collect()
}

/// Solves the normal equations (AᵀA) x = Aᵀb in f64 by Gaussian elimination with pivoting.
fn least_squares(a: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    let k = a[0].len();
    let mut m = vec![vec![0.0; k + 1]; k];
    for (row, &y) in a.iter().zip(b) {
        for i in 0..k {
            for j in 0..k {
                m[i][j] += row[i] * row[j];
            }
            m[i][k] += row[i] * y;
        }
    }
    for col in 0..k {
        let pivot = (col..k)
            .max_by(|&r, &s| m[r][col].abs().total_cmp(&m[s][col].abs()))
            .unwrap_or(col);
        m.swap(col, pivot);
        let d = m[col][col];
        if d == 0.0 {
            continue;
        }
        for j in col..=k {
            m[col][j] /= d;
        }
        for r in 0..k {
            if r != col {
                let f = m[r][col];
                for j in col..=k {
                    m[r][j] -= f * m[col][j];
                }
            }
        }
    }
    m.iter().map(|row| row[k]).collect()
}

/// Attack 2: decrypted, each answer's noise is Σ_k w_k e_k with e_k the errors of the client's
/// own inputs, which it reads off with its secret key. Every coefficient but the constant one
/// (where the bias lands) is an equation; least squares, rescaled to the answer's modulus
/// and rounded, gives the weights.
fn least_squares_on_phase(x: &Exchange) -> Vec<Vec<i64>> {
    let c = &x.keys.components[0];
    let dec = Decryptor::new(&c.sk);
    let errors: Vec<Vec<f64>> = x
        .inputs
        .iter()
        .map(|ct| dec.noise_coefficients(ct).unwrap())
        .collect();
    let n = c.params.degree();
    let equations = 1200;
    let a: Vec<Vec<f64>> = (1..=equations)
        .map(|coef| errors.iter().map(|e| e[coef]).collect())
        .collect();
    // A switched answer carries Σ w e · Q_k/Q: the attacker knows the level and undoes it.
    x.outputs
        .iter()
        .map(|out| {
            let scale: f64 = c.params.moduli()[out.parameters().level()..]
                .iter()
                .map(|&q| (q as f64).log2())
                .sum::<f64>()
                .exp2();
            let v = dec.noise_coefficients(out).unwrap();
            assert_eq!(v.len(), n);
            let b: Vec<f64> = (1..=equations).map(|coef| v[coef] * scale).collect();
            least_squares(&a, &b)
                .into_iter()
                .map(|w| w.round().clamp(-1e15, 1e15) as i64)
                .collect()
        })
        .collect()
}

/// (fraction of weights recovered exactly, correlation of the estimate with the truth).
fn judge(estimate: &[Vec<i64>], truth: &[Vec<i64>]) -> (f64, f64) {
    let e: Vec<f64> = estimate.iter().flatten().map(|&v| v as f64).collect();
    let t: Vec<f64> = truth.iter().flatten().map(|&v| v as f64).collect();
    let exact = e.iter().zip(&t).filter(|(a, b)| a == b).count() as f64 / t.len() as f64;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (me, mt) = (mean(&e), mean(&t));
    let cov: f64 = e.iter().zip(&t).map(|(a, b)| (a - me) * (b - mt)).sum();
    let ve: f64 = e.iter().map(|a| (a - me).powi(2)).sum();
    let vt: f64 = t.iter().map(|b| (b - mt).powi(2)).sum();
    let corr = if ve == 0.0 || vt == 0.0 {
        0.0
    } else {
        cov / (ve * vt).sqrt()
    };
    (exact, corr)
}

/// The warning header of a server's /health answer.
async fn warning(address: &str) -> Option<String> {
    let resp = reqwest::get(format!("{address}/health")).await.unwrap();
    resp.headers()
        .get(server::WARNING_HEADER)
        .map(|v| v.to_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_circuit_privacy_says_so_in_every_answer() {
    let danger = warning(&start_server(None).await).await.unwrap_or_default();
    assert!(danger.contains("without circuit privacy"), "{danger:?}");
    assert_eq!(warning(&start_server(Some(40)).await).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_circuit_privacy_both_attacks_recover_the_weights_exactly() {
    let x = exchange(None).await;
    let (exact, corr) = judge(&least_squares_on_phase(&x), &x.weights);
    eprintln!(
        "unsanitized, least squares: {:.1} % exact, correlation {corr:.4}",
        100.0 * exact
    );
    assert_eq!(
        x.outputs[0].parameters().level(),
        x.keys.components[0].params.level()
    );
    assert_eq!(linear_system_on_c1(&x), x.weights, "linear system on c1");
    assert_eq!(
        least_squares_on_phase(&x),
        x.weights,
        "least squares on the phase"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_circuit_privacy_both_attacks_are_no_better_than_a_guess() {
    let x = exchange(Some(40)).await;
    let top = x.keys.components[0].params.level();
    let level = x.outputs[0].parameters().level();
    assert!(
        level < top,
        "answers are modulus-switched ({level} of {top} primes)"
    );
    let k = x.weights.iter().flatten().count() as f64;
    let threshold = 5.0 / k.sqrt();
    for (name, estimate) in [
        ("linear system on c1", linear_system_on_c1(&x)),
        ("least squares on the phase", least_squares_on_phase(&x)),
    ] {
        let (exact, corr) = judge(&estimate, &x.weights);
        eprintln!(
            "{name}: {:.1} % exact, correlation {corr:.4}",
            100.0 * exact
        );
        assert!(
            exact < 0.05 && corr.abs() < threshold,
            "{name}: {:.1} % exact, correlation {corr:.3} (threshold {threshold:.3})",
            100.0 * exact
        );
    }
    // The answers still decrypt to the model's output on these inputs: the bias.
    let dec = Decryptor::new(&x.keys.components[0].sk);
    assert!(x.outputs.iter().all(|c| dec.noise_budget(c).unwrap() > 0));
}
