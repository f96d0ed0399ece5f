//! Parameters that the uploader, the nodes and the CDN must agree on byte for byte.

use serde::{Deserialize, Serialize};

/// Envelope v1 parameters, issued by the server at initiate and recorded per file.
/// See `docs/envelope.md`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeParams {
    /// Always 1 for this format.
    pub version: u8,
    /// Plaintext bytes per chunk (every chunk but the last is exactly this long).
    pub chunk_size: u32,
    /// 7 random bytes, hex: the first part of every chunk nonce.
    pub nonce_prefix: String,
}

/// Reed-Solomon layout of a file's ciphertext: segments of `data_shards * shard_size`
/// bytes, each coded into `data_shards + parity_shards` shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureParams {
    pub data_shards: u8,
    pub parity_shards: u8,
    /// Bytes per shard of a full segment. The last segment's shards are shorter.
    pub shard_size: u32,
}

impl ErasureParams {
    pub fn total_shards(&self) -> usize {
        self.data_shards as usize + self.parity_shards as usize
    }

    pub fn segment_size(&self) -> u64 {
        self.data_shards as u64 * self.shard_size as u64
    }
}
