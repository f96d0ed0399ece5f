//! The CDN: `GET`/`HEAD /objects/{file_id}` with ranges, ETags, conditional requests
//! and the headers stored with the object (`object_headers`). The bytes come from
//! `domain::read`, which decrypts only the chunks covering the requested range and
//! streams; memory is bounded by a couple of segments whatever the file size.

mod hls;
mod object_headers;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use zib_proto::FileId;

use crate::domain::conditional::{self, Precondition};
use crate::domain::derived;
use crate::domain::read::plaintext_stream;
use crate::domain::read::range::{self, RangeRequest};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use object_headers::set as set_header;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/objects/{file_id}", get(get_object).head(get_object))
        .route("/stream/{file_id}/{item}", get(hls::stream_item))
        .route(
            "/stream/{file_id}/segments/{segment}",
            get(hls::proxied_segment),
        )
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
    // An aspect variant's stream file has no bytes: say where it plays.
    if let Some(message) = derived::stream_only(&state, &file).await? {
        return Err(ApiError::NotFound(message));
    }

    let stored = state.store.object_headers(file_id).await?;
    let bare_etag = file.file_id.to_string();
    let etag = format!("\"{bare_etag}\"");
    let mut response_headers = HeaderMap::new();
    object_headers::validators(&mut response_headers, &file, &etag, &stored);
    let modified = object_headers::modified_ms(&file);
    // S3's ETag (the MD5) names the object too: a presigned S3 GET whose conditions
    // held is redirected here with the same headers.
    let md5 = match conditional::has_etag_condition(&headers) {
        true => state.store.plaintext_md5(file_id).await?,
        false => None,
    };
    let etags: Vec<&str> = std::iter::once(bare_etag.as_str())
        .chain(md5.as_deref())
        .collect();
    match conditional::evaluate(&headers, &etags, modified) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            return Ok((StatusCode::NOT_MODIFIED, response_headers).into_response())
        }
        Precondition::Failed => return Ok(object_headers::precondition_failed(&raw_id)),
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

    object_headers::representation(&mut response_headers, &stored);
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
    set_header(&mut response_headers, header::ACCEPT_RANGES, "bytes");
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
