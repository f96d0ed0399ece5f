//! What every step of a running job shares: its keys and lease, its progress as the
//! next renewal reports it, the segments it stored, and why it stopped early.

use std::sync::{Arc, Mutex};

use zib_media::MediaError;
use zib_proto::jobs::{JobStage, LeaseRenewal};

use super::source::SourceError;
use crate::rpc::RpcError;
use crate::state::NodeState;

/// Share of the overall progress that encoding covers; storing and pushing the rest.
pub(super) const ENCODING_SHARE: f64 = 90.0;

/// Why a job stopped early.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The lease lapsed or the job was cancelled: nothing more is sent.
    #[error("the job's lease is gone")]
    Gone,
    /// The source is not something ffmpeg can encode, or the job's plan asks for
    /// something impossible (a malformed poster time): no retry will help.
    #[error("{0}")]
    Permanent(String),
    /// Anything else, as a sentence for the tenant; the server may retry.
    #[error("{0}")]
    Failed(String),
}

impl JobError {
    pub fn rpc(what: &str, e: RpcError) -> Self {
        if super::rpc::is_gone(&e) {
            JobError::Gone
        } else {
            tracing::warn!(error = %e, "a job call to the server failed");
            JobError::Failed(format!(
                "the encoding node could not report {what} to the server"
            ))
        }
    }

    pub(super) fn media(e: MediaError) -> Self {
        match e {
            MediaError::NotAVideo(sentence) | MediaError::Invalid(sentence) => {
                JobError::Permanent(sentence)
            }
            MediaError::Cancelled => JobError::Gone,
            other => JobError::Failed(format!("the encoder failed: {other}")),
        }
    }

    pub(super) fn source(e: SourceError) -> Self {
        match e {
            SourceError::LeaseGone => JobError::Gone,
            other => JobError::Failed(format!("the source video could not be read: {other}")),
        }
    }
}

/// What a renewal reports.
#[derive(Clone, Debug)]
struct Progress {
    stage: JobStage,
    /// 0–100 overall.
    progress: f64,
    /// 0–100 within the stage.
    phase_progress: f64,
    detail: String,
}

/// What every step of a running job shares.
pub struct Job {
    pub state: Arc<NodeState>,
    pub id: String,
    pub lease: String,
    pub hls_key: [u8; 16],
    progress: Mutex<Progress>,
    /// Segments pushed to their replicas so far, and segments reported (for the
    /// sharding figure).
    segments: Mutex<(u64, u64)>,
    /// Segments stored here that the server does not know of yet. Whatever is left
    /// when the job ends (cancelled mid-rung, failed, or written but never listed by
    /// ffmpeg) is deleted: nothing else would ever point at it.
    pub unreported: Mutex<std::collections::HashSet<zib_proto::BlobId>>,
}

impl Job {
    pub(super) fn new(state: Arc<NodeState>, id: String, lease: String, hls_key: [u8; 16]) -> Self {
        Self {
            state,
            id,
            lease,
            hls_key,
            progress: Mutex::new(Progress {
                stage: JobStage::Encoding,
                progress: 0.0,
                phase_progress: 0.0,
                detail: "reading the source".into(),
            }),
            segments: Mutex::new((0, 0)),
            unreported: Mutex::default(),
        }
    }

    /// Segments pushed to their replicas so far, and segments reported.
    pub(super) fn pushed_and_reported(&self) -> (u64, u64) {
        *self.segments.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn set(&self, stage: JobStage, progress: f64, phase_progress: f64, detail: String) {
        *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = Progress {
            stage,
            progress: progress.clamp(0.0, 100.0),
            phase_progress: phase_progress.clamp(0.0, 100.0),
            detail,
        };
    }

    fn snapshot(&self) -> Progress {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The renewal that reports where the job stands now.
    pub(super) fn renewal(&self) -> LeaseRenewal {
        let p = self.snapshot();
        LeaseRenewal {
            node_id: self.state.node_id.clone(),
            lease_token: self.lease.clone(),
            stage: p.stage,
            progress: p.progress,
            phase_progress: p.phase_progress,
            detail: Some(p.detail),
        }
    }

    /// `count` more segments reported (their pushes are to come).
    pub(super) fn segments_reported(&self, count: u32) {
        self.segments.lock().unwrap_or_else(|p| p.into_inner()).1 += u64::from(count);
    }

    /// One more segment pushed to its replicas; moves the sharding figure once
    /// ffmpeg is done.
    pub(super) fn segment_pushed(&self) {
        let (done, reported) = {
            let mut s = self.segments.lock().unwrap_or_else(|p| p.into_inner());
            s.0 += 1;
            *s
        };
        if self.snapshot().stage == JobStage::Sharding && reported > 0 {
            let f = (done as f64 / reported as f64).min(1.0);
            self.set(
                JobStage::Sharding,
                ENCODING_SHARE + (100.0 - ENCODING_SHARE) * f,
                100.0 * f,
                format!("replicating segments ({done} of {reported})"),
            );
        }
    }
}
