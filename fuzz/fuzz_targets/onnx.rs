//! ONNX model bytes (external data looked up in an empty folder), validated as a load does.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join("he-fuzz-onnx-empty");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(spec) = net_builder::onnx::read_onnx(data, &dir, "fuzz") {
        let _ = spec.validate();
    }
});
