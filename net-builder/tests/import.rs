//! Model import against PyTorch's own outputs (fixtures made by `fixtures/export_fixtures.py`),
//! BatchNorm folding against the unfolded forward, clear errors for unsupported nodes, and
//! PyCrCNN's shipped pickles run encrypted equal to the integer mirror.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use he_layers::crypto::{BfvParameters, PublicKey, RelinearizationKey, SecretKey};
use he_layers::layers::BfvBackend;
use he_layers::model::EncodedModel;
use he_layers::plan::BatchLayout;
use he_layers::tensor::{EncryptedTensor, FloatTensor};
use ndarray::{ArrayD, IxDyn};
use net_builder::{
    build_model, load_model, onnx, BuildOptions, ImportError, LayerSpec, PickleOptions,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn shared(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/pycrcnn-models")
        .join(name)
}

struct Reference {
    shape: Vec<usize>,
    inputs: Vec<Vec<f64>>,
    outputs: Vec<Vec<f64>>,
}

fn reference(name: &str) -> Reference {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = |k: &str| -> Vec<Vec<f64>> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            })
            .collect()
    };
    Reference {
        shape: v["input_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect(),
        inputs: rows("inputs"),
        outputs: rows("outputs"),
    }
}

fn batch(r: &Reference) -> ArrayD<f64> {
    let mut shape = vec![r.inputs.len()];
    shape.extend(&r.shape);
    ArrayD::from_shape_vec(IxDyn(&shape), r.inputs.concat()).unwrap()
}

fn max_diff(y: &ArrayD<f64>, r: &Reference) -> f64 {
    y.iter()
        .zip(r.outputs.concat())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

#[test]
fn onnx_import_reproduces_pytorch_for_both_exporters() {
    for model in ["tiny_cnn", "bn_cnn", "relu_tail"] {
        let r = reference(&format!("{model}.json"));
        for file in [format!("{model}.onnx"), format!("{model}.dynamo.onnx")] {
            let spec = load_model(&fixture(&file), &PickleOptions::default()).unwrap();
            assert_eq!(spec.input_shape, r.shape, "{file}");
            let y = spec.forward(&batch(&r), 0..spec.layers.len()).unwrap();
            let d = max_diff(&y, &r);
            assert!(d < 1e-4, "{file}: max difference {d} from PyTorch");
        }
    }
    // The dynamo export really kept its weights outside the model file.
    assert!(fixture("tiny_cnn.dynamo.onnx.data").exists());
}

#[test]
fn unsupported_nodes_are_named_with_what_is_supported() {
    for file in ["softmax.onnx", "softmax.dynamo.onnx"] {
        let err = load_model(&fixture(file), &PickleOptions::default()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ImportError::Unsupported { .. }), "{msg}");
        assert!(
            msg.contains("Softmax") && msg.contains("not supported"),
            "{msg}"
        );
        assert!(
            msg.contains("Conv, Gemm") && msg.contains("AveragePool"),
            "{msg}"
        );
    }
}

#[test]
fn batchnorm_folding_equals_the_unfolded_forward() {
    // The TorchScript export keeps a BatchNormalization node after a Gemm.
    let raw = onnx::load_onnx(&fixture("bn_cnn.onnx")).unwrap();
    assert!(raw
        .layers
        .iter()
        .any(|l| matches!(l, LayerSpec::BatchNorm { .. })));
    let folded = raw.fold_batchnorm().unwrap();
    assert!(!folded
        .layers
        .iter()
        .any(|l| matches!(l, LayerSpec::BatchNorm { .. })));
    assert_eq!(folded.layers.len(), raw.layers.len() - 1);
    let r = reference("bn_cnn.json");
    let x = batch(&r);
    let a = raw.forward(&x, 0..raw.layers.len()).unwrap();
    let b = folded.forward(&x, 0..folded.layers.len()).unwrap();
    let d = a
        .iter()
        .zip(b.iter())
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max);
    assert!(d < 1e-4, "folded and unfolded differ by {d}");
    // And a BatchNorm that follows something else cannot be folded.
    let mut bad = raw.clone();
    let bn = bad
        .layers
        .iter()
        .position(|l| matches!(l, LayerSpec::BatchNorm { .. }))
        .unwrap();
    bad.layers.swap(bn - 1, bn); // BN before its Gemm, right after a Flatten
    assert!(bad
        .fold_batchnorm()
        .unwrap_err()
        .to_string()
        .contains("only a BatchNorm directly after"));
}

#[test]
fn pycrcnn_pickles_import_and_match_pytorch() {
    let cases = [
        ("LeNet1_Approx_single_square", 7usize, false),
        ("SimpleModelApprox_Minimal", 13, true),
    ];
    for (name, layers, legacy) in cases {
        let path = shared(&format!("{name}.pt"));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(!bytes.starts_with(b"PK"), legacy, "{name}: file format");
        let r = reference(&format!("pycrcnn_{name}.json"));
        // Pickles do not record the input shape; the smallest square image that fits is
        // inferred (30×30 for the CIFAR-shaped model), or the user gives it.
        let inferred = load_model(&path, &PickleOptions::default()).unwrap();
        let expect_inferred = if legacy {
            vec![3, 30, 30]
        } else {
            vec![1, 28, 28]
        };
        assert_eq!(inferred.input_shape, expect_inferred);
        let opts = PickleOptions {
            input_shape: Some(r.shape.clone()),
            ..Default::default()
        };
        let spec = load_model(&path, &opts).unwrap();
        assert_eq!(spec.layers.len(), layers, "{name}");
        let printed: Vec<String> = spec.layers.iter().map(|l| l.describe()).collect();
        println!(
            "{name}: input {:?}\n  {}",
            spec.input_shape,
            printed.join("\n  ")
        );
        assert!(printed[0].starts_with("Conv2d(") && printed[1] == "Square");
        let y = spec.forward(&batch(&r), 0..spec.layers.len()).unwrap();
        let d = max_diff(&y, &r);
        assert!(d < 1e-4, "{name}: max difference {d} from PyTorch");
    }
    // The square class mapping is configurable: without it the custom module is refused.
    let opts = PickleOptions {
        square_classes: vec!["Approx".into()],
        input_shape: None,
    };
    let err = load_model(&shared("LeNet1_Approx_single_square.pt"), &opts).unwrap_err();
    assert!(err.to_string().contains("__main__.Square"), "{err}");
}

fn run_encrypted_prefix(model: &EncodedModel, images: &FloatTensor) {
    he_layers::tune_allocator();
    let params = model.parameters().clone();
    let sk = SecretKey::generate(&params);
    let pk = PublicKey::generate(&sk);
    let backend = BfvBackend::new(&pk, Some(RelinearizationKey::generate(&sk)));
    let end = model.encryptable_prefix();
    let mut x = model.quantize_input(images).unwrap();
    let mut start = 0;
    let mirror = model.run_int(0..end, &x).unwrap();
    // Segment by segment, re-encrypting at boundaries as the client does.
    while start < end {
        let stop = (start..end)
            .find(|&i| !model.layers()[i].is_encryptable())
            .unwrap_or(end);
        let info = model.info_before(start);
        let enc = EncryptedTensor::encrypt(&x, info, &sk).unwrap();
        let out = BatchLayout
            .run_tensor(model, start..stop, enc, &backend)
            .unwrap();
        assert!(out.min_noise_budget(&sk).unwrap() > 0);
        let dec = out.decrypt(&sk).unwrap();
        assert_eq!(
            dec,
            model.run_int(start..stop, &x).unwrap(),
            "segment {start}..{stop}"
        );
        x = if stop < end {
            model.run_int(stop..stop + 1, &dec).unwrap()
        } else {
            dec
        };
        start = stop + 1;
    }
    assert_eq!(x, mirror, "the segments compose to the mirror");
}

#[test]
fn pycrcnn_encryptable_prefixes_run_encrypted_equal_to_the_mirror() {
    let r = reference("pycrcnn_LeNet1_Approx_single_square.json");
    let params = BfvParameters::preset(
        8192,
        BfvParameters::batching_plain_modulus(8192, 40).unwrap(),
    )
    .unwrap();
    let spec = load_model(
        &shared("LeNet1_Approx_single_square.pt"),
        &PickleOptions::default(),
    )
    .unwrap();
    let built = build_model(
        &spec,
        &params,
        &BuildOptions {
            input_scale_bits: 4,
            ..Default::default()
        },
    )
    .unwrap();
    let images = FloatTensor::from_images(r.shape.clone(), &r.inputs).unwrap();
    assert_eq!(built.model.encryptable_prefix(), 7);
    run_encrypted_prefix(&built.model, &images);

    // Three squares: re-encrypt after each pooling so every segment has depth 1; the
    // encryptable prefix stops before the ReLU.
    let r = reference("pycrcnn_SimpleModelApprox_Minimal.json");
    let opts = PickleOptions {
        input_shape: Some(r.shape.clone()),
        ..Default::default()
    };
    let spec = load_model(&shared("SimpleModelApprox_Minimal.pt"), &opts).unwrap();
    // Worst-case bounds compound over three squares: a 50-bit t holds them, and still leaves
    // about 40 bits of noise budget after each depth-1 segment at N = 8192.
    let t50 = BfvParameters::batching_plain_modulus(8192, 50).unwrap();
    let params50 = BfvParameters::preset(8192, t50).unwrap();
    let built = build_model(
        &spec,
        &params50,
        &BuildOptions {
            input_scale_bits: 2,
            reencrypt_after: vec![2, 5],
            ..Default::default()
        },
    )
    .unwrap();
    let model = &built.model;
    assert_eq!(model.max_depth(), 1);
    assert!(model.layers()[model.encryptable_prefix()]
        .describe()
        .starts_with("ReLU"));
    let images = FloatTensor::from_images(r.shape.clone(), &r.inputs).unwrap();
    run_encrypted_prefix(model, &images);
}

#[test]
fn automatic_weight_scale_is_the_largest_without_overflow() {
    let spec = load_model(&fixture("tiny_cnn.onnx"), &PickleOptions::default()).unwrap();
    let params: Arc<BfvParameters> = BfvParameters::preset(
        8192,
        BfvParameters::batching_plain_modulus(8192, 30).unwrap(),
    )
    .unwrap();
    let auto = build_model(&spec, &params, &BuildOptions::default()).unwrap();
    assert!(auto.weight_bits_auto);
    let bits = auto.weight_bits;
    let all = 0..auto.model.layers().len();
    assert!(auto.model.check_overflow(&all).is_ok());
    let over = build_model(
        &spec,
        &params,
        &BuildOptions {
            weight_bits: Some(bits + 1),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        over.model.check_overflow(&all).is_err(),
        "one more bit must overflow"
    );
}

#[test]
fn inspect_prints_layers_scales_bounds_and_depth() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_net-inspect"))
        .arg(shared("LeNet1_Approx_single_square.pt"))
        .args(["--plain-bits", "40", "--input-scale-bits", "4"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "Conv2d(1→4, 5×5",
        "Square",
        "AvgPool2d",
        "Linear(192→10)",
        "depth",
        "2^",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_net-inspect"))
        .arg(fixture("softmax.onnx"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Softmax"));
}

#[test]
fn a_range_over_a_plaintext_only_layer_is_refused_by_name() {
    let spec = load_model(&fixture("relu_tail.onnx"), &PickleOptions::default()).unwrap();
    let params = BfvParameters::preset(
        8192,
        BfvParameters::batching_plain_modulus(8192, 40).unwrap(),
    )
    .unwrap();
    let built = build_model(&spec, &params, &BuildOptions::default()).unwrap();
    let model = &built.model;
    // Conv, Square, then MaxPool: the encryptable prefix is two layers.
    assert_eq!(model.encryptable_prefix(), 2);
    assert!(model.check_range(&(0..2)).is_ok());
    let err = model.check_range(&(0..4)).unwrap_err().to_string();
    assert!(
        err.contains("layer 2") && err.contains("MaxPool2d"),
        "{err}"
    );
    assert!(err.contains("cannot run encrypted"), "{err}");
    // The float reference runs the whole model, tail included, for the client.
    let r = reference("relu_tail.json");
    let y = spec.forward(&batch(&r), 0..spec.layers.len()).unwrap();
    assert!(max_diff(&y, &r) < 1e-4);
}

#[test]
fn a_pycrcnn_style_legacy_pickle_is_bounded_by_t_only_where_it_runs_encrypted() {
    // conv → x² → MaxPool → conv → ReLU → MaxPool → Linear, a legacy (pre-zip) pickle.
    let path = fixture("pycrcnn_style.legacy.pt");
    assert!(!std::fs::read(&path).unwrap().starts_with(b"PK"));
    let r = reference("pycrcnn_style.json");
    let opts = PickleOptions {
        input_shape: Some(r.shape.clone()),
        ..Default::default()
    };
    let spec = load_model(&path, &opts).unwrap();
    let y = spec.forward(&batch(&r), 0..spec.layers.len()).unwrap();
    assert!(max_diff(&y, &r) < 1e-4, "the import reproduces PyTorch");
    let params = BfvParameters::preset(
        8192,
        BfvParameters::batching_plain_modulus(8192, 40).unwrap(),
    )
    .unwrap();
    // At a 40-bit t the weight precision is chosen by the two encrypted layers alone (the
    // tail's Linear, were it encrypted, would need 2^63).
    let built = build_model(&spec, &params, &BuildOptions::default()).unwrap();
    let model = &built.model;
    assert_eq!(model.encryptable_prefix(), 2);
    assert!(built.weight_bits >= 6, "{}", built.weight_bits);
    let predictions = model.predict();
    assert!(predictions[2..]
        .iter()
        .all(|p| !p.encryptable && !p.overflow));
    assert!(model.check_overflow(&(0..model.layers().len())).is_ok());
    // One more weight bit overflows the square, an encrypted layer.
    let over = build_model(
        &spec,
        &params,
        &BuildOptions {
            weight_bits: Some(built.weight_bits + 1),
            ..Default::default()
        },
    )
    .unwrap();
    let err = over
        .model
        .check_overflow(&(0..over.model.layers().len()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer 1"), "{err}");
    // The tail has no integer mirror: it runs in floating point on the client.
    let err = model
        .run_int(
            0..model.layers().len(),
            &model
                .quantize_input(&FloatTensor::from_images(r.shape.clone(), &r.inputs).unwrap())
                .unwrap(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("floating point"), "{err}");
    // A boundary right before the tail, or in it, is refused: the client decrypts there anyway.
    let refused = |after: usize| {
        build_model(
            &spec,
            &params,
            &BuildOptions {
                reencrypt_after: vec![after],
                ..Default::default()
            },
        )
        .is_err()
    };
    assert!(!refused(0) && refused(1) && refused(4));
    let err = build_model(
        &spec,
        &params,
        &BuildOptions {
            reencrypt_after: vec![3],
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("layer 2") && err.contains("MaxPool2d") && err.contains("before layer 2"),
        "{err}"
    );
    // net-inspect says where the tail runs, and prints no bound for it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_net-inspect"))
        .arg(&path)
        .args(["--plain-bits", "40", "--input-shape", "1,28,28"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.matches("client, after decryption").count(),
        6,
        "{text}"
    );
    assert!(!text.contains("OVERFLOW"), "{text}");
}

#[test]
fn a_model_folder_takes_a_pickle_with_its_manifest_or_says_what_is_missing() {
    use net_builder::{load_folder, FolderError, FolderOptions};
    let dir = std::env::temp_dir().join(format!("he-folder-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let strict = FolderOptions {
        require_input_shape: true,
        ..Default::default()
    };
    let err = load_folder(&dir, &strict).unwrap_err();
    assert!(matches!(err, FolderError::NoModel { .. }), "{err}");
    std::fs::copy(fixture("pycrcnn_style.legacy.pt"), dir.join("model.pt")).unwrap();
    let err = load_folder(&dir, &strict).unwrap_err().to_string();
    assert!(
        err.contains("\"input_shape\"") && err.contains("manifest.json"),
        "{err}"
    );
    // A shape that does not fit names the manifest field to check.
    std::fs::write(dir.join("manifest.json"), r#"{"input_shape": [1, 20, 20]}"#).unwrap();
    let err = load_folder(&dir, &strict).unwrap_err().to_string();
    assert!(err.contains("input_shape"), "{err}");
    // An empty square_classes keeps the defaults (the fixture's module is `Square`).
    std::fs::write(
        dir.join("manifest.json"),
        r#"{"input_shape": [1, 28, 28], "square_classes": []}"#,
    )
    .unwrap();
    let folder = load_folder(&dir, &strict).unwrap();
    assert_eq!(folder.spec.input_shape, [1, 28, 28]);
    assert_eq!(folder.spec.name, dir.file_name().unwrap().to_string_lossy());
    assert_eq!(folder.files.len(), 2, "the pickle and the manifest");
    std::fs::write(dir.join("model.onnx"), b"").unwrap();
    let err = load_folder(&dir, &strict).unwrap_err();
    assert!(matches!(err, FolderError::TwoModels { .. }), "{err}");
    // An ONNX folder without a manifest: inputs in [0, 1], as a manifest's default.
    std::fs::remove_file(dir.join("model.pt")).unwrap();
    std::fs::remove_file(dir.join("manifest.json")).unwrap();
    std::fs::copy(fixture("relu_tail.onnx"), dir.join("model.onnx")).unwrap();
    let folder = load_folder(&dir, &strict).unwrap();
    assert_eq!(folder.manifest.input_range, [0.0, 1.0]);
    assert_eq!(folder.files.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
