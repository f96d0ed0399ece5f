//! Request and answer bodies of the node endpoints the server's durability workers
//! call (Bearer cluster token). The server does not depend on this crate: it keeps a
//! mirror of these shapes, so change them only together with it.

use serde::{Deserialize, Serialize};
use zib_proto::BlobId;

/// `POST /v1/shards/{blob_id}/challenge`. A fresh random nonce per challenge keys the
/// hash, so only a node that still holds the bytes of the range can answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeRequest {
    /// 32 bytes as 64 hex characters.
    pub nonce: String,
    /// First byte of the range.
    pub offset: u64,
    /// Bytes in the range; `offset + len` must not pass the end of the blob.
    pub len: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// Hex of `blake3::keyed_hash(nonce, bytes[offset..offset + len])`.
    pub blake3: String,
}

/// `GET /v1/blobs`: every blob stored on the node (uploads still being received
/// are not stored yet and are never listed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInventory {
    pub blobs: Vec<InventoryEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    pub blob_id: BlobId,
    pub size: u64,
    /// When the blob's bytes were last written (Unix milliseconds): lets an orphan
    /// collector spare blobs younger than its grace period, such as shards whose
    /// distribution the server has not recorded yet.
    pub modified_at_ms: i64,
}

/// What a challenge must be answered with, for verifiers and tests.
pub fn challenge_answer(nonce: &[u8; 32], range_bytes: &[u8]) -> String {
    blake3::keyed_hash(nonce, range_bytes).to_hex().to_string()
}
