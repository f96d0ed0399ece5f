//! `GET /v1/segments/{blob_id}`: encrypted HLS segments for players, public.
//!
//! A segment is AES-128 ciphertext whose key only the server hands out (per job, to
//! whoever may play the file), so reading one needs no token: players on any
//! origin fetch it straight from the node the playlist names. Only blobs stored as
//! segments are served here; shards stay behind the cluster token.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;

use crate::error::NodeApiError;
use crate::intake::parse_blob;
use crate::shards::serve_blob;
use crate::state::NodeState;

/// A segment's bytes never change under its blob id.
const SEGMENT_CACHE: &str = "public, max-age=31536000, immutable";

pub async fn get_segment(
    State(state): State<Arc<NodeState>>,
    UrlPath(blob): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, NodeApiError> {
    let blob = parse_blob(&blob)?;
    // Not a segment or not here: the same answer, so the route says nothing about
    // which shards this node keeps.
    if !state.store.is_segment(blob).await {
        return Err(NodeApiError::not_found(format!(
            "segment {blob} is not stored on this node"
        )));
    }
    let mut response = serve_blob(&state, blob, &headers, "video/mp2t").await?;
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(SEGMENT_CACHE),
    );
    Ok(response)
}
