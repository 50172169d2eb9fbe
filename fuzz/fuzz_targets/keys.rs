//! Public, relinearization and Galois keys, as `POST /keys` reads them; half the inputs get a
//! valid header (kind from the first byte) for the parameter set in front.
#![no_main]
// The expects below set up the harness from constants (or are infallible); one failing is
// a broken harness, never a fuzzed input.
use he_layers::crypto::{BfvParameters, GaloisKeys, PublicKey, RelinearizationKey, SecretKey};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

struct Fixture {
    params: Arc<BfvParameters>,
    header: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let t = BfvParameters::batching_plain_modulus(2048, 16).expect("t");
        let params = BfvParameters::preset(2048, t).expect("preset");
        let sk = SecretKey::generate(&params);
        let header = PublicKey::generate(&sk).to_bytes()[..40].to_vec();
        Fixture { params, header }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let p = &f.params;
    let input: Vec<u8> = match data.split_first() {
        Some((&mode, rest)) if mode & 1 == 1 => {
            let mut v = f.header.clone();
            v[6] = 1 + (mode >> 1) % 9; // the object kind, any of the nine
            v.extend_from_slice(rest);
            v
        }
        _ => data.to_vec(),
    };
    let _ = PublicKey::from_bytes(&input, p);
    let _ = RelinearizationKey::from_bytes(&input, p);
    let _ = GaloisKeys::from_bytes(&input, p);
});
