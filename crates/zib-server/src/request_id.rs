//! A request id per request: generated (or taken from `x-request-id`), echoed in the
//! response header and error bodies, and on the one log line each request gets.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

tokio::task_local! {
    static REQUEST_ID: String;
}

pub const HEADER: &str = "x-request-id";

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

pub async fn layer(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("req_{}", uuid::Uuid::now_v7().simple()));
    let method = request.method().clone();
    // The path only: query strings may carry capabilities.
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).await;
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_millis() as u64;
    // Heartbeats arrive every second per node; they would drown everything else.
    if path == "/v1/node/heartbeat" && status < 400 {
        tracing::debug!(request_id = %id, %method, path = %path, status, latency_ms, "request");
    } else {
        tracing::info!(request_id = %id, %method, path = %path, status, latency_ms, "request");
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, v);
    }
    response
}
