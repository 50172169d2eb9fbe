//! `client demo`, as a user runs it: the binary, its defaults (mnist-tiny, packed), green.

use std::path::Path;
use std::process::Command;

#[test]
fn the_demo_classifies_its_sixteen_digits_packed_and_exits_0() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let out = Command::new(env!("CARGO_BIN_EXE_client"))
        .arg("demo")
        .arg("--models")
        .arg(&models)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("16 sample images"), "{stdout}");
    assert!(stdout.contains("packed layout"), "{stdout}");
    assert!(
        stdout.contains("encrypted predictions all equal the plaintext model's"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("  ok").count(), 16, "{stdout}");
}

#[test]
fn the_demo_names_an_unknown_layout() {
    let out = Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["demo", "--layout", "diagonal"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown layout 'diagonal'"), "{stderr}");
}
