//! Known-answer fixtures: keys and a ciphertext made from a fixed ChaCha20 seed at N = 4096 are
//! committed under `tests/fixtures/kat-n4096/` and reproduced here byte for byte. A change to
//! sampling, key generation, encryption or the binary format that alters a single bit fails
//! this test; a deliberate one regenerates the files with
//! `HE_LAYERS_BLESS=1 cargo test -p he-engine --test known_answers` (and says why in its
//! commit). The recipe is [`recipe`]; `RECIPE.md` beside the files repeats it in words.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use he_engine::{
    BatchEncoder, BfvParameters, Ciphertext, Decryptor, PublicKey, RelinearizationKey, SecretKey,
    SymmetricEncryptor,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::path::PathBuf;
use std::sync::Arc;

/// The seed of the fixtures' generator.
const KAT_SEED: u64 = 0x4b41_5420_3230_3236; // "KAT 2026"

/// Every object of the recipe, serialized, with its file name.
struct Fixtures {
    files: Vec<(&'static str, Vec<u8>)>,
}

fn parameters() -> Arc<BfvParameters> {
    let t = BfvParameters::batching_plain_modulus(4096, 20).expect("a 20-bit batching prime");
    BfvParameters::preset(4096, t).expect("the N = 4096 preset")
}

/// The slot values of the fixture ciphertext: i² − 3i mod t, centered.
fn slot_values(params: &BfvParameters) -> Vec<i64> {
    let t = params.plain_modulus() as i64;
    (0..params.degree() as i64)
        .map(|i| {
            let r = (i * i - 3 * i).rem_euclid(t);
            if r > t / 2 {
                r - t
            } else {
                r
            }
        })
        .collect()
}

/// The recipe: one ChaCha20 generator seeded with [`KAT_SEED`], drawn from in this order by the
/// secret key, the public key, the relinearization key and a seeded symmetric encryption of
/// [`slot_values`].
fn recipe(seed: u64) -> Fixtures {
    let params = parameters();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let sk = SecretKey::generate_with_rng(&params, &mut rng);
    let pk = PublicKey::generate_with_rng(&sk, &mut rng);
    let rlk = RelinearizationKey::generate_with_rng(&sk, &mut rng);
    let encoder = BatchEncoder::try_new(&params).expect("t supports batching");
    let pt = encoder.encode(&slot_values(&params)).expect("values fit");
    let ct = SymmetricEncryptor::new(&sk)
        .encrypt_with_rng(&pt, &mut rng)
        .expect("same parameters");
    let files = vec![
        ("parameters.bin", params.to_bytes()),
        ("secret.key", sk.to_bytes()),
        ("public.key", pk.to_bytes()),
        ("relin.key", rlk.to_bytes()),
        ("ciphertext.bin", ct.to_bytes()),
    ];
    Fixtures { files }
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kat-n4096")
}

#[test]
fn fixtures_reproduce_byte_for_byte() {
    let fixtures = recipe(KAT_SEED);
    let dir = fixture_dir();
    if std::env::var_os("HE_LAYERS_BLESS").is_some() {
        for (name, bytes) in &fixtures.files {
            std::fs::write(dir.join(name), bytes).expect("write a fixture");
        }
    }
    for (name, bytes) in &fixtures.files {
        let stored = std::fs::read(dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e} (regenerate with HE_LAYERS_BLESS=1)"));
        assert_eq!(stored.len(), bytes.len(), "{name}: length differs");
        if let Some(i) = stored.iter().zip(bytes).position(|(a, b)| a != b) {
            panic!("{name}: first differing byte at offset {i}");
        }
    }
}

#[test]
fn stored_fixtures_parse_and_decrypt() {
    let dir = fixture_dir();
    let read = |name: &str| std::fs::read(dir.join(name)).expect("fixture present");
    let params = BfvParameters::from_bytes(&read("parameters.bin")).expect("parameters parse");
    assert_eq!(params.fingerprint(), parameters().fingerprint());
    let sk = SecretKey::from_bytes(&read("secret.key"), &params).expect("secret key parses");
    PublicKey::from_bytes(&read("public.key"), &params).expect("public key parses");
    RelinearizationKey::from_bytes(&read("relin.key"), &params).expect("relin key parses");
    let ct = Ciphertext::from_bytes(&read("ciphertext.bin"), &params).expect("ciphertext parses");
    assert!(ct.is_seeded(), "the fixture travels at half size");
    let pt = Decryptor::new(&sk).decrypt(&ct).expect("same parameters");
    let encoder = BatchEncoder::try_new(&params).expect("t supports batching");
    assert_eq!(encoder.decode(&pt), slot_values(&params));
}

#[test]
fn a_fixed_generator_gives_identical_keys_and_another_does_not() {
    let (a, b, c) = (recipe(1), recipe(1), recipe(2));
    for ((name, x), ((_, y), (_, z))) in a.files.iter().zip(b.files.iter().zip(&c.files)) {
        assert_eq!(x, y, "{name}: same seed, different bytes");
        if *name != "parameters.bin" {
            assert_ne!(x, z, "{name}: different seeds, same bytes");
        }
    }
}
