//! The shipped models: their float accuracy in Rust matches the manifest, their samples match
//! the test set and PyTorch's outputs, and mnist-cryptonets runs encrypted equal to the mirror
//! with the mirror's accuracy within 0.3% of the float model's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use he_layers::crypto::arith::generate_primes;
use he_layers::plan::LayoutKind;
use he_layers::tensor::FloatTensor;
use net_builder::data::{idx_images, idx_labels, png_image};
use net_builder::eval::{accuracy, argmax};
use net_builder::pipeline::{build_crt, ClientKeys};
use net_builder::session::run_local;
use net_builder::{load_model, BuildOptions, PickleOptions};
use std::path::{Path, PathBuf};

const MODELS: [&str; 5] = [
    "mnist-cryptonets",
    "mnist-lenet1-square",
    "mnist-deep",
    "mnist-tiny",
    "fashion-cryptonets",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn manifest(model: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(root().join("models").join(model).join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn test_set(m: &serde_json::Value) -> (PathBuf, PathBuf) {
    let images = m["test_set"].as_str().unwrap();
    let labels = images.replace("images-idx3", "labels-idx1");
    (root().join(images), root().join(labels))
}

#[test]
fn float_accuracy_in_rust_matches_the_manifest() {
    for model in MODELS {
        let m = manifest(model);
        let spec = load_model(
            &root().join("models").join(model).join("model.onnx"),
            &PickleOptions::default(),
        )
        .unwrap();
        assert_eq!(spec.name, model);
        let (images, labels) = test_set(&m);
        let y = idx_labels(&labels, 0, 10_000).unwrap();
        let mut correct = 0;
        for start in (0..10_000).step_by(2500) {
            let x = idx_images(&images, start, 2500).unwrap();
            let out = net_builder::eval::float_outputs(&spec, &x).unwrap();
            correct += out
                .iter()
                .zip(&y[start..])
                .filter(|(o, &l)| argmax(o) == l)
                .count();
        }
        let acc = correct as f64 / 10_000.0;
        let expected = m["plaintext_accuracy"].as_f64().unwrap();
        assert!(
            (acc - expected).abs() <= 0.001,
            "{model}: Rust {acc} vs manifest {expected}"
        );
    }
}

#[test]
fn samples_are_test_images_with_labels_and_pytorch_outputs() {
    for model in MODELS {
        let dir = root().join("models").join(model);
        let m = manifest(model);
        let (images, labels) = test_set(&m);
        let x = idx_images(&images, 0, 16).unwrap();
        let y = idx_labels(&labels, 0, 16).unwrap();
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("samples/labels.json")).unwrap(),
        )
        .unwrap();
        let samples = meta["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 16);
        for (j, s) in samples.iter().enumerate() {
            let (shape, px) =
                png_image(&dir.join("samples").join(s["file"].as_str().unwrap())).unwrap();
            assert_eq!(shape, vec![1, 28, 28]);
            assert_eq!(px, x.image(j), "{model}: sample {j} is test image {j}");
            assert_eq!(s["label"].as_u64().unwrap() as usize, y[j]);
        }
        // PyTorch's own outputs on the samples, reproduced by the ONNX import.
        let r: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("samples/reference.json")).unwrap(),
        )
        .unwrap();
        let spec = load_model(&dir.join("model.onnx"), &PickleOptions::default()).unwrap();
        let out = net_builder::eval::float_outputs(&spec, &x).unwrap();
        for (o, want) in out.iter().zip(r["outputs"].as_array().unwrap()) {
            for (a, b) in o.iter().zip(want.as_array().unwrap()) {
                assert!(
                    (a - b.as_f64().unwrap()).abs() < 1e-4,
                    "{model}: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn cryptonets_mirror_accuracy_is_within_0_3_percent_and_encrypted_equals_mirror() {
    he_layers::tune_allocator();
    let dir = root().join("models/mnist-cryptonets");
    let m = manifest("mnist-cryptonets");
    let (images, labels) = test_set(&m);
    let spec = load_model(&dir.join("model.onnx"), &PickleOptions::default()).unwrap();
    // The shipped quantization: inputs × 2^3, 5-bit weights; three 25-bit plaintext moduli.
    let opts = BuildOptions {
        input_scale_bits: 3,
        weight_bits: Some(5),
        ..Default::default()
    };
    let moduli = generate_primes(25, 8192, 3, &[]).unwrap();
    let crt = build_crt(&spec, 8192, &moduli, &opts).unwrap();
    let model = crt.model();
    assert!(model.check_overflow(&(0..model.layers().len())).is_ok());

    // The mirror over all 10,000 images.
    let x = idx_images(&images, 0, 10_000).unwrap();
    let y = idx_labels(&labels, 0, 10_000).unwrap();
    let acc = accuracy(&spec, &crt.components[0], &x, &y, 2000).unwrap();
    assert!(
        acc.float - acc.mirror <= 0.003,
        "float {} mirror {}",
        acc.float,
        acc.mirror
    );

    // A slice encrypted: every output equals the mirror exactly.
    let slice: Vec<Vec<f64>> = (0..64).map(|j| x.image(j)).collect();
    let xs = FloatTensor::from_images(vec![1, 28, 28], &slice).unwrap();
    let q = model.quantize_input(&xs).unwrap();
    let keys: Vec<ClientKeys> = crt
        .components
        .iter()
        .map(|c| ClientKeys::generate(c.model.parameters()))
        .collect();
    let run = run_local(&crt, LayoutKind::Batch, &keys, &q, None).unwrap();
    assert_eq!(
        run.output,
        model.run_int(0..model.layers().len(), &q).unwrap()
    );
    for j in 0..64 {
        assert_eq!(argmax(&run.output.image(j)), acc.mirror_labels[j]);
    }
    assert!(run.segments[0].noise_budget.iter().all(|&b| b > 10));
    // One boundary-free segment: the whole network runs encrypted.
    assert_eq!(run.segments.len(), 1);
}

/// The shipped mnist-tiny as its packed config builds it (two 17-bit t at N = 8192, inputs × 2^3,
/// 4-bit weights), with its test set's images and labels.
fn tiny_packed() -> (net_builder::pipeline::CrtModel, PathBuf, PathBuf) {
    let dir = root().join("models/mnist-tiny");
    let (images, labels) = test_set(&manifest("mnist-tiny"));
    let spec = load_model(&dir.join("model.onnx"), &PickleOptions::default()).unwrap();
    let opts = BuildOptions {
        input_scale_bits: 3,
        weight_bits: Some(4),
        ..Default::default()
    };
    let moduli = generate_primes(17, 8192, 2, &[]).unwrap();
    (
        build_crt(&spec, 8192, &moduli, &opts).unwrap(),
        images,
        labels,
    )
}

/// The packed layout on the shipped mnist-tiny, one image at a time as a user sends them, with
/// the server's sanitization (λ = 40): every output equals the mirror, every label the
/// mirror's; and the returned answer is two ciphertexts (one per plaintext modulus).
#[test]
fn tiny_packed_one_image_at_a_time_equals_the_mirror() {
    he_layers::tune_allocator();
    let (crt, images, labels) = tiny_packed();
    let model = crt.model();
    let keys = net_builder::session::keys_for(&crt, LayoutKind::Packed, Some(40)).unwrap();
    assert!(keys.iter().all(|k| k.galois.is_some()));
    let count = 6;
    let x = idx_images(&images, 0, count).unwrap();
    let y = idx_labels(&labels, 0, count).unwrap();
    let mut correct = 0;
    for (j, &label) in y.iter().enumerate().take(count) {
        let one = FloatTensor::from_images(vec![1, 28, 28], &[x.image(j)]).unwrap();
        let q = model.quantize_input(&one).unwrap();
        let run = run_local(&crt, LayoutKind::Packed, &keys, &q, Some(40)).unwrap();
        let mirror = model.run_int(0..model.layers().len(), &q).unwrap();
        assert_eq!(run.output, mirror, "image {j}");
        correct += usize::from(argmax(&run.output.image(0)) == label);
        assert!(run.segments[0].noise_budget.iter().all(|&b| b > 0));
        // Upload: one seeded ciphertext per modulus.
        assert!(run.segments[0].bytes_up < 2 * 200_000);
    }
    assert!(correct >= count - 1, "{correct}/{count}");
}

/// A server that answers with something other than the model's output (here: the honest
/// answer with its first value moved just past the predicted interval, encrypted under the
/// client's key as any server can with the public key). Without the check the client returns
/// (or, at a boundary, re-encrypts) the value; with it the run stops with OutOfInterval.
#[test]
fn an_answer_outside_the_predicted_interval_is_refused() {
    use he_layers::plan::Layout;
    use he_layers::tensor::IntTensor;
    use net_builder::session::{
        decrypt_tensor, encrypt_tensor, InProcess, SegmentAnswer, SegmentCall, Session,
        SessionError, SessionPlan, Transport,
    };
    struct Tampering<'a> {
        inner: InProcess<'a>,
        keys: &'a [ClientKeys],
        moduli: Vec<u64>,
        packing: he_layers::plan::Packing,
        shape: Vec<usize>,
        hi: i128,
    }
    impl Tampering<'_> {
        fn tamper(&self, call: SegmentCall) -> Result<SegmentAnswer, SessionError> {
            let m = call.component;
            let mut answer = futures_executor_block_on(self.inner.compute(call))?;
            let sk = &self.keys[m].sk;
            let x = decrypt_tensor(&self.packing, &answer.cts, &self.shape, 1, sk)?;
            let mut data = x.data().to_vec();
            let t = self.moduli[m] as i128;
            let v = (self.hi + 1).rem_euclid(t);
            data[0] = if v > t / 2 { v - t } else { v };
            let forged = IntTensor::from_data(self.shape.clone(), 1, data).unwrap();
            answer.cts = encrypt_tensor(&self.packing, &forged, sk)?;
            Ok(answer)
        }
    }
    impl Transport for Tampering<'_> {
        fn compute(
            &self,
            call: SegmentCall,
        ) -> impl std::future::Future<Output = Result<SegmentAnswer, SessionError>> + Send {
            std::future::ready(self.tamper(call))
        }
    }
    /// InProcess answers at once (a ready future): polled once, it is done.
    fn futures_executor_block_on<F: std::future::Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the in-process transport answers at once"),
        }
    }

    let (crt, images, _) = tiny_packed();
    let model = crt.model();
    let keys = net_builder::session::keys_for(&crt, LayoutKind::Packed, Some(40)).unwrap();
    let x = idx_images(&images, 0, 1).unwrap();
    let q = model.quantize_input(&x).unwrap();
    let inner = InProcess::new(&crt, LayoutKind::Packed, &keys, Some(40)).unwrap();
    let compiled = inner.layout(0).unwrap().clone();
    let end = model.encryptable_prefix();
    let plan = SessionPlan::from_model(model, &compiled, &crt.moduli).unwrap();
    let session = Session::new(plan, keys.iter().map(|k| &k.sk).collect()).unwrap();
    // Honest: the output is the mirror's and inside the interval.
    let honest = session.run_blocking(&inner, &q).unwrap();
    assert_eq!(honest.output, model.run_int(0..end, &q).unwrap());
    let tampering = Tampering {
        packing: compiled.packing(model, &(0..end)).unwrap(),
        shape: model.info_before(end).shape.clone(),
        hi: model.info_before(end).hi,
        moduli: crt.moduli.clone(),
        keys: &keys,
        inner,
    };
    match session.run_blocking(&tampering, &q) {
        Err(SessionError::OutOfInterval {
            index: 0,
            value,
            hi,
            ..
        }) => assert_eq!(value, hi + 1),
        other => panic!(
            "a forged answer was accepted: {:?}",
            other.map(|r| r.output)
        ),
    }
}
