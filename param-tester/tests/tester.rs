//! The tester's verdicts on sets known to work, overflow, run out of noise, or be insecure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use he_layers::plan::LayoutKind;
use param_tester::{load, recommend, run_set, ImagesConfig, ParameterSet, TesterConfig, Verdict};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn config(sets: &str) -> TesterConfig {
    let text = format!(
        r#"{{"model": "models/mnist-tiny",
            "images": {{"test_set": "models/data/mnist-t10k-images-idx3-ubyte.gz", "index": 0, "count": 64}},
            "encryption_parameters": [{sets}]}}"#
    );
    serde_json::from_str(&text).unwrap()
}

fn set(json: &str) -> ParameterSet {
    serde_json::from_str(json).unwrap()
}

#[test]
fn a_working_set_is_exact_at_every_layer_with_budget_left() {
    he_layers::tune_allocator();
    let cfg = config(
        r#"{"degree": 8192, "plain_modulus_bits": 30, "input_scale_bits": 3, "weight_bits": 4}"#,
    );
    let loaded = load(&cfg, &root()).unwrap();
    let r = run_set(&loaded, &cfg, &cfg.encryption_parameters[0], |_| {});
    assert_eq!(r.verdict, Verdict::Ok);
    assert_eq!(r.layers.len(), 4);
    // The answer is sanitized at the end: fewer primes, fewer bytes, the flood in the budget.
    let last = r.layers[3].encrypted.as_ref().unwrap();
    let plan = last.sanitization.as_ref().unwrap();
    assert!(plan.level < plan.from_level && plan.flood_bits == 40);
    assert!(last.bytes < last.bytes_before_sanitization.unwrap());
    assert!(last.noise_budget < last.budget_before_sanitization.unwrap());
    assert!(r.layers[..3]
        .iter()
        .all(|l| l.encrypted.as_ref().unwrap().sanitization.is_none()));
    for l in &r.layers {
        let e = l.encrypted.as_ref().unwrap();
        assert!(e.equals_mirror && e.noise_budget > 0, "{l:?}");
        assert!(
            e.predicted_noise_budget <= e.noise_budget as f64,
            "the prediction is conservative: {l:?}"
        );
        assert!(!e.overflow && e.bound_bits < e.capacity_bits);
        assert!(l.max_error.is_finite() && l.mean_error <= l.max_error);
    }
    assert!(r.chosen.is_none(), "nothing was left open");
    assert_eq!(r.per_image.len(), 64);
    assert!(r.label_agreement > 0.95);
    assert_eq!(r.security.as_deref(), Some("128-bit"));
    assert!(r.upload_bytes > 0 && r.public_key_bytes > 0 && r.relin_key_bytes > 0);
}

#[test]
fn a_tiny_t_reports_overflow_at_the_square_before_running() {
    let cfg = config(
        r#"{"degree": 8192, "plain_modulus_bits": 17, "input_scale_bits": 3, "weight_bits": 4}"#,
    );
    let loaded = load(&cfg, &root()).unwrap();
    let r = run_set(&loaded, &cfg, &cfg.encryption_parameters[0], |_| {});
    let Verdict::Overflow { layer, fix } = &r.verdict else {
        panic!("{:?}", r.verdict)
    };
    assert_eq!(*layer, 1, "the square is the first layer over t/2");
    assert!(fix.contains("plaintext modulus"), "{fix}");
    assert!(r.layers.is_empty(), "nothing ran");
}

#[test]
fn a_too_small_ring_runs_out_of_noise_and_the_suggested_reencryption_fixes_it() {
    he_layers::tune_allocator();
    let strict = r#""degree": 4096, "plain_modulus_bits": 23, "plain_moduli_count": 2, "input_scale_bits": 3, "weight_bits": 4"#;
    let cfg = config(&format!("{{{strict}}}"));
    let loaded = load(&cfg, &root()).unwrap();
    // With the server's default λ = 40 the set is refused before anything runs.
    let r = run_set(&loaded, &cfg, &cfg.encryption_parameters[0], |_| {});
    let Verdict::NoRoomForCircuitPrivacy { layer, fix } = &r.verdict else {
        panic!("{:?}", r.verdict)
    };
    assert_eq!(*layer, 3);
    assert!(fix.contains("--flood-bits") && r.layers.is_empty(), "{fix}");
    // Without circuit privacy it runs, and the noise runs out.
    let base = format!("{strict}, \"flood_bits\": 0");
    let r = run_set(&loaded, &cfg, &set(&format!("{{{base}}}")), |_| {});
    let Verdict::NoiseExhausted { layer, fix } = &r.verdict else {
        panic!("{:?}", r.verdict)
    };
    assert_eq!(*layer, 3, "the final Linear exhausts the budget");
    assert!(fix.contains("re-encrypt after layer 2"), "{fix}");
    let fixed = set(&format!("{{{base}, \"reencrypt_positions\": [2]}}"));
    let r = run_set(&loaded, &cfg, &fixed, |_| {});
    assert_eq!(r.verdict, Verdict::Ok);
    assert!(r.layers.iter().all(|l| l
        .encrypted
        .as_ref()
        .is_some_and(|e| e.equals_mirror && e.noise_budget > 0)));
}

#[test]
fn an_insecure_set_is_refused() {
    let cfg = config(r#"{"m": 4096, "p": 65537, "coeff_bits": [60, 60], "input_scale_bits": 3}"#);
    let loaded = load(&cfg, &root()).unwrap();
    let r = run_set(&loaded, &cfg, &cfg.encryption_parameters[0], |_| {});
    let Verdict::Insecure { message } = &r.verdict else {
        panic!("{:?}", r.verdict)
    };
    assert!(message.contains("109-bit bound"), "{message}");
}

#[test]
fn an_unknown_config_key_names_the_key_and_the_accepted_ones() {
    let err = serde_json::from_str::<ParameterSet>(
        r#"{"degree": 4096, "input_scale_bits": 3, "modulus": 7}"#,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("unknown field `modulus`") && msg.contains("expected one of"),
        "{msg}"
    );
    assert!(
        msg.contains("reencrypt_positions") && msg.contains("input_scale_bits"),
        "{msg}"
    );
    let err = serde_json::from_str::<TesterConfig>(
        r#"{"model": "m", "images": [], "encryption_parameters": [], "verbose": true}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `verbose`"), "{err}");
    assert!(matches!(config("").images, ImagesConfig::TestSet { .. }));
    // The images' forms are told apart by key; a typo names them all.
    let err = serde_json::from_str::<ImagesConfig>(r#"{"array": "x.json"}"#).unwrap_err();
    assert!(
        err.to_string().contains("\"arrays\"") && err.to_string().contains("test_set"),
        "{err}"
    );
    let err =
        serde_json::from_str::<ImagesConfig>(r#"{"test_set": "x", "count": 1, "arrays": "y"}"#)
            .unwrap_err();
    assert!(err.to_string().contains("unknown field `arrays`"), "{err}");
    // The bounds of the automatic choices are checked.
    let mut bad = config("");
    bad.min_agreement = 1.5;
    let Err(err) = load(&bad, &root()) else {
        panic!("min_agreement 1.5 accepted")
    };
    assert!(err.to_string().contains("min_agreement"), "{err}");
}

#[test]
fn recommend_returns_a_set_that_passes() {
    he_layers::tune_allocator();
    let cfg = config(
        r#"{"degree": 8192, "plain_modulus_bits": 30, "input_scale_bits": 3, "weight_bits": 4}"#,
    );
    let loaded = load(&cfg, &root()).unwrap();
    let found = recommend(&loaded, &cfg, 3, Some(4), LayoutKind::Batch, |_| {}).unwrap();
    assert_eq!(found.report.verdict, Verdict::Ok);
    let client_config = found.config.clone();
    assert_eq!(client_config["layout"], "batch");
    assert!(found.cost_for(1) > 0.0 && found.cost_for(1) == found.cost_for(found.images_per_group));
    // It is a ready client config.
    assert_eq!(client_config["net"], "mnist-tiny");
    let params: he_layers::protocol::EncryptionParameters =
        serde_json::from_value(client_config["encryption_parameters"].clone()).unwrap();
    assert!(params.resolve().is_ok());
}
