//! The whole router, as a client reaches it: the first byte picks a route, the rest is the
//! body (multipart with a fixed boundary, or JSON). Every answer must be JSON or the
//! multipart of a success, never a panic.
#![no_main]
// The expects below set up the harness from constants (or are infallible); one failing is
// a broken harness, never a fuzzed input.
use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

fn app() -> &'static (tokio::runtime::Runtime, axum::Router) {
    static APP: OnceLock<(tokio::runtime::Runtime, axum::Router)> = OnceLock::new();
    APP.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let cfg = server::ServerConfig {
            models_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../models").into(),
            ..Default::default()
        };
        let state = Arc::new(server::AppState::new(&cfg).expect("state"));
        let router = server::router(state, cfg.max_body_bytes);
        (rt, router)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    let (method, path, ctype) = match route % 6 {
        0 => ("POST", "/compute", "multipart/form-data; boundary=B"),
        1 => ("POST", "/keys", "multipart/form-data; boundary=B"),
        2 => ("POST", "/plan", "application/json"),
        3 => ("GET", "/keys/0123", "text/plain"),
        4 => ("POST", "/compute", "multipart/form-data"),
        _ => ("PUT", "/models", "application/json"),
    };
    let (rt, router) = app();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ctype)
        .body(Body::from(body.to_vec()))
        .expect("request");
    let resp = rt
        .block_on(router.clone().oneshot(req))
        .expect("infallible");
    if !resp.status().is_success() {
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "{} answered {ct:?}",
            resp.status()
        );
    }
});
