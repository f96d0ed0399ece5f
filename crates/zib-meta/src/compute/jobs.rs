//! The lease lifecycle of a compute job, after the encoding jobs' (encoding/jobs.rs):
//! a capable node claims it with one guarded UPDATE, renews its lease with progress,
//! stores each output (recorded on the row at once), then reports it done (the
//! `transcription.complete` / `vision.complete` event commits with it) or failed. A
//! lapsed lease is a transient failure; transient failures go back to `queued` with a
//! backoff, up to [`COMPUTE_TRIES`] runs in all. Cancelling ends the lease: the
//! node's next call finds none.

use zib_proto::compute::{ComputeOutputKind, ComputeStatus};
use zib_proto::pipeline::Capability;
use zib_proto::{FileId, NodeId};

use super::{compute_from_row, compute_job_in, compute_select, ComputeJobRow, ComputeJobState};
use crate::engine::{DbConn, FetchRows};
use crate::webhooks::enqueue_event;
use crate::{MetaError, NewWebhookEvent, Result, RetryPolicy, Store};

/// Builds the webhook event of a completed job (`None`: no event), like
/// [`crate::EventBuilder`] for encoding jobs: the body keeps its one shape in the
/// server, and commits with the completion.
pub type ComputeEventBuilder<'a> =
    &'a (dyn Fn(&ComputeJobRow) -> Option<NewWebhookEvent> + Send + Sync);

/// Runs of one job in all before a transient failure is final (`failed`).
pub const COMPUTE_TRIES: i64 = 3;

/// The wait before a failed run is claimable again: 5 s, then twice the previous,
/// capped at 5 minutes (as encoding jobs' defaults).
pub const COMPUTE_RETRY: RetryPolicy = RetryPolicy {
    budget: (COMPUTE_TRIES - 1) as u32,
    backoff_base_ms: 5_000,
    backoff_cap_ms: 300_000,
};

/// What a lapsed lease records as the run's error.
pub const COMPUTE_LAPSED_ERROR: &str = "the node stopped renewing its lease";

/// How many distinct `kind:tier` capabilities a claim matches against (there are 5
/// today); the rest of the slots are bound to an empty string, which no job has.
const CAPABILITY_SLOTS: usize = 8;

/// The node's AI capabilities in their `kind:tier` form (a legacy bare `transcription`
/// means its default tier), at most [`CAPABILITY_SLOTS`], padded with "".
fn capability_slots(capabilities: &[String]) -> Vec<String> {
    let mut slots: Vec<String> = Vec::with_capacity(CAPABILITY_SLOTS);
    for text in capabilities {
        let Ok(cap) = text.parse::<Capability>() else {
            continue;
        };
        if cap == Capability::Encode {
            continue;
        }
        let form = cap.to_string();
        if !slots.contains(&form) && slots.len() < CAPABILITY_SLOTS {
            slots.push(form);
        }
    }
    slots.resize(CAPABILITY_SLOTS, String::new());
    slots
}

/// The job, if `token_hash` (held by `node`, when given) holds an unlapsed lease on
/// it, read inside the caller's transaction.
async fn held_lease(
    conn: &mut DbConn,
    id: &str,
    node: Option<&NodeId>,
    token_hash: &str,
    now: i64,
) -> Result<Option<ComputeJobRow>> {
    let job = sqlx::query(concat!(
        compute_select!(),
        " WHERE id = $1 AND lease_token_hash = $2 AND lease_expires_at > $3 AND status = $4"
    ))
    .bind(id)
    .bind(token_hash)
    .bind(now)
    .bind(ComputeJobState::Processing.as_str())
    .fetch_row(&mut *conn, compute_from_row)
    .await?;
    Ok(job.filter(|j| node.is_none_or(|n| j.lease_node.as_ref() == Some(n))))
}

/// Ends a leased (or lapsed) run: back to `queued` with a backoff, or `failed` when
/// `permanent` or this was its last try. Clears the lease.
async fn fail_in_tx(
    conn: &mut DbConn,
    job: &ComputeJobRow,
    error: &str,
    permanent: bool,
    now: i64,
) -> Result<()> {
    let last_try = job.retry_count.saturating_add(1) >= COMPUTE_TRIES;
    let (status, retry_count, retry_after) = if permanent || last_try {
        (ComputeJobState::Failed, job.retry_count, None)
    } else {
        let retry = job.retry_count.saturating_add(1);
        let wait = COMPUTE_RETRY.backoff_ms(u32::try_from(retry).unwrap_or(u32::MAX));
        (
            ComputeJobState::Queued,
            retry,
            Some(now.saturating_add(wait)),
        )
    };
    sqlx::query(
        "UPDATE compute_jobs SET status = $1, retry_count = $2, retry_after = $3, \
             error_message = $4, progress = 0, phase_detail = NULL, lease_node = NULL, \
             lease_token_hash = NULL, lease_expires_at = NULL, updated_at = $5 \
         WHERE id = $6",
    )
    .bind(status.as_str())
    .bind(retry_count)
    .bind(retry_after)
    .bind(error)
    .bind(now)
    .bind(&job.id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Cancels the in-flight compute jobs asked with `encoding_job_id` (its encode was
/// cancelled), inside the caller's transaction.
pub(crate) async fn cancel_compute_of_encoding_in(
    conn: &mut DbConn,
    encoding_job_id: &str,
    reason: &str,
    now: i64,
) -> Result<u64> {
    let reason = format!("its encode was cancelled: {reason}");
    Ok(sqlx::query(
        "UPDATE compute_jobs SET status = $1, error_message = $2, phase_detail = NULL, \
             retry_after = NULL, lease_node = NULL, lease_token_hash = NULL, \
             lease_expires_at = NULL, updated_at = $3 \
         WHERE encoding_job_id = $4 AND status IN ($5, $6)",
    )
    .bind(ComputeJobState::Cancelled.as_str())
    .bind(reason)
    .bind(now)
    .bind(encoding_job_id)
    .bind(ComputeJobState::Queued.as_str())
    .bind(ComputeJobState::Processing.as_str())
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

/// Cancels the file's in-flight compute jobs with `reason`, inside the caller's
/// transaction (the file is deleted or superseded).
pub(crate) async fn cancel_compute_of_file_in(
    conn: &mut DbConn,
    file_id: &str,
    reason: &str,
    now: i64,
) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE compute_jobs SET status = $1, error_message = $2, phase_detail = NULL, \
             retry_after = NULL, lease_node = NULL, lease_token_hash = NULL, \
             lease_expires_at = NULL, updated_at = $3 \
         WHERE file_id = $4 AND status IN ($5, $6)",
    )
    .bind(ComputeJobState::Cancelled.as_str())
    .bind(reason)
    .bind(now)
    .bind(file_id)
    .bind(ComputeJobState::Queued.as_str())
    .bind(ComputeJobState::Processing.as_str())
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

impl Store {
    /// Hands the oldest claimable job to `node`, with a lease until `lease_until`.
    /// Claimable: `queued` and past its `retry_after`; its file readable; its
    /// `kind:tier` among `capabilities`; and, asked with an encode, that encode ended
    /// (`local_complete`, `replicating`, `safe`, `failed_user_action`, or replaced
    /// after completing) — offered at once to a claim naming it in
    /// `after_encoding_job` (the node that encoded it), to others `grace_ms` after
    /// the encode ended. A claim naming `after_encoding_job` sees only that encode's
    /// jobs. One guarded UPDATE: of two servers claiming at once, one gets the job
    /// and the other the next one (or none).
    #[allow(clippy::too_many_arguments)]
    pub async fn claim_compute_job(
        &self,
        node: &NodeId,
        capabilities: &[String],
        after_encoding_job: Option<&str>,
        token_hash: &str,
        lease_until: i64,
        now: i64,
        grace_ms: i64,
    ) -> Result<Option<ComputeJobRow>> {
        let slots = capability_slots(capabilities);
        if slots.iter().all(String::is_empty) {
            return Ok(None);
        }
        // "" is no encoding job id: no preference.
        let after = after_encoding_job.unwrap_or("");
        let mut tx = self.begin_write().await?;
        let mut query = sqlx::query_scalar::<_, String>(
            "UPDATE compute_jobs SET status = $1, lease_node = $2, node_id = $2, \
                 lease_token_hash = $3, lease_expires_at = $4, started_at = $5, \
                 updated_at = $5, progress = 0, phase_detail = NULL, retry_after = NULL \
             WHERE id = (SELECT c.id FROM compute_jobs c \
                     JOIN files f ON f.file_id = c.file_id \
                     LEFT JOIN encoding_jobs e ON e.id = c.encoding_job_id \
                     WHERE c.status = $6 AND (c.retry_after IS NULL OR c.retry_after <= $5) \
                       AND f.phase IN ('distributed', 'safe') \
                       AND (c.kind || ':' || c.tier) IN ($9, $10, $11, $12, $13, $14, $15, $16) \
                       AND ($7 = '' OR c.encoding_job_id = $7) \
                       AND (c.encoding_job_id IS NULL OR ( \
                           (e.phase IN ('local_complete', 'replicating', 'safe', \
                                        'failed_user_action') \
                            OR (e.phase = 'cancelled' AND e.completed_at IS NOT NULL)) \
                           AND (c.encoding_job_id = $7 \
                                OR COALESCE(e.completed_at, e.phase_updated_at) + $8 <= $5))) \
                     ORDER BY c.created_at, c.id LIMIT 1) \
               AND status = $6 AND (retry_after IS NULL OR retry_after <= $5) \
             RETURNING id",
        )
        .bind(ComputeJobState::Processing.as_str())
        .bind(node.as_str())
        .bind(token_hash)
        .bind(lease_until)
        .bind(now)
        .bind(ComputeJobState::Queued.as_str())
        .bind(after)
        .bind(grace_ms);
        for slot in &slots {
            query = query.bind(slot.as_str());
        }
        let Some(id) = query.fetch_optional(&mut *tx).await? else {
            return Ok(None);
        };
        let job = compute_job_in(&mut tx, &id).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// The job, if `token_hash` (held by `node`, when given) holds an unlapsed lease.
    pub async fn leased_compute_job(
        &self,
        id: &str,
        node: Option<&NodeId>,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<ComputeJobRow>> {
        let mut conn = self.pool.acquire().await?;
        held_lease(&mut conn, id, node, token_hash, now).await
    }

    /// Extends the lease to `lease_until` and stores the progress (clamped to
    /// 0–100) and what the node is doing. `None`: the lease is gone.
    #[allow(clippy::too_many_arguments)]
    pub async fn renew_compute_lease(
        &self,
        id: &str,
        node: &NodeId,
        token_hash: &str,
        progress: i64,
        detail: Option<&str>,
        lease_until: i64,
        now: i64,
    ) -> Result<Option<ComputeJobRow>> {
        let mut tx = self.begin_write().await?;
        if held_lease(&mut tx, id, Some(node), token_hash, now)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE compute_jobs SET lease_expires_at = $1, progress = $2, phase_detail = $3, \
                 updated_at = $4 WHERE id = $5",
        )
        .bind(lease_until)
        .bind(progress.clamp(0, 100))
        .bind(detail)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let job = compute_job_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// Records a stored output on the job (lease-checked): its `srt_file_id`,
    /// `vtt_file_id` or `sidecar_file_id`; a retried upload replaces the earlier id.
    /// `None`: the lease is gone. An output another kind of job stores is a
    /// [`MetaError::Conflict`].
    pub async fn set_compute_output(
        &self,
        id: &str,
        token_hash: &str,
        kind: ComputeOutputKind,
        file_id: FileId,
        now: i64,
    ) -> Result<Option<ComputeJobRow>> {
        let mut tx = self.begin_write().await?;
        let Some(job) = held_lease(&mut tx, id, None, token_hash, now).await? else {
            return Ok(None);
        };
        if kind.job_kind() != job.kind {
            return Err(MetaError::Conflict(
                "the output is not one this kind of compute job stores",
            ));
        }
        let statement = match kind {
            ComputeOutputKind::Srt => {
                "UPDATE compute_jobs SET srt_file_id = $1, updated_at = $2 WHERE id = $3"
            }
            ComputeOutputKind::Vtt => {
                "UPDATE compute_jobs SET vtt_file_id = $1, updated_at = $2 WHERE id = $3"
            }
            ComputeOutputKind::Sidecar => {
                "UPDATE compute_jobs SET sidecar_file_id = $1, updated_at = $2 WHERE id = $3"
            }
        };
        sqlx::query(statement)
            .bind(file_id.to_string())
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let job = compute_job_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// Completes the job (lease-checked): `complete`, progress 100, lease released,
    /// `language` kept, and `events(&job)` inserted in the same transaction. `None`:
    /// the lease is gone. A job missing an output of its kind is a
    /// [`MetaError::Conflict`] (the node answer is 409) and nothing changes.
    pub async fn complete_compute_job(
        &self,
        id: &str,
        token_hash: &str,
        language: Option<&str>,
        now: i64,
        events: ComputeEventBuilder<'_>,
    ) -> Result<Option<ComputeJobRow>> {
        let mut tx = self.begin_write().await?;
        let Some(job) = held_lease(&mut tx, id, None, token_hash, now).await? else {
            return Ok(None);
        };
        if !job.has_all_outputs() {
            return Err(MetaError::Conflict(
                "every output of the compute job must be stored before it is done",
            ));
        }
        sqlx::query(
            "UPDATE compute_jobs SET status = $1, progress = 100, phase_detail = NULL, \
                 language = COALESCE($2, language), completed_at = $3, updated_at = $3, \
                 error_message = NULL, lease_node = NULL, lease_token_hash = NULL, \
                 lease_expires_at = NULL \
             WHERE id = $4",
        )
        .bind(ComputeJobState::Complete.as_str())
        .bind(language)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let Some(done) = compute_job_in(&mut tx, id).await? else {
            return Ok(None);
        };
        debug_assert_eq!(done.tenant_status(), ComputeStatus::Complete);
        if let Some(event) = events(&done) {
            enqueue_event(&mut tx, event, now).await?;
        }
        tx.commit().await?;
        Ok(Some(done))
    }

    /// The node reports a failure: transient, back to `queued` with a backoff
    /// (`retry_after`), or `failed` on its last try; permanent, `failed` now.
    /// `None`: the lease is gone (nothing changes).
    pub async fn fail_compute_job(
        &self,
        id: &str,
        token_hash: &str,
        error: &str,
        permanent: bool,
        now: i64,
    ) -> Result<Option<ComputeJobRow>> {
        let mut tx = self.begin_write().await?;
        let Some(job) = held_lease(&mut tx, id, None, token_hash, now).await? else {
            return Ok(None);
        };
        fail_in_tx(&mut tx, &job, error, permanent, now).await?;
        let job = compute_job_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// Every job whose lease lapsed at or before `now` fails transiently
    /// ([`COMPUTE_LAPSED_ERROR`]): requeued with a backoff, or `failed` on its last try.
    /// Returns how many.
    pub async fn requeue_lapsed_compute_jobs(&self, now: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let lapsed = sqlx::query(concat!(
            compute_select!(),
            " WHERE status = $1 AND lease_expires_at <= $2 ORDER BY lease_expires_at"
        ))
        .bind(ComputeJobState::Processing.as_str())
        .bind(now)
        .fetch_rows(&mut *tx, compute_from_row)
        .await?;
        for job in &lapsed {
            fail_in_tx(&mut tx, job, COMPUTE_LAPSED_ERROR, false, now).await?;
        }
        tx.commit().await?;
        Ok(u64::try_from(lapsed.len()).unwrap_or(u64::MAX))
    }

    /// Cancels the file's queued and processing compute jobs with `reason` (the file
    /// is deleted or superseded): their leases end, tenants see them failed with the
    /// reason. Returns how many.
    pub async fn cancel_compute_jobs_of_file(
        &self,
        file_id: FileId,
        reason: &str,
        now: i64,
    ) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let n = cancel_compute_of_file_in(&mut tx, &file_id.to_string(), reason, now).await?;
        tx.commit().await?;
        Ok(n)
    }
}
