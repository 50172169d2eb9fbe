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
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
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
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind.to_string(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
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
        use he_layers::model::ModelError as M;
        let kind = match &e {
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
        Self::internal(format!("a worker task failed: {e}"))
    }
}
