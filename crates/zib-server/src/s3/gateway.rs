//! `PUT /s3/{bucket}/{key}`: the gateway encrypts on the tenant's behalf.
//!
//! The file is registered like `POST /v1/api/upload/initiate` (fresh data key, same
//! row, same capabilities; one upload URL whatever the size), then the request body
//! is sealed chunk by chunk and streamed to the originator, which erasure-codes it as
//! it arrives: nodes see only ciphertext, and memory holds about one chunk whatever
//! the object size. A small object is kept in the metadata store instead. The last
//! chunk is sealed only once the body has ended cleanly (and its payload checksum,
//! which s3s verifies at the end of the stream, has passed), so a bad or short body
//! can never complete an upload.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use md5::{Digest, Md5};
use s3s::dto::StreamingBlob;
use s3s::{s3_error, S3Error, S3Result};
use tokio::sync::Mutex;
use zib_crypto::envelope::Sealer;
use zib_crypto::{DataKey, Header};
use zib_meta::OverwriteMode;
use zib_proto::api::{Registration, UploadType};

use crate::domain::distribution;
use crate::domain::registration::{self, Draft, Registered, Sender};
use crate::state::AppState;

use super::checksums::{self, Hashing};
use super::conditional::{self, WriteCondition};
use super::errors::{api_to_s3, conflict, internal};
use super::object_headers::ObjectAttrs;

pub struct PutRequest {
    pub tenant_id: String,
    pub bucket: String,
    pub key: String,
    pub size: u64,
    pub content_type: String,
    /// From `Content-MD5`, checked before the last chunk leaves.
    pub expected_md5: Option<[u8; 16]>,
    /// `x-amz-checksum-*` to verify (and compute), checked like `Content-MD5`.
    pub checksums: checksums::Expected,
    pub body: StreamingBlob,
    /// Headers, metadata and tags stored with the file row once it is registered.
    pub attrs: ObjectAttrs,
    /// `If-None-Match: *` / `If-Match`, checked against the key's current object.
    pub condition: WriteCondition,
}

/// What a stored object is known by.
#[derive(Clone)]
pub struct Stored {
    /// The file that holds it (a new one, or the key's current one for the same bytes).
    pub file_id: zib_proto::FileId,
    /// Hex MD5 of the plaintext: the S3 ETag.
    pub md5_hex: String,
    /// Also kept in `files.checksums`.
    pub checksums: zib_meta::Checksums,
}

/// Stores the object; returns its ETag and checksums.
pub async fn put_object(state: &AppState, req: PutRequest) -> S3Result<Stored> {
    if req.size > state.config.max_file_size {
        return Err(s3_error!(
            EntityTooLarge,
            "{} bytes exceeds the maximum object size of {} bytes",
            req.size,
            state.config.max_file_size
        ));
    }
    let target = write_target(state, &req.tenant_id, &req.bucket, &req.key).await?;
    conditional::check_write(state, &req.condition, target.current.as_ref()).await?;
    let bucket = target.bucket.clone();
    let existing = target.guarded();
    if let Some(current) = existing {
        return same_content_or_conflict(state, current, req).await;
    }
    if state.config.keeps_inline(req.size) {
        return put_inline(state, bucket, req).await;
    }

    let Registered {
        registration,
        dek,
        header,
    } = registration::register(
        state,
        &req.tenant_id,
        req.bucket.clone(),
        req.key.clone(),
        req.size,
        req.content_type.clone(),
        Sender::Server,
    )
    .await
    .map_err(api_to_s3)?;
    let file_id = registration.file_id;
    let sealing = Arc::new(Mutex::new(
        Sealing::new(req.body, &dek, header, req.size, req.expected_md5)
            .with_checksums(&req.checksums),
    ));

    let sent = match store_attrs(state, file_id, &req.attrs, false).await {
        Ok(()) => send_envelope(state, &registration, &sealing).await,
        Err(e) => Err(e),
    };
    match sent {
        Ok(()) => {
            let (digest, sums) = {
                let mut sealing = sealing.lock().await;
                (sealing.digest.unwrap_or_default(), sealing.take_checksums())
            };
            let md5_hex = hex::encode(digest);
            state
                .store
                .set_s3_content(file_id, &md5_hex, &sums)
                .await
                .map_err(internal)?;
            tracing::info!(%file_id, size = req.size, "s3 put stored");
            Ok(Stored {
                file_id,
                md5_hex,
                checksums: sums,
            })
        }
        Err(err) => {
            let reason = format!("s3 gateway upload failed: {}", err.code().as_str());
            if let Err(e) = state.store.mark_failed(file_id, &reason).await {
                tracing::warn!(%file_id, error = %e, "could not mark the failed s3 upload");
            }
            Err(err)
        }
    }
}

/// What a write to a key looks at first, from one read of the store.
pub(super) struct WriteTarget {
    /// The bucket, if it exists.
    pub bucket: Option<zib_meta::Bucket>,
    /// The key's current, readable object (what write conditions are checked against).
    pub current: Option<zib_meta::FileRow>,
    supersede: bool,
}

impl WriteTarget {
    /// Of the key's current object, the one a write must not replace: none when the
    /// bucket's overwrite mode is `supersede`, where the new file simply becomes
    /// current when stored and the old one is cancelled ("superseded…",
    /// `file.failed`) and evicted, exactly as an SDK re-upload
    /// (`domain::distribution`).
    pub fn guarded(self) -> Option<zib_meta::FileRow> {
        self.current.filter(|_| !self.supersede)
    }
}

/// The bucket, its overwrite mode and the key's current object, in one read (a
/// small PUT's budget is a handful of statements).
pub(super) async fn write_target(
    state: &AppState,
    tenant_id: &str,
    bucket: &str,
    key: &str,
) -> S3Result<WriteTarget> {
    let found = state
        .store
        .write_target(tenant_id, bucket, key)
        .await
        .map_err(internal)?;
    let supersede = matches!(found.bucket, Some((_, OverwriteMode::Supersede)));
    Ok(WriteTarget {
        bucket: found.bucket.map(|(b, _)| b),
        current: found.current.filter(|f| f.phase.is_readable()),
        supersede,
    })
}

/// The key exists: the same bytes are an idempotent success, anything else is the
/// contract's 409 (direct S3-path uploads never supersede).
async fn same_content_or_conflict(
    state: &AppState,
    current: zib_meta::FileRow,
    mut req: PutRequest,
) -> S3Result<Stored> {
    let taken = || key_taken(&req.bucket, &req.key);
    if current.size != req.size {
        return Err(taken());
    }
    let Some(stored_md5) = state
        .store
        .plaintext_md5(current.file_id)
        .await
        .map_err(internal)?
    else {
        // Uploaded through the SDK: its content is unknown to the server.
        return Err(taken());
    };
    let mut md5 = Md5::new();
    let mut hashing = req.checksums.start();
    let mut seen = 0u64;
    while let Some(piece) = req.body.next().await {
        let piece = piece.map_err(body_error)?;
        seen += piece.len() as u64;
        md5.update(&piece);
        hashing.update(&piece);
    }
    if seen != req.size {
        return Err(s3_error!(
            IncompleteBody,
            "body does not match Content-Length"
        ));
    }
    let digest: [u8; 16] = md5.finalize().into();
    if req.expected_md5.is_some_and(|e| e != digest) {
        return Err(s3_error!(BadDigest));
    }
    let sums = hashing.finish()?;
    let stored_sums = state
        .store
        .object_checksums(current.file_id)
        .await
        .map_err(internal)?;
    if same_content(&stored_md5, &stored_sums, &hex::encode(digest), &sums) {
        // The object is the one asked for; so are its headers and tags.
        store_attrs(state, current.file_id, &req.attrs, true).await?;
        Ok(Stored {
            file_id: current.file_id,
            md5_hex: stored_md5,
            checksums: sums,
        })
    } else {
        Err(taken())
    }
}

/// Whether a stored object of the same size is the one being written: the same ETag,
/// or, when either is a multipart object (whose ETag is no MD5 of its bytes, `-N`),
/// the same whole-object CRC64NVME (every object has one).
pub(super) fn same_content(
    stored_etag: &str,
    stored_sums: &zib_meta::Checksums,
    etag: &str,
    sums: &zib_meta::Checksums,
) -> bool {
    if stored_etag == etag {
        return true;
    }
    let crc = checksums::Algo::Crc64Nvme.key();
    (stored_etag.contains('-') || etag.contains('-'))
        && stored_sums
            .get(crc)
            .is_some_and(|stored| sums.get(crc) == Some(stored))
}

/// Stores what the write asked besides the bytes; `replace` clears what a file
/// already had (a new file's columns start empty).
pub(super) async fn store_attrs(
    state: &AppState,
    file_id: zib_proto::FileId,
    attrs: &ObjectAttrs,
    replace: bool,
) -> S3Result<()> {
    if replace || !attrs.headers.is_empty() {
        state
            .store
            .set_object_headers(file_id, &attrs.headers)
            .await
            .map_err(internal)?;
    }
    if replace || !attrs.tags.is_empty() {
        state
            .store
            .set_object_tags(file_id, &attrs.tags)
            .await
            .map_err(internal)?;
    }
    Ok(())
}

/// The contract's 409: direct S3-path uploads never supersede a readable object
/// (unless the bucket's overwrite mode says so, see [`guarded`]).
pub(super) fn key_taken(bucket: &str, key: &str) -> S3Error {
    conflict(format!(
        "{bucket}/{key} already exists with different content; delete it first or use another key"
    ))
}

fn body_error(e: Box<dyn std::error::Error + Send + Sync>) -> S3Error {
    match e.downcast::<S3Error>() {
        Ok(s3) => *s3,
        // s3s (pinned) checks aws-chunked chunk and trailer signatures as the body is read.
        Err(other)
            if other
                .to_string()
                .contains("AwsChunkedStreamError: SignatureMismatch") =>
        {
            s3_error!(
                SignatureDoesNotMatch,
                "a chunk or trailer signature of the aws-chunked body does not match"
            )
        }
        Err(other) => s3_error!(IncompleteBody, "reading the request body failed: {other}"),
    }
}

/// Seals a request body of known size chunk by chunk, hashing the plaintext (MD5, the
/// S3 ETag) as it goes.
pub(super) struct Sealing {
    body: StreamingBlob,
    pending: BytesMut,
    sealer: Sealer,
    chunk_size: u64,
    file_size: u64,
    total_chunks: u64,
    next_chunk: u64,
    md5: Md5,
    expected_md5: Option<[u8; 16]>,
    digest: Option<[u8; 16]>,
    /// The `x-amz-checksum-*` being computed, checked with the MD5.
    hashing: Option<Hashing>,
    checksums: zib_meta::Checksums,
    /// Why the body stream failed; the HTTP client only sees an opaque error.
    failure: Option<S3Error>,
}

impl Sealing {
    pub(super) fn new(
        body: StreamingBlob,
        key: &DataKey,
        header: Header,
        size: u64,
        expected_md5: Option<[u8; 16]>,
    ) -> Self {
        Sealing {
            body,
            pending: BytesMut::new(),
            sealer: Sealer::new(key, header),
            chunk_size: u64::from(header.chunk_size),
            file_size: size,
            total_chunks: header.layout().chunk_count(size),
            next_chunk: 0,
            md5: Md5::new(),
            expected_md5,
            digest: None,
            hashing: None,
            checksums: zib_meta::Checksums::new(),
            failure: None,
        }
    }

    /// Also computes these checksums and checks the ones the client sent before the
    /// final chunk is sealed.
    pub(super) fn with_checksums(mut self, expected: &checksums::Expected) -> Self {
        self.hashing = Some(expected.start());
        self
    }

    /// The checksums, once the final chunk is sealed.
    pub(super) fn take_checksums(&mut self) -> zib_meta::Checksums {
        std::mem::take(&mut self.checksums)
    }

    pub(super) fn total_chunks(&self) -> u64 {
        self.total_chunks
    }

    /// Why the body failed, if it did (the stream only carries an opaque error).
    pub(super) fn take_failure(&mut self) -> Option<S3Error> {
        self.failure.take()
    }

    /// The plaintext's MD5, once the final chunk is sealed.
    pub(super) fn digest(&self) -> Option<[u8; 16]> {
        self.digest
    }

    /// The next chunk, sealed; the final one only once the body has ended cleanly.
    pub(super) async fn next_sealed(&mut self) -> S3Result<Bytes> {
        let index = self.next_chunk;
        let is_final = index + 1 == self.total_chunks;
        let want = if is_final {
            self.file_size - index * self.chunk_size
        } else {
            self.chunk_size
        } as usize;
        while self.pending.len() < want {
            match self.body.next().await {
                Some(Ok(piece)) => self.pending.extend_from_slice(&piece),
                Some(Err(e)) => return Err(body_error(e)),
                None => {
                    return Err(s3_error!(
                        IncompleteBody,
                        "the body ended before Content-Length bytes"
                    ))
                }
            }
        }
        let mut chunk = self.pending.split_to(want).to_vec();
        if is_final {
            if !self.pending.is_empty() {
                return Err(too_long());
            }
            // Drive the body to its end: payload signatures and checksums are
            // verified there, and must pass before the upload can complete.
            while let Some(piece) = self.body.next().await {
                if !piece.map_err(body_error)?.is_empty() {
                    return Err(too_long());
                }
            }
        }
        self.md5.update(&chunk);
        if let Some(hashing) = &mut self.hashing {
            hashing.update(&chunk);
        }
        if is_final {
            let digest: [u8; 16] = std::mem::take(&mut self.md5).finalize().into();
            if self.expected_md5.is_some_and(|e| e != digest) {
                return Err(s3_error!(
                    BadDigest,
                    "the Content-MD5 you specified did not match what we received"
                ));
            }
            if let Some(hashing) = self.hashing.take() {
                self.checksums = hashing.finish()?;
            }
            self.digest = Some(digest);
        }
        self.sealer
            .try_seal_chunk(index, is_final, &mut chunk)
            .map_err(S3Error::internal_error)?;
        self.next_chunk += 1;
        Ok(Bytes::from(chunk))
    }
}

fn too_long() -> S3Error {
    s3_error!(IncompleteBody, "the body is longer than Content-Length")
}

/// The whole envelope, the header then `chunks` sealed chunks, pulled from the
/// shared sealing state as the HTTP client asks.
pub(super) fn sealed_stream(
    sealing: Arc<Mutex<Sealing>>,
    chunks: u64,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(
        (sealing, chunks, true),
        |(sealing, left, with_header)| async move {
            if with_header {
                let header = sealing.lock().await.sealer.header().encode();
                let bytes = Bytes::copy_from_slice(&header);
                return Some((Ok(bytes), (sealing, left, false)));
            }
            if left == 0 {
                return None;
            }
            let sealed = {
                let mut state = sealing.lock().await;
                match state.next_sealed().await {
                    Ok(bytes) => Ok(bytes),
                    Err(e) => {
                        let shown = std::io::Error::other(format!("{e}"));
                        state.failure.get_or_insert(e);
                        Err(shown)
                    }
                }
            };
            match sealed {
                Ok(bytes) => Some((Ok(bytes), (sealing, left - 1, false))),
                // One error ends the body; the node sees a short upload and refuses it.
                Err(e) => Some((Err(e), (sealing, 0, false))),
            }
        },
    )
}

/// A small object (`inline_threshold`) is sealed in memory, then recorded whole in
/// one transaction, from registration to `safe`: no node is involved, and a body
/// that fails its MD5 or checksums leaves nothing behind.
/// `bucket`: the bucket as [`put_object`] found it, `None` if it does not exist yet.
async fn put_inline(
    state: &AppState,
    bucket: Option<zib_meta::Bucket>,
    req: PutRequest,
) -> S3Result<Stored> {
    let drafted = match bucket {
        Some(bucket) => {
            registration::draft_in(state, &bucket, &req.key, req.size, &req.content_type, &[]).await
        }
        None => {
            registration::draft(
                state,
                &req.tenant_id,
                &req.bucket,
                &req.key,
                req.size,
                &req.content_type,
                &[],
            )
            .await
        }
    };
    let Draft {
        row, dek, header, ..
    } = drafted.map_err(api_to_s3)?;
    let mut sealing = Sealing::new(req.body, &dek, header, req.size, req.expected_md5)
        .with_checksums(&req.checksums);
    let mut envelope = sealing.sealer.header().encode().to_vec();
    for _ in 0..sealing.total_chunks {
        envelope.extend_from_slice(&sealing.next_sealed().await?);
    }
    let md5_hex = hex::encode(sealing.digest.unwrap_or_default());
    let checksums = sealing.take_checksums();
    let content = zib_meta::S3Content {
        md5_hex: &md5_hex,
        checksums: &checksums,
        headers: &req.attrs.headers,
        tags: &req.attrs.tags,
    };
    let file_id = row.file_id;
    distribution::record_new_inline(state, row, &envelope, content)
        .await
        .map_err(api_to_s3)?;
    tracing::info!(%file_id, size = req.size, "s3 put stored inline");
    Ok(Stored {
        file_id,
        md5_hex,
        checksums,
    })
}

/// Streams the envelope to the originator in one body (the gateway registers one
/// stream whatever the size: `Sender::Server`).
async fn send_envelope(
    state: &AppState,
    reg: &Registration,
    sealing: &Arc<Mutex<Sealing>>,
) -> S3Result<()> {
    let url = reg
        .upload_url
        .as_deref()
        .filter(|_| reg.upload_type == UploadType::Single)
        .ok_or_else(|| s3_error!(InternalError, "registration without one upload URL"))?;
    let chunks = sealing.lock().await.total_chunks;
    let body = sealed_stream(sealing.clone(), chunks);
    let sent = state
        .http
        .put(url)
        .header(reqwest::header::CONTENT_LENGTH, reg.ciphertext_size)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    check_node_answer(sent, sealing, "upload").await
}

async fn check_node_answer(
    sent: Result<reqwest::Response, reqwest::Error>,
    sealing: &Arc<Mutex<Sealing>>,
    what: &str,
) -> S3Result<()> {
    if let Some(failure) = sealing.lock().await.failure.take() {
        return Err(failure);
    }
    match sent {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            tracing::warn!(%status, body = %text, "node refused the s3 gateway {what}");
            Err(s3_error!(
                ServiceUnavailable,
                "the storage node refused the {what} ({status}); retry"
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, "s3 gateway {what} to the node failed");
            Err(s3_error!(
                ServiceUnavailable,
                "the storage node could not be reached for the {what}; retry"
            ))
        }
    }
}
