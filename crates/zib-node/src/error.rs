//! Errors: [`NodeError`] for starting a node, [`NodeApiError`] for what a request answers.
//! Every HTTP error is one `NodeApiError`, so no handler picks a status or a body by hand.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use zib_proto::api::ErrorBody;
use zib_proto::error_codes as codes;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("node identity file {path} is unreadable: {reason}")]
    NodeIdFile { path: String, reason: String },
    #[error("cannot read the listener's local address: {0}")]
    Listener(#[source] std::io::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("the server at {server_url} refused this node's registration: {reason}")]
    RegistrationRefused { server_url: String, reason: String },
}

/// An HTTP error answer: a status, a stable machine code and a sentence for people.
#[derive(Debug, Clone)]
pub struct NodeApiError {
    pub status: StatusCode,
    /// Ours are static; a code passed on from the server is owned.
    pub code: Cow<'static, str>,
    pub message: String,
    /// Extra `Content-Range` for 416 answers (`bytes */len`).
    content_range: Option<String>,
    /// `Retry-After` seconds, for answers that a later retry can turn around.
    retry_after: Option<u32>,
}

impl NodeApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: Cow::Borrowed(code),
            message: message.into(),
            content_range: None,
            retry_after: None,
        }
    }

    /// An answer the server gave, passed on to our client unchanged.
    pub fn relayed(status: StatusCode, code: String, message: String) -> Self {
        Self {
            status,
            code: Cow::Owned(code),
            message,
            content_range: None,
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED, message)
    }

    /// A disk or other local failure: the client did nothing wrong.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(%err, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            format!("{context}: {err}"),
        )
    }

    /// `503` with `Retry-After`: nothing was kept, and the same request may succeed.
    pub fn retry_later(code: &'static str, message: impl Into<String>, secs: u32) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        e.retry_after = Some(secs);
        e
    }

    pub fn range_not_satisfiable(message: impl Into<String>, blob_len: u64) -> Self {
        let mut e = Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            codes::RANGE_NOT_SATISFIABLE,
            message,
        );
        e.content_range = Some(format!("bytes */{blob_len}"));
        e
    }
}

impl std::fmt::Display for NodeApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl IntoResponse for NodeApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            code: self.code.into_owned(),
            request_id: None,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(range) = self
            .content_range
            .and_then(|r| HeaderValue::from_str(&r).ok())
        {
            response.headers_mut().insert(header::CONTENT_RANGE, range);
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
