//! The BFV backend's capabilities against slot-wise references: what a layout may ask of it.
//! Linear operations and products are covered through every layer in `layers.rs`; here the
//! plaintext products and rotations a packed layout uses, and the slot encryptor/decryptor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use he_layers::crypto::{BfvParameters, GaloisKeys, PublicKey, RelinearizationKey, SecretKey};
use he_layers::layers::{
    BfvBackend, BfvSlotDecryptor, BfvSlotEncryptor, LayerError, LinearOps, PlaintextOps,
    ProductOps, RotationOps, SlotDecryptor, SlotEncryptor, StopReason, StopSignal, Stoppable,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn centered(v: i128, t: i128) -> i128 {
    let r = v.rem_euclid(t);
    if r > t / 2 {
        r - t
    } else {
        r
    }
}

#[test]
fn plaintext_products_rotations_and_slot_codecs_equal_slotwise_arithmetic() {
    let n = 4096;
    let t = BfvParameters::batching_plain_modulus(n, 20).unwrap();
    let p = BfvParameters::preset(n, t).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(31);
    let sk = SecretKey::generate_with_rng(&p, &mut rng);
    let pk = PublicKey::generate_with_rng(&sk, &mut rng);
    let rk = RelinearizationKey::generate_with_rng(&sk, &mut rng);
    let steps = [1i64, 7, -3];
    let gk = GaloisKeys::generate_with_rng(&sk, &steps, false, &mut rng);
    let backend = BfvBackend::new(&pk, Some(rk.clone()));
    let enc = BfvSlotEncryptor::new(&sk).unwrap();
    let dec = BfvSlotDecryptor::new(&sk).unwrap();
    let ti = t as i128;
    let x: Vec<i128> = (0..n).map(|_| rng.gen_range(-300..=300)).collect();
    let m: Vec<i128> = (0..n).map(|_| rng.gen_range(-5..=5)).collect();
    assert_eq!(enc.slot_count(), n);

    // Slot codec round trip, with a value beyond t/2 taken as its residue (as CRT needs).
    let mut wide = x.clone();
    wide[0] = ti + 5;
    let ct = enc.encrypt_slots(&wide).unwrap();
    let back = dec.decrypt_slots(&ct).unwrap();
    assert_eq!(back[0], 5);
    assert_eq!(&back[1..], &x[1..]);

    // Plaintext products.
    let ct = enc.encrypt_slots(&x).unwrap();
    let pt = backend.prepare_plaintext(&m).unwrap();
    let prod = dec
        .decrypt_slots(&backend.multiply_plain(&ct, &pt).unwrap())
        .unwrap();
    let want: Vec<i128> = x.iter().zip(&m).map(|(a, b)| centered(a * b, ti)).collect();
    assert_eq!(prod, want);

    // Rotations, within each row of N/2 slots; none without Galois keys.
    assert!(matches!(
        backend.rotate(&ct, 1),
        Err(LayerError::MissingKey(_))
    ));
    let rotating = BfvBackend::new(&pk, Some(rk)).with_galois_keys(gk);
    let half = n / 2;
    for step in steps {
        let got = dec
            .decrypt_slots(&rotating.rotate(&ct, step).unwrap())
            .unwrap();
        let want: Vec<i128> = (0..n)
            .map(|i| {
                let (row, j) = (i / half, i % half);
                x[row * half + (j as i64 + step).rem_euclid(half as i64) as usize]
            })
            .collect();
        assert_eq!(got, want, "step {step}");
    }

    // Linear operations and products through the same traits.
    let dot = backend.dot(&[&ct, &ct], &[2, -1]).unwrap().unwrap();
    assert_eq!(dec.decrypt_slots(&dot).unwrap(), x);
    let sq = dec.decrypt_slots(&backend.square(&ct).unwrap()).unwrap();
    let want: Vec<i128> = x.iter().map(|a| centered(a * a, ti)).collect();
    assert_eq!(sq, want);
}

#[test]
fn a_stoppable_backend_computes_the_same_until_its_signal_fires() {
    let n = 2048;
    let t = BfvParameters::batching_plain_modulus(n, 16).unwrap();
    let p = BfvParameters::preset(n, t).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(32);
    let sk = SecretKey::generate_with_rng(&p, &mut rng);
    let pk = PublicKey::generate_with_rng(&sk, &mut rng);
    let rk = RelinearizationKey::generate_with_rng(&sk, &mut rng);
    let gk = GaloisKeys::generate_with_rng(&sk, &[1], false, &mut rng);
    let backend = BfvBackend::new(&pk, Some(rk)).with_galois_keys(gk);
    let enc = BfvSlotEncryptor::new(&sk).unwrap();
    let dec = BfvSlotDecryptor::new(&sk).unwrap();
    let x: Vec<i128> = (0..n as i128).map(|i| i % 50 - 25).collect();
    let ct = enc.encrypt_slots(&x).unwrap();

    let signal = StopSignal::new();
    let live = Stoppable::new(&backend, signal.clone());
    let ops = |b: &Stoppable<'_, BfvBackend>| -> Result<Vec<i128>, LayerError> {
        let r = b.rotate(&ct, 1)?;
        let s = b.square(&r)?;
        let d = b.dot(&[&s, &ct], &[3, -1])?.unwrap();
        dec.decrypt_slots(&d)
    };
    let direct = {
        let r = backend.rotate(&ct, 1).unwrap();
        let s = backend.square(&r).unwrap();
        dec.decrypt_slots(&backend.dot(&[&s, &ct], &[3, -1]).unwrap().unwrap())
            .unwrap()
    };
    assert_eq!(ops(&live).unwrap(), direct);

    // A clone of the signal stops the computation at its next operation.
    signal.clone().stop();
    assert!(matches!(
        ops(&live),
        Err(LayerError::Stopped {
            reason: StopReason::Stopped
        })
    ));
    // A deadline in the past stops it too; one far ahead does not.
    let now = std::time::Instant::now();
    let late = Stoppable::new(&backend, StopSignal::new().with_deadline(now));
    assert!(matches!(
        late.square(&ct),
        Err(LayerError::Stopped {
            reason: StopReason::Deadline
        })
    ));
    let later = now + std::time::Duration::from_secs(3600);
    let ahead = Stoppable::new(&backend, StopSignal::new().with_deadline(later));
    assert_eq!(ops(&ahead).unwrap(), direct);
}
