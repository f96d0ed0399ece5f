//! The metadata store. Every SQL statement of ZiB lives in this crate; callers see
//! typed functions on [`Store`] only, so a PostgreSQL engine can follow without
//! touching them. What is particular to the database engine (driver types, pool
//! settings, write locking, migrations) lives in `engine`; see
//! docs/metadata-store.md. Times are unix milliseconds (`i64`).

use std::path::Path;

use zib_proto::{BlobId, FileId, NodeId};

mod backup;
mod buckets;
mod compute;
mod convert;
mod counts;
mod derived;
mod durability;
mod encoding;
mod engine;
mod file_parts;
mod files;
mod nodes;
mod object_attrs;
mod part_shards;
mod redundancy;
mod s3;
mod s3_completed;
mod tenants;
mod webhooks;

pub use backup::{restore, BackupReport, Restored};
pub use buckets::{BucketDeletion, OverwriteMode, WriteTarget};
pub use compute::{
    ComputeEventBuilder, ComputeJobRow, ComputeJobState, ComputeSubmission, NewComputeJob,
    COMPUTE_LAPSED_ERROR, COMPUTE_RETRY, COMPUTE_TRIES,
};
pub use derived::{DerivedFile, DerivedKind, JobArtifact};
pub use encoding::hls::{RenditionRow, ReplicaRow, SegmentHolders, SegmentRow};
pub use encoding::replicas::{JobReplication, SegmentReplica};
pub use encoding::{
    variant_object_key, EncodingJobRow, JobCreation, JobPhase, JobThumbnails, NewEncodingJob,
    NewStreamFile, NewVariantJob, VariantCreation, ASPECT_VARIANT_KIND,
};
pub use file_parts::{FilePart, ListedCompletion};
pub use object_attrs::{Checksums, ObjectHeaders, S3Content, Tags};
pub use s3_completed::CompletedUpload;
pub use webhooks::{
    AttemptOutcome, AttemptRecord, ClaimedDelivery, DeliveryStatus, DeliveryTarget, EndpointPatch,
    NewEndpoint, NewWebhookEvent, ResolvedTarget, TenantWebhook, WebhookAttempt, WebhookDelivery,
    WebhookEndpoint, WebhookEvent, SNIPPET_MAX_BYTES,
};

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("metadata migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("metadata store holds an invalid value in {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// A uniqueness or state rule refused the change; the text says which
    /// (e.g. "tenant access key already exists", "file is not awaiting distribution").
    #[error("{0}")]
    Conflict(&'static str),
    /// The row names a bucket that was deleted meanwhile (DeleteBucket raced an upload).
    #[error("the bucket was deleted meanwhile")]
    BucketDeleted,
    /// A backup or restore was refused; the text says why (the target exists, the
    /// store is in use, the file is no ZiB metadata store).
    #[error("{0}")]
    Backup(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
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
    /// Plaintext bytes per part of a multipart upload whose parts are erasure-coded
    /// on their own as they arrive (no segment crosses a part); 0 when the segments
    /// run across the whole envelope (single uploads, and multipart files stored
    /// before parts were coded on their own).
    pub part_size: u64,
    pub expires_at: i64,
    pub created_at: i64,
    pub distributed_at: Option<i64>,
}

impl FileRow {
    /// Stored as one envelope per part (an S3 multipart upload, `file_parts`): it has
    /// no nonce prefix of its own.
    pub fn in_listed_parts(&self) -> bool {
        self.nonce_prefix.is_empty()
    }

    /// The Reed-Solomon layout this file was coded with.
    pub fn erasure(&self) -> zib_proto::ErasureParams {
        zib_proto::ErasureParams {
            data_shards: self.data_shards,
            parity_shards: self.parity_shards,
            shard_size: self.shard_size,
        }
    }
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
    /// Since when the node is being drained (`None`: it is not). Registration and
    /// heartbeats leave it as it is.
    pub draining_since: Option<i64>,
}

/// What a node holds that the store knows of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeHoldings {
    pub shards: u64,
    pub segment_copies: u64,
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

pub use durability::{AuditTarget, SafeFile};
pub use encoding::{
    Completion, EventBuilder, FailureOutcome, JobEvent, LeaseUpdate, NewRendition, NewSegment,
    ProgressThrottle, Published, RetryPolicy,
};
pub use redundancy::Redundancy;
pub use s3::{ListFrom, S3ObjectEntry};

/// What completing a distribution did to the object key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Distribution {
    /// The file is now current for its key; a previous current file was cancelled.
    Current { superseded: Option<FileId> },
    /// A later registration of the key already completed; this file was cancelled.
    Stale { current: FileId },
    /// A derived file (a job's artefact) is stored: no key, nothing superseded, no
    /// event.
    Derived,
}

/// A connection pool to the metadata store.
#[derive(Clone)]
pub struct Store {
    pool: engine::DbPool,
}

impl Store {
    /// Opens (creating if needed) a SQLite store in WAL mode and runs migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        Ok(Store {
            pool: engine::open(path).await?,
        })
    }

    /// Closes every connection (waiting for those in use): the store's files are
    /// then free, e.g. for a restore.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a transaction that holds the write lock from its first statement, so a
    /// read-then-write transaction cannot fail on a snapshot another writer moved.
    async fn begin_write(&self) -> Result<engine::DbTx> {
        engine::begin_write(&self.pool).await
    }
}

/// Wall-clock unix milliseconds, for the few calls whose signature carries no `now`.
fn now_millis() -> i64 {
    zib_util::time::now_ms()
}
