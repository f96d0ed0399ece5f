//! One claimed compute job from start to end: the source served on the loopback,
//! the kind's work, lease renewals carrying progress all along, then `done` or
//! `failed`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use zib_media::MediaError;
use zib_proto::compute::{
    ClaimedComputeJob, ComputeDone, ComputeKind, ComputeLeaseRenewal, ComputeOutputKind,
    ComputeTier,
};
use zib_proto::jobs::{ArtifactStored, JobFailure};

use super::Compute;
use crate::jobs::loopback::Loopback;
use crate::jobs::source::{Source, SourceError};
use crate::rpc::RpcError;
use crate::state::NodeState;

/// Renewals come this often (or at a third of the lease, if that is shorter).
const RENEW_EVERY: Duration = Duration::from_secs(2);

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

    fn source(e: SourceError) -> Self {
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
    progress: Mutex<(f64, String)>,
}

impl Running {
    pub fn set(&self, progress: f64, detail: String) {
        *self.progress.lock().unwrap_or_else(|p| p.into_inner()) =
            (progress.clamp(0.0, 100.0), detail);
    }

    fn renewal(&self) -> ComputeLeaseRenewal {
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

/// Runs a claimed job to its end and tells the server how it ended (unless the
/// lease is gone, when nothing more is said).
pub async fn run(compute: &Compute, claimed: ClaimedComputeJob) {
    let state = compute.state.clone();
    let job_id = claimed.job_id.clone();
    let lease = claimed.lease_token.clone();
    let cancel = compute.stop.child_token();
    let job = Arc::new(Running {
        state: state.clone(),
        id: job_id.clone(),
        lease: lease.clone(),
        progress: Mutex::new((0.0, "reading the source".into())),
    });
    let renewer = AbortOnDrop(tokio::spawn(renew(
        job.clone(),
        claimed.lease_secs,
        cancel.clone(),
    )));
    let result = tokio::select! {
        r = work(compute, &job, &claimed, &cancel) => r,
        _ = cancel.cancelled() => Err(ComputeError::Gone),
    };
    // No renewal may cross the final call.
    drop(renewer);
    let (error_message, permanent) = match result {
        Ok(language) => {
            let done = ComputeDone {
                lease_token: lease,
                language,
            };
            match state.server.compute_done(&job_id, &done).await {
                Ok(()) => tracing::info!(job = %job_id, "compute job done"),
                Err(e) => {
                    tracing::warn!(job = %job_id, error = %e, "could not report the compute job done")
                }
            }
            return;
        }
        Err(ComputeError::Gone) => {
            tracing::info!(job = %job_id, "compute job's lease is gone (lapsed or cancelled); dropped");
            return;
        }
        Err(ComputeError::Permanent(sentence)) => (sentence, true),
        Err(ComputeError::Failed(sentence)) => (sentence, false),
    };
    tracing::warn!(job = %job_id, %error_message, permanent, "compute job failed");
    let failure = JobFailure {
        lease_token: lease,
        error_message,
        permanent,
    };
    if let Err(e) = state.server.compute_failed(&job_id, &failure).await {
        tracing::warn!(job = %job_id, error = %e, "could not report the compute job's failure");
    }
}

/// The job's work; `Ok` carries the transcript's language, when there is one.
async fn work(
    compute: &Compute,
    job: &Running,
    claimed: &ClaimedComputeJob,
    cancel: &CancellationToken,
) -> Result<Option<String>, ComputeError> {
    let tier = ComputeTier::parse(claimed.kind, &claimed.tier).ok_or_else(|| {
        ComputeError::Permanent(format!(
            "unknown {} tier {:?}",
            claimed.kind.as_str(),
            claimed.tier
        ))
    })?;
    let state = &compute.state;
    let source = Source::new(
        state.peers.clone(),
        &claimed.source,
        &claimed.lease_token,
        state.server.token(),
    )
    .map_err(ComputeError::source)?;
    let loopback = Loopback::source_only(Arc::new(source))
        .await
        .map_err(|e| ComputeError::Failed(format!("the compute node could not start: {e}")))?;
    let input = Input {
        compute,
        claimed,
        url: loopback.source_url(),
        cancel: cancel.clone(),
    };
    match (claimed.kind, tier) {
        (ComputeKind::Transcription, ComputeTier::Transcription(tier)) => {
            super::transcribe::run(&input, job, tier).await.map(Some)
        }
        (ComputeKind::Vision, ComputeTier::Vision(tier)) => {
            super::vision::run(&input, job, tier).await
        }
        _ => Err(ComputeError::Permanent(
            "the job's kind and tier disagree".into(),
        )),
    }
}

/// Renews the lease until the job ends; a `410` (lapsed or cancelled) cancels it.
async fn renew(job: Arc<Running>, lease_secs: u64, cancel: CancellationToken) {
    let every = RENEW_EVERY.min(Duration::from_secs(lease_secs.max(1)) / 3);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = cancel.cancelled() => return,
        }
        match job
            .state
            .server
            .renew_compute_lease(&job.id, &job.renewal())
            .await
        {
            Ok(_) => {}
            Err(e) if crate::jobs::rpc::is_gone(&e) => {
                tracing::info!(job = %job.id, "the server ended this compute job's lease; stopping it");
                cancel.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "compute lease renewal failed; trying again")
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
