//! A file's ciphertext is cut into segments of `k * shard_size` bytes (the last one
//! shorter). Each segment becomes `k` data shards — contiguous slices of it, the last
//! zero-padded to the segment's shard length — plus `m` parity shards. Reading with
//! every data shard present needs no decoding.

use std::ops::Range;

use zib_proto::ErasureParams;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ErasureError {
    #[error("invalid erasure parameters: {0}")]
    BadParams(String),
    #[error("segment {segment} has only {present} of the {needed} shards needed to rebuild it")]
    TooFewShards { segment: u32, present: usize, needed: usize },
    #[error("shard length mismatch: expected {expected}, got {got}")]
    ShardLength { expected: usize, got: usize },
}

/// Where bytes of a file's ciphertext live among segments and shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub params: ErasureParams,
    /// Total ciphertext bytes.
    pub total_len: u64,
}

/// A piece of one data shard: `range` is within the shard, `file_offset` is where
/// its first byte sits in the ciphertext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardSlice {
    pub segment: u32,
    pub index: u8,
    pub range: Range<u64>,
    pub file_offset: u64,
}

impl Layout {
    pub fn new(params: ErasureParams, total_len: u64) -> Self {
        Self { params, total_len }
    }
    pub fn segment_count(&self) -> u32 {
        todo!()
    }
    /// Ciphertext range of segment `s`.
    pub fn segment_range(&self, segment: u32) -> Range<u64> {
        todo!()
    }
    /// Length of every shard (data and parity) of segment `s`.
    pub fn shard_len(&self, segment: u32) -> u64 {
        todo!()
    }
    /// The data-shard pieces that hold ciphertext `range`, in file order.
    pub fn covering(&self, range: Range<u64>) -> Vec<ShardSlice> {
        todo!()
    }
}

/// Reed-Solomon over one parameter set.
pub struct Codec {
    _private: (),
}

impl Codec {
    pub fn new(params: ErasureParams) -> Result<Self, ErasureError> {
        todo!()
    }
    /// Cuts one segment into `k + m` shards of equal length (data, then parity).
    pub fn encode_segment(&self, segment: &[u8]) -> Result<Vec<Vec<u8>>, ErasureError> {
        todo!()
    }
    /// Fills parity shards in place; `shards[..k]` hold data, all of one length.
    pub fn encode_parity(&self, shards: &mut [Vec<u8>]) -> Result<(), ErasureError> {
        todo!()
    }
    /// Rebuilds missing shards in place (`None` = missing) from any `k` present.
    pub fn reconstruct(&self, segment: u32, shards: &mut [Option<Vec<u8>>]) -> Result<(), ErasureError> {
        todo!()
    }
    /// Rebuilds only the data shards and returns the segment's `segment_len` bytes.
    pub fn reconstruct_segment(
        &self,
        segment: u32,
        shards: &mut [Option<Vec<u8>>],
        segment_len: usize,
    ) -> Result<Vec<u8>, ErasureError> {
        todo!()
    }
}
