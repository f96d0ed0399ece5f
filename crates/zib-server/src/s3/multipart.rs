//! S3 multipart uploads (CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//! AbortMultipartUpload, ListParts).
//!
//! S3 parts arrive in any order, may be sent again, and have sizes known only as they
//! arrive. So an upload's object is a file stored as one envelope per part
//! (`coded_parts`): CreateMultipartUpload registers the file, each UploadPart seals
//! its part under the file's data key with a nonce prefix of its own and
//! erasure-codes it onto the nodes as it arrives, and Complete writes only rows. The
//! upload's record (its tenant, key, and what Create asked for) is a small file in
//! `s3_spool_dir/{upload_id}/`, removed on Complete or Abort, or by the collector
//! after `s3_multipart_expiry` without a new part. An upload created before parts
//! were coded keeps its parts in that directory and is completed the old way
//! (`spooled_parts`).

use std::path::Path;

use rand::RngCore;
use s3s::{s3_error, S3Result};

use crate::domain::multipart_spool::{is_upload_id, UPLOAD_FILE};
use crate::state::AppState;

use super::checksums::{self, Algo, UploadChecksum};
use super::coded_parts::{self, CodedComplete};
use super::conditional::{self, WriteCondition};
use super::errors::internal;
use super::gateway::{self, Stored};
pub(super) use super::multipart_upload::no_such_upload;
use super::multipart_upload::{open, remove_spool, OpenUpload, UploadRecord};
pub use super::multipart_upload::{PartUpload, SealedPart, Spool, StoredPart};
use super::object_headers::ObjectAttrs;
use super::spooled_parts::{self, SpooledComplete};

/// S3's limits: part numbers 1..=10000, at most 5 GiB a part.
pub const MAX_PART_NUMBER: i32 = 10_000;
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{:08x}", rand::random::<u32>()));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, path).await
}

pub async fn create(
    state: &AppState,
    tenant_id: &str,
    bucket: &str,
    key: &str,
    content_type: String,
    attrs: ObjectAttrs,
    checksum: Option<UploadChecksum>,
) -> S3Result<String> {
    let mut id = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut id);
    let upload_id = hex::encode(id);
    let file = coded_parts::register(state, tenant_id, bucket, key, &content_type).await?;
    let record = UploadRecord {
        tenant_id: tenant_id.to_string(),
        bucket: bucket.to_string(),
        key: key.to_string(),
        content_type,
        created_ms: crate::state::now_ms(),
        file_id: Some(file.file_id),
        wrapped_key: String::new(),
        attrs,
        checksum_algorithm: checksum.map(|c| c.algo.s3_name().to_string()),
        checksum_full_object: checksum.is_some_and(|c| c.full_object),
    };
    let dir = state.config.s3_spool_dir.join(&upload_id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| internal(format!("creating {}: {e}", dir.display())))?;
    let json = serde_json::to_vec(&record).map_err(internal)?;
    write_atomically(&dir.join(UPLOAD_FILE), &json)
        .await
        .map_err(|e| {
            internal(format!(
                "writing the upload record in {}: {e}",
                dir.display()
            ))
        })?;
    tracing::info!(%upload_id, file_id = %file.file_id, "s3 multipart upload created");
    Ok(upload_id)
}

/// Stores one part; returns its hex MD5 (the part's ETag) and checksums. A part sent
/// again replaces the earlier one only once it is stored whole.
pub async fn upload_part(state: &AppState, mut part: PartUpload) -> S3Result<SealedPart> {
    if !(1..=MAX_PART_NUMBER).contains(&part.part_number) {
        return Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive"
        ));
    }
    if part.size > MAX_PART_SIZE {
        return Err(s3_error!(
            EntityTooLarge,
            "a part is at most {MAX_PART_SIZE} bytes"
        ));
    }
    let upload = open(
        state,
        &part.tenant_id,
        &part.bucket,
        &part.key,
        &part.upload_id,
    )
    .await?;
    if let Some(checksum) = upload.record.checksum() {
        part.checksums = std::mem::take(&mut part.checksums).with(checksum.algo);
    }
    match upload.record.file_id {
        Some(file_id) => coded_parts::upload_part(state, &upload, file_id, part).await,
        None => spooled_parts::upload_part(state, &upload, part).await,
    }
}

pub async fn list_parts(
    state: &AppState,
    tenant_id: &str,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> S3Result<(Vec<StoredPart>, Option<UploadChecksum>)> {
    let upload = open(state, tenant_id, bucket, key, upload_id).await?;
    let checksum = upload.record.checksum();
    let mut parts = stored_parts(state, &upload).await?;
    // A coded part always carries a CRC64NVME (the object's is combined from them);
    // it is shown only for an upload that asked for it.
    if upload.record.file_id.is_some() && checksum.is_none_or(|c| c.algo != Algo::Crc64Nvme) {
        for part in &mut parts {
            part.checksums.remove(Algo::Crc64Nvme.key());
        }
    }
    Ok((parts, checksum))
}

async fn stored_parts(state: &AppState, upload: &OpenUpload) -> S3Result<Vec<StoredPart>> {
    match upload.record.file_id {
        Some(file_id) => coded_parts::stored_parts(state, &upload.upload_id, file_id).await,
        None => spooled_parts::stored_parts(&upload.dir).await,
    }
}

/// An upload in progress, as ListMultipartUploads shows it.
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
    pub created_ms: i64,
}

/// The tenant's uploads in progress in `bucket` with keys under `prefix`, ordered by
/// key, then upload id. It reads every spool's record: uploads in progress are few,
/// and the collector removes idle ones.
pub async fn pending_uploads(
    state: &AppState,
    tenant_id: &str,
    bucket: &str,
    prefix: &str,
) -> S3Result<Vec<PendingUpload>> {
    let root = &state.config.s3_spool_dir;
    let io = |e: std::io::Error| internal(format!("listing {}: {e}", root.display()));
    let mut entries = match tokio::fs::read_dir(root).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut uploads = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(io)? {
        let Some(upload_id) = entry
            .file_name()
            .to_str()
            .filter(|n| is_upload_id(n))
            .map(str::to_string)
        else {
            continue;
        };
        // Gone meanwhile (completed, aborted) or half written: not in progress.
        let Ok(bytes) = tokio::fs::read(entry.path().join(UPLOAD_FILE)).await else {
            continue;
        };
        let Ok(record) = serde_json::from_slice::<UploadRecord>(&bytes) else {
            continue;
        };
        if record.tenant_id == tenant_id
            && record.bucket == bucket
            && record.key.starts_with(prefix)
        {
            uploads.push(PendingUpload {
                key: record.key,
                upload_id,
                created_ms: record.created_ms,
            });
        }
    }
    uploads.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
    Ok(uploads)
}

pub async fn abort(
    state: &AppState,
    tenant_id: &str,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> S3Result<()> {
    let upload = open(state, tenant_id, bucket, key, upload_id).await?;
    if let Some(file_id) = upload.record.file_id {
        coded_parts::abort(state, upload_id, file_id).await?;
    }
    remove_spool(&upload.dir).await;
    tracing::info!(%upload_id, "s3 multipart upload aborted");
    Ok(())
}

/// A part Complete names: its number and the ETag the client got for it.
pub struct ListedPart {
    pub number: i32,
    pub etag: String,
    /// The part's `Checksum*` elements, compared with the stored ones.
    pub checksums: s3s::dto::Checksum,
}

/// A CompleteMultipartUpload whose list checked out.
pub enum ReadyToComplete {
    Coded(CodedComplete),
    Spooled(SpooledComplete),
}

/// Checks the list (ascending, every part stored with the ETag listed) and that the
/// key can take an object of that size, so these errors keep their own status.
pub async fn prepare_complete(
    state: &AppState,
    tenant_id: &str,
    bucket: &str,
    key: &str,
    upload_id: &str,
    listed: Vec<ListedPart>,
    condition: WriteCondition,
) -> S3Result<ReadyToComplete> {
    let upload = open(state, tenant_id, bucket, key, upload_id).await?;
    if listed.is_empty() {
        return Err(s3_error!(
            MalformedXML,
            "CompleteMultipartUpload must list at least one part"
        ));
    }
    // S3 answers a part listed twice as it answers any list out of ascending order.
    if let Some(w) = listed.windows(2).find(|w| w[0].number == w[1].number) {
        return Err(s3_error!(
            InvalidPartOrder,
            "part number {} is listed more than once; list each part once, in ascending order",
            w[0].number
        ));
    }
    if listed.windows(2).any(|w| w[0].number > w[1].number) {
        return Err(s3_error!(
            InvalidPartOrder,
            "the list of parts was not in ascending order"
        ));
    }
    let stored = stored_parts(state, &upload).await?;
    let mut chosen = Vec::with_capacity(listed.len());
    for part in &listed {
        let found = stored.iter().find(|s| s.number == part.number);
        let etag = part.etag.trim_matches('"').to_ascii_lowercase();
        match found {
            Some(s) if s.md5 == etag => {
                checksums::check_listed_part(part.number, &part.checksums, &s.checksums)?;
                chosen.push(s.clone());
            }
            Some(_) => {
                return Err(s3_error!(
                    InvalidPart,
                    "part {} has another ETag than the one listed",
                    part.number
                ))
            }
            None => {
                return Err(s3_error!(
                    InvalidPart,
                    "part {} was not uploaded",
                    part.number
                ))
            }
        }
    }
    let size: u64 = chosen.iter().map(|p| p.size).sum();
    if size > state.config.max_file_size {
        return Err(s3_error!(
            EntityTooLarge,
            "{size} bytes exceeds the maximum object size of {} bytes",
            state.config.max_file_size
        ));
    }
    let target = gateway::write_target(state, tenant_id, bucket, key).await?;
    conditional::check_write(state, &condition, target.current.as_ref()).await?;
    let existing = target.guarded();
    if existing.as_ref().is_some_and(|f| f.size != size) {
        return Err(gateway::key_taken(bucket, key));
    }
    Ok(match upload.record.file_id {
        Some(file_id) => ReadyToComplete::Coded(
            coded_parts::prepare(state, upload, file_id, chosen, existing).await?,
        ),
        None => ReadyToComplete::Spooled(spooled_parts::prepare(upload, chosen, condition)?),
    })
}

impl ReadyToComplete {
    /// The whole-object checksum Complete was sent (`x-amz-checksum-*`), checked
    /// against the parts' checksums (or, for a spooled upload, as its parts are
    /// re-read).
    pub fn with_object_checksum(self, sent: &s3s::dto::Checksum) -> S3Result<Self> {
        Ok(match self {
            ReadyToComplete::Coded(ready) => {
                ReadyToComplete::Coded(ready.with_object_checksum(sent)?)
            }
            ReadyToComplete::Spooled(ready) => {
                ReadyToComplete::Spooled(ready.with_object_checksum(sent)?)
            }
        })
    }

    /// Makes the listed parts the object; returns what it is known by and the spool,
    /// which the caller removes once the completion is recorded (s3/completion.rs).
    pub async fn store(self, state: &AppState) -> S3Result<(Stored, Spool)> {
        match self {
            ReadyToComplete::Coded(ready) => ready.store(state).await,
            ReadyToComplete::Spooled(ready) => ready.store(state).await,
        }
    }
}
