//! How encoding jobs are created and shown to their tenant: a request creates a job
//! (with its own webhook target and its `encoding.queued` event) in one transaction
//! that also decides idempotency, so two racing requests cannot both create; the
//! my-jobs listing; the tenant's retry; and the upload's declared pipeline kept on
//! the file (`files.pipeline`) for the pipeline status and the auto-enqueue.

use std::collections::HashMap;

use sqlx::Row;
use zib_proto::FileId;

use super::variants::{file_phase, insert_children, NewVariantJob};
use super::{job_from_row, job_select, EncodingJobRow, JobPhase};
use crate::compute::insert_compute_jobs_in;
use crate::engine::{DbConn, FetchRows};
use crate::webhooks::{enqueue_event, NewWebhookEvent};
use crate::{FilePhase, MetaError, NewComputeJob, Result, Store};

/// A job to create (phase `queued`).
#[derive(Clone, Debug, PartialEq)]
pub struct NewEncodingJob {
    /// The encoding_id (a UUID).
    pub id: String,
    pub file_id: FileId,
    pub tenant_id: String,
    /// `zib_proto::encoding::job_options`.
    pub options: serde_json::Value,
    /// The job's AES-128 key wrapped under the master key (context: the job id).
    pub wrapped_hls_key: Vec<u8>,
    /// Pattern 1: the request's own webhook target (URL, secret).
    pub webhook: Option<(String, Option<String>)>,
    /// `phase_detail` while queued.
    pub detail: String,
    /// Aspect-variant children created with the job (same transaction, no event).
    pub variants: Vec<NewVariantJob>,
    /// AI runs asked with the encode (same transaction; each gets `encoding_job_id`
    /// = this job's id and waits for it). Empty for none.
    pub compute: Vec<NewComputeJob>,
}

/// What a request came to.
#[derive(Clone, Debug, PartialEq)]
pub enum JobCreation {
    /// The new job, committed with its `encoding.queued` event.
    Created(EncodingJobRow),
    /// A job of the file is in flight; nothing was created.
    InFlight(EncodingJobRow),
    /// A finished encode of the file exists and `force` was not given.
    Encoded(EncodingJobRow),
    /// The file is not (or no longer) uploaded and distributed: its phase, `None`
    /// when the row is gone.
    FileNotReady(Option<FilePhase>),
}

/// Which of a file's jobs a request looks for.
#[derive(Clone, Copy)]
enum Existing {
    /// `JobPhase::is_in_flight`.
    InFlight,
    /// `JobPhase::is_encoded`.
    Encoded,
}

/// The newest job of `file_id` in `which` phases, read on `conn`.
async fn latest_job(
    conn: &mut DbConn,
    file_id: FileId,
    which: Existing,
) -> Result<Option<EncodingJobRow>> {
    // sqlx takes only literal SQL: one statement per set (the unit test below keeps
    // the lists equal to `JobPhase`'s own predicates).
    let query = match which {
        Existing::InFlight => sqlx::query(concat!(
            job_select!(),
            " WHERE file_id = $1 AND phase IN ('queued', 'encoding', 'sharding', 'failed') \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        )),
        Existing::Encoded => sqlx::query(concat!(
            job_select!(),
            " WHERE file_id = $1 AND phase IN ('local_complete', 'replicating', 'safe') \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        )),
    };
    query
        .bind(file_id.to_string())
        .fetch_row(&mut *conn, job_from_row)
        .await
}

impl Store {
    /// Creates `new` unless the file already has a job in flight (answered whatever
    /// `force` says) or, without `force`, a finished one (the newest). The check
    /// and the insert share one write transaction, so of two racing requests the
    /// second sees the first's job. `queued_event` builds the `encoding.queued`
    /// event from the inserted row; it commits with the job.
    pub async fn create_encoding_job(
        &self,
        new: NewEncodingJob,
        force: bool,
        now: i64,
        queued_event: impl FnOnce(&EncodingJobRow) -> NewWebhookEvent,
    ) -> Result<JobCreation> {
        let mut tx = self.begin_write().await?;
        let phase = file_phase(&mut tx, new.file_id).await?;
        match phase {
            Some(FilePhase::Distributed | FilePhase::Safe) => {}
            other => return Ok(JobCreation::FileNotReady(other)),
        }
        if let Some(job) = latest_job(&mut tx, new.file_id, Existing::InFlight).await? {
            return Ok(JobCreation::InFlight(job));
        }
        if !force {
            if let Some(job) = latest_job(&mut tx, new.file_id, Existing::Encoded).await? {
                return Ok(JobCreation::Encoded(job));
            }
        }
        // Strictly after the file's previous job, so "the latest job" is never a tie.
        let previous: Option<i64> =
            sqlx::query_scalar("SELECT MAX(created_at) FROM encoding_jobs WHERE file_id = $1")
                .bind(new.file_id.to_string())
                .fetch_one(&mut *tx)
                .await?;
        let created_at = previous.map_or(now, |p| now.max(p + 1));
        let options = serde_json::to_string(&new.options).map_err(|e| MetaError::Corrupt {
            what: "encoding_jobs.options",
            detail: e.to_string(),
        })?;
        sqlx::query(
            "INSERT INTO encoding_jobs (id, file_id, tenant_id, phase, progress, \
                 phase_progress_pct, phase_detail, phase_updated_at, options, wrapped_hls_key, \
                 retry_count, created_at) \
             VALUES ($1, $2, $3, $4, 0, 0, $5, $6, $7, $8, 0, $9)",
        )
        .bind(&new.id)
        .bind(new.file_id.to_string())
        .bind(&new.tenant_id)
        .bind(JobPhase::Queued.as_str())
        .bind(&new.detail)
        .bind(now)
        .bind(options)
        .bind(&new.wrapped_hls_key)
        .bind(created_at)
        .execute(&mut *tx)
        .await?;
        if let Some((url, secret)) = &new.webhook {
            sqlx::query(
                "INSERT INTO job_webhooks (job_id, url, secret, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&new.id)
            .bind(url)
            .bind(secret)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let job = sqlx::query(concat!(job_select!(), " WHERE id = $1"))
            .bind(&new.id)
            .fetch_row(&mut *tx, job_from_row)
            .await?
            .ok_or(MetaError::Conflict("the new encoding job vanished"))?;
        enqueue_event(&mut tx, queued_event(&job), now).await?;
        insert_children(&mut tx, &job, &new.variants, None, &new.detail, now).await?;
        insert_compute_jobs_in(&mut tx, &new.compute, Some(&job.id), now).await?;
        tx.commit().await?;
        Ok(JobCreation::Created(job))
    }

    /// The newest job of the tenant's file (`None`: no job, or not the tenant's).
    pub async fn latest_encoding_job(
        &self,
        tenant_id: &str,
        file_id: FileId,
    ) -> Result<Option<EncodingJobRow>> {
        sqlx::query(concat!(
            job_select!(),
            " WHERE file_id = $1 AND tenant_id = $2 ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .bind(file_id.to_string())
        .bind(tenant_id)
        .fetch_row(&self.pool, job_from_row)
        .await
    }

    /// The latest main job of each of the tenant's files, newest first; with
    /// `active_only`, only those not `safe` or `cancelled`. Each comes with its
    /// file's object key (empty if the file row is gone). Aspect-variant jobs are
    /// not listed: their stream files are not files the tenant uploaded.
    pub async fn my_encoding_jobs(
        &self,
        tenant_id: &str,
        active_only: bool,
    ) -> Result<Vec<(EncodingJobRow, String)>> {
        let jobs = sqlx::query(concat!(
            job_select!(),
            " AS j WHERE j.tenant_id = $1 AND j.parent_job_id IS NULL AND j.id = (\
                 SELECT l.id FROM encoding_jobs l WHERE l.file_id = j.file_id \
                 ORDER BY l.created_at DESC, l.id DESC LIMIT 1) \
                 AND ($2 = 0 OR j.phase NOT IN ('safe', 'cancelled')) \
             ORDER BY j.created_at DESC, j.id DESC"
        ))
        .bind(tenant_id)
        .bind(i64::from(active_only))
        .fetch_rows(&self.pool, job_from_row)
        .await?;
        let keys: HashMap<String, String> = sqlx::query(
            "SELECT DISTINCT f.file_id, f.object_key FROM files f \
             JOIN encoding_jobs j ON j.file_id = f.file_id WHERE j.tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("file_id")?, r.try_get("object_key")?)))
        .collect::<Result<_>>()?;
        Ok(jobs
            .into_iter()
            .map(|j| {
                let key = keys
                    .get(&j.file_id.to_string())
                    .cloned()
                    .unwrap_or_default();
                (j, key)
            })
            .collect())
    }

    /// The fewest verified non-originator replicas any segment of the job has (0
    /// before it has segments): my-jobs' `replication_peer_count`.
    pub async fn job_replication_peer_count(&self, job_id: &str) -> Result<u32> {
        let min: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(c) FROM (SELECT (SELECT COUNT(*) FROM segment_replicas r \
                 WHERE r.blob_id = s.blob_id AND r.is_origin = 0 \
                   AND r.verified_at IS NOT NULL) AS c \
             FROM hls_segments s WHERE s.job_id = $1) counts",
        )
        .bind(job_id)
        .fetch_one(&self.pool)
        .await?;
        crate::convert::from_db(min.unwrap_or(0), "replication_peer_count")
    }

    /// Whether a rung of the job is published (its stream is playable).
    pub async fn job_has_published_rung(&self, job_id: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM hls_renditions WHERE job_id = $1 AND published_at IS NOT NULL",
        )
        .bind(job_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// The tenant's retry of a `failed_user_action` job: back to `queued` with a
    /// fresh retry budget and no lease, committed with `event(&job)` (its
    /// `encoding.queued`). `None` when the job is not in that phase (or not the
    /// tenant's).
    pub async fn retry_encoding_job(
        &self,
        tenant_id: &str,
        job_id: &str,
        detail: &str,
        now: i64,
        event: impl FnOnce(&EncodingJobRow) -> NewWebhookEvent,
    ) -> Result<Option<EncodingJobRow>> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE encoding_jobs SET phase = $1, retry_count = 0, retry_after = NULL, \
                 error_message = NULL, progress = 0, phase_progress_pct = 0, phase_detail = $2, \
                 phase_updated_at = $3, lease_node = NULL, lease_token_hash = NULL, \
                 lease_expires_at = NULL, progress_event_pct = NULL, progress_event_at = NULL \
             WHERE id = $4 AND tenant_id = $5 AND phase = $6",
        )
        .bind(JobPhase::Queued.as_str())
        .bind(detail)
        .bind(now)
        .bind(job_id)
        .bind(tenant_id)
        .bind(JobPhase::FailedUserAction.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(None);
        }
        let job = sqlx::query(concat!(job_select!(), " WHERE id = $1"))
            .bind(job_id)
            .fetch_row(&mut *tx, job_from_row)
            .await?
            .ok_or(MetaError::Conflict("the retried encoding job vanished"))?;
        enqueue_event(&mut tx, event(&job), now).await?;
        tx.commit().await?;
        Ok(Some(job))
    }

    /// Keeps the upload's declared pipeline (`Pipeline::declared()`: no secret) on
    /// the file, for the pipeline status and the auto-enqueue.
    pub async fn set_file_pipeline(
        &self,
        file_id: FileId,
        declared: &serde_json::Value,
    ) -> Result<()> {
        let text = serde_json::to_string(declared).map_err(|e| MetaError::Corrupt {
            what: "files.pipeline",
            detail: e.to_string(),
        })?;
        sqlx::query("UPDATE files SET pipeline = $1 WHERE file_id = $2")
            .bind(text)
            .bind(file_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The declared pipeline of the file (`None`: none declared).
    pub async fn file_pipeline(&self, file_id: FileId) -> Result<Option<serde_json::Value>> {
        let text: Option<Option<String>> =
            sqlx::query_scalar("SELECT pipeline FROM files WHERE file_id = $1")
                .bind(file_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        text.flatten()
            .map(|t| {
                serde_json::from_str(&t).map_err(|e| MetaError::Corrupt {
                    what: "files.pipeline",
                    detail: e.to_string(),
                })
            })
            .transpose()
    }
}

#[cfg(test)]
#[path = "requests_tests.rs"]
mod tests;
