//! The CDN: `GET`/`HEAD /objects/{file_id}`. Reassembles shards, decrypts only the
//! chunks covering the requested bytes, and streams; memory is bounded by a couple
//! of segments whatever the file size.

mod range;
mod segments;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::{Bytes, BytesMut};
use futures::{stream, Stream, StreamExt};
use zib_crypto::envelope::{Header, Layout as EnvelopeLayout, Opener};
use zib_erasure::{Codec, Layout};
use zib_meta::FileRow;
use zib_proto::FileId;

use crate::error::{ApiError, ApiResult, InternalError};
use crate::state::{now_ms, AppState};
use range::RangeRequest;
use segments::{SegmentError, SegmentSource, ShardLocation};

/// Segments fetched ahead of the one being decrypted.
const SEGMENTS_IN_FLIGHT: usize = 4;

pub fn router() -> Router<AppState> {
    Router::new().route("/objects/{file_id}", get(get_object).head(get_object))
}

impl From<SegmentError> for ApiError {
    fn from(e: SegmentError) -> Self {
        ApiError::Unavailable(format!("file is temporarily unreadable: {e}"))
    }
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

/// Streams plaintext bytes `window` of `file`. The first segment is read before
/// this returns, so a file that cannot be read at all answers a clean error; a
/// later failure aborts the body (the client sees a short read, never wrong bytes).
async fn plaintext_stream(
    state: &AppState,
    file: &FileRow,
    window: std::ops::Range<u64>,
) -> ApiResult<impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static> {
    let dek = state
        .config
        .master_key
        .unwrap(&file.wrapped_dek, file.file_id.0.as_bytes())
        .map_err(InternalError::from)?;
    let nonce_prefix: [u8; 7] = file.nonce_prefix.as_slice().try_into().map_err(|_| {
        InternalError::Other(format!(
            "file {} has a malformed nonce prefix",
            file.file_id
        ))
    })?;
    let header = Header {
        chunk_size: file.chunk_size,
        nonce_prefix,
    };
    let envelope = header.layout();
    let opener = Opener::new(&dek, header);

    let chunks = envelope
        .chunks_covering(window.clone(), file.size)
        .map_err(|e| InternalError::Other(e.to_string()))?;
    let last_chunk = envelope.chunk_count(file.size) - 1;
    let cipher_start = envelope.chunk_offset(chunks.start);
    let cipher_end = envelope.chunk_offset(chunks.end - 1)
        + envelope.sealed_chunk_len(chunks.end - 1, file.size);

    let source = Arc::new(segment_source(state, file).await?);
    let erasure = source.layout;
    let seg_size = erasure.params.segment_size();
    let first_seg = (cipher_start / seg_size) as u32;
    let last_seg = ((cipher_end - 1) / seg_size) as u32;
    if let Some(e) = source.unavailable_segment(first_seg..last_seg + 1) {
        return Err(e.into());
    }
    let windows: Vec<(u32, std::ops::Range<u64>)> = (first_seg..=last_seg)
        .map(|s| {
            let r = erasure.segment_range(s);
            (s, r.start.max(cipher_start)..r.end.min(cipher_end))
        })
        .collect();

    let mut windows = windows.into_iter();
    let Some((s0, w0)) = windows.next() else {
        return Err(InternalError::Other("empty read plan".into()).into());
    };
    let first = source.clone().read(s0, w0).await?;
    let rest = stream::iter(windows)
        .map(move |(s, w)| source.clone().read(s, w))
        .buffered(SEGMENTS_IN_FLIGHT);
    let pieces = stream::once(async move { Ok(first) }).chain(rest);

    let mut decryptor = ChunkDecryptor {
        opener,
        envelope,
        file_size: file.size,
        last_chunk,
        next_chunk: chunks.start,
        next_offset: cipher_start,
        pending: BytesMut::new(),
        window,
    };
    Ok(pieces.flat_map(move |piece| {
        let out: Vec<Result<Bytes, std::io::Error>> = match piece {
            Ok((offset, pieces)) => {
                let mut out = Vec::new();
                let mut at = offset;
                for piece in pieces {
                    out.extend(decryptor.push(at, &piece));
                    at += piece.len() as u64;
                }
                out
            }
            Err(e) => {
                tracing::error!(error = %e, "CDN read aborted mid-stream");
                vec![Err(std::io::Error::other(e.to_string()))]
            }
        };
        stream::iter(out)
    }))
}

/// Turns ciphertext pieces (in file order) into plaintext of the requested window.
struct ChunkDecryptor {
    opener: Opener,
    envelope: EnvelopeLayout,
    file_size: u64,
    last_chunk: u64,
    next_chunk: u64,
    /// File offset of `pending[0]`.
    next_offset: u64,
    pending: BytesMut,
    window: std::ops::Range<u64>,
}

impl ChunkDecryptor {
    fn push(&mut self, offset: u64, bytes: &[u8]) -> Vec<Result<Bytes, std::io::Error>> {
        // Pieces can start before the bytes we still need (shard granularity).
        let have_until = self.next_offset + self.pending.len() as u64;
        if offset + (bytes.len() as u64) <= have_until {
            return vec![];
        }
        let skip = have_until.saturating_sub(offset) as usize;
        if offset > have_until {
            return vec![Err(std::io::Error::other(
                "ciphertext pieces are not contiguous",
            ))];
        }
        self.pending.extend_from_slice(&bytes[skip..]);

        let mut out = Vec::new();
        loop {
            if self.next_chunk > self.last_chunk {
                break;
            }
            let sealed_len =
                self.envelope
                    .sealed_chunk_len(self.next_chunk, self.file_size) as usize;
            if self.pending.len() < sealed_len {
                break;
            }
            let mut sealed = self.pending.split_to(sealed_len);
            let index = self.next_chunk;
            let plain_len = match self.opener.open_chunk(
                index,
                index == self.last_chunk,
                &mut sealed,
            ) {
                Ok(p) => p.len(),
                Err(e) => {
                    tracing::error!(chunk = index, error = %e, "chunk failed authentication; aborting read");
                    out.push(Err(std::io::Error::other(e.to_string())));
                    self.next_chunk = self.last_chunk + 1;
                    break;
                }
            };
            sealed.truncate(plain_len);
            let chunk_start = index * self.envelope.chunk_size as u64;
            let from = self.window.start.max(chunk_start) - chunk_start;
            let to = self.window.end.min(chunk_start + plain_len as u64) - chunk_start;
            if from < to {
                out.push(Ok(sealed.freeze().slice(from as usize..to as usize)));
            }
            self.next_chunk += 1;
            self.next_offset += sealed_len as u64;
            if chunk_start + plain_len as u64 >= self.window.end {
                self.next_chunk = self.last_chunk + 1;
            }
        }
        out
    }
}

async fn segment_source(state: &AppState, file: &FileRow) -> ApiResult<SegmentSource> {
    let params = file.erasure();
    let layout = Layout::new(params, file.ciphertext_size);
    let codec = Codec::new(params).map_err(|e| InternalError::Other(e.to_string()))?;
    let now = now_ms();
    let nodes: HashMap<_, _> = state
        .store
        .list_nodes()
        .await?
        .into_iter()
        .map(|n| {
            let online = state.is_online(n.last_heartbeat_at, now);
            (n.node_id, (n.public_url, online))
        })
        .collect();
    let width = params.total_shards();
    let mut shards = vec![vec![None; width]; layout.segment_count() as usize];
    for row in state.store.shards_for_file(file.file_id).await? {
        let (Some(slot_row), Ok(hash)) = (
            shards.get_mut(row.segment as usize),
            <[u8; 32]>::try_from(row.blake3.as_slice()),
        ) else {
            continue;
        };
        let node = nodes.get(&row.node_id);
        if let Some(slot) = slot_row.get_mut(row.index as usize) {
            *slot = Some(ShardLocation {
                node_url: node.map(|(url, _)| url.clone()),
                online: node.is_some_and(|(_, online)| *online),
                node_id: row.node_id,
                blob_id: row.blob_id,
                blake3: hash,
            });
        }
    }
    Ok(SegmentSource {
        layout,
        codec,
        shards,
        http: state.http.clone(),
        store: state.store.clone(),
        cluster_token: state.config.cluster_token.clone(),
        timeout: state.config.shard_fetch_timeout,
    })
}
