//! AI compute jobs (migration 0008, docs/ai.md): transcription and vision runs over a
//! stored video. How they are created and read lives here; their lease lifecycle
//! (claim, renew, outputs, done, failed, lapsed, cancelled) in `jobs`. A run asked
//! with an encode carries `encoding_job_id` and waits for that encode
//! ([`Store::claim_compute_job`]).

mod jobs;

pub(crate) use jobs::{cancel_compute_of_encoding_in, cancel_compute_of_file_in};
pub use jobs::{ComputeEventBuilder, COMPUTE_LAPSED_ERROR, COMPUTE_RETRY, COMPUTE_TRIES};

use sqlx::Row;
use zib_proto::compute::{ComputeKind, ComputeStatus};
use zib_proto::{FileId, NodeId};

use crate::convert::parse;
use crate::engine::{DbConn, DbRow, FetchRows};
use crate::{MetaError, Result, Store};

/// Where a compute job stands (`compute_jobs.status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ComputeJobState {
    /// Waiting for a capable node (also while waiting out a retry's `retry_after`,
    /// or for the encode it was asked with).
    Queued,
    /// A node holds its lease.
    Processing,
    Complete,
    /// Failed past its tries, or at once on a permanent failure.
    Failed,
    /// Its file was deleted or superseded, or its encode cancelled.
    Cancelled,
}

impl ComputeJobState {
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Processing,
        Self::Complete,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Complete => "complete",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Queued or processing: a node runs it, or will.
    pub fn is_in_flight(self) -> bool {
        matches!(self, Self::Queued | Self::Processing)
    }
}

/// One row of `compute_jobs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComputeJobRow {
    /// The job_id tenants see (UUIDv4).
    pub id: String,
    /// The source video.
    pub file_id: FileId,
    pub tenant_id: String,
    pub kind: ComputeKind,
    /// `fastest` | `recommended` | `accurate`, or `standard` | `hq`.
    pub tier: String,
    /// The encode it was asked with, which it waits for.
    pub encoding_job_id: Option<String>,
    pub status: ComputeJobState,
    /// 0–100.
    pub progress: i64,
    pub phase_detail: Option<String>,
    pub lease_node: Option<NodeId>,
    /// The node that ran (or runs) it.
    pub node_id: Option<NodeId>,
    pub lease_expires_at: Option<i64>,
    pub retry_count: i64,
    pub retry_after: Option<i64>,
    /// The last failure, or why it was cancelled.
    pub error_message: Option<String>,
    pub srt_file_id: Option<FileId>,
    pub vtt_file_id: Option<FileId>,
    pub sidecar_file_id: Option<FileId>,
    pub language: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub updated_at: i64,
}

impl ComputeJobRow {
    /// What the tenant sees: a cancelled job reads as failed (its reason in
    /// `error_message`).
    pub fn tenant_status(&self) -> ComputeStatus {
        match self.status {
            ComputeJobState::Queued => ComputeStatus::Queued,
            ComputeJobState::Processing => ComputeStatus::Processing,
            ComputeJobState::Complete => ComputeStatus::Complete,
            ComputeJobState::Failed | ComputeJobState::Cancelled => ComputeStatus::Failed,
        }
    }

    /// The `job_id` its events carry: the encoding job's when it was asked with one
    /// (the tenant follows that id), else its own.
    pub fn event_job_id(&self) -> &str {
        self.encoding_job_id.as_deref().unwrap_or(&self.id)
    }

    pub fn is_in_flight(&self) -> bool {
        self.status.is_in_flight()
    }

    /// The `kind:tier` capability a node needs to claim it.
    pub fn capability(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.tier)
    }

    /// Every output its kind stores is recorded (a transcription's SRT and VTT, a
    /// vision run's sidecar).
    pub fn has_all_outputs(&self) -> bool {
        match self.kind {
            ComputeKind::Transcription => self.srt_file_id.is_some() && self.vtt_file_id.is_some(),
            ComputeKind::Vision => self.sidecar_file_id.is_some(),
        }
    }
}

/// A compute job to create (status `queued`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewComputeJob {
    /// The job_id (a UUIDv4).
    pub id: String,
    pub file_id: FileId,
    pub tenant_id: String,
    pub kind: ComputeKind,
    pub tier: String,
    /// Set by [`Store::create_encoding_job`] to the new encoding job's id when created
    /// with it; `None` for a run asked alone.
    pub encoding_job_id: Option<String>,
}

/// What [`Store::submit_compute_job`] came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ComputeSubmission {
    /// The new job.
    Created(ComputeJobRow),
    /// A job of the same file, kind and tier is queued or processing: nothing was
    /// created (the tenant's answer names it, `already_queued`).
    InFlight(ComputeJobRow),
}

/// `SELECT` of every column of `compute_jobs` (as `compute_from_row` reads them), for
/// `concat!` with the rest of a query: sqlx takes only literal SQL.
macro_rules! compute_select {
    () => {
        "SELECT id, file_id, tenant_id, kind, tier, encoding_job_id, status, progress, \
         phase_detail, lease_node, node_id, lease_expires_at, retry_count, retry_after, \
         error_message, srt_file_id, vtt_file_id, sidecar_file_id, language, created_at, \
         started_at, completed_at, updated_at FROM compute_jobs"
    };
}
pub(crate) use compute_select;

pub(crate) fn compute_from_row(row: &DbRow) -> Result<ComputeJobRow> {
    let kind_text: String = row.try_get("kind")?;
    let kind = ComputeKind::parse(&kind_text).ok_or_else(|| MetaError::Corrupt {
        what: "compute_jobs.kind",
        detail: format!("unknown kind {kind_text:?}"),
    })?;
    let status_text: String = row.try_get("status")?;
    let status = ComputeJobState::parse(&status_text).ok_or_else(|| MetaError::Corrupt {
        what: "compute_jobs.status",
        detail: format!("unknown status {status_text:?}"),
    })?;
    let node = |column: &'static str| -> Result<Option<NodeId>> {
        let text: Option<String> = row.try_get(column)?;
        text.map(|t| parse::<NodeId>(&t, column)).transpose()
    };
    let file = |column: &'static str| -> Result<Option<FileId>> {
        let text: Option<String> = row.try_get(column)?;
        text.map(|t| parse::<FileId>(&t, column)).transpose()
    };
    Ok(ComputeJobRow {
        id: row.try_get("id")?,
        file_id: parse(
            &row.try_get::<String, _>("file_id")?,
            "compute_jobs.file_id",
        )?,
        tenant_id: row.try_get("tenant_id")?,
        kind,
        tier: row.try_get("tier")?,
        encoding_job_id: row.try_get("encoding_job_id")?,
        status,
        progress: row.try_get("progress")?,
        phase_detail: row.try_get("phase_detail")?,
        lease_node: node("lease_node")?,
        node_id: node("node_id")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        retry_count: row.try_get("retry_count")?,
        retry_after: row.try_get("retry_after")?,
        error_message: row.try_get("error_message")?,
        srt_file_id: file("srt_file_id")?,
        vtt_file_id: file("vtt_file_id")?,
        sidecar_file_id: file("sidecar_file_id")?,
        language: row.try_get("language")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Inserts `jobs` as `queued` inside the caller's transaction; `encoding_job`, when
/// given, overrides each job's `encoding_job_id` (created with that encode).
pub(crate) async fn insert_compute_jobs_in(
    conn: &mut DbConn,
    jobs: &[NewComputeJob],
    encoding_job: Option<&str>,
    now: i64,
) -> Result<Vec<ComputeJobRow>> {
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let encoding_job_id = encoding_job.or(job.encoding_job_id.as_deref());
        sqlx::query(
            "INSERT INTO compute_jobs (id, file_id, tenant_id, kind, tier, encoding_job_id, \
                 status, progress, retry_count, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, $8, $8)",
        )
        .bind(&job.id)
        .bind(job.file_id.to_string())
        .bind(&job.tenant_id)
        .bind(job.kind.as_str())
        .bind(&job.tier)
        .bind(encoding_job_id)
        .bind(ComputeJobState::Queued.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let row = compute_job_in(conn, &job.id)
            .await?
            .ok_or(MetaError::Conflict("the new compute job vanished"))?;
        out.push(row);
    }
    Ok(out)
}

pub(crate) async fn compute_job_in(conn: &mut DbConn, id: &str) -> Result<Option<ComputeJobRow>> {
    sqlx::query(concat!(compute_select!(), " WHERE id = $1"))
        .bind(id)
        .fetch_row(&mut *conn, compute_from_row)
        .await
}

/// Deletes every compute job of a file being deleted (the rows reference it and its
/// encoding jobs). Their outputs are derived files of it and go with those.
pub(crate) async fn delete_file_compute_jobs_in(conn: &mut DbConn, file_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM compute_jobs WHERE file_id = $1")
        .bind(file_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// Creates `jobs` (`queued`) in one transaction: runs asked alone, or asked by a
    /// pipeline once its file is ready.
    pub async fn create_compute_jobs(
        &self,
        jobs: &[NewComputeJob],
        now: i64,
    ) -> Result<Vec<ComputeJobRow>> {
        let mut tx = self.begin_write().await?;
        let rows = insert_compute_jobs_in(&mut tx, jobs, None, now).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Creates `job` unless one of the same file, kind and tier is in flight; the
    /// check and the insert share one write transaction, so of two racing asks the
    /// second gets the first's job.
    pub async fn submit_compute_job(
        &self,
        job: NewComputeJob,
        now: i64,
    ) -> Result<ComputeSubmission> {
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query(concat!(
            compute_select!(),
            " WHERE file_id = $1 AND kind = $2 AND tier = $3 AND status IN ($4, $5) \
              ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .bind(job.file_id.to_string())
        .bind(job.kind.as_str())
        .bind(&job.tier)
        .bind(ComputeJobState::Queued.as_str())
        .bind(ComputeJobState::Processing.as_str())
        .fetch_row(&mut *tx, compute_from_row)
        .await?;
        if let Some(existing) = existing {
            return Ok(ComputeSubmission::InFlight(existing));
        }
        let mut rows =
            insert_compute_jobs_in(&mut tx, std::slice::from_ref(&job), None, now).await?;
        tx.commit().await?;
        rows.pop()
            .map(ComputeSubmission::Created)
            .ok_or(MetaError::Conflict("the new compute job vanished"))
    }

    /// A job by its id, whoever owns it (node RPC, workers).
    pub async fn compute_job(&self, id: &str) -> Result<Option<ComputeJobRow>> {
        sqlx::query(concat!(compute_select!(), " WHERE id = $1"))
            .bind(id)
            .fetch_row(&self.pool, compute_from_row)
            .await
    }

    /// A job of `tenant_id`; another tenant's job is `None`, like a missing one.
    pub async fn compute_job_for_tenant(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<ComputeJobRow>> {
        sqlx::query(concat!(
            compute_select!(),
            " WHERE id = $1 AND tenant_id = $2"
        ))
        .bind(id)
        .bind(tenant_id)
        .fetch_row(&self.pool, compute_from_row)
        .await
    }

    /// Every compute job of the file, newest first.
    pub async fn compute_jobs_of_file(&self, file_id: FileId) -> Result<Vec<ComputeJobRow>> {
        sqlx::query(concat!(
            compute_select!(),
            " WHERE file_id = $1 ORDER BY created_at DESC, id DESC"
        ))
        .bind(file_id.to_string())
        .fetch_rows(&self.pool, compute_from_row)
        .await
    }

    /// The compute jobs asked with an encoding job, oldest first.
    pub async fn compute_jobs_of_encoding(
        &self,
        encoding_job_id: &str,
    ) -> Result<Vec<ComputeJobRow>> {
        sqlx::query(concat!(
            compute_select!(),
            " WHERE encoding_job_id = $1 ORDER BY created_at, id"
        ))
        .bind(encoding_job_id)
        .fetch_rows(&self.pool, compute_from_row)
        .await
    }

    /// The in-flight (queued or processing) job of the same file, kind and tier, if
    /// any: a second ask answers with it instead of running again.
    pub async fn in_flight_compute_job(
        &self,
        file_id: FileId,
        kind: ComputeKind,
        tier: &str,
    ) -> Result<Option<ComputeJobRow>> {
        sqlx::query(concat!(
            compute_select!(),
            " WHERE file_id = $1 AND kind = $2 AND tier = $3 AND status IN ($4, $5) \
              ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .bind(file_id.to_string())
        .bind(kind.as_str())
        .bind(tier)
        .bind(ComputeJobState::Queued.as_str())
        .bind(ComputeJobState::Processing.as_str())
        .fetch_row(&self.pool, compute_from_row)
        .await
    }

    /// The newest complete transcription of a file (its VTT is the HLS subtitle
    /// track).
    pub async fn latest_transcription(&self, file_id: FileId) -> Result<Option<ComputeJobRow>> {
        sqlx::query(concat!(
            compute_select!(),
            " WHERE file_id = $1 AND kind = $2 AND status = $3 AND vtt_file_id IS NOT NULL \
              ORDER BY completed_at DESC, created_at DESC, id DESC LIMIT 1"
        ))
        .bind(file_id.to_string())
        .bind(ComputeKind::Transcription.as_str())
        .bind(ComputeJobState::Complete.as_str())
        .fetch_row(&self.pool, compute_from_row)
        .await
    }
}

#[cfg(test)]
mod tests;
