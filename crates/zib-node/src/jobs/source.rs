//! A job's source video, read from the server as envelope ciphertext (ranged) and
//! decrypted here, in memory, one window of chunks at a time. Nothing of it is
//! written to disk.

use std::ops::Range;

use reqwest::header::{AUTHORIZATION, RANGE};
use reqwest::StatusCode;
use zib_crypto::envelope::{Header, Opener, VERSION};
use zib_crypto::DataKey;
use zib_proto::jobs::{JobSource, LEASE_HEADER};
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
    opener: Opener,
    /// Plaintext size.
    size: u64,
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
        let header = Header::from_params(&EnvelopeParams {
            version: VERSION,
            chunk_size: src.chunk_size,
            nonce_prefix: src.nonce_prefix.clone(),
        })
        .map_err(|e| SourceError::BadClaim(e.to_string()))?;
        let expected = header.layout().ciphertext_len(src.size);
        if expected != src.ciphertext_size {
            return Err(SourceError::BadClaim(format!(
                "{} plaintext bytes make a {expected}-byte envelope, not {}",
                src.size, src.ciphertext_size
            )));
        }
        Ok(Self {
            http,
            url: src.url.clone(),
            bearer: format!("Bearer {cluster_token}"),
            lease: lease.to_string(),
            opener: Opener::new(&DataKey::from_bytes(key), header),
            size: src.size,
        })
    }

    /// Plaintext size of the source.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The windows a read of `range` is made of, each ending on a chunk boundary
    /// (so no chunk is fetched and authenticated twice by one sequential read).
    pub fn windows(&self, range: Range<u64>) -> Vec<Range<u64>> {
        let chunk = u64::from(self.opener.header().chunk_size.max(1));
        let step = (WINDOW / chunk).max(1) * chunk;
        let mut out = Vec::new();
        let mut at = range.start;
        while at < range.end {
            let end = ((at / step + 1) * step).min(range.end);
            out.push(at..end);
            at = end;
        }
        out
    }

    /// Decrypted bytes of `range` (non-empty, within the source).
    pub async fn read(&self, range: Range<u64>) -> Result<Vec<u8>, SourceError> {
        let layout = self.opener.header().layout();
        let chunks = layout
            .chunks_covering(range.clone(), self.size)
            .map_err(|e| SourceError::Decrypt(e.to_string()))?;
        let sealed = layout.sealed_range(chunks, self.size);
        let response = self
            .http
            .get(&self.url)
            .header(AUTHORIZATION, &self.bearer)
            .header(LEASE_HEADER, &self.lease)
            .header(RANGE, format!("bytes={}-{}", sealed.start, sealed.end - 1))
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
        let want = (sealed.end - sealed.start) as usize;
        // A server that ignores Range sends the whole envelope: take our part of it.
        let covering: &[u8] = if status == StatusCode::OK && body.len() as u64 > want as u64 {
            let start = sealed.start as usize;
            body.get(start..start + want).ok_or_else(|| {
                SourceError::Decrypt(format!("the envelope is only {} bytes", body.len()))
            })?
        } else {
            &body
        };
        self.opener
            .open_range(range, self.size, covering)
            .map_err(|e| SourceError::Decrypt(e.to_string()))
    }
}
