//! Multipart uploads whose parts are coded as they arrive: each UploadPart is sealed
//! as an envelope of its own (the file's data key, a fresh nonce prefix, so a part
//! sent again never reuses a nonce) and erasure-coded onto the nodes by
//! `domain::part_coding`, then recorded with its shards. Complete writes rows only:
//! the listed parts become the object, the others are dropped. The object's ETag is
//! S3's multipart one (the MD5 of the parts' MD5s, `-N`), its checksums are combined
//! from the parts' (`checksums::for_parts_complete`).

use std::sync::Arc;

use md5::{Digest, Md5};
use s3s::{s3_error, S3Result};
use tokio::sync::Mutex;
use zib_crypto::Header;
use zib_meta::{FilePart, FileRow, ListedCompletion, MetaError, S3Content};
use zib_proto::FileId;

use crate::domain::part_coding::{self, PartFailure};
use crate::domain::{distribution, registration};
use crate::error::ApiError;
use crate::state::{now_ms, AppState};

use super::checksums::{self, Algo};
use super::errors::{api_to_s3, conflict, internal};
use super::gateway::{self, Sealing, Stored};
use super::multipart_upload::{
    no_such_upload, OpenUpload, PartUpload, SealedPart, Spool, StoredPart,
};

/// Registers the file a new upload's parts are coded into.
pub(super) async fn register(
    state: &AppState,
    tenant_id: &str,
    bucket: &str,
    key: &str,
    content_type: &str,
) -> S3Result<FileRow> {
    registration::register_in_parts(
        state,
        tenant_id,
        bucket,
        key,
        content_type,
        state.config.s3_multipart_expiry,
    )
    .await
    .map_err(api_to_s3)
}

/// The upload's file, while it still takes parts (or, `completed_too`, once its
/// Complete stored it but could not remove the upload's record).
async fn open_file(
    state: &AppState,
    upload_id: &str,
    file_id: FileId,
    completed_too: bool,
) -> S3Result<FileRow> {
    state
        .store
        .file(file_id)
        .await
        .map_err(internal)?
        .filter(|f| {
            matches!(
                f.phase,
                zib_meta::FilePhase::Pending | zib_meta::FilePhase::Uploading
            ) || (completed_too && f.phase.is_readable())
        })
        .ok_or_else(|| no_such_upload(upload_id))
}

/// Seals, codes and stores one part; returns its ETag and checksums.
pub(super) async fn upload_part(
    state: &AppState,
    upload: &OpenUpload,
    file_id: FileId,
    part: PartUpload,
) -> S3Result<SealedPart> {
    let file = open_file(state, &upload.upload_id, file_id, false).await?;
    let dek = state
        .config
        .master_key
        .unwrap(&file.wrapped_dek, file_id.0.as_bytes())
        .map_err(|_| internal("the upload's data key does not unwrap"))?;
    let number = u32::try_from(part.part_number).map_err(internal)?;
    let header = Header::new_random(file.chunk_size);
    let ciphertext_size = header.layout().ciphertext_len(part.size);
    // Every part gets a CRC64NVME: the object's is combined from them at Complete.
    let shows_crc64 = part.checksums.computes(Algo::Crc64Nvme);
    let expected = part.checksums.clone().with(Algo::Crc64Nvme);
    let sealing = Sealing::new(part.body, &dek, header, part.size, part.expected_md5)
        .with_checksums(&expected);
    let chunks = sealing.total_chunks();
    let sealing = Arc::new(Mutex::new(sealing));
    let sealed = Box::pin(gateway::sealed_stream(sealing.clone(), chunks));
    let first_segment = part_coding::first_segment_of(number);
    let coded = part_coding::code_part(state, &file, first_segment, ciphertext_size, sealed).await;
    let body_failure = sealing.lock().await.take_failure();
    let rows = match coded {
        Ok(rows) => rows,
        Err(failure) => {
            if let Some(e) = body_failure {
                return Err(e);
            }
            return Err(match failure {
                PartFailure::Body(e) => s3_error!(IncompleteBody, "the part's body failed: {e}"),
                PartFailure::Placement(e) => api_to_s3(e),
            });
        }
    };
    let (digest, sums) = {
        let mut sealing = sealing.lock().await;
        (sealing.digest(), sealing.take_checksums())
    };
    let md5_hex =
        hex::encode(digest.ok_or_else(|| internal("the part was sealed without its digest"))?);
    let now = now_ms();
    let stored = FilePart {
        number,
        first_segment,
        segment_count: zib_erasure::Layout::part(file.erasure(), ciphertext_size).segment_count(),
        size: part.size,
        ciphertext_size,
        nonce_prefix: header.nonce_prefix.to_vec(),
        md5: md5_hex.clone(),
        checksums: sums.clone(),
        created_at: now,
    };
    let expires_at = now.saturating_add(
        i64::try_from(state.config.s3_multipart_expiry.as_millis()).unwrap_or(i64::MAX / 2),
    );
    match state
        .store
        .record_file_part(file_id, &stored, &rows, now, expires_at)
        .await
    {
        Ok(replaced) => {
            tracing::debug!(upload_id = %upload.upload_id, part = number, shards = rows.len(), replaced = replaced.len(), "s3 part coded")
        }
        // Completed or aborted while the part was on its way: its shards are
        // orphans the collector removes.
        Err(MetaError::Conflict(_)) => return Err(no_such_upload(&upload.upload_id)),
        Err(e) => return Err(internal(e)),
    }
    touch(&upload.dir.join(crate::domain::multipart_spool::UPLOAD_FILE));
    let mut shown = sums;
    if !shows_crc64 {
        shown.remove(Algo::Crc64Nvme.key());
    }
    Ok(SealedPart {
        md5_hex,
        checksums: shown,
    })
}

/// Marks the upload's record as used now: the collector removes uploads idle for
/// `s3_multipart_expiry`, judged by their directory's newest file.
fn touch(record: &std::path::Path) {
    let touched = std::fs::File::options()
        .append(true)
        .open(record)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()));
    if let Err(e) = touched {
        tracing::warn!(path = %record.display(), error = %e, "could not mark the multipart upload as in use");
    }
}

/// The parts stored so far, by part number.
pub(super) async fn stored_parts(
    state: &AppState,
    upload_id: &str,
    file_id: FileId,
) -> S3Result<Vec<StoredPart>> {
    open_file(state, upload_id, file_id, true).await?;
    let parts = state.store.file_parts(file_id).await.map_err(internal)?;
    parts
        .into_iter()
        .map(|p| {
            Ok(StoredPart {
                number: i32::try_from(p.number).map_err(internal)?,
                size: p.size,
                md5: p.md5,
                modified_ms: p.created_at,
                checksums: p.checksums,
            })
        })
        .collect()
}

/// Fails the upload's file and drops its parts (their shards' deletion queued).
pub(super) async fn abort(state: &AppState, upload_id: &str, file_id: FileId) -> S3Result<()> {
    match state
        .store
        .drop_file_parts(file_id, "s3 multipart upload aborted", now_ms())
        .await
    {
        Ok(blobs) => {
            tracing::debug!(%upload_id, blobs, "s3 multipart parts dropped");
            Ok(())
        }
        // Completed already: the upload is gone. Expired: its record goes with the
        // abort.
        Err(MetaError::Conflict(_)) => {
            let file = state.store.file(file_id).await.map_err(internal)?;
            if file.is_some_and(|f| f.phase.is_readable()) {
                return Err(no_such_upload(upload_id));
            }
            Ok(())
        }
        Err(e) => Err(internal(e)),
    }
}

/// A coded upload whose list checked out: completing it writes rows only.
pub struct CodedComplete {
    upload: OpenUpload,
    file_id: FileId,
    numbers: Vec<u32>,
    /// The listed parts' MD5s (hex), in order.
    md5s: Vec<String>,
    /// The listed parts' sizes and checksums, in order.
    parts: Vec<(u64, zib_meta::Checksums)>,
    etag: String,
    checksums: zib_meta::Checksums,
    /// The object (and its ETag) this Complete answers with, stored already: this
    /// upload's own file (a retry after a completion whose record was not removed),
    /// or the key's current object holding these very bytes (this upload's parts
    /// are then dropped).
    same_as: Option<(FileId, String)>,
}

/// The listed parts (`chosen`, checked by the caller) as the object to be.
/// `existing`: the key's current object that must not be replaced, if any (of the
/// same size).
pub(super) async fn prepare(
    state: &AppState,
    upload: OpenUpload,
    file_id: FileId,
    chosen: Vec<StoredPart>,
    existing: Option<FileRow>,
) -> S3Result<CodedComplete> {
    let file = open_file(state, &upload.upload_id, file_id, true).await?;
    let mut numbers = Vec::with_capacity(chosen.len());
    let mut md5s = Vec::with_capacity(chosen.len());
    let mut digests = Md5::new();
    for part in &chosen {
        let number = u32::try_from(part.number).map_err(internal)?;
        let raw = hex::decode(&part.md5).map_err(internal)?;
        digests.update(&raw);
        numbers.push(number);
        md5s.push(part.md5.clone());
    }
    let etag = format!("{}-{}", hex::encode(digests.finalize()), chosen.len());
    let parts: Vec<(u64, zib_meta::Checksums)> =
        chosen.into_iter().map(|p| (p.size, p.checksums)).collect();
    let checksums = object_checksums(&upload, &parts, &Default::default())?;
    let same_as = match existing {
        // Completed already (its record could not be removed): the same answer.
        _ if file.phase.is_readable() => {
            if numbers.len() != file.part_count as usize {
                return Err(no_such_upload(&upload.upload_id));
            }
            let etag = state
                .store
                .plaintext_md5(file_id)
                .await
                .map_err(internal)?
                .unwrap_or_else(|| etag.clone());
            Some((file_id, etag))
        }
        None => None,
        Some(current) => {
            let current_etag = state
                .store
                .plaintext_md5(current.file_id)
                .await
                .map_err(internal)?
                .unwrap_or_default();
            let current_sums = state
                .store
                .object_checksums(current.file_id)
                .await
                .map_err(internal)?;
            if !gateway::same_content(&current_etag, &current_sums, &etag, &checksums) {
                return Err(gateway::key_taken(
                    &upload.record.bucket,
                    &upload.record.key,
                ));
            }
            Some((current.file_id, current_etag))
        }
    };
    Ok(CodedComplete {
        upload,
        file_id,
        numbers,
        md5s,
        parts,
        etag,
        checksums,
        same_as,
    })
}

fn object_checksums(
    upload: &OpenUpload,
    parts: &[(u64, zib_meta::Checksums)],
    sent: &s3s::dto::Checksum,
) -> S3Result<zib_meta::Checksums> {
    let parts: Vec<(u64, &zib_meta::Checksums)> = parts.iter().map(|(n, s)| (*n, s)).collect();
    checksums::for_parts_complete(upload.record.checksum(), &parts, sent)
}

impl CodedComplete {
    pub(super) fn with_object_checksum(mut self, sent: &s3s::dto::Checksum) -> S3Result<Self> {
        self.checksums = object_checksums(&self.upload, &self.parts, sent)?;
        Ok(self)
    }

    pub(super) async fn store(self, state: &AppState) -> S3Result<(Stored, Spool)> {
        let CodedComplete {
            upload,
            file_id,
            numbers,
            md5s,
            etag,
            checksums,
            same_as,
            ..
        } = self;
        let spool = Spool { dir: upload.dir };
        if let Some((current, current_etag)) = same_as {
            if current != file_id {
                abort(state, &upload.upload_id, file_id).await?;
                // The object is the one asked for; so are its headers and tags.
                gateway::store_attrs(state, current, &upload.record.attrs, true).await?;
            }
            let checksums = state
                .store
                .object_checksums(current)
                .await
                .map_err(internal)?;
            return Ok((
                Stored {
                    file_id: current,
                    md5_hex: current_etag,
                    checksums,
                },
                spool,
            ));
        }
        let listed: Vec<(u32, &str)> = numbers
            .iter()
            .zip(&md5s)
            .map(|(n, m)| (*n, m.as_str()))
            .collect();
        let done = ListedCompletion {
            parts: &listed,
            s3: S3Content {
                md5_hex: &etag,
                checksums: &checksums,
                headers: &upload.record.attrs.headers,
                tags: &upload.record.attrs.tags,
            },
        };
        distribution::record_parts_completion(state, file_id, done)
            .await
            .map_err(|e| match e {
                ApiError::Conflict(message) => conflict(message),
                other => api_to_s3(other),
            })?;
        tracing::info!(upload_id = %upload.upload_id, %file_id, parts = numbers.len(), "s3 multipart upload completed");
        Ok((
            Stored {
                file_id,
                md5_hex: etag,
                checksums,
            },
            spool,
        ))
    }
}
