//! Ciphertext batches, plain and compressed, as `/compute` and the client read them. Half the
//! inputs get a valid header for the parameter set in front (a fuzzer cannot guess a SHA-256
//! fingerprint), so the bodies are explored too.
#![no_main]
// The expects below set up the harness from constants (or are infallible); one failing is
// a broken harness, never a fuzzed input.
use he_layers::crypto::{BfvParameters, Ciphertext, CompressedCiphertext};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

struct Fixture {
    params: Arc<BfvParameters>,
    batch_header: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let t = BfvParameters::batching_plain_modulus(2048, 16).expect("t");
        let params = BfvParameters::preset(2048, t).expect("preset");
        let batch_header = Ciphertext::batch_to_bytes(&[], &params)[..40].to_vec();
        Fixture {
            params,
            batch_header,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let p = &f.params;
    let input: Vec<u8> = match data.split_first() {
        Some((&mode, rest)) if mode & 1 == 1 => {
            let mut v = f.batch_header.clone();
            v[6] = 1 + (mode >> 1) % 9; // the object kind, any of the nine
            v.extend_from_slice(rest);
            v
        }
        _ => data.to_vec(),
    };
    let _ = Ciphertext::from_bytes(&input, p);
    if let Ok(cts) = Ciphertext::batch_from_bytes(&input, p, 8) {
        // What parses serializes back to the same bytes.
        assert_eq!(Ciphertext::batch_to_bytes(&cts, p), input);
    }
    for bits in [1, 13, 30, 54] {
        let _ = CompressedCiphertext::batch_from_bytes(&input, p, bits, 8)
            .map(|cs| cs.iter().map(CompressedCiphertext::decompress).count());
    }
});
