//! Server ↔ node RPC (HTTP + JSON). Nodes call the server under `/v1/node/...` with
//! the cluster token as Bearer; the server's commands for a node ride on heartbeat
//! responses so an offline node catches up when it returns. The server's durability
//! workers call the nodes' `/v1/shards/{blob_id}/challenge` and `/v1/blobs` with the
//! same token ([`ChallengeRequest`], [`BlobInventory`]). Both sides use these types;
//! neither keeps a copy.

use serde::{Deserialize, Serialize};

use crate::{BlobId, EnvelopeParams, ErasureParams, NodeId};

/// `POST /v1/node/register`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub node_id: NodeId,
    /// Base URL peers, the CDN and browsers use to reach this node.
    pub public_url: String,
    pub capacity_bytes: u64,
    pub free_bytes: u64,
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// Ed25519 public key (hex) that signs every capability token the node accepts.
    pub capability_public_key: String,
    pub heartbeat_interval_secs: u64,
}

/// `POST /v1/node/heartbeat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub node_id: NodeId,
    pub free_bytes: u64,
    pub used_bytes: u64,
    /// Commands from earlier heartbeats that the node has carried out.
    #[serde(default)]
    pub acked_commands: Vec<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    #[serde(default)]
    pub commands: Vec<NodeCommand>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCommand {
    pub id: i64,
    #[serde(flatten)]
    pub action: NodeAction,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum NodeAction {
    /// Remove these blobs; missing ones count as removed.
    DeleteBlobs { blob_ids: Vec<BlobId> },
}

/// `POST /v1/node/uploads/{upload_blob_id}/received`: the originator holds the whole
/// envelope and asks where its shards go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadReceivedRequest {
    pub node_id: NodeId,
    /// The ciphertext bytes held: the whole upload's, or with `part` that part's.
    pub size: u64,
    /// A multipart upload's part (1-based), coded on its own as it arrives: the plan
    /// places that part's segments only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<u32>,
}

/// Where every shard of every segment goes. A target on the originator itself is
/// stored locally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistributionPlan {
    pub erasure: ErasureParams,
    pub segments: Vec<SegmentPlan>,
    /// A small file: no shards (`segments` is empty); the originator sends the whole
    /// envelope to `POST /v1/node/uploads/{upload_blob_id}/inline` instead, and the
    /// server keeps it in its metadata store.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inline: bool,
    /// The number of the first segment placed: a part's segments are numbered
    /// across the whole file, the part's first byte starting this one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub first_segment: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The most a server keeps inline: its `inline_threshold` may not exceed it, and a
/// node sends no larger envelope whole (it holds it in memory to do so).
pub const INLINE_MAX_BYTES: u64 = 1024 * 1024;

/// `POST /v1/node/uploads/{upload_blob_id}/inline?node_id=…`: the query of the call
/// whose body is a small upload's whole envelope (see [`DistributionPlan::inline`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineUploadQuery {
    pub node_id: NodeId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentPlan {
    pub segment: u32,
    /// One per shard index `0..k+m`, in index order.
    pub targets: Vec<ShardTarget>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardTarget {
    pub index: u8,
    pub node_id: NodeId,
    pub node_url: String,
    pub blob_id: BlobId,
    /// Capability for `PUT {node_url}/v1/shards/{blob_id}`.
    pub token: String,
}

/// `POST /v1/node/uploads/{upload_blob_id}/distributed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistributedRequest {
    pub node_id: NodeId,
    pub shards: Vec<StoredShard>,
    /// The shards of one part (1-based) of an upload whose parts are coded as they
    /// arrive; the file stays uploading. For such an upload, no part and no shards
    /// says every part is in: the file is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredShard {
    pub segment: u32,
    pub index: u8,
    pub blob_id: BlobId,
    pub node_id: NodeId,
    pub size: u64,
    /// BLAKE3 of the shard bytes, hex.
    pub blake3: String,
}

/// What a capability token authorises. Signed by the server (Ed25519), checked by
/// the node named in it; single use (by `jti`) once the operation succeeds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityClaims {
    pub op: CapabilityOp,
    pub node_id: NodeId,
    pub blob_id: BlobId,
    /// Exact byte count of the body (for `complete`: the whole envelope).
    pub size: u64,
    /// Multipart only: 1-based part number and its ciphertext offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Multipart `complete` only: how many parts make the envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
    /// The envelope header the server issued at initiate, on the tokens whose body
    /// starts with it (a single upload, multipart part 1): the node refuses a body
    /// whose first 16 bytes are not exactly this header before storing anything.
    /// Absent on tokens of servers from before the check (they expire within the
    /// upload expiry); a node then takes the body unchecked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<EnvelopeParams>,
    /// Unix seconds.
    pub expires_at: u64,
    /// Unique token id, remembered by the node once used.
    pub jti: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapabilityOp {
    /// Whole single upload.
    Upload,
    /// One multipart part.
    Part,
    /// Multipart completion.
    Complete,
    /// A shard pushed by a peer.
    Shard,
    /// A whole encrypted HLS segment replica, pushed by the encoding node or the
    /// repairer; the node also serves it publicly at `GET /v1/segments/{blob_id}`.
    Segment,
}

/// `POST /v1/shards/{blob_id}/challenge` (server → node). A fresh random nonce per
/// challenge keys the hash, so only a node that still holds the bytes of the range
/// can answer. The expected answer is `zib_crypto::challenge::challenge_answer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeRequest {
    /// 32 bytes as 64 hex characters.
    pub nonce: String,
    /// First byte of the range.
    pub offset: u64,
    /// Bytes in the range; `offset + len` must not pass the end of the blob.
    pub len: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// Hex of `blake3::keyed_hash(nonce, bytes[offset..offset + len])`.
    pub blake3: String,
}

/// `GET /v1/blobs` (server → node): every blob stored on the node (uploads still
/// being received are not stored yet and are never listed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInventory {
    pub blobs: Vec<InventoryEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    pub blob_id: BlobId,
    pub size: u64,
    /// When the blob's bytes were last written (Unix milliseconds): lets an orphan
    /// collector spare blobs younger than its grace period, such as shards whose
    /// distribution the server has not recorded yet.
    pub modified_at_ms: i64,
}

/// `PUT /v1/shards/{blob_id}` answer (a shard pushed by a peer or the repairer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStored {
    pub blob_id: BlobId,
    pub size: u64,
    /// BLAKE3 of the stored bytes, hex (also the `ETag`).
    pub blake3: String,
}

/// `DELETE /v1/shards/{blob_id}` answer: deleting is idempotent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardDeleted {
    pub blob_id: BlobId,
    pub status: DeleteStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteStatus {
    Deleted,
    /// The blob was not stored (never, or deleted before).
    AlreadyDeleted,
}

/// A node's `GET /healthz`, read by operators and the test harness.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHealth {
    /// Always `"ok"` when the node answers.
    pub status: String,
    pub node_id: NodeId,
    /// Whether the node has registered with its server since it started.
    pub registered: bool,
    pub used_bytes: u64,
    pub free_bytes: u64,
    /// The memory budget for segments being erasure-coded and pushed, shared by
    /// every upload this node distributes.
    #[serde(default)]
    pub upload_buffers: BufferUse,
}

/// How much of a node's upload buffer budget is used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferUse {
    pub limit_bytes: u64,
    pub in_use_bytes: u64,
    /// The most held at once since the node started.
    pub high_water_bytes: u64,
}
