//! The encoding-job protocol between the server and the nodes that advertise the
//! `encode` capability (docs/video.md). A node claims a queued job with a lease it
//! renews; every later call carries the lease token, and a call whose lease has
//! lapsed or whose job was cancelled is answered `410 Gone` so the node stops.
//!
//! Routes (node → server, Bearer cluster token like every node RPC):
//! - `POST /v1/node/jobs/claim` [`ClaimRequest`] → `200` [`ClaimedJob`] or `204`
//! - `POST /v1/node/jobs/{job_id}/lease` [`LeaseRenewal`] → [`LeaseStatus`]
//! - `GET  /v1/node/jobs/{job_id}/source` (header `X-ZiB-Lease: <token>`, optional
//!   `Range` over the *ciphertext* envelope) → the envelope bytes
//! - `POST /v1/node/jobs/{job_id}/probed` [`JobProbed`] → `204`
//! - `POST /v1/node/jobs/{job_id}/segments` [`SegmentStored`] → [`SegmentTargets`]
//! - `POST /v1/node/jobs/{job_id}/replicas` [`ReplicasStored`] → `204`
//! - `POST /v1/node/jobs/{job_id}/renditions/{name}/published` [`RenditionDone`] → `204`
//! - `POST /v1/node/jobs/{job_id}/done` [`JobDone`] → `204`
//! - `POST /v1/node/jobs/{job_id}/failed` [`JobFailure`] → `204`

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{BlobId, NodeId};

/// The header carrying the lease token on `GET …/source`.
pub const LEASE_HEADER: &str = "x-zib-lease";

/// `POST /v1/node/jobs/claim`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    pub node_id: NodeId,
}

/// A job handed to one node, with everything it needs to run it in memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimedJob {
    pub job_id: String,
    /// Proves the lease on every later call; only its hash is stored.
    pub lease_token: String,
    /// Renew well before this many seconds pass (the server's lease length).
    pub lease_secs: u64,
    pub source: JobSource,
    /// The job's AES-128 segment key, 32 hex characters. In memory only.
    pub hls_key: String,
    /// What else was asked of this job (thumbnails, aspect variants, AI stages): the
    /// seam later stages plug into. `{}` for a plain encode.
    #[serde(default)]
    pub options: Value,
}

/// Where and how to read the source video: the envelope ciphertext from the server
/// (`url`, ranged), decrypted by the node in memory with `data_key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSource {
    /// Absolute URL of `GET /v1/node/jobs/{job_id}/source`.
    pub url: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Envelope size in bytes (header included).
    pub ciphertext_size: u64,
    pub chunk_size: u32,
    /// The envelope's nonce prefix, hex.
    pub nonce_prefix: String,
    /// The file's data key, 64 hex characters. In memory only.
    pub data_key: String,
}

/// Which part of the job a progress figure belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStage {
    /// ffmpeg is running.
    Encoding,
    /// Encoded segments are being stored and pushed to their replicas.
    Sharding,
}

/// `POST /v1/node/jobs/{job_id}/lease`: renews the lease and reports progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseRenewal {
    pub node_id: NodeId,
    pub lease_token: String,
    pub stage: JobStage,
    /// 0–100, continuous across encoding and sharding.
    pub progress: f64,
    /// 0–100 within `stage`.
    pub phase_progress: f64,
    /// A short sentence for my-jobs' `phase_detail` ("encoding 720p (3 of 4)").
    #[serde(default)]
    pub detail: Option<String>,
}

/// The answer to a renewal (a lapsed or cancelled lease is a `410` instead).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    pub lease_secs: u64,
}

/// What ffprobe found in the source (shown on the job and pipeline responses).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoProbe {
    pub duration_secs: f64,
    /// Display dimensions (rotation applied).
    pub width: u32,
    pub height: u32,
    pub frame_rate: f64,
    pub video_codec: String,
    /// `None` when the source has no audio stream.
    pub audio_codec: Option<String>,
}

impl VideoProbe {
    pub fn has_audio(&self) -> bool {
        self.audio_codec.is_some()
    }
}

/// One rung of the ladder the node will produce, before any of it exists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RenditionPlan {
    /// `360p`, `480p`, `720p`, `1080p`, `2160p` (by the short side).
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// RFC 6381 codecs of the variant, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
    pub frame_rate: f64,
}

/// `POST /v1/node/jobs/{job_id}/probed`: the source was probed; this is the ladder,
/// lowest rung first (the order rungs are produced and published).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobProbed {
    pub lease_token: String,
    pub probe: VideoProbe,
    pub renditions: Vec<RenditionPlan>,
}

/// `POST /v1/node/jobs/{job_id}/segments`: one encrypted segment is stored on the
/// encoding node under `blob_id`; the answer says where its replicas go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentStored {
    pub node_id: NodeId,
    pub lease_token: String,
    pub rendition: String,
    /// 0-based media sequence number within the rendition.
    pub seq: u32,
    pub duration_ms: u64,
    pub size: u64,
    /// BLAKE3 of the encrypted bytes, hex.
    pub blake3: String,
    /// AES-128-CBC IV, 32 hex characters.
    pub iv: String,
    pub blob_id: BlobId,
}

/// Replica targets for one segment: push the same bytes under the same `blob_id`
/// with `PUT {node_url}/v1/shards/{blob_id}?token=…` (a `Segment` capability).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentTargets {
    pub targets: Vec<ReplicaTarget>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaTarget {
    pub node_id: NodeId,
    pub node_url: String,
    pub token: String,
}

/// `POST /v1/node/jobs/{job_id}/replicas`: these nodes answered the push with the
/// segment's BLAKE3.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicasStored {
    pub lease_token: String,
    pub blob_id: BlobId,
    pub node_ids: Vec<NodeId>,
}

/// `POST /v1/node/jobs/{job_id}/renditions/{name}/published`: every segment of the
/// rung is stored (on the encoding node at least); it may join the master playlist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenditionDone {
    pub lease_token: String,
    pub segment_count: u32,
}

/// `POST /v1/node/jobs/{job_id}/done`: every rung is published and every replica
/// push was attempted; the job is `local_complete`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDone {
    pub lease_token: String,
}

/// `POST /v1/node/jobs/{job_id}/failed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailure {
    pub lease_token: String,
    /// Tenant-readable: shown as `error_message` / `last_error`.
    pub error_message: String,
    /// The source itself is the problem (not a video, undecodable): no retry, the
    /// job goes straight to `failed_user_action`.
    pub permanent: bool,
}
