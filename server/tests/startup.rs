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

#[test]
fn every_folder_skipped_is_logged_with_its_reason() {
    let dir = std::env::temp_dir().join(format!("he-skipped-models-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pickle = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/pycrcnn-models/LeNet1_Approx_single_square.pt"
    );
    // A pickle without the input shape it does not record, a folder with no model, a pickle
    // with both files, and one served.
    for (name, files) in [
        ("no-shape", &["model.pt"][..]),
        ("notes", &[][..]),
        ("two-models", &["model.pt", "model.onnx"][..]),
        ("served", &["model.pt", "manifest.json"][..]),
    ] {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in files {
            match *f {
                "manifest.json" => std::fs::write(d.join(f), r#"{"input_shape": [1, 28, 28]}"#),
                _ => std::fs::copy(pickle, d.join(f)).map(|_| ()),
            }
            .unwrap();
        }
    }
    let mut c = Command::new(env!("CARGO_BIN_EXE_server"));
    c.arg("--models")
        .arg(&dir)
        .args(["--addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // Read the log until the four folders are accounted for (or 60 s pass).
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut lines: Vec<String> = Vec::new();
    let started = Instant::now();
    let done = |lines: &[String]| {
        ["no-shape", "notes", "two-models", "model loaded"]
            .iter()
            .all(|n| lines.iter().any(|l| l.contains(n)))
    };
    while !done(&lines) && started.elapsed() < Duration::from_secs(60) {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(l);
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    let log = lines.join("\n");
    let line = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{log}"))
            .to_string()
    };
    assert!(line("no-shape").contains("input_shape"), "{log}");
    assert!(line("notes").contains("no model.onnx or model.pt"), "{log}");
    assert!(line("two-models").contains("keep one"), "{log}");
    assert!(line("model loaded").contains("served"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
