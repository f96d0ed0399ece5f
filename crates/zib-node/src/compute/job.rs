//! What a running compute job's steps share: why it stopped early, its lease and
//! progress, where ffmpeg reads its source.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use zib_media::MediaError;
use zib_proto::compute::{ClaimedComputeJob, ComputeLeaseRenewal, ComputeOutputKind};
use zib_proto::jobs::ArtifactStored;

use super::Compute;
use crate::jobs::source::SourceError;
use crate::rpc::RpcError;
use crate::state::NodeState;

/// Why a job stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// The lease lapsed or the job was cancelled: nothing more is sent.
    #[error("the job's lease is gone")]
    Gone,
    /// The source cannot be used (not a video), or the job asks for what no node
    /// can run: no retry will help.
    #[error("{0}")]
    Permanent(String),
    /// Anything else, as a sentence for the tenant; the server may retry.
    #[error("{0}")]
    Failed(String),
}

impl ComputeError {
    pub fn rpc(what: &str, e: RpcError) -> Self {
        if crate::jobs::rpc::is_gone(&e) {
            ComputeError::Gone
        } else {
            tracing::warn!(error = %e, "a compute job call to the server failed");
            ComputeError::Failed(format!(
                "the compute node could not report {what} to the server"
            ))
        }
    }

    pub fn media(e: MediaError) -> Self {
        match e {
            MediaError::NotAVideo(sentence) | MediaError::Invalid(sentence) => {
                ComputeError::Permanent(sentence)
            }
            MediaError::Cancelled => ComputeError::Gone,
            other => ComputeError::Failed(format!("ffmpeg failed: {other}")),
        }
    }

    pub fn model(e: zib_ai::AiError) -> Self {
        match e {
            zib_ai::AiError::Input(sentence) => {
                ComputeError::Permanent(format!("the video cannot be analysed: {sentence}"))
            }
            other => ComputeError::Failed(format!("the model failed: {other}")),
        }
    }

    /// A blocking task that panicked or was cancelled.
    pub fn task(e: tokio::task::JoinError) -> Self {
        ComputeError::Failed(format!("the model stopped: {e}"))
    }

    pub fn source(e: SourceError) -> Self {
        match e {
            SourceError::LeaseGone => ComputeError::Gone,
            other => ComputeError::Failed(format!("the source video could not be read: {other}")),
        }
    }
}

/// What a running job's steps share: its lease and its progress.
pub struct Running {
    pub state: Arc<NodeState>,
    pub id: String,
    pub lease: String,
    /// 0–100 and a sentence, as the next renewal reports them.
    pub(super) progress: Mutex<(f64, String)>,
}

impl Running {
    pub fn set(&self, progress: f64, detail: String) {
        *self.progress.lock().unwrap_or_else(|p| p.into_inner()) =
            (progress.clamp(0.0, 100.0), detail);
    }

    pub(super) fn renewal(&self) -> ComputeLeaseRenewal {
        let (progress, detail) = self
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        ComputeLeaseRenewal {
            node_id: self.state.node_id.clone(),
            lease_token: self.lease.clone(),
            progress,
            detail: Some(detail),
        }
    }

    /// Hands one output to the server (sealed and stored there).
    pub async fn output(
        &self,
        kind: ComputeOutputKind,
        bytes: Vec<u8>,
    ) -> Result<ArtifactStored, ComputeError> {
        self.state
            .server
            .compute_output(&self.id, &self.lease, kind, bytes)
            .await
            .map_err(|e| ComputeError::rpc(&format!("the {} output", kind.as_str()), e))
    }
}

/// Where a job's ffmpeg reads the source, and what it runs with.
pub struct Input<'a> {
    pub compute: &'a Compute,
    pub claimed: &'a ClaimedComputeJob,
    /// The loopback URL of the plaintext source.
    pub url: String,
    pub cancel: CancellationToken,
}

/// `mm:ss` (or `h:mm:ss`) for progress sentences.
pub fn clock(secs: f64) -> String {
    let s = if secs.is_finite() {
        secs.max(0.0) as u64
    } else {
        0
    };
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{:02}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::clock;

    #[test]
    fn clocks_read_like_a_player() {
        assert_eq!(clock(0.0), "00:00");
        assert_eq!(clock(90.4), "01:30");
        assert_eq!(clock(3725.0), "1:02:05");
        assert_eq!(clock(f64::NAN), "00:00");
        assert_eq!(clock(-3.0), "00:00");
    }
}
