//! Serving and removing stored blobs for the CDN, peers and the server
//! (Bearer cluster token). Reads stream from disk whatever the blob's size.

use std::io::SeekFrom;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use zib_proto::node_rpc::{DeleteStatus, ShardDeleted};
use zib_proto::BlobId;

use crate::error::NodeApiError;
use crate::intake::parse_blob;
use crate::state::NodeState;

const READ_CHUNK: usize = 256 * 1024;
/// Reads up to this size are served from one blocking read instead of a stream of
/// chunks: a shard (1 MiB by default) then costs one hop to the blocking pool, not
/// one per chunk, which is most of a CDN read's scheduling overhead.
const WHOLE_READ_MAX: u64 = 4 * 1024 * 1024;

/// `GET /v1/shards/{blob_id}` with an optional single `Range: bytes=a-b`.
pub async fn get_shard(
    State(state): State<Arc<NodeState>>,
    UrlPath(blob): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, NodeApiError> {
    let blob = cluster_blob(&state, &headers, &blob)?;
    serve_blob(&state, blob, &headers, "application/octet-stream").await
}

/// A stored blob (whole, or the one `Range` of `headers`) as `content_type`.
pub(crate) async fn serve_blob(
    state: &NodeState,
    blob: BlobId,
    headers: &HeaderMap,
    content_type: &'static str,
) -> Result<Response, NodeApiError> {
    let path = state.store.blob_path(blob);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NodeApiError::not_found(format!(
                "blob {blob} is not stored on this node"
            )))
        }
        Err(e) => return Err(NodeApiError::internal("could not open the blob", e)),
    };
    let len = file
        .metadata()
        .await
        .map_err(|e| NodeApiError::internal("could not read the blob's size", e))?
        .len();

    let range = match headers.get(header::RANGE) {
        None => None,
        Some(value) => {
            let value = value.to_str().map_err(|_| {
                NodeApiError::range_not_satisfiable("the Range header is not text", len)
            })?;
            Some(
                parse_range(value, len)
                    .map_err(|msg| NodeApiError::range_not_satisfiable(msg, len))?,
            )
        }
    };

    let (status, start, count) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, len),
    };
    let body = if count <= WHOLE_READ_MAX {
        let mut file = file.into_std().await;
        let bytes = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            use std::io::{Read, Seek};
            file.seek(SeekFrom::Start(start))?;
            // Read into spare capacity: no zeroing pass over the buffer first.
            let mut buf = Vec::with_capacity(count as usize);
            file.take(count).read_to_end(&mut buf)?;
            if buf.len() as u64 != count {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "blob shorter than its size",
                ));
            }
            Ok(buf)
        })
        .await
        .map_err(|e| NodeApiError::internal("the blob read was interrupted", e))?
        .map_err(|e| NodeApiError::internal("could not read the blob", e))?;
        Body::from(bytes)
    } else {
        if start > 0 {
            file.seek(SeekFrom::Start(start))
                .await
                .map_err(|e| NodeApiError::internal("could not seek in the blob", e))?;
        }
        Body::from_stream(ReaderStream::with_capacity(file.take(count), READ_CHUNK))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        let end = start + count - 1;
        if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
            headers.insert(header::CONTENT_RANGE, value);
        }
    }
    Ok(response)
}

/// `DELETE /v1/shards/{blob_id}`: idempotent, a missing blob is already deleted.
pub async fn delete_shard(
    State(state): State<Arc<NodeState>>,
    UrlPath(blob): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, NodeApiError> {
    let blob = cluster_blob(&state, &headers, &blob)?;
    let deleted = state
        .store
        .delete(blob)
        .await
        .map_err(|e| NodeApiError::internal("could not delete the blob", e))?;
    Ok(Json(ShardDeleted {
        blob_id: blob,
        status: if deleted {
            DeleteStatus::Deleted
        } else {
            DeleteStatus::AlreadyDeleted
        },
    })
    .into_response())
}

/// The blob a cluster-token route names in its path: the caller is checked first,
/// so an unauthenticated request learns nothing from the id's parsing.
pub(crate) fn cluster_blob(
    state: &NodeState,
    headers: &HeaderMap,
    raw_blob: &str,
) -> Result<BlobId, NodeApiError> {
    require_cluster_token(state, headers)?;
    parse_blob(raw_blob)
}

pub(crate) fn require_cluster_token(
    state: &NodeState,
    headers: &HeaderMap,
) -> Result<(), NodeApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            NodeApiError::unauthorized("this endpoint needs the cluster token as a Bearer token")
        })?;
    let matches: bool = presented
        .trim()
        .as_bytes()
        .ct_eq(state.cluster_token.as_bytes())
        .into();
    if !matches {
        return Err(NodeApiError::unauthorized("the cluster token is not valid"));
    }
    Ok(())
}

/// One `bytes=` range over a blob of `len` bytes, as inclusive `(first, last)`.
pub(crate) fn parse_range(value: &str, len: u64) -> Result<(u64, u64), String> {
    let spec = value
        .trim()
        .strip_prefix("bytes=")
        .ok_or_else(|| format!("range {value:?} is not a bytes range"))?;
    if spec.contains(',') {
        return Err("only a single byte range is supported".to_string());
    }
    let (first, last) = spec
        .split_once('-')
        .ok_or_else(|| format!("range {value:?} is malformed"))?;
    let number = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("range {value:?} is malformed"))
    };
    let unsatisfiable = || format!("range {value:?} lies outside the blob's {len} bytes");
    let (start, end) = if first.trim().is_empty() {
        // Suffix: the last N bytes.
        let n = number(last)?;
        if n == 0 || len == 0 {
            return Err(unsatisfiable());
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let start = number(first)?;
        let end = if last.trim().is_empty() {
            u64::MAX
        } else {
            number(last)?
        };
        if end < start {
            return Err(format!("range {value:?} ends before it starts"));
        }
        if start >= len {
            return Err(unsatisfiable());
        }
        (start, end.min(len - 1))
    };
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_are_parsed_and_clamped() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok((0, 9)));
        assert_eq!(parse_range("bytes=90-200", 100), Ok((90, 99)));
        assert_eq!(parse_range("bytes=10-", 100), Ok((10, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Ok((90, 99)));
        assert_eq!(parse_range("bytes=-500", 100), Ok((0, 99)));
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert!(parse_range("bytes=100-", 100).is_err());
        assert!(parse_range("bytes=5-1", 100).is_err());
        assert!(parse_range("bytes=0-1,5-6", 100).is_err());
        assert!(parse_range("items=0-1", 100).is_err());
        assert!(parse_range("bytes=a-b", 100).is_err());
        assert!(parse_range("bytes=-0", 100).is_err());
        assert!(parse_range("bytes=0-0", 0).is_err());
    }
}
