//! Video encoding state (migration 0006, docs/video.md): jobs and their leases
//! (`jobs`), and the HLS renditions, segments and segment replicas they produce
//! (`hls`), read by the CDN and kept durable by the workers; how tenants create and
//! see jobs (`requests`), and the aspect-variant jobs that hang off a main job
//! (`variants`).

pub(crate) mod hls;
mod jobs;
pub(crate) mod replicas;
mod requests;
mod segments;
mod variants;

pub use jobs::{
    Completion, EventBuilder, FailureOutcome, JobEvent, LeaseUpdate, ProgressThrottle, RetryPolicy,
};
pub use requests::{JobCreation, NewEncodingJob};
pub use segments::{NewRendition, NewSegment, Published};
pub use variants::{
    variant_object_key, NewStreamFile, NewVariantJob, VariantCreation, ASPECT_VARIANT_KIND,
};

use zib_proto::{FileId, NodeId};

use crate::convert::{from_db, parse};
use crate::engine::{DbRow, FetchRows};
use crate::{MetaError, Result, Store};
use sqlx::Row;

/// Where an encoding job stands (API reference, "Job Status API": lifecycle phases).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobPhase {
    /// Accepted, waiting for a node to claim it.
    Queued,
    /// ffmpeg is running on the node holding the lease.
    Encoding,
    /// Transcoding finished; encrypted segments are being stored and pushed.
    Sharding,
    /// Every segment is on the encoding node and every rung published.
    LocalComplete,
    /// Waiting for replicas to be verified on enough peers.
    Replicating,
    /// Every segment verified on at least 3 non-originator peers.
    Safe,
    /// A transient failure; requeued once `retry_after` passes.
    Failed,
    /// Retries exhausted or the source is unusable; needs the tenant's retry.
    FailedUserAction,
    Cancelled,
}

impl JobPhase {
    pub const ALL: [JobPhase; 9] = [
        JobPhase::Queued,
        JobPhase::Encoding,
        JobPhase::Sharding,
        JobPhase::LocalComplete,
        JobPhase::Replicating,
        JobPhase::Safe,
        JobPhase::Failed,
        JobPhase::FailedUserAction,
        JobPhase::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobPhase::Queued => "queued",
            JobPhase::Encoding => "encoding",
            JobPhase::Sharding => "sharding",
            JobPhase::LocalComplete => "local_complete",
            JobPhase::Replicating => "replicating",
            JobPhase::Safe => "safe",
            JobPhase::Failed => "failed",
            JobPhase::FailedUserAction => "failed_user_action",
            JobPhase::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Phases no event or worker moves the job out of by itself (`failed` retries;
    /// `failed_user_action` only by the tenant's retry).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobPhase::Safe | JobPhase::FailedUserAction | JobPhase::Cancelled
        )
    }

    /// Phases in which a node is (or should be) working on the job.
    pub fn is_in_flight(self) -> bool {
        matches!(
            self,
            JobPhase::Queued | JobPhase::Encoding | JobPhase::Sharding | JobPhase::Failed
        )
    }

    /// Phases in which every rung exists (the encode is done; replication may go on).
    pub fn is_encoded(self) -> bool {
        matches!(
            self,
            JobPhase::LocalComplete | JobPhase::Replicating | JobPhase::Safe
        )
    }
}

/// One row of `encoding_jobs`.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodingJobRow {
    pub id: String,
    pub file_id: FileId,
    pub tenant_id: String,
    pub phase: JobPhase,
    /// 0–100, continuous across encoding and sharding.
    pub progress: u8,
    pub phase_progress_pct: f64,
    pub phase_detail: Option<String>,
    pub phase_updated_at: i64,
    /// JSON object: the job's other asks (transcription, vision, thumbnails, variants).
    pub options: serde_json::Value,
    pub wrapped_hls_key: Vec<u8>,
    pub lease_node: Option<NodeId>,
    pub lease_expires_at: Option<i64>,
    pub node_id: Option<NodeId>,
    pub retry_count: u32,
    pub retry_after: Option<i64>,
    pub error_message: Option<String>,
    /// JSON: a `zib_proto::jobs::VideoProbe`.
    pub probe: Option<serde_json::Value>,
    pub cancelled_reason: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub replication_safe_at: Option<i64>,
    /// The uploaded file an aspect-variant job reads (`None`: `file_id` itself).
    pub source_file_id: Option<FileId>,
    /// The main job an aspect-variant job belongs to.
    pub parent_job_id: Option<String>,
    /// `9:16` for an aspect-variant job.
    pub aspect_ratio: Option<String>,
    /// The job's poster, sprite sheets and sprite VTT once the node registered them.
    pub thumbnails: Option<JobThumbnails>,
}

impl EncodingJobRow {
    /// The uploaded file whose source this job encodes.
    pub fn source_file(&self) -> FileId {
        self.source_file_id.unwrap_or(self.file_id)
    }

    /// An aspect-variant job (a child of a main job).
    pub fn is_variant(&self) -> bool {
        self.parent_job_id.is_some()
    }
}

/// The files of a job's thumbnails (`encoding_jobs.thumbnails`), each an ordinary
/// encrypted file served by `/objects/{file_id}`. A variant job has a poster only.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobThumbnails {
    pub poster_file_id: FileId,
    /// In tile order; empty for a variant job.
    #[serde(default)]
    pub sprite_sheet_file_ids: Vec<FileId>,
    pub sprite_vtt_file_id: Option<FileId>,
}

/// `SELECT` of every column of `encoding_jobs` (as `job_from_row` reads them), for
/// `concat!` with the rest of a query: sqlx takes only literal SQL.
macro_rules! job_select {
    () => {
        "SELECT id, file_id, tenant_id, phase, progress, phase_progress_pct, phase_detail, \
         phase_updated_at, options, wrapped_hls_key, lease_node, lease_expires_at, node_id, \
         retry_count, retry_after, error_message, probe, cancelled_reason, created_at, \
         started_at, completed_at, replication_safe_at, source_file_id, parent_job_id, \
         aspect_ratio, thumbnails FROM encoding_jobs"
    };
}
#[allow(unused_imports)] // for the submodules: `super::job_select!()`
pub(crate) use job_select;

fn json_column(row: &DbRow, column: &'static str) -> Result<Option<serde_json::Value>> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| MetaError::Corrupt {
            what: column,
            detail: e.to_string(),
        })
    })
    .transpose()
}

pub(crate) fn job_from_row(row: &DbRow) -> Result<EncodingJobRow> {
    let phase_text: String = row.try_get("phase")?;
    let phase = JobPhase::parse(&phase_text).ok_or_else(|| MetaError::Corrupt {
        what: "encoding_jobs.phase",
        detail: format!("unknown phase {phase_text:?}"),
    })?;
    let node = |column: &'static str| -> Result<Option<NodeId>> {
        let text: Option<String> = row.try_get(column)?;
        text.map(|t| parse::<NodeId>(&t, column)).transpose()
    };
    Ok(EncodingJobRow {
        id: row.try_get("id")?,
        file_id: parse::<FileId>(
            &row.try_get::<String, _>("file_id")?,
            "encoding_jobs.file_id",
        )?,
        tenant_id: row.try_get("tenant_id")?,
        phase,
        progress: from_db(row.try_get("progress")?, "encoding_jobs.progress")?,
        phase_progress_pct: row.try_get("phase_progress_pct")?,
        phase_detail: row.try_get("phase_detail")?,
        phase_updated_at: row.try_get("phase_updated_at")?,
        options: json_column(row, "options")?.unwrap_or_else(|| serde_json::json!({})),
        wrapped_hls_key: row.try_get("wrapped_hls_key")?,
        lease_node: node("lease_node")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        node_id: node("node_id")?,
        retry_count: from_db(row.try_get("retry_count")?, "encoding_jobs.retry_count")?,
        retry_after: row.try_get("retry_after")?,
        error_message: row.try_get("error_message")?,
        probe: json_column(row, "probe")?,
        cancelled_reason: row.try_get("cancelled_reason")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
        replication_safe_at: row.try_get("replication_safe_at")?,
        source_file_id: row
            .try_get::<Option<String>, _>("source_file_id")?
            .map(|t| parse::<FileId>(&t, "encoding_jobs.source_file_id"))
            .transpose()?,
        parent_job_id: row.try_get("parent_job_id")?,
        aspect_ratio: row.try_get("aspect_ratio")?,
        thumbnails: json_column(row, "thumbnails")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| MetaError::Corrupt {
                what: "encoding_jobs.thumbnails",
                detail: e.to_string(),
            })?,
    })
}

impl Store {
    /// A job by its id, whoever owns it (node RPC, workers).
    pub async fn encoding_job(&self, job_id: &str) -> Result<Option<EncodingJobRow>> {
        sqlx::query(concat!(job_select!(), " WHERE id = $1"))
            .bind(job_id)
            .fetch_row(&self.pool, job_from_row)
            .await
    }

    /// A job of `tenant_id` by its id; another tenant's job is `None`, like a missing one.
    pub async fn encoding_job_for_tenant(
        &self,
        tenant_id: &str,
        job_id: &str,
    ) -> Result<Option<EncodingJobRow>> {
        sqlx::query(concat!(job_select!(), " WHERE id = $1 AND tenant_id = $2"))
            .bind(job_id)
            .bind(tenant_id)
            .fetch_row(&self.pool, job_from_row)
            .await
    }
}

#[cfg(test)]
mod lifecycle_tests;
