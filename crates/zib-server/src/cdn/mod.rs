//! The CDN: `GET`/`HEAD /objects/{file_id}` with ranges and ETags. The bytes come from
//! `domain::read`, which decrypts only the chunks covering the requested range and
//! streams; memory is bounded by a couple of segments whatever the file size.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use zib_proto::FileId;

use crate::domain::read::plaintext_stream;
use crate::domain::read::range::{self, RangeRequest};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/objects/{file_id}", get(get_object).head(get_object))
}

async fn get_object(
    State(state): State<AppState>,
    method: Method,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let not_found = || ApiError::NotFound(format!("object {raw_id} not found"));
    let file_id: FileId = raw_id.parse().map_err(|_| not_found())?;
    let file = state
        .store
        .file(file_id)
        .await?
        .filter(|f| f.phase.is_readable())
        .ok_or_else(not_found)?;

    let etag = format!("\"{}\"", file.file_id);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        set_header(r.headers_mut(), header::ETAG, &etag);
        return Ok(r);
    }

    let len = file.size;
    let requested = range::parse(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        len,
    );
    let (status, window) = match requested {
        RangeRequest::Full => (StatusCode::OK, 0..len),
        RangeRequest::Partial(r) => (StatusCode::PARTIAL_CONTENT, r),
        RangeRequest::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable { len }),
    };

    let mut response_headers = HeaderMap::new();
    set_header(
        &mut response_headers,
        header::CONTENT_TYPE,
        &file.content_type,
    );
    set_header(
        &mut response_headers,
        header::CONTENT_LENGTH,
        &(window.end - window.start).to_string(),
    );
    set_header(&mut response_headers, header::ETAG, &etag);
    set_header(&mut response_headers, header::ACCEPT_RANGES, "bytes");
    set_header(
        &mut response_headers,
        header::CACHE_CONTROL,
        "public, max-age=3600",
    );
    if status == StatusCode::PARTIAL_CONTENT {
        set_header(
            &mut response_headers,
            header::CONTENT_RANGE,
            &format!("bytes {}-{}/{}", window.start, window.end - 1, len),
        );
    }

    if method == Method::HEAD {
        return Ok((status, response_headers).into_response());
    }

    let body = plaintext_stream(&state, &file, window).await?;
    Ok((status, response_headers, Body::from_stream(body)).into_response())
}

fn set_header(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}
