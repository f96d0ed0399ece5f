//! Tenant API bodies (`/v1/api/...`). Field names follow the API contract.

use serde::{Deserialize, Serialize};

use crate::{EnvelopeParams, FileId, NodeId};

/// Every error the API returns: `{"error": ..., "code": ..., "request_id": ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A human sentence naming the problem (and the field, for validation errors).
    pub error: String,
    /// A stable machine code, e.g. `invalid_field`, `unauthorized`, `not_found`.
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `POST /v1/api/upload/initiate`. Every field is optional at the serde level so the
/// server can name exactly which one is missing.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InitiateRequest {
    #[serde(default)]
    pub bucket: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub file_size: Option<serde_json::Value>,
    #[serde(default)]
    pub content_type: Option<String>,
    /// Read into a typed `crate::pipeline::Pipeline`, which names the field of any error.
    #[serde(default)]
    pub pipeline: Option<serde_json::Value>,
    /// The legacy form of `pipeline`: capability strings such as `"encode"` or
    /// `"transcription:recommended"`.
    #[serde(default)]
    pub capabilities: Option<serde_json::Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadType {
    Single,
    Multipart,
}

/// One part of a multipart registration: a whole number of envelope chunks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartTarget {
    /// 1-based.
    pub part_number: u32,
    pub upload_url: String,
    /// First plaintext byte of this part.
    pub plaintext_offset: u64,
    pub plaintext_size: u64,
    /// First ciphertext byte of this part within the envelope (the header is in part 1).
    pub ciphertext_offset: u64,
    pub ciphertext_size: u64,
}

/// What initiate returns: everything the SDK needs for one upload, and no tenant
/// credential. Safe to hand to a browser.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    #[serde(rename = "type")]
    pub upload_type: UploadType,
    pub file_id: FileId,
    pub bucket: String,
    pub key: String,
    pub file_size: u64,
    pub content_type: String,
    /// The originator node chosen for this upload.
    pub node_id: NodeId,
    pub node_url: String,
    /// Single uploads: `PUT` the whole envelope here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_url: Option<String>,
    /// Multipart uploads: the node-side upload id (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartTarget>,
    /// Multipart uploads: `POST` here once every part is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_url: Option<String>,
    /// The per-file data key, base64 (standard alphabet, padded), 32 bytes.
    pub encryption_key: String,
    pub envelope: EnvelopeParams,
    pub ciphertext_size: u64,
    pub cdn_url: String,
    /// RFC 3339 UTC.
    pub expires_at: String,
}

/// What a node answers once an upload is stored and distributed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadReceipt {
    pub upload_id: String,
    pub size: u64,
    pub status: String,
}

/// What a node answers once one multipart part is stored (`PUT` of a part URL).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartStored {
    /// 1-based.
    pub part_number: u32,
    pub size: u64,
    /// Always `"stored"`.
    pub status: String,
}

/// `GET /v1/upload/{blob_id}/parts?token=T` (T: the upload's complete token, or a
/// single upload's token): what the node already holds of an upload, so a client
/// that crashed or lost its connection sends only what is missing. Read-only: the
/// token is not spent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadParts {
    pub upload_id: String,
    /// `receiving`: parts may still be sent; `stored`: the whole envelope is in the
    /// node's store (completion ran), `distributed`: and its shards are placed. Once
    /// `stored`, the bytes are committed: only the complete call remains to retry.
    pub state: String,
    /// Multipart parts fully received, ascending (empty once `stored`).
    pub parts: Vec<PartStored>,
}

/// What the SDK and `zib upload` resolve with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadResult {
    pub file_id: FileId,
    pub cdn_url: String,
}

/// `GET /v1/api/file/{file_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub file_id: FileId,
    pub bucket: String,
    pub key: String,
    pub file_size: u64,
    pub content_type: String,
    pub phase: String,
    pub cdn_url: String,
    pub created_at: String,
}

/// `GET /v1/api/me/buckets` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketInfo {
    pub name: String,
    pub object_count: u64,
    pub total_bytes: u64,
    pub created_at: String,
    /// What an S3 PUT onto a key holding an object does (docs/s3.md).
    #[serde(default)]
    pub overwrite: OverwriteMode,
}

/// A bucket's overwrite mode: `conflict` (the contract's 409 for different bytes) or
/// `supersede` (the PUT replaces the object, as an SDK re-upload does).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverwriteMode {
    #[default]
    Conflict,
    Supersede,
}

/// `PATCH /v1/api/me/buckets/{bucket}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketSettings {
    pub overwrite: OverwriteMode,
}

/// `DELETE /v1/api/me/buckets/{bucket}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketDeleted {
    pub success: bool,
    pub bucket: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketList {
    pub buckets: Vec<BucketInfo>,
}

/// `GET /v1/api/storage/{bucket}` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub key: String,
    pub file_id: FileId,
    pub size: u64,
    pub content_type: String,
    pub phase: String,
    pub cdn_url: String,
    pub created_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectList {
    pub bucket: String,
    pub objects: Vec<ObjectInfo>,
}
