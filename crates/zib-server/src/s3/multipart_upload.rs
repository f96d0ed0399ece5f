//! An S3 multipart upload as every kind of it is known: its record
//! (`s3_spool_dir/{upload_id}/upload.json`: tenant, key, what CreateMultipartUpload
//! asked for, and the file its parts are coded into), the part it is sent, and the
//! parts it holds. `multipart` answers the operations; `coded_parts` and
//! `spooled_parts` store the parts.

use std::path::{Path, PathBuf};

use s3s::dto::StreamingBlob;
use s3s::{s3_error, S3Result};
use serde::{Deserialize, Serialize};
use zib_proto::FileId;

use crate::domain::multipart_spool::{is_upload_id, UPLOAD_FILE};
use crate::state::AppState;

use super::checksums::{Algo, Expected, UploadChecksum};
use super::errors::internal;
use super::object_headers::ObjectAttrs;

#[derive(Serialize, Deserialize)]
pub(super) struct UploadRecord {
    pub tenant_id: String,
    pub bucket: String,
    pub key: String,
    pub content_type: String,
    pub created_ms: i64,
    /// The file the parts are coded into; absent for an upload created before parts
    /// were coded, whose parts are spooled here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<FileId>,
    /// A spooled upload's data key, wrapped by the master key (hex).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub wrapped_key: String,
    /// Headers, metadata and tags given at CreateMultipartUpload, stored at Complete.
    #[serde(default)]
    pub attrs: ObjectAttrs,
    /// `x-amz-checksum-algorithm` at creation (S3's name): every part gets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
    /// `x-amz-checksum-type: FULL_OBJECT` (else COMPOSITE).
    #[serde(default)]
    pub checksum_full_object: bool,
}

impl UploadRecord {
    pub fn checksum(&self) -> Option<UploadChecksum> {
        let algo = Algo::parse(self.checksum_algorithm.as_deref()?)?;
        Some(UploadChecksum {
            algo,
            full_object: self.checksum_full_object,
        })
    }
}

/// What a part just stored is known by.
pub struct SealedPart {
    /// Hex MD5 of the part's plaintext: its ETag.
    pub md5_hex: String,
    pub checksums: zib_meta::Checksums,
}

/// One stored part, as ListParts and Complete see it.
#[derive(Clone)]
pub struct StoredPart {
    pub number: i32,
    pub size: u64,
    /// Hex MD5 of the part's plaintext: its ETag.
    pub md5: String,
    pub modified_ms: i64,
    /// Its `x-amz-checksum-*`.
    pub checksums: zib_meta::Checksums,
}

/// An upload the request may act on: its directory and record.
pub(super) struct OpenUpload {
    pub upload_id: String,
    pub dir: PathBuf,
    pub record: UploadRecord,
}

pub(super) fn no_such_upload(upload_id: &str) -> s3s::S3Error {
    s3_error!(
        NoSuchUpload,
        "multipart upload {upload_id} does not exist (completed, aborted, expired or never created)"
    )
}

/// The upload, if it exists and belongs to this tenant, bucket and key; otherwise
/// NoSuchUpload, so another tenant learns nothing of it.
pub(super) async fn open(
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
    Ok(OpenUpload {
        upload_id: upload_id.to_string(),
        dir,
        record,
    })
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

/// The spool of an upload whose object is stored.
pub struct Spool {
    pub(super) dir: PathBuf,
}

impl Spool {
    pub async fn remove(self) {
        remove_spool(&self.dir).await;
    }
}

pub(super) async fn remove_spool(dir: &Path) {
    if let Err(e) = tokio::fs::remove_dir_all(dir).await {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove a multipart spool");
    }
}
