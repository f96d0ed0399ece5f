//! AI compute jobs (API reference, "Compute / AI"; docs/ai.md): transcription and
//! vision runs over a stored video, on nodes that advertise `transcription:<tier>` or
//! `vision:<tier>`. Asked with an encode, a run waits for that encode and is offered
//! first to the node that encoded it; asked alone (`submitTranscription`,
//! `submitVisionAI`), any capable node claims it. Nodes hold a lease they renew, like
//! encoding jobs ([`crate::jobs`]); a lapsed or cancelled lease answers `410 Gone`.
//!
//! Tenant routes (Bearer tenant credentials):
//! - `POST /v1/api/compute/transcription` [`TranscriptionRequest`] → `202`
//!   [`ComputeSubmitted`] (`200` naming the in-flight job of the same file, kind and
//!   tier); `400` unknown tier; `404` unknown file (other tenants' too); `503` no
//!   online node advertises the tier
//! - `POST /v1/api/compute/vision` [`VisionRequest`] → the same
//! - `GET  /v1/api/compute/jobs/{job_id}` → [`ComputeJobStatus`] (`404` for another
//!   tenant's job, like a missing one)
//!
//! Node routes (node → server, Bearer cluster token like every node RPC):
//! - `POST /v1/node/compute/claim` [`ComputeClaimRequest`] → `200` [`ClaimedComputeJob`]
//!   or `204`
//! - `POST /v1/node/compute/{job_id}/lease` [`ComputeLeaseRenewal`] →
//!   [`crate::jobs::LeaseStatus`]
//! - `GET  /v1/node/compute/{job_id}/source` (header `X-ZiB-Lease`, optional `Range`
//!   over the ciphertext envelope) → the envelope bytes
//! - `POST /v1/node/compute/{job_id}/outputs/{kind}` (header `X-ZiB-Lease`, body: the
//!   output's plaintext, at most [`crate::jobs::MAX_ARTIFACT_BYTES`]; `kind`:
//!   [`ComputeOutputKind`]) → `200` [`crate::jobs::ArtifactStored`]: sealed and stored
//!   as a derived file of the source, and recorded on the job
//! - `POST /v1/node/compute/{job_id}/done` [`ComputeDone`] → `204`; sends
//!   `transcription.complete` / `vision.complete`
//! - `POST /v1/node/compute/{job_id}/failed` [`crate::jobs::JobFailure`] → `204`

use serde::{Deserialize, Serialize};

use crate::jobs::JobSource;
use crate::pipeline::{TranscriptionTier, VisionTier};
use crate::{FileId, NodeId};

/// What a compute job runs; `compute_jobs.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputeKind {
    Transcription,
    Vision,
}

impl ComputeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ComputeKind::Transcription => "transcription",
            ComputeKind::Vision => "vision",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "transcription" => Some(ComputeKind::Transcription),
            "vision" => Some(ComputeKind::Vision),
            _ => None,
        }
    }
}

/// A compute job's tier, typed by its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ComputeTier {
    Transcription(TranscriptionTier),
    Vision(VisionTier),
}

impl ComputeTier {
    pub fn kind(self) -> ComputeKind {
        match self {
            ComputeTier::Transcription(_) => ComputeKind::Transcription,
            ComputeTier::Vision(_) => ComputeKind::Vision,
        }
    }

    pub fn tier_str(self) -> &'static str {
        match self {
            ComputeTier::Transcription(t) => t.as_str(),
            ComputeTier::Vision(v) => v.as_str(),
        }
    }

    /// The node capability that runs it (`transcription:fastest`).
    pub fn capability(self) -> String {
        format!("{}:{}", self.kind().as_str(), self.tier_str())
    }

    /// Reads a stored (kind, tier) pair.
    pub fn parse(kind: ComputeKind, tier: &str) -> Option<Self> {
        match kind {
            ComputeKind::Transcription => tier.parse().ok().map(ComputeTier::Transcription),
            ComputeKind::Vision => tier.parse().ok().map(ComputeTier::Vision),
        }
    }
}

/// The tenant-facing status of a compute job (`getComputeStatus().status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputeStatus {
    Queued,
    Processing,
    Complete,
    /// Terminal: failed past its retries, or cancelled (the reason is in
    /// `error_message`).
    Failed,
}

impl ComputeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ComputeStatus::Queued => "queued",
            ComputeStatus::Processing => "processing",
            ComputeStatus::Complete => "complete",
            ComputeStatus::Failed => "failed",
        }
    }
}

/// `POST /v1/api/compute/transcription`. Unknown fields are refused (400 naming them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptionRequest {
    pub file_id: String,
    /// `fastest` | `recommended` (default) | `accurate`.
    #[serde(default)]
    pub tier: Option<String>,
}

/// `POST /v1/api/compute/vision`. Unknown fields are refused (400 naming them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionRequest {
    pub file_id: String,
    /// `standard` (default) | `hq`.
    #[serde(default)]
    pub tier: Option<String>,
}

/// The answer to a compute submission.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComputeSubmitted {
    pub job_id: String,
    pub kind: ComputeKind,
    pub tier: String,
    pub file_id: FileId,
    pub status: ComputeStatus,
    /// `"already_queued"` when an in-flight job of the same file, kind and tier
    /// answered; null for a new job.
    pub message: Option<String>,
}

/// `GET /v1/api/compute/jobs/{job_id}` (`getComputeStatus`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComputeJobStatus {
    pub job_id: String,
    pub kind: ComputeKind,
    pub tier: String,
    pub file_id: FileId,
    pub status: ComputeStatus,
    /// 0–100.
    pub progress: u8,
    /// What the node is doing ("transcribing 01:30 of 04:00"), while processing.
    pub detail: Option<String>,
    /// Set when the run was asked with an encode.
    pub encoding_job_id: Option<String>,
    /// Transcription: the SubRip file.
    pub srt_file_id: Option<FileId>,
    /// Transcription: the WebVTT file (the HLS subtitle track).
    pub vtt_file_id: Option<FileId>,
    /// Vision: the ZibSidecar JSON (docs/sidecar.md).
    pub sidecar_file_id: Option<FileId>,
    /// CDN URLs of the outputs above (`{cdn}/objects/{id}`), when set.
    pub srt_url: Option<String>,
    pub vtt_url: Option<String>,
    pub sidecar_url: Option<String>,
    /// The transcript's language (`en`), once known.
    pub language: Option<String>,
    pub error_message: Option<String>,
    pub retry_count: u32,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
}

/// One AI stage as the pipeline and encoding-job views show it
/// (`stages.transcription`, `stages.vision`; the encoding job's `transcription` and
/// `vision`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComputeStage {
    pub job_id: String,
    /// `queued` | `running` | `complete` | `failed` (the pipeline's words).
    pub status: String,
    pub tier: String,
    pub progress: u8,
    /// Transcription: the SRT file; vision: the sidecar.
    pub output_file_id: Option<FileId>,
    /// Transcription only: the WebVTT file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtt_file_id: Option<FileId>,
    pub error_message: Option<String>,
}

/// What a compute job stores; the `{kind}` path segment of an output upload and the
/// output's `files.derived_kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ComputeOutputKind {
    #[serde(rename = "srt")]
    Srt,
    #[serde(rename = "vtt")]
    Vtt,
    #[serde(rename = "sidecar")]
    Sidecar,
}

impl ComputeOutputKind {
    pub const ALL: [Self; 3] = [Self::Srt, Self::Vtt, Self::Sidecar];

    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            ComputeOutputKind::Srt => "srt",
            ComputeOutputKind::Vtt => "vtt",
            ComputeOutputKind::Sidecar => "sidecar",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// `files.derived_kind` of the stored output.
    pub fn derived_kind(self) -> &'static str {
        match self {
            ComputeOutputKind::Srt => "subtitles_srt",
            ComputeOutputKind::Vtt => "subtitles_vtt",
            ComputeOutputKind::Sidecar => "sidecar",
        }
    }

    pub fn from_derived_kind(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.derived_kind() == s)
    }

    /// The Content-Type it is stored (and served by `/objects/…`) with.
    pub fn content_type(self) -> &'static str {
        match self {
            ComputeOutputKind::Srt => "application/x-subrip",
            ComputeOutputKind::Vtt => "text/vtt",
            ComputeOutputKind::Sidecar => "application/json",
        }
    }

    /// Which job kind may store it.
    pub fn job_kind(self) -> ComputeKind {
        match self {
            ComputeOutputKind::Srt | ComputeOutputKind::Vtt => ComputeKind::Transcription,
            ComputeOutputKind::Sidecar => ComputeKind::Vision,
        }
    }
}

/// `POST /v1/node/compute/claim`. The server offers only jobs whose
/// `kind:tier` the node advertised at registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeClaimRequest {
    pub node_id: NodeId,
    /// Set by the node that just finished this encoding job: only that job's AI runs
    /// are offered (at once; other nodes wait a grace period for them).
    #[serde(default)]
    pub after_encoding_job: Option<String>,
}

/// A compute job handed to one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimedComputeJob {
    pub job_id: String,
    /// The source video's file id (the sidecar names it).
    pub file_id: FileId,
    pub lease_token: String,
    pub lease_secs: u64,
    pub kind: ComputeKind,
    pub tier: String,
    /// The source video; `url` is `GET /v1/node/compute/{job_id}/source`.
    pub source: JobSource,
    /// Set when the run was asked with an encode.
    #[serde(default)]
    pub encoding_job_id: Option<String>,
}

/// `POST /v1/node/compute/{job_id}/lease`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComputeLeaseRenewal {
    pub node_id: NodeId,
    pub lease_token: String,
    /// 0–100.
    pub progress: f64,
    #[serde(default)]
    pub detail: Option<String>,
}

/// `POST /v1/node/compute/{job_id}/done`: every output is stored (a transcription
/// both `srt` and `vtt`, a vision run its `sidecar`); refused with `409` otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeDone {
    pub lease_token: String,
    /// The transcript's language (`en`).
    #[serde(default)]
    pub language: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_name_their_capability() {
        let t = ComputeTier::parse(ComputeKind::Transcription, "fastest").unwrap();
        assert_eq!(t.capability(), "transcription:fastest");
        let v = ComputeTier::parse(ComputeKind::Vision, "hq").unwrap();
        assert_eq!(v.capability(), "vision:hq");
        assert!(ComputeTier::parse(ComputeKind::Vision, "fastest").is_none());
    }

    #[test]
    fn output_kinds_round_trip() {
        for k in ComputeOutputKind::ALL {
            assert_eq!(ComputeOutputKind::parse(k.as_str()), Some(k));
            assert_eq!(
                ComputeOutputKind::from_derived_kind(k.derived_kind()),
                Some(k)
            );
        }
        assert_eq!(ComputeOutputKind::Sidecar.job_kind(), ComputeKind::Vision);
    }

    #[test]
    fn requests_refuse_unknown_fields() {
        let e = serde_json::from_str::<TranscriptionRequest>(r#"{"file_id":"a","tierr":"x"}"#);
        assert!(e.unwrap_err().to_string().contains("tierr"));
    }
}
