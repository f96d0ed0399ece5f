//! A job's source video, read from the server as envelope ciphertext (ranged) and
//! decrypted here, in memory, one window of chunks at a time. Nothing of it is
//! written to disk.
//!
//! A source is one envelope or, for a file uploaded in parts (S3 multipart), several
//! complete envelopes one after the other, each with its own header and chunk
//! indices from 0. Both are a list of parts here (one envelope: one part at offset
//! 0), so there is one code path.

use std::ops::Range;

use reqwest::header::{AUTHORIZATION, RANGE};
use reqwest::StatusCode;
use zib_crypto::envelope::{EnvelopeError, Header, Opener, VERSION};
use zib_crypto::DataKey;
use zib_proto::jobs::{JobSource, SourcePart, LEASE_HEADER};
use zib_proto::EnvelopeParams;

/// Plaintext read per request to the server: large enough that a sequential read by
/// ffmpeg costs few round trips, small enough to keep the node's memory flat.
const WINDOW: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("the claim's source description is unusable: {0}")]
    BadClaim(String),
    #[error("the server did not answer the source read: {0}")]
    Unreachable(String),
    /// The lease lapsed or the job was cancelled: stop.
    #[error("the server says this job's lease is gone")]
    LeaseGone,
    #[error("the server answered {status} to the source read: {message}")]
    Status { status: StatusCode, message: String },
    #[error("the source could not be decrypted: {0}")]
    Decrypt(String),
}

/// Reads plaintext ranges of one job's source.
pub struct Source {
    http: reqwest::Client,
    url: String,
    bearer: String,
    lease: String,
    /// In order, with increasing offsets; never empty.
    parts: Vec<Part>,
    /// Plaintext bytes per chunk, the same in every part.
    chunk_size: u32,
    /// Plaintext size.
    size: u64,
}

/// One envelope of the source and where it sits: chunk boundaries, final flags and
/// nonces are all relative to it, so a read must not straddle two of them.
struct Part {
    /// Offset of its first plaintext byte in the source.
    plain_start: u64,
    /// Offset of its header in the ciphertext the server serves.
    cipher_start: u64,
    /// Plaintext size.
    size: u64,
    opener: Opener,
}

impl Part {
    fn plain_end(&self) -> u64 {
        self.plain_start + self.size
    }
}

impl Source {
    /// The source of a claimed job (an encoding or a compute job) under its lease.
    pub fn new(
        http: reqwest::Client,
        src: &JobSource,
        lease: &str,
        cluster_token: &str,
    ) -> Result<Self, SourceError> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(src.data_key.trim(), &mut key)
            .map_err(|_| SourceError::BadClaim("the data key is not 64 hex characters".into()))?;
        let key = DataKey::from_bytes(key);
        let single;
        let described: &[SourcePart] = if src.parts.is_empty() {
            single = [SourcePart {
                size: src.size,
                ciphertext_size: src.ciphertext_size,
                nonce_prefix: src.nonce_prefix.clone(),
            }];
            &single
        } else {
            &src.parts
        };
        let mut parts = Vec::with_capacity(described.len());
        let (mut plain_at, mut cipher_at) = (0u64, 0u64);
        for (i, part) in described.iter().enumerate() {
            let header = Header::from_params(&EnvelopeParams {
                version: VERSION,
                chunk_size: src.chunk_size,
                nonce_prefix: part.nonce_prefix.clone(),
            })
            .map_err(|e| SourceError::BadClaim(format!("part {i}: {e}")))?;
            let expected = header.layout().ciphertext_len(part.size);
            if expected != part.ciphertext_size {
                return Err(SourceError::BadClaim(format!(
                    "part {i}: {} plaintext bytes make a {expected}-byte envelope, not {}",
                    part.size, part.ciphertext_size
                )));
            }
            parts.push(Part {
                plain_start: plain_at,
                cipher_start: cipher_at,
                size: part.size,
                opener: Opener::new(&key, header),
            });
            let overflow = || SourceError::BadClaim("the parts' sizes overflow".into());
            plain_at = plain_at.checked_add(part.size).ok_or_else(overflow)?;
            cipher_at = cipher_at
                .checked_add(part.ciphertext_size)
                .ok_or_else(overflow)?;
        }
        if plain_at != src.size || cipher_at != src.ciphertext_size {
            return Err(SourceError::BadClaim(format!(
                "the parts hold {plain_at} plaintext and {cipher_at} envelope bytes, \
                 but the source is {} and {}",
                src.size, src.ciphertext_size
            )));
        }
        Ok(Self {
            http,
            url: src.url.clone(),
            bearer: format!("Bearer {cluster_token}"),
            lease: lease.to_string(),
            parts,
            chunk_size: src.chunk_size,
            size: src.size,
        })
    }

    /// Plaintext size of the source.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The windows a read of `range` is made of, each ending on a chunk boundary of
    /// its part (so no chunk is fetched and authenticated twice by one sequential
    /// read) and never crossing into the next part (so each is one ranged GET).
    pub fn windows(&self, range: Range<u64>) -> Vec<Range<u64>> {
        let chunk = u64::from(self.chunk_size.max(1));
        let step = (WINDOW / chunk).max(1) * chunk;
        let mut out = Vec::new();
        for (part, piece) in self.pieces(range) {
            let mut at = piece.start;
            while at < piece.end {
                let end = (at / step)
                    .saturating_add(1)
                    .saturating_mul(step)
                    .min(piece.end);
                out.push(part.plain_start + at..part.plain_start + end);
                at = end;
            }
        }
        out
    }

    /// Decrypted bytes of `range` (non-empty, within the source): one ranged GET per
    /// part it touches, fetched and decrypted one after the other.
    pub async fn read(&self, range: Range<u64>) -> Result<Vec<u8>, SourceError> {
        if range.start >= range.end || range.end > self.size {
            // An empty source's one (empty) chunk: still fetched and authenticated.
            if let (0, Some(first)) = (self.size, self.parts.first()) {
                if range == (0..0) {
                    return self.read_part(first, 0..0).await;
                }
            }
            return Err(SourceError::Decrypt(
                EnvelopeError::BadRange {
                    start: range.start,
                    end: range.end,
                    len: self.size,
                }
                .to_string(),
            ));
        }
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        for (part, piece) in self.pieces(range) {
            out.extend_from_slice(&self.read_part(part, piece).await?);
        }
        Ok(out)
    }

    /// The parts `range` touches, each with the non-empty piece of it that falls
    /// there, relative to the part's plaintext.
    fn pieces(&self, range: Range<u64>) -> impl Iterator<Item = (&Part, Range<u64>)> {
        let first = self.parts.partition_point(|p| p.plain_end() <= range.start);
        self.parts[first..]
            .iter()
            .take_while(move |p| p.plain_start < range.end)
            .filter_map(move |p| {
                let start = range.start.max(p.plain_start) - p.plain_start;
                let end = range.end.min(p.plain_end()) - p.plain_start;
                (start < end).then_some((p, start..end))
            })
    }

    /// Decrypted bytes of `range` of one part's plaintext, from one ranged GET.
    async fn read_part(&self, part: &Part, range: Range<u64>) -> Result<Vec<u8>, SourceError> {
        let layout = part.opener.header().layout();
        let chunks = layout
            .chunks_covering(range.clone(), part.size)
            .map_err(|e| SourceError::Decrypt(e.to_string()))?;
        let sealed = layout.sealed_range(chunks, part.size);
        let first = part.cipher_start + sealed.start;
        let want = sealed.end - sealed.start;
        let response = self
            .http
            .get(&self.url)
            .header(AUTHORIZATION, &self.bearer)
            .header(LEASE_HEADER, &self.lease)
            .header(RANGE, format!("bytes={first}-{}", first + want - 1))
            .send()
            .await
            .map_err(|e| SourceError::Unreachable(e.without_url().to_string()))?;
        let status = response.status();
        if status == StatusCode::GONE {
            return Err(SourceError::LeaseGone);
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(SourceError::Status {
                status,
                message: body.chars().take(300).collect(),
            });
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| SourceError::Unreachable(e.without_url().to_string()))?;
        // A server that ignores Range sends the whole ciphertext: take our part of it.
        let covering: &[u8] = if status == StatusCode::OK && body.len() as u64 > want {
            let start = first as usize;
            body.get(start..start + want as usize).ok_or_else(|| {
                SourceError::Decrypt(format!("the ciphertext is only {} bytes", body.len()))
            })?
        } else {
            &body
        };
        part.opener
            .open_range(range, part.size, covering)
            .map_err(|e| SourceError::Decrypt(e.to_string()))
    }
}
