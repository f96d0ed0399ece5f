//! What the server's durability workers ask of a node: proof that a blob's bytes
//! are still here (challenges), and the list of everything stored (for orphan
//! collection). Both need the cluster token.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::Json;
use zib_proto::error_codes as codes;
use zib_proto::node_rpc::{BlobInventory, ChallengeRequest, ChallengeResponse, InventoryEntry};

use crate::error::NodeApiError;
use crate::shards::{cluster_blob, require_cluster_token};
use crate::state::NodeState;

/// Read size while hashing a challenged range: memory stays flat whatever the range.
const HASH_CHUNK: usize = 256 * 1024;

/// `POST /v1/shards/{blob_id}/challenge`: the keyed BLAKE3 of one byte range, read
/// from disk now. A node that kept only a digest of the whole blob cannot answer.
pub async fn challenge(
    State(state): State<Arc<NodeState>>,
    UrlPath(blob): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ChallengeResponse>, NodeApiError> {
    let blob = cluster_blob(&state, &headers, &blob)?;
    let request: ChallengeRequest = serde_json::from_slice(&body).map_err(|e| {
        NodeApiError::bad_request(
            codes::INVALID_REQUEST,
            format!("the challenge must be {{\"nonce\", \"offset\", \"len\"}} as JSON: {e}"),
        )
    })?;
    let nonce = parse_nonce(&request.nonce)?;
    let path = state.store.blob_path(blob);
    let (offset, len) = (request.offset, request.len);
    let answer = tokio::task::spawn_blocking(move || hash_range(&path, &nonce, offset, len))
        .await
        .map_err(|e| NodeApiError::internal("the hashing task failed", e))?;
    match answer {
        Ok(hash) => Ok(Json(ChallengeResponse {
            blake3: hash.to_hex().to_string(),
        })),
        Err(RangeError::Missing) => Err(NodeApiError::not_found(format!(
            "blob {blob} is not stored on this node"
        ))),
        Err(RangeError::Outside { blob_len }) => Err(NodeApiError::range_not_satisfiable(
            format!("bytes {offset}..{offset}+{len} lie outside the blob's {blob_len} bytes"),
            blob_len,
        )),
        Err(RangeError::Io(e)) => Err(NodeApiError::internal(
            "could not read the challenged range",
            e,
        )),
    }
}

/// `GET /v1/blobs`: every stored blob with its size and last write time.
pub async fn inventory(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
) -> Result<Json<BlobInventory>, NodeApiError> {
    require_cluster_token(&state, &headers)?;
    let stored = state
        .store
        .inventory()
        .await
        .map_err(|e| NodeApiError::internal("could not list the stored blobs", e))?;
    Ok(Json(BlobInventory {
        blobs: stored
            .into_iter()
            .map(|b| InventoryEntry {
                blob_id: b.blob,
                size: b.size,
                modified_at_ms: b.modified_at_ms,
            })
            .collect(),
    }))
}

fn parse_nonce(raw: &str) -> Result<[u8; 32], NodeApiError> {
    let invalid = || {
        NodeApiError::bad_request(
            codes::INVALID_NONCE,
            "the nonce must be 32 bytes written as 64 hex characters",
        )
    };
    let bytes = hex::decode(raw.trim()).map_err(|_| invalid())?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| invalid())
}

enum RangeError {
    Missing,
    Outside { blob_len: u64 },
    Io(std::io::Error),
}

fn hash_range(
    path: &std::path::Path,
    nonce: &[u8; 32],
    offset: u64,
    len: u64,
) -> Result<blake3::Hash, RangeError> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(RangeError::Missing),
        Err(e) => return Err(RangeError::Io(e)),
    };
    let blob_len = file.metadata().map_err(RangeError::Io)?.len();
    let end = offset
        .checked_add(len)
        .ok_or(RangeError::Outside { blob_len })?;
    if end > blob_len {
        return Err(RangeError::Outside { blob_len });
    }
    file.seek(SeekFrom::Start(offset)).map_err(RangeError::Io)?;
    let mut hasher = blake3::Hasher::new_keyed(nonce);
    let mut buffer = vec![0u8; HASH_CHUNK.min(usize::try_from(len).unwrap_or(HASH_CHUNK))];
    let mut left = len;
    while left > 0 {
        let want = buffer
            .len()
            .min(usize::try_from(left).unwrap_or(buffer.len()));
        let read = file.read(&mut buffer[..want]).map_err(RangeError::Io)?;
        if read == 0 {
            // The blob shrank under us: it is being deleted; treat as gone.
            return Err(RangeError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the blob ended before the challenged range did",
            )));
        }
        hasher.update(&buffer[..read]);
        left -= read as u64;
    }
    Ok(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn nonces_must_be_32_hex_bytes() {
        assert!(parse_nonce(&"ab".repeat(32)).is_ok());
        assert!(parse_nonce(&"ab".repeat(31)).is_err());
        assert!(parse_nonce(&"zz".repeat(32)).is_err());
        assert!(parse_nonce("").is_err());
        let err = parse_nonce("xyz").err().map(|e| e.status);
        assert_eq!(err, Some(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn ranges_hash_in_chunks_like_in_one_piece() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let bytes: Vec<u8> = (0..(HASH_CHUNK * 2 + 1000)).map(|i| i as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let nonce = [7u8; 32];
        for (offset, len) in [
            (0, bytes.len()),
            (5, HASH_CHUNK + 3),
            (100, 0),
            (bytes.len(), 0),
        ] {
            let hash = hash_range(&path, &nonce, offset as u64, len as u64)
                .ok()
                .unwrap();
            assert_eq!(
                hash,
                blake3::keyed_hash(&nonce, &bytes[offset..offset + len])
            );
        }
        let outside = hash_range(&path, &nonce, bytes.len() as u64 - 1, 2);
        assert!(matches!(outside, Err(RangeError::Outside { .. })));
        let overflow = hash_range(&path, &nonce, u64::MAX, 2);
        assert!(matches!(overflow, Err(RangeError::Outside { .. })));
        let missing = hash_range(&dir.path().join("nope"), &nonce, 0, 1);
        assert!(matches!(missing, Err(RangeError::Missing)));
    }
}
