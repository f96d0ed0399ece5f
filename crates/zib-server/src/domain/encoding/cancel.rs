//! Cancelling encoding jobs: one job (a tenant's cancel, a superseding request), or
//! every unfinished job of a file (the file is deleted or superseded). A cancelled
//! job's lease no longer holds, so its node's next call is answered `410 Gone`; no
//! event is sent for it afterwards; its segments are evicted from the nodes.

use zib_meta::{EncodingJobRow, JobPhase};
use zib_proto::FileId;

use crate::error::ApiResult;
use crate::state::{now_ms, Inner};

/// Cancels `job` with `reason` and evicts what it stored, with its aspect-variant
/// children still in flight. `false`: it was already
/// terminal (safe, failed_user_action, cancelled) or is gone; nothing changed.
pub async fn cancel_job(state: &Inner, job: &EncodingJobRow, reason: &str) -> ApiResult<bool> {
    let Some(was) = state
        .store
        .cancel_encoding_job(&job.id, reason, now_ms())
        .await?
    else {
        return Ok(false);
    };
    tracing::info!(job = %was.id, file = %was.file_id, phase = was.phase.as_str(), reason, "encoding job cancelled");
    evict_segments(state, &was.id).await;
    // The store cancelled the job's variant children still in flight with it.
    if !was.is_variant() {
        for child in state.store.variant_jobs(&was.id).await? {
            if child.phase == JobPhase::Cancelled {
                evict_segments(state, &child.id).await;
            }
        }
    }
    Ok(true)
}

/// Cancels every unfinished job of `file_id` with `reason`; returns how many.
pub async fn cancel_jobs_of_file(state: &Inner, file_id: FileId, reason: &str) -> ApiResult<u32> {
    let mut cancelled = 0;
    for job in state.store.unfinished_encoding_jobs(file_id).await? {
        if cancel_job(state, &job, reason).await? {
            cancelled += 1;
        }
    }
    Ok(cancelled)
}

/// Drops a cancelled job's segments from their holders and the store. A failure
/// is left to the job reaper, which retries every cancelled job still holding
/// segments (and evicts a replaced encode's after its grace).
pub(crate) async fn evict_segments(state: &Inner, job_id: &str) {
    if let Err(e) = super::evict::evict_job(state, job_id).await {
        tracing::warn!(%job_id, error = %e, "evicting a cancelled job's segments failed; the reaper retries");
    }
}
