//! PyTorch pickles (zip and legacy formats) and the pickle machine itself.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = net_builder::pickle::parse(data);
    if let Ok(spec) = net_builder::torch::read_pickle(data, "fuzz", &Default::default()) {
        let _ = spec.validate();
    }
});
