//! A PyCrCNN user's model folder: `model.pt`, its input shape in the manifest, served by the
//! real server and classified over HTTP by the real client, equal to the mirror.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use client::{load_test_set, run_compute, Api, ClientConfig, KeySet};
use he_layers::plan::LayoutKind;
use he_layers::protocol::{QuantizationConfig, Runs};
use net_builder::pipeline::build_crt;
use net_builder::{load_folder, BuildOptions, FolderOptions};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A models folder with PyCrCNN's LeNet-1 as `pycrcnn-lenet1/model.pt` and its manifest.
fn pickle_models() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("he-pickle-models-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let net = dir.join("pycrcnn-lenet1");
    std::fs::create_dir_all(&net).unwrap();
    std::fs::copy(
        root().join("../shared/pycrcnn-models/LeNet1_Approx_single_square.pt"),
        net.join("model.pt"),
    )
    .unwrap();
    std::fs::write(
        net.join("manifest.json"),
        r#"{"input_shape": [1, 28, 28], "classes": ["0","1","2","3","4","5","6","7","8","9"]}"#,
    )
    .unwrap();
    // And a PyCrCNN-style model with a MaxPool/ReLU tail, a legacy pickle.
    let styled = dir.join("pycrcnn-style");
    std::fs::create_dir_all(&styled).unwrap();
    std::fs::copy(
        root().join("net-builder/tests/fixtures/pycrcnn_style.legacy.pt"),
        styled.join("model.pt"),
    )
    .unwrap();
    std::fs::write(
        styled.join("manifest.json"),
        r#"{"input_shape": [1, 28, 28]}"#,
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pycrcnn_pickle_folder_is_served_and_classifies_equal_to_the_mirror() {
    he_layers::tune_allocator();
    let dir = pickle_models();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let cfg = server::ServerConfig {
        models_dir: dir.clone(),
        ..Default::default()
    };
    tokio::spawn(async move { server::serve(listener, cfg).await });

    let models = Api::new(&address).unwrap().models().await.unwrap();
    let served: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(served, ["pycrcnn-lenet1", "pycrcnn-style"]);
    assert_eq!(models[0].input_shape, [1, 28, 28], "the manifest's shape");
    assert_eq!(models[0].classes.len(), 10);

    let cfg = ClientConfig {
        address,
        net: "pycrcnn-lenet1".into(),
        encryption_parameters: serde_json::from_str(
            r#"{"degree": 8192, "plain_modulus_bits": 21, "plain_moduli_count": 2}"#,
        )
        .unwrap(),
        quantization: QuantizationConfig {
            input_scale_bits: 4,
            weight_bits: None,
        },
        layers: None,
        reencrypt_positions: vec![],
        model: None,
        scheme: Default::default(),
        layout: Some(LayoutKind::Packed),
        connection: Default::default(),
    };
    let images = load_test_set(
        &root().join("models/data/mnist-t10k-images-idx3-ubyte.gz"),
        0,
        2,
    )
    .unwrap();
    let mut keys = KeySet::generate(&cfg.encryption_parameters).unwrap();
    let report = run_compute(&cfg, &mut keys, None, &images, true)
        .await
        .unwrap();

    // The mirror of the same folder, built here.
    let folder = load_folder(&dir.join("pycrcnn-lenet1"), &FolderOptions::default()).unwrap();
    let moduli = cfg.encryption_parameters.plain_moduli().unwrap();
    let opts = BuildOptions {
        input_scale_bits: 4,
        weight_bits: Some(report.weight_bits),
        ..Default::default()
    };
    let crt = build_crt(&folder.spec, 8192, &moduli, &opts).unwrap();
    let model = crt.model();
    let q = model.quantize_input(&images.tensor).unwrap();
    let mirror = model.run_int(0..model.layers().len(), &q).unwrap();
    assert_eq!(
        report.integers.as_ref(),
        Some(&mirror),
        "decrypted = mirror"
    );
    for (j, r) in report.images.iter().enumerate() {
        assert_eq!(r.label, net_builder::eval::argmax(&mirror.image(j)));
        assert_eq!(
            r.true_label,
            Some(r.label),
            "PyCrCNN's LeNet-1 knows these digits"
        );
    }

    // The tailed model at a 40-bit t: the plan bounds only the encrypted conv and square, and
    // lists the rest as the client's; the client runs that tail from its copy of the folder,
    // and its labels are the float model's.
    let styled = ClientConfig {
        net: "pycrcnn-style".into(),
        encryption_parameters: serde_json::from_str(
            r#"{"degree": 8192, "plain_modulus_bits": 40}"#,
        )
        .unwrap(),
        quantization: QuantizationConfig {
            input_scale_bits: 6,
            weight_bits: None,
        },
        model: Some(dir.join("pycrcnn-style")),
        ..cfg
    };
    let plan = Api::new(&styled.address)
        .unwrap()
        .plan(&styled.model_config(LayoutKind::Packed))
        .await
        .unwrap();
    let runs: Vec<Runs> = plan.layers.iter().map(|l| l.runs).collect();
    assert_eq!(runs[..2], [Runs::Encrypted, Runs::Encrypted]);
    assert!(runs[2..].iter().all(|&r| r == Runs::Plaintext), "{runs:?}");
    assert!(plan.layers.iter().all(|l| !l.overflow));
    let mut keys = KeySet::generate(&styled.encryption_parameters).unwrap();
    let report = run_compute(&styled, &mut keys, None, &images, true)
        .await
        .unwrap();
    assert!(report.plaintext_tail);
    let spec = load_folder(&dir.join("pycrcnn-style"), &FolderOptions::default())
        .unwrap()
        .spec;
    let float = net_builder::eval::float_outputs(&spec, &images.tensor).unwrap();
    for (r, f) in report.images.iter().zip(&float) {
        assert_eq!(r.label, net_builder::eval::argmax(f));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
