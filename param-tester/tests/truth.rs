//! The tester tells the whole truth about a model: its plaintext tail listed and run, labels
//! end to end, per-image outputs, open fields chosen and said, accuracy kept by
//! `--recommend`, and a plot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use he_layers::plan::LayoutKind;
use he_layers::protocol::Runs;
use net_builder::eval::argmax;
use param_tester::{load, plot_svg, recommend, run, run_set, table, Report, TesterConfig, Verdict};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn config(json: &str) -> TesterConfig {
    serde_json::from_str(json).unwrap()
}

/// The fixture's saved PyTorch outputs, one row per image.
fn pytorch_outputs(name: &str) -> Vec<Vec<f64>> {
    let path = root().join(format!("net-builder/tests/fixtures/{name}.json"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    serde_json::from_value(v["outputs"].clone()).unwrap()
}

#[test]
fn a_relu_tail_model_is_reported_whole_and_labelled_end_to_end_as_pytorch_does() {
    he_layers::tune_allocator();
    // The minimal config: a model, images, a set with only the degree.
    let cfg = config(
        r#"{"model": "net-builder/tests/fixtures/relu_tail.onnx",
            "images": {"arrays": "net-builder/tests/fixtures/relu_tail.json"},
            "encryption_parameters": [{"degree": 8192}]}"#,
    );
    let loaded = load(&cfg, &root()).unwrap();
    let r = run_set(&loaded, &cfg, &cfg.encryption_parameters[0], |_| {});
    assert_eq!(
        r.verdict,
        Verdict::Ok,
        "{}",
        param_tester::verdict_line(&r.verdict)
    );
    // What was chosen is said: an input scale and a t, within the stated bound.
    let chosen = r.chosen.as_ref().unwrap();
    assert!(chosen.within_bound, "{chosen:?}");
    assert!(chosen.input_scale_bits.is_some() && chosen.plain_modulus_bits.is_some());
    assert!(chosen.quantization_error <= cfg.max_quantization_error);
    assert_eq!(r.parameters.degree, 8192);
    // Every layer is listed: conv and square encrypted, the six after them on the client.
    let runs: Vec<Runs> = r.layers.iter().map(|l| l.runs).collect();
    assert_eq!(runs.len(), loaded.spec.layers.len());
    assert_eq!(runs[..2], [Runs::Encrypted, Runs::Encrypted]);
    assert!(runs[2..].iter().all(|&k| k == Runs::Plaintext), "{runs:?}");
    for l in &r.layers[2..] {
        assert!(l.encrypted.is_none() && l.max_error.is_finite(), "{l:?}");
    }
    assert!(r.layers[..2].iter().all(|l| l.encrypted.is_some()));
    // Labels end to end (the tail run on the decrypted values) equal PyTorch's.
    let pytorch = pytorch_outputs("relu_tail");
    assert_eq!(r.per_image.len(), pytorch.len());
    for (im, p) in r.per_image.iter().zip(&pytorch) {
        assert_eq!(im.encrypted_label, argmax(p), "{im:?}");
        assert_eq!(im.reference_label, Some(argmax(p)));
        assert_eq!(im.float_label, argmax(p));
        // The decrypted outputs are the tail's (Tanh), near PyTorch's.
        assert_eq!(im.decrypted.len(), p.len());
        for (d, q) in im.decrypted.iter().zip(p) {
            assert!((d - q).abs() < 0.05, "{d} against PyTorch's {q}");
        }
    }
    assert_eq!(r.reference_agreement, Some(1.0));
    assert_eq!(r.label_agreement, 1.0);
    // The JSON report and the table say where the tail ran, and what was chosen.
    let json = serde_json::to_value(&r).unwrap();
    let last = &json["layers"][7];
    assert_eq!(last["runs"], "plaintext");
    assert!(last.get("noise_budget").is_none(), "{last}");
    assert!(json["layers"][0].get("noise_budget").is_some());
    assert!(json["chosen"]["input_scale_bits"].is_u64());
    let report = Report {
        model: loaded.spec.name.clone(),
        images: 4,
        input_shape: loaded.spec.input_shape.clone(),
        input_shape_guessed: false,
        sets: vec![r],
    };
    let text = table(&report);
    assert!(
        text.contains("client, plaintext, after decryption"),
        "{text}"
    );
    assert!(text.contains("chose input scale 2^"), "{text}");
}

#[test]
fn a_legacy_pycrcnn_pickle_with_a_maxpool_relu_tail_runs_at_a_40_bit_t() {
    he_layers::tune_allocator();
    // conv → x² → MaxPool → conv → ReLU → MaxPool → Linear, saved as PyCrCNN saved theirs. Its
    // tail Linear reaches 2^63 at 8-bit weights: judged as if encrypted, a 40-bit t refused
    // the model outright; only the conv and the square run encrypted.
    let cfg = config(
        r#"{"model": "net-builder/tests/fixtures/pycrcnn_style.legacy.pt",
            "input_shape": [1, 28, 28],
            "images": {"arrays": "net-builder/tests/fixtures/pycrcnn_style.json"},
            "encryption_parameters": [{"degree": 8192, "plain_modulus_bits": 40,
                                       "input_scale_bits": 8, "layout": "packed"}]}"#,
    );
    let bytes =
        std::fs::read(root().join("net-builder/tests/fixtures/pycrcnn_style.legacy.pt")).unwrap();
    assert!(!bytes.starts_with(b"PK"), "the legacy format, not a zip");
    let loaded = load(&cfg, &root()).unwrap();
    assert!(!loaded.input_shape_guessed);
    let r = run_set(&loaded, &cfg, &cfg.encryption_parameters[0], |_| {});
    assert_eq!(
        r.verdict,
        Verdict::Ok,
        "{}",
        param_tester::verdict_line(&r.verdict)
    );
    assert!(r.weight_bits.unwrap() >= 6, "{:?}", r.weight_bits);
    let runs: Vec<Runs> = r.layers.iter().map(|l| l.runs).collect();
    assert_eq!(runs.len(), 8);
    assert_eq!(runs[..2], [Runs::Encrypted, Runs::Encrypted]);
    assert!(runs[2..].iter().all(|&k| k == Runs::Plaintext));
    for l in &r.layers[..2] {
        assert!(l.encrypted.as_ref().unwrap().equals_mirror, "{l:?}");
    }
    let pytorch = pytorch_outputs("pycrcnn_style");
    assert_eq!(r.per_image.len(), pytorch.len());
    for (im, p) in r.per_image.iter().zip(&pytorch) {
        assert_eq!(im.encrypted_label, argmax(p), "{im:?}");
        // End to end, the decrypted logits are PyTorch's up to the quantization.
        for (d, q) in im.decrypted.iter().zip(p) {
            assert!((d - q).abs() < 0.02, "{d} against PyTorch's {q}");
        }
    }
    assert_eq!(r.reference_agreement, Some(1.0));
    // Without any input shape (the config's, an arrays file's, a manifest's), the pickle's is
    // guessed (28 × 28 fits here), and the report says so.
    let mut guess = cfg.clone();
    guess.input_shape = None;
    guess.images = serde_json::from_str(
        r#"{"test_set": "models/data/mnist-t10k-images-idx3-ubyte.gz", "count": 1}"#,
    )
    .unwrap();
    let guessed = load(&guess, &root()).unwrap();
    assert!(guessed.input_shape_guessed);
    assert_eq!(guessed.spec.input_shape, [1, 28, 28]);
    // An arrays file's shape counts as given.
    guess.images = cfg.images.clone();
    assert!(!load(&guess, &root()).unwrap().input_shape_guessed);
}

#[test]
fn recommend_keeps_accuracy_rather_than_taking_cheap_low_precision_weights() {
    he_layers::tune_allocator();
    let cfg = config(
        r#"{"model": "models/mnist-tiny",
            "images": {"test_set": "models/data/mnist-t10k-images-idx3-ubyte.gz", "count": 64},
            "encryption_parameters": [{"degree": 4096, "input_scale_bits": 3}]}"#,
    );
    let loaded = load(&cfg, &root()).unwrap();
    let found = recommend(&loaded, &cfg, 3, None, LayoutKind::Batch, |_| {}).unwrap();
    assert_eq!(found.report.verdict, Verdict::Ok);
    assert!(found.agreement >= cfg.min_agreement, "{}", found.agreement);
    assert!(found.report.label_agreement >= cfg.min_agreement);
    // A cheaper candidate was passed over for its few weight bits ...
    let passed = found.passed_over.as_ref().unwrap();
    assert!(passed.agreement < cfg.min_agreement, "{}", passed.agreement);
    assert!(passed.weight_bits < found.report.weight_bits.unwrap());
    assert!(passed.cost_per_group <= found.cost_per_group);
    // ... which would have passed the mirror check: exact at every layer, labels lost.
    let r = run_set(&loaded, &cfg, &passed.set, |_| {});
    assert_eq!(
        r.verdict,
        Verdict::Ok,
        "{}",
        param_tester::verdict_line(&r.verdict)
    );
    assert_eq!(r.weight_bits, Some(passed.weight_bits));
    assert!(
        r.label_agreement < cfg.min_agreement,
        "{}",
        r.label_agreement
    );
}

#[test]
fn the_plot_has_one_series_per_set() {
    he_layers::tune_allocator();
    let cfg = config(
        r#"{"model": "net-builder/tests/fixtures/relu_tail.onnx",
            "images": {"arrays": "net-builder/tests/fixtures/relu_tail.json"},
            "encryption_parameters": [
                {"name": "batch-26", "degree": 8192, "plain_modulus_bits": 26, "input_scale_bits": 6},
                {"name": "packed-30", "degree": 8192, "plain_modulus_bits": 30, "input_scale_bits": 6,
                 "layout": "packed"}]}"#,
    );
    let loaded = load(&cfg, &root()).unwrap();
    let report = run(&cfg, &loaded, |_, _| {});
    for s in &report.sets {
        assert_eq!(s.verdict, Verdict::Ok, "{}", s.name);
    }
    let path = std::env::temp_dir().join(format!("he-tester-plot-{}.svg", std::process::id()));
    plot_svg(&report, &path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let doc = roxmltree::Document::parse(&text).unwrap();
    // Series are the coloured polylines (axes and mesh are black or grey): two panels of one
    // line each per set, in one colour per set.
    let mut colours: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .filter_map(|n| n.attribute("stroke"))
        .filter(|c| *c != "#000000")
        .collect();
    let lines = colours.len();
    colours.sort_unstable();
    colours.dedup();
    assert_eq!(colours.len(), 2, "{colours:?}");
    assert_eq!(lines, 4, "a budget and an error line per set");
    // The legend names each set with its layout.
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .collect();
    for name in ["batch-26 [batch]", "packed-30 [packed]"] {
        assert!(texts.iter().any(|t| t == name), "{name} in {texts:?}");
    }
    // A sanitized answer is marked (a cross: two short lines in the set's colour).
    assert!(doc
        .descendants()
        .filter(|n| n.has_tag_name("line"))
        .any(|n| n.attribute("stroke").is_some_and(|c| colours.contains(&c))));
}

#[test]
fn an_unreachable_bound_is_said_unmet_and_the_search_stays_within_what_t_can_hold() {
    // Two squares: the bound grows fast with the weights, and 10⁻⁹ of the largest output is
    // out of reach; every trial stays under what a CRT product may hold (2^127).
    let cfg = config(
        r#"{"model": "models/mnist-cryptonets",
            "images": {"test_set": "models/data/mnist-t10k-images-idx3-ubyte.gz", "count": 16},
            "encryption_parameters": [{"degree": 8192}],
            "max_quantization_error": 1e-9}"#,
    );
    let loaded = load(&cfg, &root()).unwrap();
    let (filled, chosen) =
        param_tester::fill_in(&loaded, &cfg, &cfg.encryption_parameters[0]).unwrap();
    let chosen = chosen.unwrap();
    assert!(!chosen.within_bound, "{chosen:?}");
    assert!(param_tester::chosen_line(&chosen).contains("NOT within the bound"));
    let moduli = filled
        .encryption_parameters()
        .unwrap()
        .plain_moduli()
        .unwrap();
    let bits: f64 = moduli.iter().map(|&t| (t as f64).log2()).sum();
    assert!(bits < 127.0, "{moduli:?}");
}
