//! The RNS-BFV engine against slow, obviously correct references: u128 schoolbook products,
//! slot-wise arithmetic mod t, and the format's own rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use he_engine::arith::NttOperator;
use he_engine::serial::{SerialError, HEADER_LEN};
use he_engine::{
    BatchEncoder, BfvParameters, Ciphertext, Decryptor, Encryptor, Error, Evaluator, GaloisKeys,
    ParameterError, Plaintext, PublicKey, RelinearizationKey, SecretKey, SecurityLevel,
    SymmetricEncryptor,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// Compares slot vectors, reporting the first difference instead of printing 8192 numbers.
macro_rules! assert_slots {
    ($a:expr, $b:expr $(, $($m:tt)+)?) => {{
        let (a, b): (&[i64], &[i64]) = (&$a, &$b);
        if a != b {
            let msg: String = String::new() $(+ &format!($($m)+))?;
            let first = a.iter().zip(b).position(|(x, y)| x != y);
            let wrong = a.iter().zip(b).filter(|(x, y)| x != y).count();
            panic!(
                "slots differ {msg}: {wrong} of {} wrong (lengths {} and {}), first at {first:?}",
                a.len().max(b.len()), a.len(), b.len()
            );
        }
    }};
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn preset(n: usize, t_bits: u32) -> Arc<BfvParameters> {
    let t = BfvParameters::batching_plain_modulus(n, t_bits).unwrap();
    BfvParameters::preset(n, t).unwrap()
}

fn random_slots(r: &mut ChaCha8Rng, p: &BfvParameters) -> Vec<i64> {
    let half = ((p.plain_modulus() - 1) / 2) as i64;
    (0..p.degree()).map(|_| r.gen_range(-half..=half)).collect()
}

fn reduce(v: i128, t: u64) -> i64 {
    let t = t as i128;
    let r = v.rem_euclid(t);
    (if r > t / 2 { r - t } else { r }) as i64
}

/// Negacyclic product by the schoolbook definition, in u128: c_k = Σ_{i+j=k} a_i b_j −
/// Σ_{i+j=k+n} a_i b_j. Products of residues below 2^50 summed n ≤ 2^14 times stay below 2^114,
/// so each sum is reduced once at the end.
#[allow(clippy::needless_range_loop)] // written as the textbook double sum on purpose
fn schoolbook(a: &[u64], b: &[u64], p: u64) -> Vec<u64> {
    let n = a.len();
    assert!(
        p < 1 << 50 && n <= 1 << 14,
        "the u128 sums below assume this"
    );
    let p128 = p as u128;
    let mut pos = vec![0u128; n];
    let mut neg = vec![0u128; n];
    for i in 0..n {
        for j in 0..n {
            let prod = a[i] as u128 * b[j] as u128;
            if i + j < n {
                pos[i + j] += prod;
            } else {
                neg[i + j - n] += prod;
            }
        }
    }
    (0..n)
        .map(|k| ((pos[k] % p128 + p128 - neg[k] % p128) % p128) as u64)
        .collect()
}

#[test]
fn ntt_products_equal_schoolbook_for_every_generated_prime() {
    let mut r = rng(1);
    for n in [2048usize, 4096, 8192, 16384] {
        let p = preset(n, if n == 2048 { 14 } else { 20 });
        let mut primes: Vec<u64> = p.moduli().to_vec();
        primes.push(p.special_modulus());
        primes.extend(p.aux_moduli());
        primes.push(p.plain_modulus());
        for &q in &primes {
            let op = NttOperator::try_new(n, q, None).unwrap();
            let a: Vec<u64> = (0..n).map(|_| r.gen_range(0..q)).collect();
            let b: Vec<u64> = (0..n).map(|_| r.gen_range(0..q)).collect();
            let expect = schoolbook(&a, &b, q);
            let (mut fa, mut fb) = (a.clone(), b.clone());
            op.forward(&mut fa);
            op.forward(&mut fb);
            let mut prod = vec![0u64; n];
            op.mul_accumulate(&mut prod, &fa, &fb);
            op.backward(&mut prod);
            assert_eq!(prod, expect, "N={n} q={q}");
            // And the round trip is the identity.
            op.backward(&mut fa);
            assert_eq!(fa, a);
        }
    }
}

#[test]
fn encrypt_decrypt_round_trips_at_every_preset() {
    let mut r = rng(2);
    for n in [2048usize, 4096, 8192, 16384] {
        let p = preset(n, if n == 2048 { 14 } else { 20 });
        let sk = SecretKey::generate(&p);
        let pk = PublicKey::generate(&sk);
        let enc = BatchEncoder::try_new(&p).unwrap();
        let dec = Decryptor::new(&sk);
        for _ in 0..2 {
            let m = random_slots(&mut r, &p);
            let pt = enc.encode(&m).unwrap();
            assert_slots!(enc.decode(&pt), m);
            let c1 = Encryptor::new(&pk).encrypt(&pt).unwrap();
            let c2 = SymmetricEncryptor::new(&sk).encrypt(&pt).unwrap();
            assert_slots!(enc.decode(&dec.decrypt(&c1).unwrap()), m, "public, N={n}");
            assert_slots!(enc.decode(&dec.decrypt(&c2).unwrap()), m, "seeded, N={n}");
            let b1 = dec.noise_budget(&c1).unwrap();
            let b2 = dec.noise_budget(&c2).unwrap();
            assert!(b1 > 0 && b2 >= b1, "N={n}: {b1} {b2}");
            assert!(c1.estimated_noise_budget() <= b1 as f64 + 1.0);
            assert!(c2.estimated_noise_budget() <= b2 as f64 + 1.0);
        }
    }
}

struct Ctx {
    p: Arc<BfvParameters>,
    sk: SecretKey,
    pk: PublicKey,
    rk: RelinearizationKey,
    enc: BatchEncoder,
    ev: Evaluator,
}

impl Ctx {
    fn new(p: Arc<BfvParameters>) -> Self {
        let sk = SecretKey::generate(&p);
        let pk = PublicKey::generate(&sk);
        let rk = RelinearizationKey::generate(&sk);
        let enc = BatchEncoder::try_new(&p).unwrap();
        let ev = Evaluator::new(&p);
        Self {
            p,
            sk,
            pk,
            rk,
            enc,
            ev,
        }
    }
    fn encrypt(&self, m: &[i64]) -> Ciphertext {
        SymmetricEncryptor::new(&self.sk)
            .encrypt(&self.enc.encode(m).unwrap())
            .unwrap()
    }
    fn decrypt(&self, c: &Ciphertext) -> Vec<i64> {
        self.enc
            .decode(&Decryptor::new(&self.sk).decrypt(c).unwrap())
    }
    fn t(&self) -> u64 {
        self.p.plain_modulus()
    }
}

fn slotwise(a: &[i64], b: &[i64], t: u64, f: impl Fn(i128, i128) -> i128) -> Vec<i64> {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| reduce(f(x as i128, y as i128), t))
        .collect()
}

#[test]
fn evaluator_operations_equal_slotwise_arithmetic() {
    let mut r = rng(3);
    for (n, t_bits) in [(4096usize, 20u32), (8192, 30)] {
        let c = Ctx::new(preset(n, t_bits));
        let t = c.t();
        let a = random_slots(&mut r, &c.p);
        let b = random_slots(&mut r, &c.p);
        let (ca, cb) = (c.encrypt(&a), c.encrypt(&b));
        let ev = &c.ev;
        assert_slots!(
            c.decrypt(&ev.add(&ca, &cb).unwrap()),
            slotwise(&a, &b, t, |x, y| x + y)
        );
        assert_slots!(
            c.decrypt(&ev.sub(&ca, &cb).unwrap()),
            slotwise(&a, &b, t, |x, y| x - y)
        );
        assert_slots!(
            c.decrypt(&ev.negate(&ca).unwrap()),
            slotwise(&a, &b, t, |x, _| -x)
        );
        for k in [1i128, -5, 1 << 70, -(t as i128) * 3 + 2] {
            let mut x = ca.clone();
            ev.add_constant_assign(&mut x, k).unwrap();
            assert_slots!(c.decrypt(&x), slotwise(&a, &a, t, |x, _| x + k));
        }
        let pb = c.enc.encode(&b).unwrap();
        let mut x = ca.clone();
        ev.add_plain_assign(&mut x, &ev.prepare_add(&pb).unwrap())
            .unwrap();
        assert_slots!(c.decrypt(&x), slotwise(&a, &b, t, |x, y| x + y));
        let mut x = ca.clone();
        ev.sub_plain_assign(&mut x, &ev.prepare_add(&pb).unwrap())
            .unwrap();
        assert_slots!(c.decrypt(&x), slotwise(&a, &b, t, |x, y| x - y));
        let lifted = ev.prepare_mul(&pb).unwrap();
        assert_slots!(
            c.decrypt(&ev.mul_plain(&ca, &lifted).unwrap()),
            slotwise(&a, &b, t, |x, y| x * y)
        );
        for w in [
            1i64,
            -1,
            7,
            -123_456,
            (t / 2) as i64,
            i64::MIN + 1,
            i64::MAX,
        ] {
            assert_slots!(
                c.decrypt(&ev.mul_scalar(&ca, w).unwrap()),
                slotwise(&a, &a, t, |x, _| x * w as i128),
                "scalar {w}"
            );
        }
        let prod = ev.multiply(&ca, &cb, &c.rk).unwrap();
        assert_slots!(c.decrypt(&prod), slotwise(&a, &b, t, |x, y| x * y));
        let three = ev.multiply_no_relin(&ca, &cb).unwrap();
        assert_eq!(three.size(), 3);
        assert_slots!(c.decrypt(&three), slotwise(&a, &b, t, |x, y| x * y));
        let relin = ev.relinearize(&three, &c.rk).unwrap();
        assert_slots!(c.decrypt(&relin), slotwise(&a, &b, t, |x, y| x * y));
        assert_slots!(
            c.decrypt(&ev.square(&ca, &c.rk).unwrap()),
            slotwise(&a, &a, t, |x, y| x * y)
        );
        // A product of a public-key ciphertext and a seeded one.
        let pa = Encryptor::new(&c.pk)
            .encrypt(&c.enc.encode(&a).unwrap())
            .unwrap();
        assert_slots!(
            c.decrypt(&ev.multiply(&pa, &cb, &c.rk).unwrap()),
            slotwise(&a, &b, t, |x, y| x * y)
        );
        // Fused dot product of 25 terms, some weights zero: small weights take the u64 path,
        // weights up to t/2 the 128-bit one.
        let ms: Vec<Vec<i64>> = (0..25).map(|_| random_slots(&mut r, &c.p)).collect();
        let cts: Vec<Ciphertext> = ms.iter().map(|m| c.encrypt(m)).collect();
        let refs: Vec<&Ciphertext> = cts.iter().collect();
        let half = (t / 2) as i64;
        for range in [1000i64, half] {
            let ws: Vec<i64> = (0..25)
                .map(|i| {
                    if i % 7 == 3 {
                        0
                    } else {
                        r.gen_range(-range..range)
                    }
                })
                .collect();
            let dot = ev.dot_scalars(&refs, &ws).unwrap();
            let expect: Vec<i64> = (0..c.p.degree())
                .map(|j| {
                    reduce(
                        ms.iter()
                            .zip(&ws)
                            .map(|(m, &w)| m[j] as i128 * w as i128)
                            .sum(),
                        t,
                    )
                })
                .collect();
            assert_slots!(c.decrypt(&dot), expect, "weights within ±{range}");
        }
    }
}

#[test]
fn transparent_results_are_refused() {
    let c = Ctx::new(preset(4096, 20));
    let ca = c.encrypt(&[1, 2, 3]);
    let ev = &c.ev;
    assert_eq!(ev.mul_scalar(&ca, 0).unwrap_err(), Error::TransparentResult);
    let zero = ev.prepare_mul(&c.enc.encode(&[0; 10]).unwrap()).unwrap();
    assert_eq!(
        ev.mul_plain(&ca, &zero).unwrap_err(),
        Error::TransparentResult
    );
    assert_eq!(
        ev.dot_scalars(&[&ca, &ca], &[0, 0]).unwrap_err(),
        Error::TransparentResult
    );
    // The public key makes the fresh encryption of zero that replaces such a result.
    let z = Encryptor::new(&c.pk).encrypt_zero();
    assert!(c.decrypt(&z).iter().all(|&v| v == 0));
}

#[test]
fn squaring_chain_is_correct_while_budget_lasts_and_exhaustion_is_predicted() {
    let mut r = rng(4);
    let c = Ctx::new(preset(8192, 20));
    let t = c.t();
    let dec = Decryptor::new(&c.sk);
    let mut m = random_slots(&mut r, &c.p);
    let mut ct = c.encrypt(&m);
    let mut budget = dec.noise_budget(&ct).unwrap();
    let mut predicted_exhaustion = false;
    let mut steps = 0;
    loop {
        let est_after = c.p.log2_q()
            - c.ev
                .estimate_product_noise(ct.estimated_noise_log2(), ct.estimated_noise_log2())
            - 1.0;
        ct = c.ev.square(&ct, &c.rk).unwrap();
        m = slotwise(&m, &m, t, |x, y| x * y);
        steps += 1;
        let b = dec.noise_budget(&ct).unwrap();
        eprintln!(
            "square {steps}: measured budget {b} bits, estimated {:.1}",
            ct.estimated_noise_budget()
        );
        // The estimate never promises more than is there.
        assert!(
            ct.estimated_noise_budget() <= b as f64 + 0.5,
            "step {steps}: estimate {} > measured {b}",
            ct.estimated_noise_budget()
        );
        if b == 0 {
            // Detectable before this product was computed, without decrypting anything.
            assert!(
                est_after <= 0.0 || predicted_exhaustion,
                "step {steps}: est {est_after}"
            );
            break;
        }
        assert!(b < budget, "budget must strictly fall: {budget} -> {b}");
        assert_slots!(c.decrypt(&ct), m, "step {steps}, budget {b}");
        budget = b;
        predicted_exhaustion |= est_after <= 0.0;
        assert!(steps < 20);
    }
    assert!(
        steps >= 3,
        "the 8192 preset should allow a few squarings, got {steps}"
    );
}

#[test]
fn rotations_match_slot_rotations() {
    let mut r = rng(5);
    let c = Ctx::new(preset(8192, 20));
    let half = c.p.degree() / 2;
    let steps = [1i64, -1, 5, 100, -(half as i64) + 3];
    let gk = GaloisKeys::generate(&c.sk, &steps, true);
    let m = random_slots(&mut r, &c.p);
    let ct = c.encrypt(&m);
    for &s in &steps {
        let rot = c.ev.rotate_rows(&ct, s, &gk).unwrap();
        let k = s.rem_euclid(half as i64) as usize;
        let expect: Vec<i64> = (0..2 * half)
            .map(|i| {
                let (row, col) = (i / half, i % half);
                m[row * half + (col + k) % half]
            })
            .collect();
        assert_slots!(c.decrypt(&rot), expect, "step {s}");
    }
    let sw = c.ev.rotate_columns(&ct, &gk).unwrap();
    let expect: Vec<i64> = m[half..].iter().chain(&m[..half]).copied().collect();
    assert_slots!(c.decrypt(&sw), expect);
    // A step without a key is a clear error.
    let err = c.ev.rotate_rows(&ct, 2, &gk).unwrap_err();
    assert!(matches!(err, Error::MissingGaloisKey { .. }));
    // Only the asked-for keys exist.
    assert_eq!(gk.elements().count(), steps.len() + 1);
}

/// Hoisted rotations (one decomposition for many steps) decrypt as the one-by-one rotations
/// and the slot rotations do, at the top level and below it, with the noise the estimate
/// says at most; a step without a key fails before any work.
#[test]
fn hoisted_rotations_match_one_by_one_rotations() {
    let mut r = rng(6);
    let c = Ctx::new(preset(8192, 20));
    let half = c.p.degree() / 2;
    let steps: Vec<i64> = vec![1, 2, 3, -1, 7, 0, 100, -(half as i64) + 3, 1];
    let gk = GaloisKeys::generate(&c.sk, &steps, false);
    let m = random_slots(&mut r, &c.p);
    let ct = c.encrypt(&m);
    for level in [c.p.level(), 2] {
        let (ev, input) = if level == c.p.level() {
            (Evaluator::new(&c.p), ct.clone())
        } else {
            (
                Evaluator::new(&c.p.at_level(level).unwrap()),
                he_engine::modswitch::switch_to_level(&ct, level).unwrap(),
            )
        };
        let hoisted = ev.rotate_rows_hoisted(&input, &steps, &gk).unwrap();
        assert_eq!(hoisted.len(), steps.len());
        for (&s, h) in steps.iter().zip(&hoisted) {
            let k = s.rem_euclid(half as i64) as usize;
            let expect: Vec<i64> = (0..2 * half)
                .map(|i| m[(i / half) * half + (i % half + k) % half])
                .collect();
            assert_slots!(c.decrypt(h), expect, "step {s} at level {level}");
            let one = ev.rotate_rows(&input, s, &gk).unwrap();
            assert_eq!(c.decrypt(h), c.decrypt(&one));
            // As much budget left as the one-by-one rotation, within a bit.
            let dec = Decryptor::new(&c.sk);
            let (bh, bo) = (
                dec.noise_budget(h).unwrap(),
                dec.noise_budget(&one).unwrap(),
            );
            assert!(bh + 1 >= bo, "step {s}: hoisted {bh} bits, one by one {bo}");
        }
    }
    let err = c.ev.rotate_rows_hoisted(&ct, &[1, 4], &gk).unwrap_err();
    assert!(matches!(err, Error::MissingGaloisKey { .. }), "{err}");
}

/// Below the top level (after modulus switching), products, plaintext products, rotations and
/// relinearization run with the top level's keys and equal slot-wise arithmetic; the noise
/// budget a level keeps is what the estimate says at least.
#[test]
fn operations_at_lower_levels_use_the_top_keys() {
    let mut r = rng(9);
    let c = Ctx::new(preset(8192, 20));
    let half = c.p.degree() / 2;
    let gk = GaloisKeys::generate(&c.sk, &[3], false);
    let m = random_slots(&mut r, &c.p);
    let w = random_slots(&mut r, &c.p);
    let ct = c.encrypt(&m);
    let mut checked = 0;
    for level in 1..c.p.level() {
        let low = he_engine::modswitch::switch_to_level(&ct, level).unwrap();
        let ev = Evaluator::new(&c.p.at_level(level).unwrap());
        let rot = ev.rotate_rows(&low, 3, &gk).unwrap();
        let expect: Vec<i64> = (0..2 * half)
            .map(|i| m[(i / half) * half + (i % half + 3) % half])
            .collect();
        assert_slots!(c.decrypt(&rot), expect, "rotation at level {level}");
        let sq = ev.square(&low, &c.rk).unwrap();
        // The lowest levels hold no product of 20-bit messages: the estimate says so.
        if sq.estimated_noise_budget() > 0.0 {
            checked += 1;
            assert_slots!(
                c.decrypt(&sq),
                slotwise(&m, &m, c.t(), |x, y| x * y),
                "square at level {level}"
            );
        }
        let pt = ev.prepare_mul(&c.enc.encode(&w).unwrap()).unwrap();
        let prod = ev.mul_plain(&low, &pt).unwrap();
        // A plaintext prepared at the top serves every level below.
        let top_pt = c.ev.prepare_mul(&c.enc.encode(&w).unwrap()).unwrap();
        let again = ev.mul_plain(&low, &top_pt).unwrap();
        assert_slots!(
            c.decrypt(&again),
            c.decrypt(&prod),
            "top plaintext at level {level}"
        );
        if prod.estimated_noise_budget() > 0.0 {
            assert_slots!(
                c.decrypt(&prod),
                slotwise(&m, &w, c.t(), |x, y| x * y),
                "plaintext product at level {level}"
            );
        }
        let d = Decryptor::new(&c.sk);
        for x in [&rot, &sq, &prod] {
            let budget = d.noise_budget(x).unwrap() as f64;
            let predicted = x.estimated_noise_budget();
            assert!(
                predicted <= budget + 1.0,
                "level {level}: predicted {predicted}, measured {budget}"
            );
        }
    }
    assert!(checked > 0, "no level below the top held a square");
    // A key of another parameter set is refused at any level.
    let other = Ctx::new(preset(8192, 21));
    let low = he_engine::modswitch::switch_to_level(&ct, 1).unwrap();
    let ev = Evaluator::new(&c.p.at_level(1).unwrap());
    assert!(ev.square(&low, &other.rk).is_err());
}

#[test]
fn serialization_round_trips() {
    let mut r = rng(6);
    let c = Ctx::new(preset(4096, 20));
    let p = &c.p;
    let m = random_slots(&mut r, p);
    let seeded = c.encrypt(&m);
    let full = Encryptor::new(&c.pk)
        .encrypt(&c.enc.encode(&m).unwrap())
        .unwrap();
    for ct in [&seeded, &full] {
        let bytes = ct.to_bytes();
        assert_eq!(bytes.len(), ct.serialized_len());
        let back = Ciphertext::from_bytes(&bytes, p).unwrap();
        assert_eq!(back.is_seeded(), ct.is_seeded());
        assert_slots!(c.decrypt(&back), m);
        assert_eq!(back.to_bytes(), bytes);
    }
    let three = c.ev.multiply_no_relin(&seeded, &full).unwrap();
    let back = Ciphertext::from_bytes(&three.to_bytes(), p).unwrap();
    assert_eq!(back.size(), 3);
    assert_slots!(c.decrypt(&back), c.decrypt(&three));

    let batch = Ciphertext::batch_to_bytes(&[seeded.clone(), full.clone(), three.clone()], p);
    let back = Ciphertext::batch_from_bytes(&batch, p, 3).unwrap();
    assert_eq!(back.len(), 3);
    // The bounds a server checks an upload's length against: all seeded, none seeded, and
    // a mix between them; three polynomials are past them.
    let (lo, hi) = Ciphertext::batch_len_bounds(p, 3);
    let len = |cts: &[Ciphertext]| Ciphertext::batch_to_bytes(cts, p).len();
    assert_eq!(len(&[seeded.clone(), seeded.clone(), seeded.clone()]), lo);
    assert_eq!(len(&[full.clone(), full.clone(), full.clone()]), hi);
    let mixed = len(&[seeded.clone(), full.clone(), full.clone()]);
    assert!(lo < mixed && mixed < hi);
    assert!(len(&[full.clone(), full.clone(), three.clone()]) > hi);
    assert_slots!(c.decrypt(&back[1]), m);

    let p2 = BfvParameters::from_bytes(&p.to_bytes()).unwrap();
    assert_eq!(p2.fingerprint(), p.fingerprint());

    // Keys: a deserialized key works like the original.
    let sk2 = SecretKey::from_bytes(&c.sk.to_bytes(), p).unwrap();
    assert_slots!(
        c.enc
            .decode(&Decryptor::new(&sk2).decrypt(&seeded).unwrap()),
        m
    );
    let pk2 = PublicKey::from_bytes(&c.pk.to_bytes(), p).unwrap();
    assert_eq!(pk2.to_bytes(), c.pk.to_bytes());
    let fresh = Encryptor::new(&pk2)
        .encrypt(&c.enc.encode(&m).unwrap())
        .unwrap();
    assert_slots!(c.decrypt(&fresh), m);
    let rk2 = RelinearizationKey::from_bytes(&c.rk.to_bytes(), p).unwrap();
    assert_eq!(rk2.to_bytes(), c.rk.to_bytes());
    let sq = c.ev.square(&seeded, &rk2).unwrap();
    assert_slots!(c.decrypt(&sq), slotwise(&m, &m, c.t(), |x, y| x * y));
    let gk = GaloisKeys::generate(&c.sk, &[1], false);
    let gk2 = GaloisKeys::from_bytes(&gk.to_bytes(), p).unwrap();
    // What a key cache weighs: the expanded polynomials, about twice the seeded wire form.
    let (n, l, k) = (p.degree(), p.moduli().len(), p.moduli().len() + 1);
    assert_eq!(pk2.resident_bytes(), 8 * 2 * n * l);
    assert_eq!(rk2.resident_bytes(), 8 * 2 * l * n * k);
    assert_eq!(gk2.resident_bytes(), rk2.resident_bytes());
    assert!(rk2.resident_bytes() > 2 * rk2.to_bytes().len());
    let rot = c.ev.rotate_rows(&seeded, 1, &gk2).unwrap();
    assert_slots!(
        c.decrypt(&rot),
        c.decrypt(&c.ev.rotate_rows(&seeded, 1, &gk).unwrap())
    );
    let pt = c.enc.encode(&m).unwrap();
    assert_eq!(Plaintext::from_bytes(&pt.to_bytes(), p).unwrap(), pt);
}

#[test]
fn serialization_rejects_bad_input_with_distinct_errors() {
    let c = Ctx::new(preset(4096, 20));
    let p = &c.p;
    let ct = Encryptor::new(&c.pk)
        .encrypt(&c.enc.encode(&[1, 2, 3]).unwrap())
        .unwrap();
    let bytes = ct.to_bytes();

    let truncated = Ciphertext::from_bytes(&bytes[..bytes.len() - 1], p).unwrap_err();
    assert!(
        matches!(truncated, SerialError::Truncated { .. }),
        "{truncated}"
    );
    let short_header = Ciphertext::from_bytes(&bytes[..10], p).unwrap_err();
    assert!(
        matches!(short_header, SerialError::Truncated { .. }),
        "{short_header}"
    );

    let mut long = bytes.clone();
    long.push(0);
    let oversized = Ciphertext::from_bytes(&long, p).unwrap_err();
    assert!(
        matches!(oversized, SerialError::Oversized { .. }),
        "{oversized}"
    );

    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert_eq!(
        Ciphertext::from_bytes(&bad, p).unwrap_err(),
        SerialError::BadMagic
    );

    let mut bad = bytes.clone();
    bad[4] = 9;
    assert_eq!(
        Ciphertext::from_bytes(&bad, p).unwrap_err(),
        SerialError::UnsupportedVersion { found: 9 }
    );

    // A version-1 object (before the scheme byte) is told apart from a misparse.
    let mut old = bytes.clone();
    old[4] = 1;
    old[7] = 0;
    assert_eq!(
        Ciphertext::from_bytes(&old, p).unwrap_err(),
        SerialError::UnsupportedVersion { found: 1 }
    );

    let mut bad = bytes.clone();
    bad[7] = 2;
    assert_eq!(
        Ciphertext::from_bytes(&bad, p).unwrap_err(),
        SerialError::UnsupportedScheme { found: 2 }
    );

    let other = preset(4096, 21);
    let wrong_fp = Ciphertext::from_bytes(&bytes, &other).unwrap_err();
    assert!(
        matches!(wrong_fp, SerialError::FingerprintMismatch { .. }),
        "{wrong_fp}"
    );

    let wrong_kind = PublicKey::from_bytes(&bytes, p).unwrap_err();
    assert!(
        matches!(wrong_kind, SerialError::WrongKind { .. }),
        "{wrong_kind}"
    );

    // Set the first residue of c0 to all ones: ≥ its prime.
    let mut bad = bytes.clone();
    let body = HEADER_LEN + 2 + 8;
    let width = (64 - p.moduli()[0].leading_zeros()) as usize;
    for bit in 0..width {
        bad[body + bit / 8] |= 1 << (bit % 8);
    }
    let range = Ciphertext::from_bytes(&bad, p).unwrap_err();
    assert!(
        matches!(
            range,
            SerialError::CoefficientOutOfRange {
                limb: 0,
                index: 0,
                ..
            }
        ),
        "{range}"
    );

    let mut bad = bytes.clone();
    bad[HEADER_LEN] = 7;
    assert!(matches!(
        Ciphertext::from_bytes(&bad, p).unwrap_err(),
        SerialError::Malformed { .. }
    ));

    // A batch claiming more ciphertexts than allowed, or than its bytes can hold.
    let batch = Ciphertext::batch_to_bytes(&[ct.clone(), ct.clone()], p);
    assert!(matches!(
        Ciphertext::batch_from_bytes(&batch, p, 1).unwrap_err(),
        SerialError::Oversized { .. }
    ));
    let mut lying = batch.clone();
    lying[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&1000u32.to_le_bytes());
    assert!(matches!(
        Ciphertext::batch_from_bytes(&lying, p, 10_000).unwrap_err(),
        SerialError::Truncated { .. }
    ));

    // Galois key count over the limit is refused before reading keys.
    let gk = GaloisKeys::generate(&c.sk, &[1], false).to_bytes();
    let mut bad = gk.clone();
    bad[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&65535u16.to_le_bytes());
    assert!(matches!(
        GaloisKeys::from_bytes(&bad, p).unwrap_err(),
        SerialError::Oversized { .. }
    ));

    // Random garbage never panics.
    let mut r = rng(7);
    for len in [0usize, 1, 39, 40, 41, 1000, bytes.len()] {
        let junk: Vec<u8> = (0..len).map(|_| r.gen()).collect();
        assert!(Ciphertext::from_bytes(&junk, p).is_err());
        assert!(BfvParameters::from_bytes(&junk).is_err());
    }
    let mut near = bytes.clone();
    for _ in 0..50 {
        let i = r.gen_range(HEADER_LEN..near.len());
        near[i] = r.gen();
        let _ = Ciphertext::from_bytes(&near, p);
    }
}

#[test]
fn insecure_parameter_sets_are_rejected_and_none_is_explicit() {
    let err = BfvParameters::with_bit_sizes(4096, 65537, &[40, 40], 40, SecurityLevel::Bits128)
        .unwrap_err();
    assert!(matches!(
        err,
        ParameterError::Insecure {
            bits: 120,
            bound: 109,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("109-bit bound") && msg.contains("N=8192"),
        "{msg}"
    );
    // The same set is accepted only when security is explicitly turned off.
    let p = BfvParameters::with_bit_sizes(4096, 65537, &[40, 40], 40, SecurityLevel::DangerNone)
        .unwrap();
    assert_eq!(p.achieved_security(), SecurityLevel::DangerNone);
    // A serialized insecure set claiming 128-bit security is refused on reading.
    let mut bytes = p.to_bytes();
    let last = bytes.len() - 1;
    bytes[last] = 128;
    assert!(matches!(
        BfvParameters::from_bytes(&bytes).unwrap_err(),
        SerialError::Parameters(ParameterError::Insecure { .. })
    ));
}

#[test]
fn seeded_ciphertext_is_about_half_a_full_one() {
    let c = Ctx::new(preset(8192, 20));
    let m = vec![1i64; 8192];
    let seeded = c.encrypt(&m).to_bytes().len();
    let full = Encryptor::new(&c.pk)
        .encrypt(&c.enc.encode(&m).unwrap())
        .unwrap()
        .to_bytes()
        .len();
    let ratio = seeded as f64 / full as f64;
    assert!((0.49..0.52).contains(&ratio), "{seeded} / {full}");
    // Bit-packed: a full ciphertext is 2 · N · Σ bits(q_i) / 8 plus a small header.
    let bits: usize =
        c.p.moduli()
            .iter()
            .map(|q| 64 - q.leading_zeros() as usize)
            .sum();
    assert!(full <= 2 * 8192 * bits / 8 + 64);
}
