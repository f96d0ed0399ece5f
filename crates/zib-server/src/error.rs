//! One error type for every handler: it knows its HTTP status and stable code, and
//! renders as `{"error", "code", "request_id"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use zib_proto::api::ErrorBody;

use crate::request_id;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    // --- client errors ---
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("request body is not valid JSON: {0}")]
    BadJson(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("requested range not satisfiable")]
    RangeNotSatisfiable { len: u64 },
    // --- capacity ---
    #[error("{0}")]
    Unavailable(String),
    // --- internal ---
    #[error("{0}")]
    Upstream(String),
    #[error("internal error")]
    Internal(#[from] InternalError),
}

/// Failures that are ours, not the caller's. Logged in full, shown as a generic line.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    #[error(transparent)]
    Meta(#[from] zib_meta::MetaError),
    #[error("stored key does not unwrap: {0}")]
    KeyWrap(#[from] zib_crypto::KeyWrapError),
    #[error("{0}")]
    Other(String),
}

impl From<zib_meta::MetaError> for ApiError {
    fn from(e: zib_meta::MetaError) -> Self {
        ApiError::Internal(InternalError::Meta(e))
    }
}

impl ApiError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field,
            reason: reason.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidField { .. } | ApiError::BadJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::BadJson(_) => "invalid_json",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Upstream(_) => "upstream_failed",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(inner) = &self {
            tracing::error!(error = %inner, "internal error");
        }
        let body = ErrorBody {
            error: self.to_string(),
            code: self.code().to_string(),
            request_id: request_id::current(),
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::RangeNotSatisfiable { len } = self {
            if let Ok(v) = format!("bytes */{len}").parse() {
                response
                    .headers_mut()
                    .insert(axum::http::header::CONTENT_RANGE, v);
            }
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
