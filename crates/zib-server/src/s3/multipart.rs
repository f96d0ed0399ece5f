//! S3 multipart uploads (CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//! AbortMultipartUpload, ListParts).
//!
//! A ZiB file is one envelope whose size is fixed when it is registered, while S3
//! parts arrive in any order, may be sent again, and add up to a size known only at
//! Complete. So parts wait on the server's disk, in `s3_spool_dir/{upload_id}/`,
//! each sealed (envelope v1) under a data key of the upload's own that the master
//! key wraps: the spool never holds plaintext or a key in clear. Complete reads the
//! listed parts in order, opens them chunk by chunk and feeds the plaintext to the
//! same gateway PUT a single request uses, so the object is an ordinary ZiB file
//! (same registration, same sealing, same 409 rules) and memory stays at a few
//! chunks whatever the size. The spool is removed once the object is stored, on
//! Abort, or by the collector after `s3_multipart_expiry` without a new part.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use rand::RngCore;
use s3s::dto::StreamingBlob;
use s3s::{s3_error, S3Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use zib_crypto::envelope::{Opener, HEADER_LEN};
use zib_crypto::{DataKey, Header};

use crate::domain::multipart_spool::{is_upload_id, UPLOAD_FILE};
use crate::state::AppState;

use super::checksums::{self, Algo, Expected, UploadChecksum};
use super::conditional::{self, WriteCondition};
use super::errors::internal;
use super::gateway::{self, PutRequest, Sealing, Stored};

use super::object_headers::ObjectAttrs;

/// S3's limits: part numbers 1..=10000, at most 5 GiB a part.
pub const MAX_PART_NUMBER: i32 = 10_000;
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// A part file starts with its plaintext size (u64 BE) and MD5, then the envelope,
/// then its checksums as JSON (absent when it has none).
const PART_PREFIX_LEN: u64 = 8 + 16;
/// Decrypted chunks buffered between the spool reader and the gateway's sealing.
const OPENED_CHUNKS_AHEAD: usize = 4;

#[derive(Serialize, Deserialize)]
struct UploadRecord {
    tenant_id: String,
    bucket: String,
    key: String,
    content_type: String,
    created_ms: i64,
    /// The spool's data key, wrapped by the master key (hex).
    wrapped_key: String,
    /// Headers, metadata and tags given at CreateMultipartUpload, stored at Complete.
    #[serde(default)]
    attrs: ObjectAttrs,
    /// `x-amz-checksum-algorithm` at creation (S3's name): every part gets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checksum_algorithm: Option<String>,
    /// `x-amz-checksum-type: FULL_OBJECT` (else COMPOSITE).
    #[serde(default)]
    checksum_full_object: bool,
}

impl UploadRecord {
    fn checksum(&self) -> Option<UploadChecksum> {
        let algo = Algo::parse(self.checksum_algorithm.as_deref()?)?;
        Some(UploadChecksum {
            algo,
            full_object: self.checksum_full_object,
        })
    }
}

/// What a part just sealed into the spool is known by.
pub struct SealedPart {
    /// Hex MD5 of the part's plaintext: its ETag.
    pub md5_hex: String,
    pub checksums: zib_meta::Checksums,
}

/// One stored part, as ListParts and Complete see it.
pub struct StoredPart {
    pub number: i32,
    pub size: u64,
    /// Hex MD5 of the part's plaintext: its ETag.
    pub md5: String,
    pub modified_ms: i64,
    /// Its `x-amz-checksum-*` (kept after the envelope in the part file).
    pub checksums: zib_meta::Checksums,
}

/// An upload the request may act on: its spool and its data key.
struct OpenUpload {
    dir: PathBuf,
    record: UploadRecord,
    key: DataKey,
}

fn wrap_context(upload_id: &str, tenant_id: &str) -> Vec<u8> {
    format!("zib-s3-multipart:{upload_id}:{tenant_id}").into_bytes()
}

fn part_path(dir: &Path, number: i32) -> PathBuf {
    dir.join(format!("part-{number:05}"))
}

pub(super) fn no_such_upload(upload_id: &str) -> s3s::S3Error {
    s3_error!(
        NoSuchUpload,
        "multipart upload {upload_id} does not exist (completed, aborted, expired or never created)"
    )
}

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
    let data_key = DataKey::generate();
    let record = UploadRecord {
        tenant_id: tenant_id.to_string(),
        bucket: bucket.to_string(),
        key: key.to_string(),
        content_type,
        created_ms: crate::state::now_ms(),
        wrapped_key: hex::encode(
            state
                .config
                .master_key
                .wrap(&data_key, &wrap_context(&upload_id, tenant_id)),
        ),
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
    tracing::info!(%upload_id, "s3 multipart upload created");
    Ok(upload_id)
}

/// The upload, if it exists and belongs to this tenant, bucket and key; otherwise
/// NoSuchUpload, so another tenant learns nothing of it.
async fn open(
    state: &AppState,
    tenant_id: &str,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> S3Result<OpenUpload> {
    if !is_upload_id(upload_id) {
        return Err(no_such_upload(upload_id));
    }
    let dir = state.config.s3_spool_dir.join(upload_id);
    let bytes = match tokio::fs::read(dir.join(UPLOAD_FILE)).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(no_such_upload(upload_id))
        }
        Err(e) => return Err(internal(format!("reading {}: {e}", dir.display()))),
    };
    let record: UploadRecord = serde_json::from_slice(&bytes)
        .map_err(|e| internal(format!("upload record {}: {e}", dir.display())))?;
    if record.tenant_id != tenant_id || record.bucket != bucket || record.key != key {
        return Err(no_such_upload(upload_id));
    }
    let wrapped = hex::decode(&record.wrapped_key).map_err(internal)?;
    let key = state
        .config
        .master_key
        .unwrap(&wrapped, &wrap_context(upload_id, tenant_id))
        .map_err(|_| internal("the upload's data key does not unwrap"))?;
    Ok(OpenUpload { dir, record, key })
}

pub struct PartUpload {
    pub tenant_id: String,
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub part_number: i32,
    pub size: u64,
    pub expected_md5: Option<[u8; 16]>,
    pub checksums: Expected,
    pub body: StreamingBlob,
}

/// Seals the part into the spool; returns its hex MD5 (the part's ETag) and
/// checksums. A part sent again replaces the earlier one only once it has arrived
/// whole.
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
    let path = part_path(&upload.dir, part.part_number);
    let tmp = path.with_extension(format!("tmp-{:08x}", rand::random::<u32>()));
    let part_upload_id = part.upload_id.clone();
    let written = write_part(&tmp, &upload.key, part).await;
    match written {
        Ok(md5) => match tokio::fs::rename(&tmp, &path).await {
            Ok(()) => Ok(md5),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(no_such_upload(&part_upload_id))
            }
            Err(e) => Err(internal(format!("storing {}: {e}", path.display()))),
        },
        Err(err) => {
            if let Err(e) = tokio::fs::remove_file(&tmp).await {
                tracing::warn!(path = %tmp.display(), error = %e, "could not remove a failed part");
            }
            Err(err)
        }
    }
}

async fn write_part(tmp: &Path, key: &DataKey, part: PartUpload) -> S3Result<SealedPart> {
    let io = |e: std::io::Error| internal(format!("writing {}: {e}", tmp.display()));
    let header = Header::new_random(zib_crypto::envelope::DEFAULT_CHUNK_SIZE);
    let mut sealing = Sealing::new(part.body, key, header, part.size, part.expected_md5)
        .with_checksums(&part.checksums);
    let file = match tokio::fs::File::create(tmp).await {
        Ok(file) => file,
        // Aborted (or completed) while this part was on its way.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(no_such_upload(&part.upload_id))
        }
        Err(e) => return Err(io(e)),
    };
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    out.write_all(&[0u8; PART_PREFIX_LEN as usize])
        .await
        .map_err(io)?;
    out.write_all(&header.encode()).await.map_err(io)?;
    for _ in 0..sealing.total_chunks() {
        let sealed = sealing.next_sealed().await?;
        out.write_all(&sealed).await.map_err(io)?;
    }
    let digest = sealing
        .digest()
        .ok_or_else(|| internal("the part was sealed without its digest"))?;
    let sums = sealing.take_checksums();
    if !sums.is_empty() {
        let json = serde_json::to_vec(&sums).map_err(internal)?;
        out.write_all(&json).await.map_err(io)?;
    }
    let mut prefix = Vec::with_capacity(PART_PREFIX_LEN as usize);
    prefix.extend_from_slice(&part.size.to_be_bytes());
    prefix.extend_from_slice(&digest);
    out.seek(std::io::SeekFrom::Start(0)).await.map_err(io)?;
    out.write_all(&prefix).await.map_err(io)?;
    out.flush().await.map_err(io)?;
    out.into_inner().sync_all().await.map_err(io)?;
    Ok(SealedPart {
        md5_hex: hex::encode(digest),
        checksums: sums,
    })
}

/// A part file's size, MD5, time, and the checksums (JSON) after its envelope, if any.
async fn read_part_prefix(
    path: &Path,
) -> std::io::Result<(u64, [u8; 16], SystemTime, zib_meta::Checksums)> {
    let mut file = tokio::fs::File::open(path).await?;
    let meta = file.metadata().await?;
    let modified = meta.modified()?;
    let mut prefix = [0u8; PART_PREFIX_LEN as usize];
    file.read_exact(&mut prefix).await?;
    let mut size = [0u8; 8];
    size.copy_from_slice(&prefix[..8]);
    let size = u64::from_be_bytes(size);
    let mut md5 = [0u8; 16];
    md5.copy_from_slice(&prefix[8..]);
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact(&mut header).await?;
    let header = Header::decode(&header).map_err(std::io::Error::other)?;
    let end = PART_PREFIX_LEN + header.layout().ciphertext_len(size);
    let mut sums = zib_meta::Checksums::new();
    if meta.len() > end {
        file.seek(std::io::SeekFrom::Start(end)).await?;
        let mut json = Vec::new();
        // Five base64 checksums; anything longer is not what this code wrote.
        (&mut file).take(64 * 1024).read_to_end(&mut json).await?;
        sums = serde_json::from_slice(&json).map_err(std::io::Error::other)?;
    }
    Ok((size, md5, modified, sums))
}

/// The stored parts, by part number.
async fn stored_parts(dir: &Path) -> S3Result<Vec<StoredPart>> {
    let io = |e: std::io::Error| internal(format!("listing {}: {e}", dir.display()));
    let mut entries = tokio::fs::read_dir(dir).await.map_err(io)?;
    let mut parts = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(io)? {
        let name = entry.file_name();
        let Some(number) = name
            .to_str()
            .and_then(|n| n.strip_prefix("part-"))
            .filter(|n| n.len() == 5)
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let (size, md5, modified, checksums) = read_part_prefix(&entry.path()).await.map_err(io)?;
        parts.push(StoredPart {
            number,
            size,
            md5: hex::encode(md5),
            modified_ms: crate::state::unix_ms(modified),
            checksums,
        });
    }
    parts.sort_by_key(|p| p.number);
    Ok(parts)
}

pub async fn list_parts(
    state: &AppState,
    tenant_id: &str,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> S3Result<(Vec<StoredPart>, Option<UploadChecksum>)> {
    let upload = open(state, tenant_id, bucket, key, upload_id).await?;
    Ok((stored_parts(&upload.dir).await?, upload.record.checksum()))
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
    remove_spool(&upload.dir).await;
    tracing::info!(%upload_id, "s3 multipart upload aborted");
    Ok(())
}

async fn remove_spool(dir: &Path) {
    if let Err(e) = tokio::fs::remove_dir_all(dir).await {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove a multipart spool");
    }
}

/// A part Complete names: its number and the ETag the client got for it.
pub struct ListedPart {
    pub number: i32,
    pub etag: String,
    /// The part's `Checksum*` elements, compared with the stored ones.
    pub checksums: s3s::dto::Checksum,
}

/// A CompleteMultipartUpload whose list checked out: what is left is the long part,
/// re-sealing the spooled parts into the object.
pub struct ReadyToComplete {
    upload_id: String,
    upload: OpenUpload,
    parts: Vec<(PathBuf, u64)>,
    size: u64,
    condition: WriteCondition,
    /// The listed parts' checksums, in order (a COMPOSITE checksum is made of them).
    part_checksums: Vec<zib_meta::Checksums>,
    checksums: Expected,
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
    let stored = stored_parts(&upload.dir).await?;
    let mut parts = Vec::with_capacity(listed.len());
    let mut part_checksums = Vec::with_capacity(listed.len());
    for part in &listed {
        let found = stored.iter().find(|s| s.number == part.number);
        let etag = part.etag.trim_matches('"').to_ascii_lowercase();
        match found {
            Some(s) if s.md5 == etag => {
                checksums::check_listed_part(part.number, &part.checksums, &s.checksums)?;
                parts.push((part_path(&upload.dir, s.number), s.size));
                part_checksums.push(s.checksums.clone());
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
    let size = parts.iter().map(|(_, size)| size).sum();
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
    if existing.is_some_and(|f| f.size != size) {
        return Err(gateway::key_taken(bucket, key));
    }
    let checksums = checksums::for_complete(
        upload.record.checksum(),
        &part_checksums,
        &Default::default(),
    )?;
    Ok(ReadyToComplete {
        upload_id: upload_id.to_string(),
        upload,
        parts,
        size,
        condition,
        part_checksums,
        checksums,
    })
}

impl ReadyToComplete {
    /// The whole-object checksum Complete was sent (`x-amz-checksum-*`), checked as
    /// the parts are re-read (or, for a composite one, against the parts' checksums).
    pub fn with_object_checksum(mut self, sent: &s3s::dto::Checksum) -> S3Result<Self> {
        self.checksums =
            checksums::for_complete(self.upload.record.checksum(), &self.part_checksums, sent)?;
        Ok(self)
    }

    /// Stores the parts, in the order listed, as one object; returns what it is
    /// known by and the spool, which the caller removes once the completion is
    /// recorded (s3/completion.rs).
    pub async fn store(self, state: &AppState) -> S3Result<(Stored, Spool)> {
        let ReadyToComplete {
            upload_id,
            upload,
            parts,
            size,
            condition,
            checksums,
            ..
        } = self;
        let count = parts.len();
        let stored = gateway::put_object(
            state,
            PutRequest {
                tenant_id: upload.record.tenant_id,
                bucket: upload.record.bucket,
                key: upload.record.key,
                size,
                content_type: upload.record.content_type,
                expected_md5: None,
                checksums,
                body: opened_parts(parts, upload.key),
                attrs: upload.record.attrs,
                condition,
            },
        )
        .await?;
        tracing::info!(%upload_id, parts = count, size, "s3 multipart upload completed");
        Ok((stored, Spool { dir: upload.dir }))
    }
}

/// The spool of an upload whose object is stored.
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub async fn remove(self) {
        remove_spool(&self.dir).await;
    }
}

/// The plaintext of the parts, in order, opened chunk by chunk by a task of its own.
fn opened_parts(parts: Vec<(PathBuf, u64)>, key: DataKey) -> StreamingBlob {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(OPENED_CHUNKS_AHEAD);
    tokio::spawn(async move {
        for (path, size) in parts {
            if let Err(e) = open_part(&path, size, &key, &tx).await {
                let _ = tx
                    .send(Err(std::io::Error::other(format!(
                        "spooled part {}: {e}",
                        path.display()
                    ))))
                    .await;
                return;
            }
        }
    });
    StreamingBlob::wrap(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// Sends the part's plaintext chunk by chunk; stops quietly if nobody listens.
async fn open_part(
    path: &Path,
    size: u64,
    key: &DataKey,
    tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) -> std::io::Result<()> {
    let file = tokio::fs::File::open(path).await?;
    let mut file = tokio::io::BufReader::with_capacity(1 << 20, file);
    let mut skip = [0u8; PART_PREFIX_LEN as usize];
    file.read_exact(&mut skip).await?;
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact(&mut header).await?;
    let header = Header::decode(&header).map_err(std::io::Error::other)?;
    let layout = header.layout();
    let opener = Opener::new(key, header);
    let chunks = layout.chunk_count(size);
    for index in 0..chunks {
        let mut sealed = vec![0u8; layout.sealed_chunk_len(index, size) as usize];
        file.read_exact(&mut sealed).await?;
        let plain = opener
            .open_chunk(index, index + 1 == chunks, &mut sealed)
            .map_err(std::io::Error::other)?;
        let plain = Bytes::copy_from_slice(plain);
        if tx.send(Ok(plain)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}
