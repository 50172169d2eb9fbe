//! Serialized parameter sets (the first part of every key upload).
#![no_main]
use he_layers::crypto::BfvParameters;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = BfvParameters::from_bytes(data) {
        assert_eq!(
            BfvParameters::from_bytes(&p.to_bytes())
                .map(|q| q.fingerprint())
                .ok(),
            Some(p.fingerprint())
        );
    }
});
