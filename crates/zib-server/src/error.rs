//! One error type for every handler: it knows its HTTP status and stable code, and
//! renders as `{"error", "code", "request_id"}`.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use zib_proto::api::ErrorBody;
use zib_proto::error_codes as codes;

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
    /// A bucket still holding objects or uploads cannot be deleted.
    #[error("{0}")]
    BucketNotEmpty(String),
    /// An encoding node's lease lapsed or its job was cancelled (node RPC: stop).
    #[error("{0}")]
    Gone(String),
    #[error("requested range not satisfiable")]
    RangeNotSatisfiable { len: u64 },
    // --- capacity ---
    #[error("{0}")]
    Unavailable(String),
    /// Not enough nodes online for a placement without doubles (node RPC: retry).
    #[error("{0}")]
    TooFewNodes(String),
    // --- internal ---
    #[error("{0}")]
    Upstream(String),
    /// The file's stored bytes are whole but do not decrypt: retrying will not help.
    #[error("{0}")]
    Unreadable(String),
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
            ApiError::Conflict(_) | ApiError::BucketNotEmpty(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Unavailable(_) | ApiError::TooFewNodes(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream(_) | ApiError::Unreadable(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidField { .. } => codes::INVALID_FIELD,
            ApiError::BadJson(_) => codes::INVALID_JSON,
            ApiError::Unauthorized(_) => codes::UNAUTHORIZED,
            ApiError::Forbidden(_) => codes::FORBIDDEN,
            ApiError::NotFound(_) => codes::NOT_FOUND,
            ApiError::Conflict(_) => codes::CONFLICT,
            ApiError::BucketNotEmpty(_) => codes::BUCKET_NOT_EMPTY,
            ApiError::Gone(_) => codes::LEASE_GONE,
            ApiError::RangeNotSatisfiable { .. } => codes::RANGE_NOT_SATISFIABLE,
            ApiError::Unavailable(_) => codes::UNAVAILABLE,
            ApiError::TooFewNodes(_) => codes::TOO_FEW_NODES,
            ApiError::Upstream(_) => codes::UPSTREAM_FAILED,
            ApiError::Unreadable(_) => codes::UNREADABLE,
            ApiError::Internal(_) => codes::INTERNAL,
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

/// Longest plain-text rejection worth keeping as the error sentence.
const MAX_REJECTION_TEXT: usize = 4096;

/// Axum's own rejections (a query string that does not parse, a method the route
/// lacks, a body over the limit) are plain text or empty; this gives every error the
/// API's JSON shape with the request id. The S3 surface keeps its XML errors.
pub async fn json_rejections(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let s3 = path == "/s3" || path.starts_with("/s3/");
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if s3 || is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REJECTION_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let error = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase()
    } else {
        text
    };
    let code = match status {
        StatusCode::NOT_FOUND => codes::NOT_FOUND,
        StatusCode::METHOD_NOT_ALLOWED => codes::METHOD_NOT_ALLOWED,
        StatusCode::PAYLOAD_TOO_LARGE => codes::PAYLOAD_TOO_LARGE,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => codes::UNSUPPORTED_MEDIA_TYPE,
        s if s.is_server_error() => codes::INTERNAL,
        _ => codes::INVALID_REQUEST,
    };
    let body = ErrorBody {
        error,
        code: code.to_string(),
        request_id: request_id::current(),
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(bytes))
}
