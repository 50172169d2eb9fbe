//! The packed layout: decrypted outputs equal the integer mirror exactly (over CRT moduli, for
//! an odd number of images so both rows and a half-empty group are exercised), returned
//! ciphertexts hold nothing but the outputs, and the noise the plan predicts is never less
//! than what the ciphertexts carry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use he_layers::crypto::{
    BatchEncoder, BfvParameters, Decryptor, Evaluator, GaloisKeys, PublicKey, RelinearizationKey,
    SecretKey, SymmetricEncryptor,
};
use he_layers::layers::{
    BfvBackend, BfvSlotDecryptor, BfvSlotEncryptor, EncodedAvgPool2d, EncodedConv2d, EncodedLayer,
    EncodedLinear, Flatten, Square,
};
use he_layers::model::{crt_combine, EncodedModel, Quantization};
use he_layers::plan::{Layout, LayoutKind, PackedLayout, Packing};
use he_layers::tensor::{FloatTensor, IntTensor, ValueInfo};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

fn input_info(shape: Vec<usize>, scale_bits: u32, range: f64) -> ValueInfo {
    let scale = (scale_bits as f64).exp2();
    let b = (range * scale).round() as i128;
    ValueInfo {
        shape,
        scale,
        lo: -b,
        hi: b,
        float_bound: range,
        error_bound: 0.5 / scale,
    }
}

fn random_floats(r: &mut ChaCha8Rng, len: usize, range: f64) -> Vec<f64> {
    (0..len).map(|_| r.gen_range(-range..=range)).collect()
}

fn quantized_images(r: &mut ChaCha8Rng, shape: &[usize], count: usize, scale: f64) -> IntTensor {
    let len: usize = shape.iter().product();
    let images: Vec<Vec<f64>> = (0..count)
        .map(|_| (0..len).map(|_| r.gen_range(-1.0..=1.0)).collect())
        .collect();
    FloatTensor::from_images(shape.to_vec(), &images)
        .unwrap()
        .map(|&v| (v * scale).round() as i128)
}

/// Rotations move every slot within its row, as the packed layout assumes.
#[test]
fn rotations_shift_both_rows_alike() {
    let n = 4096;
    let t = BfvParameters::batching_plain_modulus(n, 20).unwrap();
    let p = BfvParameters::preset(n, t).unwrap();
    let sk = SecretKey::generate(&p);
    let gk = GaloisKeys::generate(&sk, &[3, -5], false);
    let enc = BatchEncoder::try_new(&p).unwrap();
    let values: Vec<i64> = (0..n as i64).map(|i| i % 1000).collect();
    let ct = SymmetricEncryptor::new(&sk)
        .encrypt(&enc.encode(&values).unwrap())
        .unwrap();
    let ev = Evaluator::new(&p);
    let half = n / 2;
    for step in [3i64, -5] {
        let r = ev.rotate_rows(&ct, step, &gk).unwrap();
        let got = enc.decode(&Decryptor::new(&sk).decrypt(&r).unwrap());
        for row in 0..2 {
            for col in 0..half {
                let from = (col as i64 + step).rem_euclid(half as i64) as usize;
                assert_eq!(got[row * half + col], values[row * half + from]);
            }
        }
    }
}

/// Conv (3×3, padding 1) → Square → AvgPool → Flatten → Linear → Square → Linear: the first
/// convolution by the client's arrangement, the pooling on a grid, the first linear layer
/// folded or by diagonals, the last by clean diagonals.
fn whole_model(input_scale: f64, r: &mut ChaCha8Rng) -> (Vec<EncodedLayer>, ValueInfo) {
    let (c, h, w) = (1, 8, 8);
    let wbits = 2;
    let conv = EncodedConv2d::quantize(
        "conv",
        c,
        2,
        [3, 3],
        [1, 1],
        [1, 1],
        &random_floats(r, 2 * 9, 1.0),
        Some(&random_floats(r, 2, 0.5)),
        input_scale,
        wbits,
    )
    .unwrap();
    let s1 = input_scale * 4.0;
    let s2 = s1 * s1 * 4.0;
    let fc1 = EncodedLinear::quantize(
        "fc1",
        32,
        8,
        &random_floats(r, 8 * 32, 1.0),
        None,
        s2,
        wbits,
    )
    .unwrap();
    let s3 = s2 * 4.0;
    let fc2 = EncodedLinear::quantize(
        "fc2",
        8,
        4,
        &random_floats(r, 4 * 8, 1.0),
        Some(&random_floats(r, 4, 1.0)),
        s3 * s3,
        wbits,
    )
    .unwrap();
    let layers = vec![
        EncodedLayer::Conv2d(conv),
        EncodedLayer::Square(Square { name: "sq1".into() }),
        EncodedLayer::AvgPool2d(EncodedAvgPool2d {
            name: "pool".into(),
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
        }),
        EncodedLayer::Flatten(Flatten {
            name: "flat".into(),
        }),
        EncodedLayer::Linear(fc1),
        EncodedLayer::Square(Square { name: "sq2".into() }),
        EncodedLayer::Linear(fc2),
    ];
    (
        layers,
        input_info(vec![c, h, w], input_scale.log2() as u32, 1.0),
    )
}

struct Run {
    outputs: Vec<Vec<i64>>,
    measured_budget: u32,
    predicted_budget: f64,
    /// Ciphertext primes of the answer (below the top when the program switched down).
    level: usize,
}

/// Every image of a run equals the mirror's modulo t.
fn equal_mod_t(run: &Run, mirror: &IntTensor, t: u64, what: &str) {
    for (j, got) in run.outputs.iter().enumerate() {
        let want: Vec<i64> = mirror
            .image(j)
            .iter()
            .map(|&v| v.rem_euclid(t as i128) as i64)
            .collect();
        let got: Vec<i64> = got.iter().map(|&v| v.rem_euclid(t as i64)).collect();
        assert_eq!(got, want, "{what} image {j}");
    }
}

/// Runs `layers` packed for one plaintext modulus; checks the answer is clean.
fn run_packed(model: &EncodedModel, x: &IntTensor, layers: std::ops::Range<usize>) -> Run {
    let p = model.parameters();
    let layout = PackedLayout::new(model).unwrap();
    let plan = layout.compile(model).unwrap();
    assert_eq!(plan.layout, LayoutKind::Packed);
    let sk = SecretKey::generate(p);
    let pk = PublicKey::generate(&sk);
    let steps = layout.rotation_steps();
    let gk = GaloisKeys::generate(&sk, &steps, false);
    assert_eq!(
        gk.elements().collect::<Vec<_>>(),
        plan.galois_elements,
        "the plan lists exactly the Galois elements its rotations use"
    );
    let backend =
        BfvBackend::new(&pk, Some(RelinearizationKey::generate(&sk))).with_galois_keys(gk);
    let input = layout
        .packing(model, &(layers.start..layers.start))
        .unwrap();
    let cts = input
        .encrypt(x, &BfvSlotEncryptor::new(&sk).unwrap())
        .unwrap();
    assert_eq!(
        cts.len(),
        input
            .ciphertext_count(x.len(), x.batch(), p.degree())
            .unwrap()
    );
    let out = layout
        .run(model, layers.clone(), x.batch(), cts, &backend)
        .unwrap();
    let packing = layout.packing(model, &layers).unwrap();
    let dec = BfvSlotDecryptor::new(&sk).unwrap();
    let shape = model.info_before(layers.end).shape.clone();
    let y = packing.decrypt(&out, &shape, x.batch(), &dec).unwrap();
    // Nothing but the outputs: every slot no output occupies decrypts to zero.
    let Packing::Packed(place) = &packing else {
        panic!("a packed layout answers packed");
    };
    let width = place.width();
    let mut occupied = std::collections::HashSet::new();
    for copies in place.flat_copies() {
        occupied.extend(copies);
    }
    use he_layers::layers::SlotDecryptor;
    for (k, ct) in out.iter().enumerate() {
        let slots = dec.decrypt_slots(ct).unwrap();
        let ct_in_group = (k % place.ciphertexts()) as u64;
        for (i, v) in slots.iter().enumerate() {
            let flat = ct_in_group * width as u64 + (i % width) as u64;
            if !occupied.contains(&flat) {
                assert_eq!(*v, 0, "ciphertext {k} slot {i} holds a stray value");
            }
        }
    }
    // Sanitized as the server would: the plan never asks for a level above the answer's, and
    // the sanitized answer decrypts to the same outputs.
    let level = out.iter().map(|c| c.parameters().level()).max().unwrap();
    if let Ok(sp) = he_layers::crypto::sanitize::plan_sanitization(
        p,
        plan.segments.last().unwrap().noise_log2,
        40,
    ) {
        assert!(
            sp.level <= level,
            "planned level {} above the answer's {level}",
            sp.level
        );
        let enc = he_layers::crypto::Encryptor::new(&pk);
        let clean: Vec<_> = out
            .iter()
            .map(|c| he_layers::crypto::sanitize::sanitize(c, &enc, &sp).unwrap())
            .collect();
        let z = packing.decrypt(&clean, &shape, x.batch(), &dec).unwrap();
        assert_eq!(z, y, "the sanitized answer decrypts to the same outputs");
    }
    let d = Decryptor::new(&sk);
    let measured_budget = out
        .iter()
        .map(|c| d.noise_budget(c).unwrap())
        .min()
        .unwrap();
    Run {
        outputs: (0..x.batch())
            .map(|j| y.image(j).iter().map(|&v| v as i64).collect())
            .collect(),
        measured_budget,
        predicted_budget: plan.steps[layers.end - 1].predicted_budget_bits,
        level,
    }
}

#[test]
fn whole_model_packed_equals_the_mirror_over_crt_moduli() {
    he_layers::tune_allocator();
    let mut r = ChaCha8Rng::seed_from_u64(14);
    // Plaintext products cost about log2 t + log2 N / 2 bits of budget each (scalar products
    // of the batch layout a few): this depth needs N = 16384.
    let n = 16384;
    let (layers, input) = whole_model(4.0, &mut r);
    let primes: Vec<u64> = he_layers::crypto::arith::generate_primes(22, n, 3, &[]).unwrap();
    let quant = Quantization {
        input_scale_bits: 2,
        weight_bits: 2,
    };
    let images = 3;
    let x = quantized_images(&mut r, &[1, 8, 8], images, 4.0);
    let mut runs = Vec::new();
    let mut mirror = None;
    for &t in &primes {
        let p: Arc<BfvParameters> = BfvParameters::preset(n, t).unwrap();
        let model = EncodedModel::new(
            "m",
            &p,
            input.clone(),
            layers.clone(),
            quant.clone(),
            Some(primes.clone()),
        )
        .unwrap();
        mirror.get_or_insert_with(|| model.run_int(0..7, &x).unwrap());
        let run = run_packed(&model, &x, 0..7);
        // The budget the last layers do not need is dropped on the way (modulus switching),
        // and the prediction still holds at the lower level.
        assert!(run.level < p.level(), "the program never switched down");
        assert!(
            run.predicted_budget <= run.measured_budget as f64,
            "predicted {} bits left, measured {}",
            run.predicted_budget,
            run.measured_budget
        );
        runs.push(run);
    }
    let mirror = mirror.unwrap();
    for j in 0..images {
        let want = mirror.image(j);
        for (i, &m) in want.iter().enumerate() {
            let res: Vec<u64> = primes
                .iter()
                .zip(&runs)
                .map(|(&t, run)| run.outputs[j][i].rem_euclid(t as i64) as u64)
                .collect();
            assert_eq!(crt_combine(&res, &primes), Some(m), "image {j} output {i}");
        }
    }
}

/// A 3×3, stride-1 convolution with random 2-bit weights and biases.
fn conv3x3(
    name: &str,
    cin: usize,
    cout: usize,
    pad: usize,
    r: &mut ChaCha8Rng,
    scale: f64,
) -> EncodedLayer {
    EncodedLayer::Conv2d(
        EncodedConv2d::quantize(
            name,
            cin,
            cout,
            [3, 3],
            [1, 1],
            [pad, pad],
            &random_floats(r, cout * cin * 9, 1.0),
            Some(&random_floats(r, cout, 0.5)),
            scale,
            2,
        )
        .unwrap(),
    )
}

/// A pooling first (the input compact, on a grid), then a linear layer, then a convolution
/// after a convolution (the grid path with padding borders).
#[test]
fn grid_convolutions_and_a_pooling_first_equal_the_mirror() {
    let mut r = ChaCha8Rng::seed_from_u64(21);
    let n = 8192;
    let t = BfvParameters::batching_plain_modulus(n, 30).unwrap();
    let p = BfvParameters::preset(n, t).unwrap();
    let quant = Quantization {
        input_scale_bits: 2,
        weight_bits: 2,
    };
    let input = input_info(vec![2, 6, 6], 2, 1.0);
    let pool_then_linear = vec![
        EncodedLayer::AvgPool2d(EncodedAvgPool2d {
            name: "pool".into(),
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
        }),
        EncodedLayer::Flatten(Flatten {
            name: "flat".into(),
        }),
        EncodedLayer::Linear(
            EncodedLinear::quantize(
                "fc",
                18,
                5,
                &random_floats(&mut r, 5 * 18, 1.0),
                Some(&random_floats(&mut r, 5, 1.0)),
                16.0,
                2,
            )
            .unwrap(),
        ),
    ];
    let two_convs = vec![
        conv3x3("c1", 2, 2, 1, &mut r, 4.0),
        conv3x3("c2", 2, 3, 1, &mut r, 16.0),
    ];
    for layers in [pool_then_linear, two_convs] {
        let count = layers.len();
        let model = EncodedModel::new("m", &p, input.clone(), layers, quant.clone(), None).unwrap();
        assert!(model.predict().iter().all(|l| !l.overflow));
        let x = quantized_images(&mut r, &[2, 6, 6], 2, 4.0);
        let want = model.run_int(0..count, &x).unwrap();
        let run = run_packed(&model, &x, 0..count);
        for j in 0..2 {
            let w: Vec<i64> = want.image(j).iter().map(|&v| v as i64).collect();
            assert_eq!(run.outputs[j], w, "image {j}");
        }
        assert!(run.predicted_budget <= run.measured_budget as f64);
    }
}

/// The packed compiler spends budget for speed only while the answer can still be sanitized:
/// with room, a first convolution from the client's arrangement leaves every channel in one
/// ciphertext (plaintext products mixing channels); with fewer primes it falls back to one
/// ciphertext per channel (integer scalars), and at every size it picks a sanitizable program
/// whenever one exists. The runs equal the mirror in both shapes.
#[test]
fn speed_is_traded_for_budget_only_while_the_answer_can_be_sanitized() {
    use he_layers::crypto::sanitize::plan_sanitization;
    use he_layers::crypto::SecurityLevel;
    let mut r = ChaCha8Rng::seed_from_u64(33);
    let n = 16384;
    let conv = EncodedConv2d::quantize(
        "conv",
        1,
        2,
        [3, 3],
        [1, 1],
        [1, 1],
        &random_floats(&mut r, 2 * 9, 1.0),
        Some(&random_floats(&mut r, 2, 0.5)),
        4.0,
        2,
    )
    .unwrap();
    let fc = EncodedLinear::quantize(
        "fc",
        128,
        4,
        &random_floats(&mut r, 4 * 128, 1.0),
        Some(&random_floats(&mut r, 4, 1.0)),
        16.0 * 16.0 * 4.0,
        2,
    )
    .unwrap();
    let layers = vec![
        EncodedLayer::Conv2d(conv),
        EncodedLayer::Square(Square { name: "sq".into() }),
        EncodedLayer::Flatten(Flatten {
            name: "flat".into(),
        }),
        EncodedLayer::Linear(fc),
    ];
    let input = input_info(vec![1, 8, 8], 2, 1.0);
    let t = BfvParameters::batching_plain_modulus(n, 30).unwrap();
    let quant = Quantization {
        input_scale_bits: 2,
        weight_bits: 2,
    };
    let x = quantized_images(&mut r, &[1, 8, 8], 1, 4.0);
    // (ciphertext primes, conv mixes channels, sanitizable)
    let mut seen = Vec::new();
    for primes in (2..=8).rev() {
        let p = BfvParameters::with_bit_sizes(n, t, &vec![48; primes], 50, SecurityLevel::Bits128)
            .unwrap();
        let model =
            EncodedModel::new("m", &p, input.clone(), layers.clone(), quant.clone(), None).unwrap();
        let Ok(layout) = PackedLayout::new(&model) else {
            continue;
        };
        let plan = layout.compile(&model).unwrap();
        let conv = &plan.steps[0].ops;
        let mixed = conv.ciphertexts_out == 1 && conv.plaintext_products > 0;
        assert!(
            mixed || (conv.ciphertexts_out == 2 && conv.plaintext_products == 0),
            "{primes} primes: the conv is either mixed or per channel: {conv:?}"
        );
        let fits = plan_sanitization(&p, plan.segments[0].noise_log2, 40).is_ok();
        if mixed || seen.iter().any(|&(_, m, _)| m) {
            // Fewer primes than a mixed plan fitted in: check the run, once per shape.
            if !seen.iter().any(|&(_, m, _)| m == mixed) {
                let run = run_packed(&model, &x, 0..4);
                let mirror = model.run_int(0..4, &x).unwrap();
                equal_mod_t(&run, &mirror, t, &format!("{primes} primes"));
            }
        }
        seen.push((primes, mixed, fits));
    }
    // The most primes mix; some smaller set falls back to per-channel and still fits.
    assert!(seen.first().is_some_and(|&(_, m, f)| m && f), "{seen:?}");
    assert!(seen.iter().any(|&(_, m, f)| !m && f), "{seen:?}");
    // Mixed plans are only chosen when they fit.
    assert!(seen.iter().all(|&(_, m, f)| !m || f), "{seen:?}");
}

/// A parameter set whose lowest levels are no valid set (t too large for one or two primes)
/// still compiles: switching down only considers the levels that exist.
#[test]
fn levels_that_cannot_hold_t_are_not_switched_to() {
    let mut r = ChaCha8Rng::seed_from_u64(41);
    let n = 8192;
    let t = BfvParameters::batching_plain_modulus(n, 40).unwrap();
    let p = BfvParameters::preset(n, t).unwrap();
    assert!(
        p.at_level(1).is_err(),
        "the premise: one prime cannot hold a 40-bit t"
    );
    let fc = EncodedLinear::quantize(
        "fc",
        16,
        4,
        &random_floats(&mut r, 4 * 16, 1.0),
        Some(&random_floats(&mut r, 4, 1.0)),
        4.0,
        3,
    )
    .unwrap();
    let quant = Quantization {
        input_scale_bits: 2,
        weight_bits: 3,
    };
    let input = input_info(vec![16], 2, 1.0);
    let model =
        EncodedModel::new("m", &p, input, vec![EncodedLayer::Linear(fc)], quant, None).unwrap();
    let x = quantized_images(&mut r, &[16], 3, 4.0);
    let mirror = model.run_int(0..1, &x).unwrap();
    let run = run_packed(&model, &x, 0..1);
    for j in 0..3 {
        let want: Vec<i64> = mirror.image(j).iter().map(|&v| v as i64).collect();
        assert_eq!(run.outputs[j], want, "image {j}");
    }
}

/// Convolutions leave their output channels sharing ciphertexts, as many per row as fit: a
/// first convolution (from the client's arrangement) with more channels (40 planes of 256)
/// than one ciphertext holds, a pooling on those shared ciphertexts, then a convolution on
/// them whose output channels share ciphertexts too. Equal to the mirror, and in far fewer
/// ciphertexts than channels.
#[test]
fn convolution_channels_share_ciphertexts() {
    let mut r = ChaCha8Rng::seed_from_u64(55);
    // Two plaintext products of channel-mixing diagonals: N = 16384's budget.
    let n = 16384;
    let t = BfvParameters::batching_plain_modulus(n, 36).unwrap();
    let p = BfvParameters::preset(n, t).unwrap();
    let quant = Quantization {
        input_scale_bits: 2,
        weight_bits: 2,
    };
    let layers = vec![
        conv3x3("c1", 1, 40, 1, &mut r, 4.0),
        EncodedLayer::AvgPool2d(EncodedAvgPool2d {
            name: "pool".into(),
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
        }),
        conv3x3("c2", 40, 8, 1, &mut r, 64.0),
    ];
    let input = input_info(vec![1, 16, 16], 2, 1.0);
    let model = EncodedModel::new("m", &p, input, layers, quant, None).unwrap();
    let x = quantized_images(&mut r, &[1, 16, 16], 2, 4.0);
    let plan = PackedLayout::new(&model).unwrap().compile(&model).unwrap();
    let (first, second) = (&plan.steps[0].ops, &plan.steps[2].ops);
    assert!(
        first.ciphertexts_out <= 2 && second.ciphertexts_out < 8,
        "channels share ciphertexts: {first:?} {second:?}"
    );
    let run = run_packed(&model, &x, 0..3);
    equal_mod_t(&run, &model.run_int(0..3, &x).unwrap(), t, "");
}

/// LeNet-1's first segment at N = 8192: the client's arrangement of a 5×5 convolution over
/// 28×28 would take four ciphertexts (14,400 taps, rows of 4,096), the plain image one, so the
/// image goes plain; and the convolution mixes its channels into one ciphertext, so the
/// segment answers with one ciphertext instead of four (each returned ciphertext is counted
/// at its cost on the wire).
#[test]
fn the_upload_and_the_answers_take_as_few_ciphertexts_as_the_budget_allows() {
    let mut r = ChaCha8Rng::seed_from_u64(77);
    let n = 8192;
    let t = BfvParameters::batching_plain_modulus(n, 18).unwrap();
    let p = BfvParameters::preset(n, t).unwrap();
    let quant = Quantization {
        input_scale_bits: 1,
        weight_bits: 2,
    };
    let conv = EncodedConv2d::quantize(
        "c1",
        1,
        4,
        [5, 5],
        [1, 1],
        [0, 0],
        &random_floats(&mut r, 4 * 25, 1.0),
        Some(&random_floats(&mut r, 4, 0.5)),
        4.0,
        2,
    )
    .unwrap();
    let layers = vec![
        EncodedLayer::Conv2d(conv),
        EncodedLayer::Square(Square { name: "sq".into() }),
        EncodedLayer::AvgPool2d(EncodedAvgPool2d {
            name: "pool".into(),
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
        }),
    ];
    let input = input_info(vec![1, 28, 28], 1, 1.0);
    let model = EncodedModel::new("m", &p, input, layers, quant, None).unwrap();
    let layout = PackedLayout::new(&model).unwrap();
    assert_eq!(layout.input_ciphertexts(), vec![1], "the image goes plain");
    let plan = layout.compile(&model).unwrap();
    assert_eq!(
        plan.steps
            .iter()
            .map(|s| s.ops.ciphertexts_out)
            .collect::<Vec<_>>(),
        vec![1, 1, 1],
        "channels mixed into one ciphertext: {:?}",
        plan.steps
    );
    let x = quantized_images(&mut r, &[1, 28, 28], 2, 2.0);
    let run = run_packed(&model, &x, 0..3);
    equal_mod_t(&run, &model.run_int(0..3, &x).unwrap(), t, "");
}
