//! The lease lifecycle of an encoding job once it exists (docs/video.md): a node
//! claims it, renews its lease with progress, reports it done or failed; a lapsed
//! lease is a transient failure; a cancelled job stops. Every step that reports to
//! the tenant writes its event in the same transaction (the outbox), built by the
//! caller's [`EventBuilder`] so the bodies keep their one shape in the server.

use zib_proto::{FileId, NodeId};

use super::variants::children_in;
use super::{job_from_row, job_select, EncodingJobRow, JobPhase};
use crate::compute::cancel_compute_of_encoding_in;
use crate::engine::{DbConn, FetchRows};
use crate::webhooks::enqueue_event;
use crate::{MetaError, NewWebhookEvent, Result, Store};

/// Which event a lifecycle step sends; the caller turns it into the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobEvent {
    Started,
    Sharding,
    /// `encoding.progress` with this percent, from the sharding stage when `sharding`.
    Progress {
        percent: u8,
        sharding: bool,
    },
    Complete,
    Failed,
}

/// Builds an event body from the job row as the transaction left it, or says the
/// step sends none (`None`: an aspect-variant job announces only its completion).
/// The slice holds the job's aspect-variant children as the transaction sees them
/// for a main job's `Complete` (its `aspect_variants` block); it is empty otherwise.
pub type EventBuilder<'a> = &'a (dyn Fn(&EncodingJobRow, JobEvent, &[EncodingJobRow]) -> Option<NewWebhookEvent>
         + Send
         + Sync);

/// How a failure turns into a retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Transient failures retried before the job needs the tenant (`failed_user_action`).
    pub budget: u32,
    /// The first retry waits this long; each later one twice the previous.
    pub backoff_base_ms: i64,
    pub backoff_cap_ms: i64,
}

impl RetryPolicy {
    /// The wait before retry number `n` (1 for the first): base · 2^(n-1), capped.
    pub fn backoff_ms(&self, n: u32) -> i64 {
        let doublings = n.saturating_sub(1).min(30);
        self.backoff_base_ms
            .saturating_mul(1_i64 << doublings)
            .min(self.backoff_cap_ms)
    }
}

/// When an `encoding.progress` event is due: after `min_interval_ms` since the last
/// one, or once progress moved `min_points` since it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgressThrottle {
    pub min_interval_ms: i64,
    pub min_points: u8,
}

/// What a lease renewal reports.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseUpdate {
    /// The node says ffmpeg is done and segments are being pushed.
    pub sharding: bool,
    pub progress: u8,
    pub phase_progress: f64,
    pub detail: Option<String>,
}

/// How a failure report ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureOutcome {
    /// `failed`, claimable again at `retry_after`.
    Retrying { retry_after: i64 },
    /// `failed_user_action`: permanent, or the retry budget is spent.
    NeedsUser,
}

/// What `done` changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The job that was live for the file before this one (a forced re-encode):
    /// now cancelled, its segments evicted after the grace.
    pub replaced: Option<String>,
}

/// Phases in which a lease is held.
const LEASED: [JobPhase; 2] = [JobPhase::Encoding, JobPhase::Sharding];

/// The job, if `token_hash` holds an unlapsed lease on it (and `node`, when given, is
/// the lease holder), read inside the caller's transaction.
pub(crate) async fn held_lease(
    conn: &mut DbConn,
    job_id: &str,
    node: Option<&NodeId>,
    token_hash: &str,
    now: i64,
) -> Result<Option<EncodingJobRow>> {
    let job = sqlx::query(concat!(
        job_select!(),
        " WHERE id = $1 AND lease_token_hash = $2 AND lease_expires_at > $3 \
          AND phase IN ($4, $5)"
    ))
    .bind(job_id)
    .bind(token_hash)
    .bind(now)
    .bind(LEASED[0].as_str())
    .bind(LEASED[1].as_str())
    .fetch_row(&mut *conn, job_from_row)
    .await?;
    Ok(job.filter(|j| node.is_none_or(|n| j.lease_node.as_ref() == Some(n))))
}

async fn job_in(conn: &mut DbConn, job_id: &str) -> Result<Option<EncodingJobRow>> {
    sqlx::query(concat!(job_select!(), " WHERE id = $1"))
        .bind(job_id)
        .fetch_row(&mut *conn, job_from_row)
        .await
}

async fn emit(
    conn: &mut DbConn,
    job: &EncodingJobRow,
    event: JobEvent,
    events: EventBuilder<'_>,
    now: i64,
) -> Result<()> {
    let children = if event == JobEvent::Complete && !job.is_variant() {
        children_in(conn, &job.id).await?
    } else {
        vec![]
    };
    if let Some(row) = events(job, event, &children) {
        enqueue_event(conn, row, now).await?;
    }
    Ok(())
}

/// Moves a leased (or lapsed) job to `failed` for a retry, or `failed_user_action`
/// when `permanent` or the budget is spent (then `encoding.failed`). Clears the lease.
async fn fail_in_tx(
    conn: &mut DbConn,
    job: &EncodingJobRow,
    error: &str,
    permanent: bool,
    policy: RetryPolicy,
    events: EventBuilder<'_>,
    now: i64,
) -> Result<FailureOutcome> {
    let outcome = if permanent || job.retry_count >= policy.budget {
        FailureOutcome::NeedsUser
    } else {
        FailureOutcome::Retrying {
            retry_after: now.saturating_add(policy.backoff_ms(job.retry_count + 1)),
        }
    };
    let (phase, retry_after, retries) = match outcome {
        FailureOutcome::NeedsUser => (JobPhase::FailedUserAction, None, job.retry_count),
        FailureOutcome::Retrying { retry_after } => {
            (JobPhase::Failed, Some(retry_after), job.retry_count + 1)
        }
    };
    sqlx::query(
        "UPDATE encoding_jobs SET phase = $1, retry_after = $2, retry_count = $3, \
             error_message = $4, lease_node = NULL, lease_token_hash = NULL, \
             lease_expires_at = NULL, phase_updated_at = $5, phase_detail = NULL \
         WHERE id = $6",
    )
    .bind(phase.as_str())
    .bind(retry_after)
    .bind(i64::from(retries))
    .bind(error)
    .bind(now)
    .bind(&job.id)
    .execute(&mut *conn)
    .await?;
    if outcome == FailureOutcome::NeedsUser {
        if let Some(failed) = job_in(conn, &job.id).await? {
            emit(conn, &failed, JobEvent::Failed, events, now).await?;
        }
    }
    Ok(outcome)
}

impl Store {
    /// Hands the oldest claimable job (`queued`, or `failed` whose `retry_after`
    /// passed) of a readable file to `node`, with a lease until `lease_until`, and
    /// sends `encoding.started` with it. One guarded UPDATE: of two servers claiming
    /// at once, one gets the job and the other the next one (or none).
    pub async fn claim_encoding_job(
        &self,
        node: &NodeId,
        token_hash: &str,
        lease_until: i64,
        now: i64,
        events: EventBuilder<'_>,
    ) -> Result<Option<EncodingJobRow>> {
        let mut tx = self.begin_write().await?;
        let claimed: Option<String> = sqlx::query_scalar(
            "UPDATE encoding_jobs SET phase = $1, lease_node = $2, node_id = $2, \
                 lease_token_hash = $3, lease_expires_at = $4, started_at = $5, \
                 phase_updated_at = $5, progress = 0, phase_progress_pct = 0, \
                 phase_detail = NULL, retry_after = NULL, progress_event_pct = NULL, \
                 progress_event_at = NULL \
             WHERE id = (SELECT j.id FROM encoding_jobs j \
                     JOIN files f ON f.file_id = j.file_id \
                     WHERE (j.phase = $6 OR (j.phase = $7 AND j.retry_after <= $5)) \
                       AND f.phase IN ('distributed', 'safe') \
                     ORDER BY j.created_at, j.id LIMIT 1) \
               AND (phase = $6 OR (phase = $7 AND retry_after <= $5)) \
             RETURNING id",
        )
        .bind(JobPhase::Encoding.as_str())
        .bind(node.as_str())
        .bind(token_hash)
        .bind(lease_until)
        .bind(now)
        .bind(JobPhase::Queued.as_str())
        .bind(JobPhase::Failed.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = claimed else {
            return Ok(None);
        };
        let Some(job) = job_in(&mut tx, &id).await? else {
            return Ok(None);
        };
        emit(&mut tx, &job, JobEvent::Started, events, now).await?;
        tx.commit().await?;
        Ok(Some(job))
    }

    /// The job, if `token_hash` (held by `node`, when given) holds an unlapsed lease.
    pub async fn leased_encoding_job(
        &self,
        job_id: &str,
        node: Option<&NodeId>,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<EncodingJobRow>> {
        let mut conn = self.pool.acquire().await?;
        held_lease(&mut conn, job_id, node, token_hash, now).await
    }

    /// Extends the lease to `lease_until` and stores the progress. Moves `encoding` to
    /// `sharding` (with `encoding.sharding`) when the node says so, and sends
    /// `encoding.progress` when `throttle` says one is due. `None`: the lease is gone.
    #[allow(clippy::too_many_arguments)]
    pub async fn renew_encoding_lease(
        &self,
        job_id: &str,
        node: &NodeId,
        token_hash: &str,
        update: &LeaseUpdate,
        lease_until: i64,
        throttle: ProgressThrottle,
        now: i64,
        events: EventBuilder<'_>,
    ) -> Result<Option<EncodingJobRow>> {
        let mut tx = self.begin_write().await?;
        let Some(job) = held_lease(&mut tx, job_id, Some(node), token_hash, now).await? else {
            return Ok(None);
        };
        let progress = update.progress.min(100);
        let enters_sharding = update.sharding && job.phase == JobPhase::Encoding;
        let phase = if enters_sharding {
            JobPhase::Sharding
        } else {
            job.phase
        };
        let last: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT progress_event_pct, progress_event_at FROM encoding_jobs WHERE id = $1",
        )
        .bind(job_id)
        .fetch_optional(&mut *tx)
        .await?;
        let (last_pct, last_at) = last.unwrap_or((None, None));
        let due = match (last_pct, last_at) {
            (Some(pct), Some(at)) => {
                i64::from(progress) > pct
                    && (now - at >= throttle.min_interval_ms
                        || i64::from(progress) - pct >= i64::from(throttle.min_points))
            }
            _ => progress > 0,
        };
        let (event_pct, event_at) = if due {
            (Some(i64::from(progress)), Some(now))
        } else {
            (last_pct, last_at)
        };
        sqlx::query(
            "UPDATE encoding_jobs SET lease_expires_at = $1, progress = $2, \
                 phase_progress_pct = $3, phase_detail = $4, phase = $5, \
                 phase_updated_at = CASE WHEN $6 THEN $7 ELSE phase_updated_at END, \
                 progress_event_pct = $8, progress_event_at = $9 \
             WHERE id = $10",
        )
        .bind(lease_until)
        .bind(i64::from(progress))
        .bind(update.phase_progress.clamp(0.0, 100.0))
        .bind(&update.detail)
        .bind(phase.as_str())
        .bind(enters_sharding)
        .bind(now)
        .bind(event_pct)
        .bind(event_at)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        let Some(job) = job_in(&mut tx, job_id).await? else {
            return Ok(None);
        };
        if enters_sharding {
            emit(&mut tx, &job, JobEvent::Sharding, events, now).await?;
        }
        if due {
            let event = JobEvent::Progress {
                percent: progress,
                sharding: phase == JobPhase::Sharding,
            };
            emit(&mut tx, &job, event, events, now).await?;
        }
        tx.commit().await?;
        Ok(Some(job))
    }

    /// The node reports a failure. `None`: the lease is gone (nothing changes).
    #[allow(clippy::too_many_arguments)]
    pub async fn fail_encoding_job(
        &self,
        job_id: &str,
        token_hash: &str,
        error: &str,
        permanent: bool,
        policy: RetryPolicy,
        now: i64,
        events: EventBuilder<'_>,
    ) -> Result<Option<FailureOutcome>> {
        let mut tx = self.begin_write().await?;
        let Some(job) = held_lease(&mut tx, job_id, None, token_hash, now).await? else {
            return Ok(None);
        };
        let outcome = fail_in_tx(&mut tx, &job, error, permanent, policy, events, now).await?;
        tx.commit().await?;
        Ok(Some(outcome))
    }

    /// Every job whose lease lapsed before `now` fails transiently with `error`
    /// (retry or, budget spent, `failed_user_action`). Returns them as they were.
    pub async fn requeue_lapsed_encoding_jobs(
        &self,
        error: &str,
        policy: RetryPolicy,
        now: i64,
        limit: u32,
        events: EventBuilder<'_>,
    ) -> Result<Vec<EncodingJobRow>> {
        let mut tx = self.begin_write().await?;
        let lapsed = sqlx::query(concat!(
            job_select!(),
            " WHERE phase IN ($1, $2) AND lease_expires_at <= $3 \
              ORDER BY lease_expires_at LIMIT $4"
        ))
        .bind(LEASED[0].as_str())
        .bind(LEASED[1].as_str())
        .bind(now)
        .bind(i64::from(limit))
        .fetch_rows(&mut *tx, job_from_row)
        .await?;
        for job in &lapsed {
            fail_in_tx(&mut tx, job, error, false, policy, events, now).await?;
        }
        tx.commit().await?;
        Ok(lapsed)
    }

    /// The node says every rung is published: `local_complete`, progress 100, lease
    /// released, `encoding.complete`. If another job was live for the file (a forced
    /// re-encode), this one replaces it in `live_encodings` and the old one is
    /// cancelled with `replaced_reason`. `None`: the lease is gone. A job with no
    /// rung, or a planned rung not published, is a conflict.
    pub async fn complete_encoding_job(
        &self,
        job_id: &str,
        token_hash: &str,
        replaced_reason: &str,
        now: i64,
        events: EventBuilder<'_>,
    ) -> Result<Option<Completion>> {
        let mut tx = self.begin_write().await?;
        let Some(job) = held_lease(&mut tx, job_id, None, token_hash, now).await? else {
            return Ok(None);
        };
        let (planned, unpublished): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(*) - COUNT(published_at) FROM hls_renditions \
             WHERE job_id = $1",
        )
        .bind(job_id)
        .fetch_one(&mut *tx)
        .await?;
        if planned == 0 || unpublished > 0 {
            return Err(MetaError::Conflict(
                "every planned rendition must be published before the job is done",
            ));
        }
        sqlx::query(
            "UPDATE encoding_jobs SET phase = $1, progress = 100, phase_progress_pct = 100, \
                 phase_detail = NULL, completed_at = $2, phase_updated_at = $2, \
                 lease_node = NULL, lease_token_hash = NULL, lease_expires_at = NULL \
             WHERE id = $3",
        )
        .bind(JobPhase::LocalComplete.as_str())
        .bind(now)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        let live: Option<String> =
            sqlx::query_scalar("SELECT job_id FROM live_encodings WHERE file_id = $1")
                .bind(job.file_id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let replaced = live.filter(|old| old != job_id);
        set_live(&mut tx, job.file_id, job_id, now).await?;
        if let Some(old) = &replaced {
            sqlx::query(
                "UPDATE encoding_jobs SET phase = $1, cancelled_reason = $2, \
                     phase_updated_at = $3, lease_node = NULL, lease_token_hash = NULL, \
                     lease_expires_at = NULL \
                 WHERE id = $4 AND phase <> $1",
            )
            .bind(JobPhase::Cancelled.as_str())
            .bind(replaced_reason)
            .bind(now)
            .bind(old)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(done) = job_in(&mut tx, job_id).await? {
            emit(&mut tx, &done, JobEvent::Complete, events, now).await?;
        }
        tx.commit().await?;
        Ok(Some(Completion { replaced }))
    }

    /// Cancels a job that is not terminal: no lease holds any more (the node's next
    /// call is refused), no later event. If it was the file's live job, the file has
    /// none now. Its aspect-variant children still in flight are cancelled with it
    /// (an encoded child keeps serving its stream), and so are the AI runs asked
    /// with it that have not ended. Returns the job as it was,
    /// `None` if missing or already terminal.
    pub async fn cancel_encoding_job(
        &self,
        job_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<Option<EncodingJobRow>> {
        let mut tx = self.begin_write().await?;
        let Some(job) = job_in(&mut tx, job_id).await? else {
            return Ok(None);
        };
        if job.phase.is_terminal() {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE encoding_jobs SET phase = $1, cancelled_reason = $2, \
                 phase_updated_at = $3, phase_detail = NULL, lease_node = NULL, \
                 lease_token_hash = NULL, lease_expires_at = NULL \
             WHERE id = $4",
        )
        .bind(JobPhase::Cancelled.as_str())
        .bind(reason)
        .bind(now)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM live_encodings WHERE job_id = $1")
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        // A child in flight may already be live on its stream file (its first rung).
        sqlx::query(
            "DELETE FROM live_encodings WHERE job_id IN (SELECT id FROM encoding_jobs \
                 WHERE parent_job_id = $1 \
                   AND phase IN ('queued', 'encoding', 'sharding', 'failed'))",
        )
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE encoding_jobs SET phase = $1, cancelled_reason = $2, \
                 phase_updated_at = $3, phase_detail = NULL, lease_node = NULL, \
                 lease_token_hash = NULL, lease_expires_at = NULL \
             WHERE parent_job_id = $4 \
               AND phase IN ('queued', 'encoding', 'sharding', 'failed')",
        )
        .bind(JobPhase::Cancelled.as_str())
        .bind(reason)
        .bind(now)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        cancel_compute_of_encoding_in(&mut tx, job_id, reason, now).await?;
        tx.commit().await?;
        Ok(Some(job))
    }

    /// The jobs of a file not yet terminal, oldest first (what deleting or
    /// superseding the file cancels).
    pub async fn unfinished_encoding_jobs(&self, file_id: FileId) -> Result<Vec<EncodingJobRow>> {
        sqlx::query(concat!(
            job_select!(),
            " WHERE file_id = $1 AND phase NOT IN ($2, $3, $4) ORDER BY created_at, id"
        ))
        .bind(file_id.to_string())
        .bind(JobPhase::Safe.as_str())
        .bind(JobPhase::FailedUserAction.as_str())
        .bind(JobPhase::Cancelled.as_str())
        .fetch_rows(&self.pool, job_from_row)
        .await
    }

    /// Cancelled jobs cancelled at or before `before` whose segments or artefacts are
    /// still recorded: their eviction is due (a replaced encode's grace has passed, or an
    /// earlier eviction did not finish).
    pub async fn cancelled_jobs_to_evict(
        &self,
        before: i64,
        limit: u32,
    ) -> Result<Vec<EncodingJobRow>> {
        sqlx::query(concat!(
            job_select!(),
            " WHERE phase = $1 AND phase_updated_at <= $2 \
              AND (EXISTS (SELECT 1 FROM hls_segments s WHERE s.job_id = encoding_jobs.id) \
                   OR EXISTS (SELECT 1 FROM job_artifacts a WHERE a.job_id = encoding_jobs.id)) \
              ORDER BY phase_updated_at LIMIT $3"
        ))
        .bind(JobPhase::Cancelled.as_str())
        .bind(before)
        .bind(i64::from(limit))
        .fetch_rows(&self.pool, job_from_row)
        .await
    }

    /// The job the CDN serves for `file_id`, if any.
    pub async fn live_encoding_job_id(&self, file_id: FileId) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT job_id FROM live_encodings WHERE file_id = $1")
                .bind(file_id.to_string())
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

/// Points the file's stream at `job_id`.
pub(crate) async fn set_live(
    conn: &mut DbConn,
    file_id: FileId,
    job_id: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO live_encodings (file_id, job_id, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (file_id) DO UPDATE SET job_id = excluded.job_id, \
             updated_at = excluded.updated_at",
    )
    .bind(file_id.to_string())
    .bind(job_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
