//! Dropping a job's output: every segment copy on every holder, its artefact files
//! (poster, sprites), and the rows that named them. Used when a job is cancelled, superseded or replaced by a forced
//! re-encode (after its grace period), and when its file is deleted or evicted.

use std::time::Duration;

use zib_proto::FileId;

use crate::domain::blob_removal::delete_blobs_now;
use crate::error::ApiResult;
use crate::state::{now_ms, Inner};

/// How long eviction waits for a holder before leaving it to its next heartbeat.
const EVICT_TIMEOUT: Duration = Duration::from_secs(3);

/// Evicts one job's output: its segment, replica and rendition rows and its artefact
/// files are dropped (and the file's live pointer if it named this job), every holder is asked to delete
/// its copies now, and holders that do not confirm get a queued command on their
/// next heartbeat. The job row itself stays. Idempotent.
pub async fn evict_job(state: &Inner, job_id: &str) -> ApiResult<()> {
    let blobs = state.store.evict_job_output(job_id, now_ms()).await?;
    if blobs.is_empty() {
        return Ok(());
    }
    let cleanup = delete_blobs_now(state, &blobs, EVICT_TIMEOUT).await?;
    tracing::info!(
        %job_id,
        deleted = cleanup.ok,
        left_to_heartbeat = cleanup.failed + cleanup.queued_for_offline,
        "encoding job output evicted"
    );
    Ok(())
}

/// Evicts the output of every job of a deleted or evicted file. Failures are
/// logged: the file's own deletion has happened and must not be undone by this.
pub async fn evict_file_jobs(state: &Inner, file_id: FileId) {
    let jobs = match state.store.file_jobs_with_output(file_id).await {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::error!(%file_id, error = %e, "listing a file's encoding jobs to evict failed");
            return;
        }
    };
    for job_id in jobs {
        if let Err(e) = evict_job(state, &job_id).await {
            tracing::error!(%file_id, %job_id, error = %e, "evicting an encoding job's output failed");
        }
    }
}
