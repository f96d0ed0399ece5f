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
//! - `POST /v1/node/jobs/{job_id}/artifacts/{kind}?seq=N` (header `X-ZiB-Lease`,
//!   `Content-Type` of the artefact, body: its plaintext bytes, at most
//!   [`MAX_ARTIFACT_BYTES`]) → `200` [`ArtifactStored`]: the server seals it and stores
//!   it as an ordinary encrypted file of the tenant (`kind`: [`ArtifactKind`])
//! - `POST /v1/node/jobs/{job_id}/thumbnails` [`ThumbnailsRegistered`] → `204`
//! - `POST /v1/node/jobs/{job_id}/done` [`JobDone`] → `204`
//! - `POST /v1/node/jobs/{job_id}/failed` [`JobFailure`] → `204`

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{BlobId, FileId, NodeId};

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
    /// The thumbnails to make after the ladder; `None`: none (the tenant opted out).
    #[serde(default)]
    pub thumbnails: Option<ThumbnailPlan>,
    /// `Some("9:16")`: an aspect-variant job. Centre-crop the source to this display
    /// aspect and encode the variant ladder (`zib_media::plan_variant_ladder`); its
    /// thumbnails are a poster only.
    #[serde(default)]
    pub aspect_ratio: Option<String>,
}

/// What thumbnails a job makes (API reference, "Thumbnails"), defaults resolved by
/// the server from the request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThumbnailPlan {
    /// `"10%"` or `"5s"`; `None`: the default, 10 % of the duration clamped to 1–10 s
    /// (`zib_media::poster_time`).
    pub poster_at: Option<String>,
    /// `None`: no sprite sheets (an aspect-variant job).
    pub sprite: Option<SpritePlan>,
}

/// Scrub-bar sprites: one tile every `interval_secs`, `width_px` wide, 10×10 tiles per
/// JPEG sheet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpritePlan {
    pub interval_secs: u32,
    pub width_px: u32,
}

/// The largest artefact body a node may send (a 10×10 sheet of 1920 px tiles is far
/// below it).
pub const MAX_ARTIFACT_BYTES: usize = 32 * 1024 * 1024;

/// What a job's artefact is; also its `{kind}` path segment and `job_artifacts.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// One JPEG frame (`image/jpeg`).
    Poster,
    /// One 10×10 JPEG grid of tiles (`image/jpeg`), `seq` 0, 1, … in tile order.
    SpriteSheet,
    /// The WebVTT track whose cues name sheet regions (`text/vtt`).
    SpriteVtt,
}

impl ArtifactKind {
    pub const ALL: [Self; 3] = [Self::Poster, Self::SpriteSheet, Self::SpriteVtt];

    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::Poster => "poster",
            ArtifactKind::SpriteSheet => "sprite_sheet",
            ArtifactKind::SpriteVtt => "sprite_vtt",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The Content-Type the artefact is stored (and served by `/objects/…`) with.
    pub fn content_type(self) -> &'static str {
        match self {
            ArtifactKind::Poster | ArtifactKind::SpriteSheet => "image/jpeg",
            ArtifactKind::SpriteVtt => "text/vtt",
        }
    }
}

/// The answer to an artefact upload: the new file, and its CDN URL
/// (`{cdn}/objects/{file_id}`, what the sprite VTT's cues name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactStored {
    pub file_id: FileId,
    pub url: String,
}

/// `POST /v1/node/jobs/{job_id}/thumbnails`: every artefact is stored; the job's
/// `thumbnails` block may show them. Sent before `done`, so `encoding.complete`
/// carries them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThumbnailsRegistered {
    pub lease_token: String,
    pub poster_file_id: FileId,
    /// In tile order; empty for an aspect-variant job.
    #[serde(default)]
    pub sprite_sheet_file_ids: Vec<FileId>,
    pub sprite_vtt_file_id: Option<FileId>,
}

/// Where and how to read the source video: the envelope ciphertext from the server
/// (`url`, ranged), decrypted by the node in memory with `data_key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSource {
    /// Absolute URL of `GET /v1/node/jobs/{job_id}/source`.
    pub url: String,
    /// Plaintext size in bytes (with `parts`: the sum of theirs).
    pub size: u64,
    /// Envelope size in bytes (header included; with `parts`: the sum of theirs).
    pub ciphertext_size: u64,
    /// The chunk size of the envelope, or of every part's envelope.
    pub chunk_size: u32,
    /// The envelope's nonce prefix, hex. Unused (empty) when `parts` is not empty.
    pub nonce_prefix: String,
    /// The file's data key, 64 hex characters. In memory only.
    pub data_key: String,
    /// A file stored as several envelopes (an S3 multipart upload, one per part):
    /// its parts in order, whose envelopes follow each other in the ciphertext the
    /// `url` serves. Empty: one envelope (`nonce_prefix`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<SourcePart>,
}

/// One envelope of a source stored in parts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePart {
    /// Plaintext bytes.
    pub size: u64,
    /// Envelope bytes (header included).
    pub ciphertext_size: u64,
    /// The part envelope's nonce prefix, hex.
    pub nonce_prefix: String,
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
