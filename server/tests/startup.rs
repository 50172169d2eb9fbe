//! The server binary's refusals at start: exposed without TLS and tokens, a bad tokens file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test, bench or example fails loudly

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn server(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_server"));
    c.args([
        "--models",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../models"),
    ])
    .args(args)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    c
}

#[test]
fn an_exposed_address_needs_tls_and_tokens_or_insecure_open() {
    let out = server(&["--addr", "0.0.0.0:0"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--insecure-open") && err.contains("TLS and tokens"),
        "{err}"
    );

    // Told so, it starts (and is stopped here).
    let mut child = server(&["--addr", "0.0.0.0:0", "--insecure-open"])
        .spawn()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    let _ = child.wait();

    // A tokens file that cannot be read stops the start with its name.
    let out = server(&[
        "--addr",
        "127.0.0.1:0",
        "--api-tokens",
        "/nonexistent/tokens.json",
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/tokens.json"));
}
