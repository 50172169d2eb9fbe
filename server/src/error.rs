//! API errors: a status and `{"error": {"kind": …, "message": …}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use he_layers::protocol::{ErrorBody, ErrorDetail};

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable kind.
    pub kind: &'static str,
    /// Human-readable message (for a 500, logged and not sent).
    pub message: String,
    /// Seconds after which a refused request may be retried (`Retry-After`, with 503).
    pub retry_after: Option<u64>,
}

/// What an error answer carries for the request log: its kind and, for a 500, the detail
/// that stays on the server.
#[derive(Clone, Debug)]
pub struct ErrorLog {
    /// The error's kind.
    pub kind: &'static str,
    /// The message of an internal error (not sent to the client).
    pub internal: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 401: no valid bearer token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 429: over a tenant's quota.
    pub fn over_quota(message: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "over_quota", message)
        }
    }

    /// 503: the server is full (or stopping); retry after `retry_after` seconds.
    pub fn busy(message: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
        }
    }

    /// 503 or 408 for a computation stopped from outside: past the request's deadline (the
    /// client may retry when the server is less loaded) or abandoned by its client.
    pub fn stopped(reason: he_layers::layers::StopReason) -> Self {
        match reason {
            he_layers::layers::StopReason::Deadline => Self {
                retry_after: Some(10),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "compute_timeout",
                    "the computation ran past the server's request timeout and was stopped",
                )
            },
            he_layers::layers::StopReason::Stopped => Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "cancelled",
                "the computation was stopped: its client went away",
            ),
        }
    }

    /// 400: the request cannot be parsed.
    pub fn bad_request(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, message)
    }

    /// 404: an unknown net or key.
    pub fn not_found(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, kind, message)
    }

    /// 413: over a size limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// 422: well-formed but not acceptable (insecure, mismatched, out of range).
    pub fn unprocessable(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, kind, message)
    }

    /// 500: a failure on our side.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A 500 says nothing of its cause to the client: the request log has it, under the
        // request id the answer carries.
        let internal = self.status.is_server_error() && self.kind == "internal";
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind.to_string(),
                message: if internal {
                    "internal error: the server's log has the details under this answer's \
                     x-request-id"
                        .to_string()
                } else {
                    self.message.clone()
                },
            },
        };
        let mut r = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, s.into());
        }
        r.extensions_mut().insert(ErrorLog {
            kind: self.kind,
            internal: internal.then_some(self.message),
        });
        r
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

// The one mapping from the library's errors to (status, kind). Handlers use `?`.

impl From<he_layers::protocol::ProtocolError> for ApiError {
    fn from(e: he_layers::protocol::ProtocolError) -> Self {
        Self::unprocessable("invalid_parameters", e.to_string())
    }
}

impl From<he_layers::crypto::SerialError> for ApiError {
    fn from(e: he_layers::crypto::SerialError) -> Self {
        use he_layers::crypto::SerialError as S;
        match e {
            S::FingerprintMismatch { .. } => {
                Self::unprocessable("parameter_mismatch", e.to_string())
            }
            S::Parameters(_) => Self::unprocessable("invalid_parameters", e.to_string()),
            S::UnsupportedVersion { .. } | S::UnsupportedScheme { .. } => Self::bad_request(
                "unsupported_format",
                format!("{e}; client and server must be of the same release"),
            ),
            _ => Self::bad_request("malformed_binary", e.to_string()),
        }
    }
}

impl From<he_layers::model::ModelError> for ApiError {
    fn from(e: he_layers::model::ModelError) -> Self {
        use he_layers::layers::LayerError as L;
        use he_layers::model::ModelError as M;
        let kind = match &e {
            M::Layer(L::Stopped { reason }) => return Self::stopped(*reason),
            M::Range { .. } => "invalid_layers",
            M::Overflow { .. } => "overflow",
            M::InputShape { .. }
            | M::InputFacts { .. }
            | M::InputOutOfRange { .. }
            | M::Images { .. }
            | M::CiphertextCount { .. } => "input_mismatch",
            M::CrtModuli { .. } | M::NotCoprime { .. } => "invalid_parameters",
            _ => "compute_refused",
        };
        Self::unprocessable(kind, e.to_string())
    }
}

impl From<net_builder::BuildError> for ApiError {
    fn from(e: net_builder::BuildError) -> Self {
        use net_builder::BuildError as B;
        match e {
            B::Model(m) => m.into(),
            B::Parameters(_) => Self::unprocessable("invalid_parameters", e.to_string()),
            _ => Self::unprocessable("invalid_model_config", e.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        // The panic's text goes to the log (through the 500's detail), never to the client.
        Self::internal(format!("a worker task failed: {e}"))
    }
}
