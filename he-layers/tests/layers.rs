//! Every layer: the decrypted encrypted forward equals the integer mirror exactly, and the
//! mirror divided by its scale is within the predicted quantization bound of a naive float
//! reference. Then a whole model, end to end on a full batch, over CRT plaintext moduli.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use he_layers::crypto::Ciphertext;
use he_layers::crypto::{BfvParameters, PublicKey, RelinearizationKey, SecretKey};
use he_layers::layers::{
    BfvBackend, EncodedAvgPool2d, EncodedConv2d, EncodedLayer, EncodedLinear, Flatten,
    ReencryptBoundary, Square,
};
use he_layers::model::{crt_combine, EncodedModel, ModelError, Quantization};
use he_layers::plan::BatchLayout;
use he_layers::tensor::{EncryptedTensor, FloatTensor, IntTensor, ValueInfo};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

struct Keys {
    p: Arc<BfvParameters>,
    sk: SecretKey,
    backend: BfvBackend,
}

impl Keys {
    fn new(p: Arc<BfvParameters>) -> Self {
        let sk = SecretKey::generate(&p);
        let pk = PublicKey::generate(&sk);
        let rk = RelinearizationKey::generate(&sk);
        Self {
            backend: BfvBackend::new(&pk, Some(rk)),
            p,
            sk,
        }
    }

    fn encrypt(&self, x: &IntTensor, info: &ValueInfo) -> EncryptedTensor<Ciphertext> {
        EncryptedTensor::encrypt(x, info, &self.sk).unwrap()
    }

    /// Decrypts to centered residues mod t (one value per activation and image).
    fn decrypt(&self, x: &EncryptedTensor<Ciphertext>) -> Vec<i64> {
        x.decrypt(&self.sk)
            .unwrap()
            .data()
            .iter()
            .map(|&v| v as i64)
            .collect()
    }
}

fn preset(n: usize, bits: u32) -> Arc<BfvParameters> {
    BfvParameters::preset(n, BfvParameters::batching_plain_modulus(n, bits).unwrap()).unwrap()
}

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

/// Naive float reference of a convolution on one image.
#[allow(clippy::too_many_arguments)]
fn conv_ref(
    x: &[f64],
    [c, h, w]: [usize; 3],
    oc: usize,
    [kh, kw]: [usize; 2],
    [sh, sw]: [usize; 2],
    [ph, pw]: [usize; 2],
    wt: &[f64],
    b: &[f64],
) -> Vec<f64> {
    let oh = (h + 2 * ph - kh) / sh + 1;
    let ow = (w + 2 * pw - kw) / sw + 1;
    let mut y = vec![0.0; oc * oh * ow];
    for o in 0..oc {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut s = b[o];
                for ci in 0..c {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * sh + ky) as isize - ph as isize;
                            let ix = (ox * sw + kx) as isize - pw as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                s += wt[((o * c + ci) * kh + ky) * kw + kx]
                                    * x[(ci * h + iy as usize) * w + ix as usize];
                            }
                        }
                    }
                }
                y[(o * oh + oy) * ow + ox] = s;
            }
        }
    }
    y
}

fn avgpool_ref(x: &[f64], [c, h, w]: [usize; 3], k: usize, s: usize, p: usize) -> Vec<f64> {
    let oh = (h + 2 * p - k) / s + 1;
    let ow = (w + 2 * p - k) / s + 1;
    let mut y = vec![0.0; c * oh * ow];
    for ci in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut sum = 0.0;
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * s + ky) as isize - p as isize;
                        let ix = (ox * s + kx) as isize - p as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            sum += x[(ci * h + iy as usize) * w + ix as usize];
                        }
                    }
                }
                y[(ci * oh + oy) * ow + ox] = sum / (k * k) as f64;
            }
        }
    }
    y
}

/// Runs one layer three ways and checks: encrypted == mirror exactly; |mirror/scale − float|
/// ≤ predicted error; |mirror| ≤ predicted bound.
fn check_layer(
    keys: &Keys,
    layer: &EncodedLayer,
    input: &ValueInfo,
    images: &[Vec<f64>],
    float_out: &[Vec<f64>],
) {
    let x_f = FloatTensor::from_images(input.shape.clone(), images).unwrap();
    let x_q = x_f.map(|&v| (v * input.scale).round() as i128);
    let info = layer.output_info(input).unwrap();
    let y_int = layer.forward_int(&x_q).unwrap();
    assert_eq!(y_int.shape(), info.shape.as_slice());
    assert!(
        info.bound() < keys.p.plain_modulus() as u128 / 2,
        "test setup overflows: {}",
        layer.describe()
    );
    for (j, f) in float_out.iter().enumerate() {
        for (a, (&m, &fv)) in y_int.image(j).iter().zip(f).enumerate() {
            assert!(
                info.lo <= m && m <= info.hi,
                "{}: interval",
                layer.describe()
            );
            let err = (m as f64 / info.scale - fv).abs();
            assert!(
                err <= info.error_bound * (1.0 + 1e-9),
                "{}: image {j} activation {a}: |{} − {fv}| = {err} > {}",
                layer.describe(),
                m as f64 / info.scale,
                info.error_bound
            );
        }
    }
    let x_enc = keys.encrypt(&x_q, input);
    let y_enc = BatchLayout
        .forward_layer(layer, &x_enc, &keys.backend)
        .unwrap();
    assert_eq!(y_enc.shape, info.shape);
    assert_eq!(y_enc.scale, info.scale);
    let got = keys.decrypt(&y_enc);
    let want: Vec<i64> = y_int.data().iter().map(|&v| v as i64).collect();
    assert!(
        got == want,
        "{}: encrypted result differs from the mirror",
        layer.describe()
    );
}

#[test]
fn conv2d_matches_mirror_and_float_for_random_shapes() {
    let mut r = ChaCha8Rng::seed_from_u64(11);
    let keys = Keys::new(preset(4096, 20));
    let batch = 6;
    for case in 0..10 {
        let c = r.gen_range(1..=3);
        let oc = r.gen_range(1..=4);
        let k = [1, 2, 3, 5][case % 4];
        let stride = 1 + case % 2;
        let pad = (case / 2) % 3;
        let h = r.gen_range(k.max(4)..=9);
        let w = r.gen_range(k.max(4)..=9);
        let wt = random_floats(&mut r, oc * c * k * k, 1.0);
        let b = random_floats(&mut r, oc, 1.0);
        let input = input_info(vec![c, h, w], 5, 1.0);
        let layer = EncodedLayer::Conv2d(
            EncodedConv2d::quantize(
                format!("conv{case}"),
                c,
                oc,
                [k, k],
                [stride, stride],
                [pad, pad],
                &wt,
                Some(&b),
                input.scale,
                5,
            )
            .unwrap(),
        );
        let images: Vec<Vec<f64>> = (0..batch)
            .map(|_| random_floats(&mut r, c * h * w, 1.0))
            .collect();
        let outs: Vec<Vec<f64>> = images
            .iter()
            .map(|x| {
                conv_ref(
                    x,
                    [c, h, w],
                    oc,
                    [k, k],
                    [stride, stride],
                    [pad, pad],
                    &wt,
                    &b,
                )
            })
            .collect();
        check_layer(&keys, &layer, &input, &images, &outs);
    }
}

#[test]
fn linear_avgpool_flatten_match_mirror_and_float() {
    let mut r = ChaCha8Rng::seed_from_u64(12);
    let keys = Keys::new(preset(4096, 20));
    let batch = 5;
    for case in 0..4 {
        let (inf, outf) = (r.gen_range(1..40), r.gen_range(1..12));
        let wt = random_floats(&mut r, inf * outf, 1.0);
        let b = random_floats(&mut r, outf, 0.5);
        let input = input_info(vec![inf], 6, 1.0);
        let layer = EncodedLayer::Linear(
            EncodedLinear::quantize(
                format!("fc{case}"),
                inf,
                outf,
                &wt,
                Some(&b),
                input.scale,
                6,
            )
            .unwrap(),
        );
        let images: Vec<Vec<f64>> = (0..batch)
            .map(|_| random_floats(&mut r, inf, 1.0))
            .collect();
        let outs: Vec<Vec<f64>> = images
            .iter()
            .map(|x| {
                (0..outf)
                    .map(|o| b[o] + (0..inf).map(|i| wt[o * inf + i] * x[i]).sum::<f64>())
                    .collect()
            })
            .collect();
        check_layer(&keys, &layer, &input, &images, &outs);
    }
    for (k, s, p) in [(2usize, 2usize, 0usize), (3, 1, 1), (3, 2, 1), (2, 1, 0)] {
        let (c, h, w) = (2, 7, 6);
        let input = input_info(vec![c, h, w], 8, 1.0);
        let layer = EncodedLayer::AvgPool2d(EncodedAvgPool2d {
            name: "pool".into(),
            kernel: [k, k],
            stride: [s, s],
            padding: [p, p],
        });
        let images: Vec<Vec<f64>> = (0..batch)
            .map(|_| random_floats(&mut r, c * h * w, 1.0))
            .collect();
        let outs: Vec<Vec<f64>> = images
            .iter()
            .map(|x| avgpool_ref(x, [c, h, w], k, s, p))
            .collect();
        check_layer(&keys, &layer, &input, &images, &outs);
    }
    let input = input_info(vec![2, 3, 4], 8, 1.0);
    let images: Vec<Vec<f64>> = (0..batch).map(|_| random_floats(&mut r, 24, 1.0)).collect();
    let layer = EncodedLayer::Flatten(Flatten {
        name: "flat".into(),
    });
    check_layer(&keys, &layer, &input, &images, &images.clone());
}

#[test]
fn square_and_rescale_match_mirror_and_float() {
    let mut r = ChaCha8Rng::seed_from_u64(13);
    let keys = Keys::new(preset(8192, 20));
    let input = input_info(vec![3, 4], 8, 1.0);
    let images: Vec<Vec<f64>> = (0..7).map(|_| random_floats(&mut r, 12, 1.0)).collect();
    let squares: Vec<Vec<f64>> = images
        .iter()
        .map(|x| x.iter().map(|v| v * v).collect())
        .collect();
    let layer = EncodedLayer::Square(Square { name: "sq".into() });
    check_layer(&keys, &layer, &input, &images, &squares);
    // The re-encryption boundary has no encrypted form; its mirror is the client's rounding.
    let re = EncodedLayer::Reencrypt(ReencryptBoundary {
        name: "re".into(),
        rescale_bits: 3,
    });
    let x =
        IntTensor::from_images(vec![4], &[vec![-12i128, -11, 11, 12], vec![3, 4, -4, 0]]).unwrap();
    let y = re.forward_int(&x).unwrap();
    assert_eq!(y.image(0), vec![-2, -1, 1, 2]); // ±1.5 → ±2, ±1.375 → ±1
    assert_eq!(y.image(1), vec![0, 1, -1, 0]);
    let info = re.output_info(&input).unwrap();
    assert_eq!(info.scale, input.scale / 8.0);
    assert!(info.error_bound > input.error_bound);
}

fn whole_model(input_scale: f64, r: &mut ChaCha8Rng) -> (Vec<EncodedLayer>, ValueInfo) {
    let (c, h, w) = (1, 8, 8);
    let wbits = 2;
    let conv_w = random_floats(r, 2 * 9, 1.0);
    let conv_b = random_floats(r, 2, 0.5);
    let fc1_w = random_floats(r, 8 * 32, 1.0);
    let fc2_w = random_floats(r, 4 * 8, 1.0);
    let fc2_b = random_floats(r, 4, 1.0);
    let conv = EncodedConv2d::quantize(
        "conv",
        c,
        2,
        [3, 3],
        [1, 1],
        [1, 1],
        &conv_w,
        Some(&conv_b),
        input_scale,
        wbits,
    )
    .unwrap();
    let s1 = input_scale * 4.0;
    let s2 = s1 * s1 * 4.0; // square, then 2×2 pool
    let fc1 = EncodedLinear::quantize("fc1", 32, 8, &fc1_w, None, s2, wbits).unwrap();
    let s3 = s2 * 4.0;
    let fc2 = EncodedLinear::quantize("fc2", 8, 4, &fc2_w, Some(&fc2_b), s3 * s3, wbits).unwrap();
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

#[test]
fn whole_model_on_a_full_batch_equals_the_mirror_over_crt_moduli() {
    he_layers::tune_allocator();
    let mut r = ChaCha8Rng::seed_from_u64(14);
    let n = 8192;
    let (layers, input) = whole_model(4.0, &mut r);
    // The exact values need more than one 20-bit t: three moduli, recombined by CRT.
    let primes: Vec<u64> = he_layers::crypto::arith::generate_primes(20, n, 3, &[]).unwrap();
    let quant = Quantization {
        input_scale_bits: 2,
        weight_bits: 2,
    };
    let single = EncodedModel::new(
        "m",
        &preset(n, 20),
        input.clone(),
        layers.clone(),
        quant.clone(),
        None,
    )
    .unwrap();
    assert!(matches!(
        single.check_overflow(&(0..7)),
        Err(ModelError::Overflow { .. })
    ));
    let images: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..64).map(|_| r.gen_range(0.0..=1.0)).collect())
        .collect();
    let x_q = FloatTensor::from_images(vec![1, 8, 8], &images)
        .unwrap()
        .map(|&v| (v * 4.0).round() as i128);
    let mirror = single.run_int(0..7, &x_q).unwrap();
    let mut residues: Vec<Vec<i64>> = Vec::new();
    for &t in &primes {
        let p = BfvParameters::preset(n, t).unwrap();
        let model = EncodedModel::new(
            "m",
            &p,
            input.clone(),
            layers.clone(),
            quant.clone(),
            Some(primes.clone()),
        )
        .unwrap();
        assert!(model.predict().iter().all(|l| !l.overflow));
        let keys = Keys::new(p);
        let enc = keys.encrypt(&x_q, &input);
        let out = BatchLayout
            .run_tensor(&model, 0..7, enc, &keys.backend)
            .unwrap();
        assert_eq!(out.shape, vec![4]);
        residues.push(keys.decrypt(&out));
    }
    let mut wrong = 0;
    for (i, &m) in mirror.data().iter().enumerate() {
        let res: Vec<u64> = primes
            .iter()
            .zip(&residues)
            .map(|(&t, r)| r[i].rem_euclid(t as i64) as u64)
            .collect();
        if crt_combine(&res, &primes) != Some(m) {
            wrong += 1;
        }
    }
    assert_eq!(wrong, 0, "slots differing from the mirror");
    assert_eq!(mirror.batch(), n);
}

#[test]
fn overflow_is_predicted_before_encryption() {
    let mut r = ChaCha8Rng::seed_from_u64(15);
    let p = preset(4096, 20);
    let wt = random_floats(&mut r, 8 * 64, 1.0);
    let input = input_info(vec![64], 8, 1.0);
    let make = |bits: i32| {
        let fc = EncodedLinear::quantize("fc", 64, 8, &wt, None, input.scale, bits).unwrap();
        EncodedModel::new(
            "m",
            &p,
            input.clone(),
            vec![EncodedLayer::Linear(fc)],
            Quantization {
                input_scale_bits: 8,
                weight_bits: bits as u32,
            },
            None,
        )
        .unwrap()
    };
    assert!(!make(4).predict()[0].overflow);
    let too_big = make(16);
    assert!(too_big.predict()[0].overflow);
    let err = too_big.check_overflow(&(0..1)).unwrap_err();
    assert!(
        err.to_string().contains("layer 0 (fc) would overflow"),
        "{err}"
    );
    // And running refuses before touching a ciphertext.
    let keys = Keys::new(p.clone());
    let x = IntTensor::from_images(vec![64], &[vec![0; 64]]).unwrap();
    let enc = keys.encrypt(&x, &input);
    assert!(matches!(
        BatchLayout.run_tensor(&too_big, 0..1, enc, &keys.backend),
        Err(ModelError::Overflow { index: 0, .. })
    ));
}
