//! Envelope v1: a 16-byte header followed by independently sealed AES-256-GCM
//! chunks. See `docs/envelope.md` for the byte layout.

use std::ops::Range;

use crate::keywrap::DataKey;

pub const VERSION: u8 = 1;
pub const HEADER_LEN: u64 = 16;
pub const TAG_LEN: u64 = 16;
pub const NONCE_PREFIX_LEN: usize = 7;
/// Plaintext bytes per chunk unless the server says otherwise.
pub const DEFAULT_CHUNK_SIZE: u32 = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("envelope header is malformed: {0}")]
    BadHeader(&'static str),
    #[error("chunk {index} failed authentication (wrong key, tampered, truncated or reordered)")]
    Authentication { index: u64 },
    #[error("ciphertext length {0} is not a valid envelope length for this chunk size")]
    BadLength(u64),
    #[error("range {start}..{end} is outside the plaintext of {len} bytes")]
    BadRange { start: u64, end: u64, len: u64 },
}

/// The envelope header: chunk size and the per-upload nonce prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub chunk_size: u32,
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

impl Header {
    pub fn new_random(chunk_size: u32) -> Self {
        todo!()
    }
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        todo!()
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        todo!()
    }
    pub fn layout(&self) -> Layout {
        Layout {
            chunk_size: self.chunk_size,
        }
    }
}

/// Pure offset arithmetic of an envelope: where chunk `i` lives, how long things are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub chunk_size: u32,
}

impl Layout {
    /// Number of chunks for a plaintext (an empty plaintext has one empty chunk).
    pub fn chunk_count(&self, plaintext_len: u64) -> u64 {
        todo!()
    }
    pub fn ciphertext_len(&self, plaintext_len: u64) -> u64 {
        todo!()
    }
    pub fn plaintext_len(&self, ciphertext_len: u64) -> Result<u64, EnvelopeError> {
        todo!()
    }
    /// Offset of chunk `i`'s sealed bytes within the envelope.
    pub fn chunk_offset(&self, index: u64) -> u64 {
        todo!()
    }
    /// Sealed length of chunk `index` in an envelope of `plaintext_len` bytes.
    pub fn sealed_chunk_len(&self, index: u64, plaintext_len: u64) -> u64 {
        todo!()
    }
    /// Chunks whose plaintext intersects `range` (non-empty, within `plaintext_len`).
    pub fn chunks_covering(&self, range: Range<u64>, plaintext_len: u64) -> Result<Range<u64>, EnvelopeError> {
        todo!()
    }
}

/// Seals chunks of one envelope. Cheap to clone per worker.
#[derive(Clone)]
pub struct Sealer {
    _private: (),
}

impl Sealer {
    pub fn new(key: &DataKey, header: Header) -> Self {
        todo!()
    }
    /// Encrypts `chunk` (at most `chunk_size` bytes) in place and appends the tag.
    pub fn seal_chunk(&self, index: u64, is_final: bool, chunk: &mut Vec<u8>) {
        todo!()
    }
}

/// Opens chunks of one envelope.
#[derive(Clone)]
pub struct Opener {
    _private: (),
}

impl Opener {
    pub fn new(key: &DataKey, header: Header) -> Self {
        todo!()
    }
    /// Decrypts sealed chunk bytes in place; returns the plaintext slice.
    pub fn open_chunk<'a>(&self, index: u64, is_final: bool, sealed: &'a mut [u8]) -> Result<&'a mut [u8], EnvelopeError> {
        todo!()
    }
}

/// Whole-buffer convenience: header + every chunk.
pub fn encrypt(key: &DataKey, header: Header, plaintext: &[u8]) -> Vec<u8> {
    todo!()
}

/// Whole-buffer convenience: checks the header, every chunk and the length.
pub fn decrypt(key: &DataKey, envelope: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    todo!()
}
