//! One claimed compute job from start to end: the source served on the loopback,
//! the kind's work, lease renewals carrying progress all along, then `done` or
//! `failed`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use zib_proto::compute::{ClaimedComputeJob, ComputeDone, ComputeKind, ComputeTier};
use zib_proto::jobs::JobFailure;

use super::job::{ComputeError, Input, Running};
use super::Compute;
use crate::jobs::loopback::Loopback;
use crate::jobs::source::Source;

/// Renewals come this often (or at a third of the lease, if that is shorter).
const RENEW_EVERY: Duration = Duration::from_secs(2);

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
