//! The JSON a client sends: model configurations (resolved into parameter sets, as `/plan`
//! does) and compute requests.
#![no_main]
use he_layers::protocol::{ComputeRequest, ModelConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = serde_json::from_slice::<ModelConfig>(data) {
        let _ = cfg.encryption_parameters.resolve();
    }
    let _ = serde_json::from_slice::<ComputeRequest>(data);
});
