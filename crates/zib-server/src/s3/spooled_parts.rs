//! Multipart uploads created before parts were coded as they arrive: their parts
//! wait on the server's disk, in `s3_spool_dir/{upload_id}/`, each sealed (envelope
//! v1) under a data key of the upload's own that the master key wraps (the spool
//! never holds plaintext or a key in clear), and Complete re-reads them in order and
//! feeds the plaintext to the gateway PUT a single request uses. Kept so an upload in
//! progress across an upgrade still completes; new uploads are coded part by part
//! (`coded_parts`).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use s3s::dto::StreamingBlob;
use s3s::S3Result;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use zib_crypto::envelope::{Opener, HEADER_LEN};
use zib_crypto::{DataKey, Header};

use crate::state::AppState;

use super::checksums::{self, Expected};
use super::conditional::WriteCondition;
use super::errors::internal;
use super::gateway::{self, PutRequest, Sealing, Stored};
use super::multipart_upload::{
    no_such_upload, OpenUpload, PartUpload, SealedPart, Spool, StoredPart,
};

/// A part file starts with its plaintext size (u64 BE) and MD5, then the envelope,
/// then its checksums as JSON (absent when it has none).
const PART_PREFIX_LEN: u64 = 8 + 16;
/// Decrypted chunks buffered between the spool reader and the gateway's sealing.
const OPENED_CHUNKS_AHEAD: usize = 4;

/// The upload's own data key (spooled uploads only).
fn data_key(state: &AppState, upload: &OpenUpload) -> S3Result<DataKey> {
    let wrapped = hex::decode(&upload.record.wrapped_key).map_err(internal)?;
    state
        .config
        .master_key
        .unwrap(
            &wrapped,
            &wrap_context(&upload.upload_id, &upload.record.tenant_id),
        )
        .map_err(|_| internal("the upload's data key does not unwrap"))
}

pub(super) fn wrap_context(upload_id: &str, tenant_id: &str) -> Vec<u8> {
    format!("zib-s3-multipart:{upload_id}:{tenant_id}").into_bytes()
}

/// Seals the part into the spool; returns its hex MD5 (the part's ETag) and
/// checksums. A part sent again replaces the earlier one only once it has arrived
/// whole.
pub(super) async fn upload_part(
    state: &AppState,
    upload: &OpenUpload,
    part: PartUpload,
) -> S3Result<SealedPart> {
    let key = data_key(state, upload)?;
    let path = part_path(&upload.dir, part.part_number);
    let tmp = path.with_extension(format!("tmp-{:08x}", rand::random::<u32>()));
    let part_upload_id = part.upload_id.clone();
    let written = write_part(&tmp, &key, part).await;
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

fn part_path(dir: &Path, number: i32) -> PathBuf {
    dir.join(format!("part-{number:05}"))
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
pub(super) async fn stored_parts(dir: &Path) -> S3Result<Vec<StoredPart>> {
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

/// A spooled upload whose list checked out: what is left is the long part,
/// re-sealing the spooled parts into the object.
pub struct SpooledComplete {
    upload: OpenUpload,
    parts: Vec<(PathBuf, u64)>,
    size: u64,
    condition: WriteCondition,
    /// The listed parts' checksums, in order (a COMPOSITE checksum is made of them).
    part_checksums: Vec<zib_meta::Checksums>,
    checksums: Expected,
}

/// The listed parts (`chosen`, checked by the caller) as the spool's files.
pub(super) fn prepare(
    upload: OpenUpload,
    chosen: Vec<StoredPart>,
    condition: WriteCondition,
) -> S3Result<SpooledComplete> {
    let parts: Vec<(PathBuf, u64)> = chosen
        .iter()
        .map(|p| (part_path(&upload.dir, p.number), p.size))
        .collect();
    let part_checksums: Vec<_> = chosen.into_iter().map(|p| p.checksums).collect();
    let checksums = checksums::for_complete(
        upload.record.checksum(),
        &part_checksums,
        &Default::default(),
    )?;
    Ok(SpooledComplete {
        size: parts.iter().map(|(_, size)| size).sum(),
        upload,
        parts,
        condition,
        part_checksums,
        checksums,
    })
}

impl SpooledComplete {
    pub(super) fn with_object_checksum(mut self, sent: &s3s::dto::Checksum) -> S3Result<Self> {
        self.checksums =
            checksums::for_complete(self.upload.record.checksum(), &self.part_checksums, sent)?;
        Ok(self)
    }

    /// Stores the parts, in the order listed, as one object.
    pub(super) async fn store(self, state: &AppState) -> S3Result<(Stored, Spool)> {
        let SpooledComplete {
            upload,
            parts,
            size,
            condition,
            checksums,
            ..
        } = self;
        let key = data_key(state, &upload)?;
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
                body: opened_parts(parts, key),
                attrs: upload.record.attrs,
                condition,
            },
        )
        .await?;
        tracing::info!(upload_id = %upload.upload_id, parts = count, size, "spooled s3 multipart upload completed");
        Ok((stored, Spool { dir: upload.dir }))
    }
}
