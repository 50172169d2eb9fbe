//! What every request goes through: a request id (the client's `x-request-id` if it is a
//! sane one, else a fresh one), returned in the answer; framework rejections (unknown route,
//! wrong method, body over the limit, wrong content type, timeouts) turned into the JSON
//! errors the handlers give; a panic turned into a generic 500; and one log line per request,
//! errors included.

use crate::error::{ApiError, ErrorLog};
use crate::AppState;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;

/// The header carrying a request's id, both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A request's id, in the request's extensions for handlers that log.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Detail a handler adds to its request's log line (in the response's extensions).
#[derive(Clone, Debug)]
pub struct LogDetail(pub String);

/// A client's id if it is 1 to 64 characters of `[A-Za-z0-9._-]`, else a fresh random one.
fn request_id(given: Option<&HeaderValue>) -> String {
    if let Some(v) = given.and_then(|v| v.to_str().ok()) {
        if (1..=64).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return v.to_string();
        }
    }
    use rand::Rng;
    format!("{:016x}", rand::thread_rng().gen::<u64>())
}

/// The error a framework rejection stands for, from its status.
fn framework_error(status: StatusCode, text: String) -> ApiError {
    let text = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text.chars().take(300).collect()
    };
    match status {
        StatusCode::NOT_FOUND => ApiError::not_found(
            "unknown_route",
            "no such route: GET /health, /ready, /metrics, /openapi.json, /models, /keys/{key_id}; \
             POST /plan, \
             /keys, /compute",
        ),
        StatusCode::METHOD_NOT_ALLOWED => ApiError {
            status,
            ..ApiError::bad_request("method_not_allowed", text)
        },
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(text),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError {
            status,
            ..ApiError::bad_request("unsupported_media_type", text)
        },
        StatusCode::REQUEST_TIMEOUT => ApiError {
            status,
            ..ApiError::bad_request("timeout", text)
        },
        s if s.is_server_error() => ApiError::internal(text),
        _ => ApiError {
            status,
            ..ApiError::bad_request("bad_request", text)
        },
    }
}

/// The middleware: id, JSON errors, log line, metrics.
pub async fn hygiene(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(req.headers().get(REQUEST_ID_HEADER));
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if (status.is_client_error() || status.is_server_error())
        && resp.extensions().get::<ErrorLog>().is_none()
        && !is_json
    {
        // A rejection from the framework (or a panic caught below us): its text, if short.
        let text = match axum::body::to_bytes(std::mem::take(resp.body_mut()), 4096).await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(_) => String::new(),
        };
        let headers = resp.headers().clone();
        resp = framework_error(status, text).into_response();
        if let Some(v) = headers.get(header::ALLOW) {
            resp.headers_mut().insert(header::ALLOW, v.clone());
        }
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    let status = resp.status().as_u16();
    state.metrics.request(&route, status);
    let ms = started.elapsed().as_millis() as u64;
    let detail = resp
        .extensions()
        .get::<LogDetail>()
        .map(|d| d.0.clone())
        .unwrap_or_default();
    match resp.extensions().get::<ErrorLog>() {
        Some(e) => {
            state.metrics.error(e.kind);
            match &e.internal {
                Some(why) => {
                    tracing::error!(request_id = %id, %method, route, status, ms, kind = e.kind, error = %why, "request failed")
                }
                None => {
                    tracing::info!(request_id = %id, %method, route, status, ms, kind = e.kind, "request refused")
                }
            }
        }
        None => tracing::info!(request_id = %id, %method, route, status, ms, %detail, "request"),
    }
    resp
}

/// The answer to a panic in a handler: a generic JSON 500 (the hygiene layer adds the id).
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    ApiError::internal("a handler panicked").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_request_ids_are_taken() {
        let v = |s: &str| HeaderValue::from_str(s).ok();
        assert_eq!(request_id(v("abc-123_x.y").as_ref()), "abc-123_x.y");
        for bad in ["", "a b", "x".repeat(65).as_str(), "ünï"] {
            let id = request_id(v(bad).as_ref());
            assert_eq!(id.len(), 16, "{bad:?} gave {id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
}
