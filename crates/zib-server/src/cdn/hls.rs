//! `/stream/{file_id}/…`: the HLS surface of an encoded video (playlists, the
//! subtitles playlist, key, segment proxy). The logic is `domain::encoding::stream`;
//! this file maps paths to it and sets the headers players and caches rely on. CORS
//! (any origin) comes from the CDN router's layer.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use zib_proto::{BlobId, FileId};

use crate::domain::encoding::stream;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// Playlists and keys change when a re-encode goes live: never cached.
const NO_CACHE: &str = "no-cache";
/// A segment's bytes never change under its blob id.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

#[derive(serde::Deserialize)]
pub struct JobQuery {
    job: Option<String>,
}

fn parse_file_id(raw: &str) -> ApiResult<FileId> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("no stream for file {raw}")))
}

fn respond(content_type: &'static str, cache: &'static str, body: impl IntoResponse) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}

/// `GET /stream/{file_id}/master.m3u8`, `/subtitles.m3u8`, `/{rendition}.m3u8` and
/// `/key`.
pub async fn stream_item(
    State(state): State<AppState>,
    Path((raw_file, item)): Path<(String, String)>,
    Query(query): Query<JobQuery>,
) -> ApiResult<Response> {
    let file_id = parse_file_id(&raw_file)?;
    let job = query.job.as_deref();
    if item == "key" {
        let key = stream::key(&state, file_id, job).await?;
        return Ok(respond("application/octet-stream", NO_CACHE, key.to_vec()));
    }
    let Some(name) = item.strip_suffix(".m3u8") else {
        return Err(ApiError::NotFound(format!(
            "no {item:?} in the stream of file {file_id}"
        )));
    };
    let body = if name == "master" {
        stream::master_playlist(&state, file_id).await?
    } else if name == "subtitles" {
        stream::subtitles_playlist(&state, file_id).await?
    } else {
        stream::media_playlist(&state, file_id, name, job).await?
    };
    Ok(respond(PLAYLIST_TYPE, NO_CACHE, body))
}

/// `GET /stream/{file_id}/segments/{blob_id}.ts`: the proxy for segments no online
/// holder serves directly.
pub async fn proxied_segment(
    State(state): State<AppState>,
    Path((raw_file, raw_segment)): Path<(String, String)>,
) -> ApiResult<Response> {
    let file_id = parse_file_id(&raw_file)?;
    let blob_id: BlobId = raw_segment
        .strip_suffix(".ts")
        .and_then(|b| b.parse().ok())
        .ok_or_else(|| {
            ApiError::NotFound(format!("no segment {raw_segment:?} of file {file_id}"))
        })?;
    let bytes = stream::proxied_segment(&state, file_id, blob_id).await?;
    Ok(respond("video/mp2t", IMMUTABLE, bytes))
}
