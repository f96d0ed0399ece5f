//! Envelope v1: a 16-byte header followed by independently sealed AES-256-GCM
//! chunks. See `docs/envelope.md` for the byte layout.
//!
//! ```text
//! header  = "ZENV" | version u8 (1) | nonce_prefix [7] | chunk_size u32 BE
//! chunk i = AES-256-GCM(key, nonce = nonce_prefix | i u32 BE | final u8,
//!                       aad = header, plaintext chunk i) || tag[16]
//! ```

use std::ops::Range;

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, NONCE_LEN};
use zib_proto::EnvelopeParams;

use crate::keywrap::DataKey;

pub const MAGIC: [u8; 4] = *b"ZENV";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: u64 = 16;
pub const TAG_LEN: u64 = 16;
pub const NONCE_PREFIX_LEN: usize = 7;
/// Plaintext bytes per chunk unless the server says otherwise.
pub const DEFAULT_CHUNK_SIZE: u32 = 256 * 1024;
/// Largest chunk a reader must accept: bounds the memory one chunk can make a
/// reader hold before it can authenticate anything.
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// The chunk index is a u32 inside the nonce, so an envelope has at most 2^32 chunks.
pub const MAX_CHUNKS: u64 = 1 << 32;

const FINAL_FLAG: u8 = 0x01;
const NOT_FINAL_FLAG: u8 = 0x00;

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("envelope header is malformed: {0}")]
    BadHeader(&'static str),
    #[error("chunk {index} failed authentication (wrong key, tampered, truncated or reordered)")]
    Authentication { index: u64 },
    #[error("ciphertext length {0} is not a valid envelope length for this chunk size")]
    BadLength(u64),
    #[error("range {start}..{end} is outside the plaintext of {len} bytes")]
    BadRange { start: u64, end: u64, len: u64 },
    /// A caller asked to seal or open something no valid envelope contains.
    #[error("chunk {index} cannot be part of an envelope v1: {reason}")]
    BadChunk { index: u64, reason: &'static str },
    /// A well-formed header that is not the one the server issued for this upload.
    #[error("envelope header {field} is {got}, but this upload was issued {expected}")]
    NotIssued {
        field: &'static str,
        got: String,
        expected: String,
    },
}

/// The envelope header: chunk size and the per-upload nonce prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub chunk_size: u32,
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

impl Header {
    pub fn new_random(chunk_size: u32) -> Self {
        use rand::RngCore as _;
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce_prefix);
        Self {
            chunk_size,
            nonce_prefix,
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut out = [0u8; HEADER_LEN as usize];
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5..12].copy_from_slice(&self.nonce_prefix);
        out[12..16].copy_from_slice(&self.chunk_size.to_be_bytes());
        out
    }

    /// Reads the first 16 bytes of `bytes` (the whole envelope may be passed).
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let Some(raw) = bytes.get(..HEADER_LEN as usize) else {
            return Err(EnvelopeError::BadHeader("shorter than 16 bytes"));
        };
        if raw[0..4] != MAGIC {
            return Err(EnvelopeError::BadHeader("magic is not \"ZENV\""));
        }
        if raw[4] != VERSION {
            return Err(EnvelopeError::BadHeader("unsupported version"));
        }
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        nonce_prefix.copy_from_slice(&raw[5..12]);
        let chunk_size = u32::from_be_bytes([raw[12], raw[13], raw[14], raw[15]]);
        let header = Self {
            chunk_size,
            nonce_prefix,
        };
        header.validate()?;
        Ok(header)
    }

    /// What a node checks of the first bytes an uploader sends: a header readers
    /// accept ([`Header::decode`]) that is exactly `issued`, the header the server
    /// chose at initiate. Catches a non-envelope body (random bytes, a plaintext
    /// upload) and a client that sealed with its own prefix or chunk size, before
    /// anything is stored. It cannot tell whether the chunks were sealed under the
    /// file's key: only a reader holding the key can.
    pub fn check_issued(bytes: &[u8], issued: &Header) -> Result<Self, EnvelopeError> {
        let got = Self::decode(bytes)?;
        if got.chunk_size != issued.chunk_size {
            return Err(EnvelopeError::NotIssued {
                field: "chunk size",
                got: got.chunk_size.to_string(),
                expected: issued.chunk_size.to_string(),
            });
        }
        if got.nonce_prefix != issued.nonce_prefix {
            return Err(EnvelopeError::NotIssued {
                field: "nonce prefix",
                got: hex::encode(got.nonce_prefix),
                expected: hex::encode(issued.nonce_prefix),
            });
        }
        Ok(got)
    }

    /// Whether a reader would accept this header; check chunk sizes that arrive from
    /// elsewhere (a registration, a config) before sealing with them.
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        if self.chunk_size == 0 {
            return Err(EnvelopeError::BadHeader("chunk size is 0"));
        }
        if self.chunk_size > MAX_CHUNK_SIZE {
            return Err(EnvelopeError::BadHeader("chunk size is over 16 MiB"));
        }
        Ok(())
    }

    /// The header the server described in a registration.
    pub fn from_params(params: &EnvelopeParams) -> Result<Self, EnvelopeError> {
        if params.version != VERSION {
            return Err(EnvelopeError::BadHeader("unsupported version"));
        }
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        hex::decode_to_slice(&params.nonce_prefix, &mut nonce_prefix)
            .map_err(|_| EnvelopeError::BadHeader("nonce prefix is not 14 hex characters"))?;
        let header = Self {
            chunk_size: params.chunk_size,
            nonce_prefix,
        };
        header.validate()?;
        Ok(header)
    }

    pub fn to_params(&self) -> EnvelopeParams {
        EnvelopeParams {
            version: VERSION,
            chunk_size: self.chunk_size,
            nonce_prefix: hex::encode(self.nonce_prefix),
        }
    }

    pub fn layout(&self) -> Layout {
        Layout {
            chunk_size: self.chunk_size,
        }
    }

    fn nonce(&self, index: u32, is_final: bool) -> Nonce {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..NONCE_PREFIX_LEN].copy_from_slice(&self.nonce_prefix);
        nonce[NONCE_PREFIX_LEN..NONCE_LEN - 1].copy_from_slice(&index.to_be_bytes());
        nonce[NONCE_LEN - 1] = if is_final { FINAL_FLAG } else { NOT_FINAL_FLAG };
        Nonce::assume_unique_for_key(nonce)
    }
}

/// Pure offset arithmetic of an envelope: where chunk `i` lives, how long things are.
///
/// The arithmetic saturates instead of overflowing, and a chunk size of 0 (which no
/// decoded header has) is treated as 1 by the infallible methods, so nothing here
/// can panic on hostile numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub chunk_size: u32,
}

impl Layout {
    fn size(&self) -> u64 {
        u64::from(self.chunk_size.max(1))
    }

    /// Sealed bytes of a full chunk.
    fn stride(&self) -> u64 {
        self.size() + TAG_LEN
    }

    /// Number of chunks for a plaintext (an empty plaintext has one empty chunk).
    pub fn chunk_count(&self, plaintext_len: u64) -> u64 {
        plaintext_len.div_ceil(self.size()).max(1)
    }

    pub fn ciphertext_len(&self, plaintext_len: u64) -> u64 {
        let tags = self.chunk_count(plaintext_len).saturating_mul(TAG_LEN);
        HEADER_LEN
            .saturating_add(plaintext_len)
            .saturating_add(tags)
    }

    /// Inverse of [`Layout::ciphertext_len`]; refuses lengths no envelope can have
    /// (a torn tag, an empty chunk after a full one, more than 2^32 chunks).
    pub fn plaintext_len(&self, ciphertext_len: u64) -> Result<u64, EnvelopeError> {
        if self.chunk_size == 0 {
            return Err(EnvelopeError::BadHeader("chunk size is 0"));
        }
        let bad = EnvelopeError::BadLength(ciphertext_len);
        let body = ciphertext_len.checked_sub(HEADER_LEN).ok_or(bad.clone())?;
        let full_chunks = body / self.stride();
        let tail = body % self.stride();
        let (chunks, plaintext) = match tail {
            0 if full_chunks == 0 => return Err(bad),
            0 => (full_chunks, full_chunks * self.size()),
            // Only an empty plaintext ends with an empty chunk.
            t if t == TAG_LEN && full_chunks > 0 => return Err(bad),
            t if t < TAG_LEN => return Err(bad),
            t => (full_chunks + 1, full_chunks * self.size() + (t - TAG_LEN)),
        };
        if chunks > MAX_CHUNKS {
            return Err(bad);
        }
        Ok(plaintext)
    }

    /// Offset of chunk `i`'s sealed bytes within the envelope.
    pub fn chunk_offset(&self, index: u64) -> u64 {
        HEADER_LEN.saturating_add(index.saturating_mul(self.stride()))
    }

    /// The first chunk whose sealed bytes start at or after envelope offset `offset`
    /// (where a piece of ciphertext cut at an arbitrary offset can start decrypting).
    pub fn first_chunk_at_or_after(&self, offset: u64) -> u64 {
        offset.saturating_sub(HEADER_LEN).div_ceil(self.stride())
    }

    /// Sealed length of chunk `index` in an envelope of `plaintext_len` bytes
    /// (0 for an index past the last chunk).
    pub fn sealed_chunk_len(&self, index: u64, plaintext_len: u64) -> u64 {
        if index >= self.chunk_count(plaintext_len) {
            return 0;
        }
        let range = self.chunk_plaintext_range(index, plaintext_len);
        range.end - range.start + TAG_LEN
    }

    /// Plaintext bytes that chunk `index` holds (empty past the end).
    pub fn chunk_plaintext_range(&self, index: u64, plaintext_len: u64) -> Range<u64> {
        let start = index.saturating_mul(self.size()).min(plaintext_len);
        let end = start.saturating_add(self.size()).min(plaintext_len);
        start..end
    }

    /// Whether chunk `index` is the one sealed with the final flag.
    pub fn is_final(&self, index: u64, plaintext_len: u64) -> bool {
        index + 1 == self.chunk_count(plaintext_len)
    }

    /// Envelope bytes holding the sealed chunks `chunks` (what to fetch for a range).
    pub fn sealed_range(&self, chunks: Range<u64>, plaintext_len: u64) -> Range<u64> {
        let count = self.chunk_count(plaintext_len);
        let first = chunks.start.min(count);
        let last = chunks.end.min(count);
        if first >= last {
            let at = self.chunk_offset(first);
            return at..at;
        }
        let end = self
            .chunk_offset(last - 1)
            .saturating_add(self.sealed_chunk_len(last - 1, plaintext_len));
        self.chunk_offset(first)..end
    }

    /// Chunks whose plaintext intersects `range` (non-empty, within `plaintext_len`).
    /// The whole of an empty plaintext is its one empty chunk, so reading an empty
    /// file still authenticates something (and is not refused as an empty range).
    pub fn chunks_covering(
        &self,
        range: Range<u64>,
        plaintext_len: u64,
    ) -> Result<Range<u64>, EnvelopeError> {
        if self.chunk_size == 0 {
            return Err(EnvelopeError::BadHeader("chunk size is 0"));
        }
        if plaintext_len == 0 && range == (0..0) {
            return Ok(0..1);
        }
        if range.start >= range.end || range.end > plaintext_len {
            return Err(EnvelopeError::BadRange {
                start: range.start,
                end: range.end,
                len: plaintext_len,
            });
        }
        Ok(range.start / self.size()..(range.end - 1) / self.size() + 1)
    }
}

/// Checks that `index` fits the nonce and returns it as the nonce counter.
fn nonce_index(index: u64) -> Result<u32, EnvelopeError> {
    u32::try_from(index).map_err(|_| EnvelopeError::BadChunk {
        index,
        reason: "index does not fit the 32-bit nonce counter",
    })
}

/// What sealing and opening one envelope's chunks both need: the AEAD key and the
/// header, whose encoded bytes are every chunk's associated data (built in one
/// place, so the two sides cannot disagree on them).
#[derive(Clone)]
struct ChunkKey {
    key: LessSafeKey,
    header: Header,
    aad: [u8; HEADER_LEN as usize],
}

impl ChunkKey {
    fn new(key: &DataKey, header: Header) -> Self {
        Self {
            key: key.aead_key(),
            header,
            aad: header.encode(),
        }
    }
}

/// Seals chunks of one envelope. Cheap to clone per worker.
#[derive(Clone)]
pub struct Sealer(ChunkKey);

impl Sealer {
    pub fn new(key: &DataKey, header: Header) -> Self {
        Self(ChunkKey::new(key, header))
    }

    pub fn header(&self) -> Header {
        self.0.header
    }

    /// Encrypts `chunk` (at most `chunk_size` bytes) in place and appends the tag.
    ///
    /// # Panics
    /// If the chunk cannot be part of a valid envelope (see [`Sealer::try_seal_chunk`]):
    /// the chunking is the caller's own, so that is a bug, not bad input.
    pub fn seal_chunk(&self, index: u64, is_final: bool, chunk: &mut Vec<u8>) {
        if let Err(err) = self.try_seal_chunk(index, is_final, chunk) {
            panic!("envelope sealing misuse: {err}");
        }
    }

    /// Like [`Sealer::seal_chunk`] but refuses, instead of panicking on, a chunk no
    /// reader would accept: an index past 2^32 - 1, more than `chunk_size` bytes, a
    /// short non-final chunk, or an empty final chunk other than chunk 0.
    pub fn try_seal_chunk(
        &self,
        index: u64,
        is_final: bool,
        chunk: &mut Vec<u8>,
    ) -> Result<(), EnvelopeError> {
        let tag = self.seal_slice(index, is_final, chunk)?;
        chunk.extend_from_slice(tag.as_ref());
        Ok(())
    }

    fn seal_slice(
        &self,
        index: u64,
        is_final: bool,
        chunk: &mut [u8],
    ) -> Result<Tag, EnvelopeError> {
        self.0.header.validate()?;
        let counter = nonce_index(index)?;
        check_chunk_len(self.0.header.chunk_size, index, is_final, chunk.len())?;
        self.0
            .key
            .seal_in_place_separate_tag(
                self.0.header.nonce(counter, is_final),
                Aad::from(&self.0.aad),
                chunk,
            )
            // Unreachable: ring only refuses inputs over GCM's ~64 GiB, chunks are <= 16 MiB.
            .map_err(|_| EnvelopeError::BadChunk {
                index,
                reason: "AES-GCM refused the chunk",
            })
    }
}

fn check_chunk_len(
    chunk_size: u32,
    index: u64,
    is_final: bool,
    len: usize,
) -> Result<(), EnvelopeError> {
    let reason = if len as u64 > u64::from(chunk_size) {
        "longer than the chunk size"
    } else if !is_final && len as u64 != u64::from(chunk_size) {
        "a non-final chunk must be exactly the chunk size"
    } else if is_final && len == 0 && index != 0 {
        "only an empty plaintext ends with an empty chunk"
    } else {
        return Ok(());
    };
    Err(EnvelopeError::BadChunk { index, reason })
}

/// Opens chunks of one envelope.
#[derive(Clone)]
pub struct Opener(ChunkKey);

impl Opener {
    pub fn new(key: &DataKey, header: Header) -> Self {
        Self(ChunkKey::new(key, header))
    }

    pub fn header(&self) -> Header {
        self.0.header
    }

    /// Decrypts sealed chunk bytes in place; returns the plaintext slice.
    ///
    /// `is_final` must come from the expected plaintext length, never from the data:
    /// that is what makes truncation fail here.
    pub fn open_chunk<'a>(
        &self,
        index: u64,
        is_final: bool,
        sealed: &'a mut [u8],
    ) -> Result<&'a mut [u8], EnvelopeError> {
        let counter = nonce_index(index)?;
        let auth_failed = EnvelopeError::Authentication { index };
        let plain_len = sealed
            .len()
            .checked_sub(TAG_LEN as usize)
            .ok_or(auth_failed.clone())?;
        if check_chunk_len(self.0.header.chunk_size, index, is_final, plain_len).is_err() {
            return Err(auth_failed);
        }
        self.0
            .key
            .open_in_place(
                self.0.header.nonce(counter, is_final),
                Aad::from(&self.0.aad),
                sealed,
            )
            .map_err(|_| auth_failed)
    }

    /// Opens one chunk whose ciphertext sits in `buf` with its tag kept elsewhere, so
    /// whole-buffer decryption writes plaintext straight into its output.
    fn open_detached(
        &self,
        index: u64,
        is_final: bool,
        tag: &[u8],
        buf: &mut [u8],
    ) -> Result<(), EnvelopeError> {
        let auth_failed = EnvelopeError::Authentication { index };
        let counter = nonce_index(index)?;
        let tag = Tag::try_from(tag).map_err(|_| auth_failed.clone())?;
        self.0
            .key
            .open_in_place_separate_tag(
                self.0.header.nonce(counter, is_final),
                Aad::from(&self.0.aad),
                tag,
                buf,
                0..,
            )
            .map(|_| ())
            .map_err(|_| auth_failed)
    }

    /// Decrypts `range` of the plaintext from the sealed bytes of exactly the chunks
    /// [`Layout::chunks_covering`] names for it, laid out as
    /// [`Layout::sealed_range`] describes: what a range request needs, nothing more.
    pub fn open_range(
        &self,
        range: Range<u64>,
        plaintext_len: u64,
        covering_sealed: &[u8],
    ) -> Result<Vec<u8>, EnvelopeError> {
        self.0.header.validate()?;
        let layout = self.0.header.layout();
        let chunks = layout.chunks_covering(range.clone(), plaintext_len)?;
        if layout.chunk_count(plaintext_len) > MAX_CHUNKS {
            return Err(EnvelopeError::BadRange {
                start: range.start,
                end: range.end,
                len: plaintext_len,
            });
        }
        let sealed_span = layout.sealed_range(chunks.clone(), plaintext_len);
        let expected = sealed_span.end - sealed_span.start;
        if covering_sealed.len() as u64 != expected {
            return Err(EnvelopeError::BadLength(covering_sealed.len() as u64));
        }
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        let mut scratch = Vec::with_capacity(layout.stride() as usize);
        let mut at = 0usize;
        for index in chunks {
            let len = layout.sealed_chunk_len(index, plaintext_len) as usize;
            scratch.clear();
            scratch.extend_from_slice(&covering_sealed[at..at + len]);
            at += len;
            let chunk_plain = layout.chunk_plaintext_range(index, plaintext_len);
            let plain =
                self.open_chunk(index, layout.is_final(index, plaintext_len), &mut scratch)?;
            let from = range.start.max(chunk_plain.start) - chunk_plain.start;
            let to = range.end.min(chunk_plain.end) - chunk_plain.start;
            out.extend_from_slice(&plain[from as usize..to as usize]);
        }
        Ok(out)
    }
}

/// Whole-buffer convenience: header + every chunk.
///
/// # Panics
/// On a header that [`Header::validate`] refuses or a plaintext needing more than
/// 2^32 chunks; use [`try_encrypt`] when the chunk size comes from outside.
pub fn encrypt(key: &DataKey, header: Header, plaintext: &[u8]) -> Vec<u8> {
    match try_encrypt(key, header, plaintext) {
        Ok(envelope) => envelope,
        Err(err) => panic!("envelope encryption misuse: {err}"),
    }
}

/// [`encrypt`] that reports an invalid header or an oversized plaintext.
pub fn try_encrypt(
    key: &DataKey,
    header: Header,
    plaintext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::new();
    encrypt_into(key, header, plaintext, &mut out)?;
    Ok(out)
}

/// [`try_encrypt`] into a caller's buffer (cleared first), so a loop over many
/// files or parts reuses one allocation instead of faulting in fresh pages each time.
pub fn encrypt_into(
    key: &DataKey,
    header: Header,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    out.clear();
    header.validate()?;
    let layout = header.layout();
    let total = plaintext.len() as u64;
    let count = layout.chunk_count(total);
    if count > MAX_CHUNKS {
        return Err(EnvelopeError::BadChunk {
            index: count - 1,
            reason: "index does not fit the 32-bit nonce counter",
        });
    }
    let sealer = Sealer::new(key, header);
    out.reserve(layout.ciphertext_len(total) as usize);
    out.extend_from_slice(&header.encode());
    let mut pieces = plaintext.chunks(header.chunk_size as usize);
    for index in 0..count {
        let piece = pieces.next().unwrap_or(&[]);
        let start = out.len();
        // Copy then seal one chunk at a time: the chunk is still in cache when sealed.
        out.extend_from_slice(piece);
        let tag = sealer.seal_slice(index, index + 1 == count, &mut out[start..])?;
        out.extend_from_slice(tag.as_ref());
    }
    Ok(())
}

/// Whole-buffer convenience: checks the header, every chunk and the length.
pub fn decrypt(key: &DataKey, envelope: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::new();
    decrypt_into(key, envelope, &mut out)?;
    Ok(out)
}

/// [`decrypt`] into a caller's buffer (cleared first). On error `out` holds no
/// plaintext: it is cleared, since bytes of unauthenticated chunks must never be used.
pub fn decrypt_into(
    key: &DataKey,
    envelope: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    out.clear();
    let result = decrypt_chunks(key, envelope, out);
    if result.is_err() {
        out.clear();
    }
    result
}

fn decrypt_chunks(key: &DataKey, envelope: &[u8], out: &mut Vec<u8>) -> Result<(), EnvelopeError> {
    let header = Header::decode(envelope)?;
    let layout = header.layout();
    let total = layout.plaintext_len(envelope.len() as u64)?;
    let opener = Opener::new(key, header);
    let count = layout.chunk_count(total);
    out.reserve(total as usize);
    for index in 0..count {
        let offset = layout.chunk_offset(index) as usize;
        let sealed_len = layout.sealed_chunk_len(index, total) as usize;
        let plain_len = sealed_len - TAG_LEN as usize;
        let sealed = &envelope[offset..offset + sealed_len];
        let start = out.len();
        out.extend_from_slice(&sealed[..plain_len]);
        opener.open_detached(
            index,
            index + 1 == count,
            &sealed[plain_len..],
            &mut out[start..],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DataKey {
        DataKey::from_bytes([0x42; 32])
    }

    fn header(chunk_size: u32) -> Header {
        Header {
            chunk_size,
            nonce_prefix: [1, 2, 3, 4, 5, 6, 7],
        }
    }

    #[test]
    fn header_layout_is_fixed() {
        let bytes = header(0x0004_0000).encode();
        assert_eq!(
            bytes,
            [b'Z', b'E', b'N', b'V', 1, 1, 2, 3, 4, 5, 6, 7, 0x00, 0x04, 0x00, 0x00]
        );
        assert_eq!(Header::decode(&bytes).unwrap(), header(0x0004_0000));
    }

    #[test]
    fn header_decode_refuses_bad_fields() {
        let good = header(64).encode();
        let mut magic = good;
        magic[0] = b'X';
        let mut version = good;
        version[4] = 2;
        assert!(matches!(
            Header::decode(&magic),
            Err(EnvelopeError::BadHeader(_))
        ));
        assert!(matches!(
            Header::decode(&version),
            Err(EnvelopeError::BadHeader(_))
        ));
        assert!(matches!(
            Header::decode(&good[..15]),
            Err(EnvelopeError::BadHeader(_))
        ));
        assert!(Header::decode(&header(0).encode()).is_err());
        assert!(Header::decode(&header(MAX_CHUNK_SIZE).encode()).is_ok());
        assert!(Header::decode(&header(MAX_CHUNK_SIZE + 1).encode()).is_err());
    }

    #[test]
    fn check_issued_wants_the_issued_header_exactly() {
        let issued = header(64);
        let env = encrypt(&key(), issued, b"hello");
        assert_eq!(Header::check_issued(&env, &issued), Ok(issued));
        assert_eq!(Header::check_issued(&env[..16], &issued), Ok(issued));

        let other_prefix = Header {
            nonce_prefix: [9; 7],
            ..issued
        };
        let err = Header::check_issued(&other_prefix.encode(), &issued).unwrap_err();
        assert!(
            matches!(&err, EnvelopeError::NotIssued { field: "nonce prefix", got, expected }
                if got == "09090909090909" && expected == "01020304050607"),
            "{err:?}"
        );
        assert!(matches!(
            Header::check_issued(&header(65).encode(), &issued),
            Err(EnvelopeError::NotIssued {
                field: "chunk size",
                ..
            })
        ));
        // Random bytes and a plaintext are not envelopes at all.
        assert!(matches!(
            Header::check_issued(b"%PDF-1.7 and some more text", &issued),
            Err(EnvelopeError::BadHeader(_))
        ));
        assert!(matches!(
            Header::check_issued(&env[..10], &issued),
            Err(EnvelopeError::BadHeader(_))
        ));
        let mut v2 = issued.encode();
        v2[4] = 2;
        assert_eq!(
            Header::check_issued(&v2, &issued),
            Err(EnvelopeError::BadHeader("unsupported version"))
        );
    }

    #[test]
    fn first_chunk_at_or_after_finds_chunk_starts() {
        let layout = header(64).layout();
        for offset in 0..400 {
            let first = layout.first_chunk_at_or_after(offset);
            assert!(layout.chunk_offset(first) >= offset, "offset {offset}");
            if first > 0 {
                assert!(layout.chunk_offset(first - 1) < offset, "offset {offset}");
            }
        }
    }

    #[test]
    fn params_round_trip() {
        let h = Header::new_random(DEFAULT_CHUNK_SIZE);
        let params = h.to_params();
        assert_eq!(params.nonce_prefix.len(), 14);
        assert_eq!(Header::from_params(&params).unwrap(), h);
        let mut bad = params.clone();
        bad.nonce_prefix.push('0');
        assert!(Header::from_params(&bad).is_err());
        let mut bad = params;
        bad.version = 2;
        assert!(Header::from_params(&bad).is_err());
    }

    #[test]
    fn nonce_is_prefix_index_flag() {
        let h = header(16);
        assert_eq!(
            h.nonce(0x0102_0304, true).as_ref(),
            &[1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, 1]
        );
        assert_eq!(
            h.nonce(5, false).as_ref(),
            &[1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 5, 0]
        );
    }

    #[test]
    fn layout_arithmetic() {
        let l = Layout { chunk_size: 16 };
        assert_eq!(l.chunk_count(0), 1);
        assert_eq!(l.chunk_count(1), 1);
        assert_eq!(l.chunk_count(16), 1);
        assert_eq!(l.chunk_count(17), 2);
        assert_eq!(l.chunk_count(48), 3);
        assert_eq!(l.ciphertext_len(0), 32);
        assert_eq!(l.ciphertext_len(16), 48);
        assert_eq!(l.ciphertext_len(17), 16 + 17 + 32);
        assert_eq!(l.chunk_offset(0), 16);
        assert_eq!(l.chunk_offset(3), 16 + 3 * 32);
        assert_eq!(l.sealed_chunk_len(0, 0), 16);
        assert_eq!(l.sealed_chunk_len(1, 17), 17);
        assert_eq!(l.sealed_chunk_len(2, 17), 0);
        for n in 0..200 {
            assert_eq!(l.plaintext_len(l.ciphertext_len(n)), Ok(n), "n = {n}");
        }
        // Lengths no envelope has.
        for bad in [0, 15, 16, 17, 31, 48 + 16, 48 + 5] {
            assert_eq!(
                l.plaintext_len(bad),
                Err(EnvelopeError::BadLength(bad)),
                "len {bad}"
            );
        }
        // Hostile numbers neither panic nor wrap.
        assert_eq!(l.ciphertext_len(u64::MAX), u64::MAX);
        assert_eq!(l.chunk_offset(u64::MAX), u64::MAX);
        assert!(l.plaintext_len(u64::MAX).is_err());
        assert!(Layout { chunk_size: 0 }.plaintext_len(64).is_err());
        assert_eq!(Layout { chunk_size: 0 }.chunk_count(5), 5);
    }

    #[test]
    fn plaintext_len_refuses_more_than_2_pow_32_chunks() {
        let l = Layout { chunk_size: 1 };
        assert_eq!(
            l.plaintext_len(l.ciphertext_len(MAX_CHUNKS)),
            Ok(MAX_CHUNKS)
        );
        assert!(l.plaintext_len(l.ciphertext_len(MAX_CHUNKS + 1)).is_err());
    }

    #[test]
    fn chunks_covering_ranges() {
        let l = Layout { chunk_size: 10 };
        assert_eq!(l.chunks_covering(0..1, 35), Ok(0..1));
        assert_eq!(l.chunks_covering(9..11, 35), Ok(0..2));
        assert_eq!(l.chunks_covering(10..20, 35), Ok(1..2));
        assert_eq!(l.chunks_covering(0..35, 35), Ok(0..4));
        assert_eq!(l.chunks_covering(34..35, 35), Ok(3..4));
        #[allow(clippy::reversed_empty_ranges)]
        for bad in [5..5, 6..5, 0..36, 35..36] {
            assert!(matches!(
                l.chunks_covering(bad, 35),
                Err(EnvelopeError::BadRange { .. })
            ));
        }
        assert!(l.chunks_covering(0..1, 0).is_err());
        assert_eq!(
            l.sealed_range(1..3, 35),
            l.chunk_offset(1)..l.chunk_offset(3)
        );
        assert_eq!(
            l.sealed_range(3..4, 35),
            l.chunk_offset(3)..l.ciphertext_len(35)
        );
    }

    #[test]
    fn round_trip_edges() {
        for n in [0usize, 1, 15, 16, 17, 48, 50] {
            let pt: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let env = encrypt(&key(), header(16), &pt);
            assert_eq!(
                env.len() as u64,
                header(16).layout().ciphertext_len(n as u64)
            );
            assert_eq!(decrypt(&key(), &env).unwrap(), pt, "n = {n}");
        }
    }

    #[test]
    fn decrypt_refuses_tampering() {
        let pt = vec![7u8; 40];
        let env = encrypt(&key(), header(16), &pt);
        for i in 0..env.len() {
            let mut bad = env.clone();
            bad[i] ^= 0x80;
            assert!(decrypt(&key(), &bad).is_err(), "flip at {i}");
        }
        // Truncated at a chunk boundary: the last present chunk was not sealed final.
        let cut = header(16).layout().chunk_offset(2) as usize;
        assert_eq!(
            decrypt(&key(), &env[..cut]),
            Err(EnvelopeError::Authentication { index: 1 })
        );
        let mut longer = env.clone();
        longer.push(0);
        assert!(decrypt(&key(), &longer).is_err());
        assert!(decrypt(&DataKey::from_bytes([0x43; 32]), &env).is_err());
    }

    #[test]
    fn into_variants_reuse_and_clear_buffers() {
        let pt: Vec<u8> = (0..100u8).collect();
        let mut env = vec![9; 3];
        encrypt_into(&key(), header(16), &pt, &mut env).unwrap();
        assert_eq!(env, encrypt(&key(), header(16), &pt));
        let mut out = vec![1, 2, 3];
        decrypt_into(&key(), &env, &mut out).unwrap();
        assert_eq!(out, pt);
        let last = env.len() - 1;
        env[last] ^= 1;
        assert!(decrypt_into(&key(), &env, &mut out).is_err());
        assert!(out.is_empty(), "no plaintext left behind after a failure");
    }

    #[test]
    fn sealer_refuses_chunks_no_reader_accepts() {
        let sealer = Sealer::new(&key(), header(16));
        let mut v = vec![0; 17];
        assert!(sealer.try_seal_chunk(0, true, &mut v).is_err());
        let mut v = vec![0; 15];
        assert!(sealer.try_seal_chunk(0, false, &mut v).is_err());
        let mut v = vec![];
        assert!(sealer.try_seal_chunk(1, true, &mut v).is_err());
        let mut v = vec![0; 16];
        assert!(sealer.try_seal_chunk(MAX_CHUNKS, false, &mut v).is_err());
        assert_eq!(v.len(), 16, "a refused chunk is left untouched");
        assert!(sealer
            .try_seal_chunk(u64::from(u32::MAX), false, &mut v)
            .is_ok());
        assert!(try_encrypt(&key(), header(0), b"x").is_err());
    }

    #[test]
    fn opener_matches_sealer_per_chunk() {
        let h = header(16);
        let pt: Vec<u8> = (0..40u8).collect();
        let env = encrypt(&key(), h, &pt);
        let layout = h.layout();
        let sealer = Sealer::new(&key(), h);
        let mut chunk = pt[16..32].to_vec();
        sealer.seal_chunk(1, false, &mut chunk);
        let at = layout.chunk_offset(1) as usize;
        assert_eq!(&env[at..at + 32], &chunk[..]);
        let opener = Opener::new(&key(), h);
        assert_eq!(
            opener.open_chunk(1, false, &mut chunk).unwrap(),
            &pt[16..32]
        );
        let mut again = env[at..at + 32].to_vec();
        assert!(opener.open_chunk(1, true, &mut again).is_err());
        assert!(opener.open_chunk(2, false, &mut again).is_err());
        assert!(opener.open_chunk(0, false, &mut [0u8; 5]).is_err());
    }

    #[test]
    fn open_range_returns_the_slice() {
        let h = header(10);
        let pt: Vec<u8> = (0..35u8).collect();
        let env = encrypt(&key(), h, &pt);
        let layout = h.layout();
        let opener = Opener::new(&key(), h);
        for start in 0..35u64 {
            for end in start + 1..=35 {
                let chunks = layout.chunks_covering(start..end, 35).unwrap();
                let span = layout.sealed_range(chunks, 35);
                let got = opener
                    .open_range(start..end, 35, &env[span.start as usize..span.end as usize])
                    .unwrap();
                assert_eq!(got, &pt[start as usize..end as usize]);
            }
        }
        assert!(opener.open_range(0..5, 35, &env[16..20]).is_err());
    }
}
