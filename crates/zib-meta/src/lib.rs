//! The metadata store. Every SQL statement of ZiB lives in this crate; callers see
//! typed functions on [`Store`] only, so a PostgreSQL engine can follow without
//! touching them. Times are unix milliseconds (`i64`).

use std::path::Path;

use zib_proto::{BlobId, FileId, NodeId};

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("metadata migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("metadata store holds an invalid value in {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("{0} already exists")]
    Conflict(&'static str),
}

pub type Result<T> = std::result::Result<T, MetaError>;

/// Lifecycle of a file (DESIGN.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilePhase {
    /// Registered at initiate; no byte received yet.
    Pending,
    /// The originator holds the envelope and is distributing shards.
    Uploading,
    /// Every shard is stored on its node.
    Distributed,
    /// Every shard verified on its holder.
    Safe,
    Cancelled,
    Failed,
}

impl FilePhase {
    pub fn as_str(&self) -> &'static str {
        match self {
            FilePhase::Pending => "pending",
            FilePhase::Uploading => "uploading",
            FilePhase::Distributed => "distributed",
            FilePhase::Safe => "safe",
            FilePhase::Cancelled => "cancelled",
            FilePhase::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => FilePhase::Pending,
            "uploading" => FilePhase::Uploading,
            "distributed" => FilePhase::Distributed,
            "safe" => FilePhase::Safe,
            "cancelled" => FilePhase::Cancelled,
            "failed" => FilePhase::Failed,
            _ => return None,
        })
    }
    /// Phases in which the CDN serves the file.
    pub fn is_readable(&self) -> bool {
        matches!(self, FilePhase::Distributed | FilePhase::Safe)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    /// `ten_` + 20 alphanumerics.
    pub id: String,
    pub name: String,
    pub access_key: String,
    /// Hex SHA-256 of the secret key; the secret itself is never stored.
    pub secret_hash: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub id: i64,
    pub tenant_id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketStats {
    pub name: String,
    /// Live objects (the current file of each key, phase distributed or safe).
    pub object_count: u64,
    pub total_bytes: u64,
    pub created_at: i64,
}

/// A file row: one upload of one object key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRow {
    pub file_id: FileId,
    pub tenant_id: String,
    pub bucket_id: i64,
    pub bucket: String,
    pub object_key: String,
    pub size: u64,
    pub ciphertext_size: u64,
    pub content_type: String,
    pub phase: FilePhase,
    pub cancelled_reason: Option<String>,
    pub wrapped_dek: Vec<u8>,
    pub chunk_size: u32,
    /// 7 bytes.
    pub nonce_prefix: Vec<u8>,
    pub data_shards: u8,
    pub parity_shards: u8,
    pub shard_size: u32,
    pub originator: NodeId,
    /// The opaque id the originator stores the whole envelope under.
    pub upload_blob_id: BlobId,
    pub part_count: u32,
    pub expires_at: i64,
    pub created_at: i64,
    pub distributed_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardRow {
    pub file_id: FileId,
    pub segment: u32,
    pub index: u8,
    pub node_id: NodeId,
    pub blob_id: BlobId,
    pub size: u64,
    /// 32 bytes.
    pub blake3: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRow {
    pub key: String,
    pub file: FileRow,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRow {
    pub node_id: NodeId,
    pub public_url: String,
    pub capacity_bytes: u64,
    pub free_bytes: u64,
    pub used_bytes: u64,
    pub zone: Option<String>,
    pub capabilities: Vec<String>,
    pub last_heartbeat_at: i64,
    pub registered_at: i64,
}

/// A command waiting for a node's next heartbeat. `action` is the JSON of
/// `zib_proto::node_rpc::NodeAction`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandRow {
    pub id: i64,
    pub node_id: NodeId,
    pub action: serde_json::Value,
    pub created_at: i64,
}

/// What deleting a file removed, so the caller can tell the nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletedFile {
    pub file: FileRow,
    /// Every blob (shards and the originator's upload blob) with its holder.
    pub blobs: Vec<(NodeId, BlobId)>,
    pub shard_rows: u64,
}

/// A connection pool to the metadata store.
#[derive(Clone)]
pub struct Store {
    _private: (),
}

impl Store {
    /// Opens (creating if needed) a SQLite store in WAL mode and runs migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        todo!()
    }

    // --- tenants -------------------------------------------------------------

    pub async fn create_tenant(&self, name: &str, access_key: &str, secret_hash: &str) -> Result<Tenant> {
        todo!()
    }
    pub async fn tenant_by_access_key(&self, access_key: &str) -> Result<Option<Tenant>> {
        todo!()
    }
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        todo!()
    }

    // --- buckets -------------------------------------------------------------

    /// Returns the tenant's bucket, creating it on first use.
    pub async fn ensure_bucket(&self, tenant_id: &str, name: &str) -> Result<Bucket> {
        todo!()
    }
    pub async fn bucket(&self, tenant_id: &str, name: &str) -> Result<Option<Bucket>> {
        todo!()
    }
    pub async fn list_bucket_stats(&self, tenant_id: &str) -> Result<Vec<BucketStats>> {
        todo!()
    }

    // --- files ---------------------------------------------------------------

    /// Inserts a new file in phase `pending`. `bucket` and `created_at` of the row
    /// are taken as given.
    pub async fn insert_file(&self, file: &FileRow) -> Result<()> {
        todo!()
    }
    /// Any tenant's file: for the CDN, whose URL is the capability.
    pub async fn file(&self, file_id: FileId) -> Result<Option<FileRow>> {
        todo!()
    }
    /// The tenant's file, or `None` for a missing id and another tenant's id alike.
    pub async fn file_for_tenant(&self, tenant_id: &str, file_id: FileId) -> Result<Option<FileRow>> {
        todo!()
    }
    pub async fn file_by_upload_blob(&self, blob_id: BlobId) -> Result<Option<FileRow>> {
        todo!()
    }
    /// Moves `pending` → `uploading`; false if the file was in another phase.
    pub async fn mark_uploading(&self, file_id: FileId) -> Result<bool> {
        todo!()
    }
    /// Sets `failed` with a reason.
    pub async fn mark_failed(&self, file_id: FileId, reason: &str) -> Result<()> {
        todo!()
    }
    /// In one transaction: records every shard, moves the file to `distributed`, and
    /// points (bucket, key) at it. A file previously current for that key becomes
    /// `cancelled` with `cancelled_reason = supersede_reason`; its id is returned.
    pub async fn complete_distribution(
        &self,
        file_id: FileId,
        shards: &[ShardRow],
        now: i64,
        supersede_reason: &str,
    ) -> Result<Option<FileId>> {
        todo!()
    }
    pub async fn shards_for_file(&self, file_id: FileId) -> Result<Vec<ShardRow>> {
        todo!()
    }
    /// Current objects of a bucket whose key starts with `prefix`, by key.
    pub async fn list_objects(&self, tenant_id: &str, bucket: &str, prefix: &str) -> Result<Vec<ObjectRow>> {
        todo!()
    }
    /// The current file of (bucket, key) for this tenant.
    pub async fn object(&self, tenant_id: &str, bucket: &str, key: &str) -> Result<Option<FileRow>> {
        todo!()
    }
    /// Deletes the tenant's file, its shard rows and its object pointer (if current)
    /// in one transaction, and queues a `delete_blobs` command for every holder.
    /// `None` for a missing id and another tenant's id alike.
    pub async fn delete_file(&self, tenant_id: &str, file_id: FileId, now: i64) -> Result<Option<DeletedFile>> {
        todo!()
    }

    // --- nodes ---------------------------------------------------------------

    /// Inserts or refreshes a node (registration counts as a heartbeat).
    pub async fn upsert_node(&self, node: &NodeRow) -> Result<()> {
        todo!()
    }
    /// Records a heartbeat; false if the node is unknown (it must register).
    pub async fn heartbeat(&self, node_id: &NodeId, free_bytes: u64, used_bytes: u64, now: i64) -> Result<bool> {
        todo!()
    }
    pub async fn node(&self, node_id: &NodeId) -> Result<Option<NodeRow>> {
        todo!()
    }
    pub async fn list_nodes(&self) -> Result<Vec<NodeRow>> {
        todo!()
    }

    // --- node commands -------------------------------------------------------

    pub async fn enqueue_command(&self, node_id: &NodeId, action: &serde_json::Value, now: i64) -> Result<i64> {
        todo!()
    }
    /// Commands not yet acknowledged, oldest first.
    pub async fn pending_commands(&self, node_id: &NodeId) -> Result<Vec<CommandRow>> {
        todo!()
    }
    pub async fn ack_commands(&self, node_id: &NodeId, ids: &[i64], now: i64) -> Result<()> {
        todo!()
    }
}
