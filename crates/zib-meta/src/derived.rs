//! Files the video pipeline derives from an uploaded file (migration 0007): a job's
//! poster, sprite sheets and sprite VTT (ordinary encrypted files with shards, listed
//! in `job_artifacts`), an aspect variant's stream file (no bytes of its own), and
//! an AI compute job's outputs (SRT, WebVTT, sidecar JSON; named on the job row).
//! They are never in `objects`, never announced, and go with their source or job.

use sqlx::Row;
use zib_proto::compute::ComputeOutputKind;
use zib_proto::jobs::ArtifactKind;
use zib_proto::{BlobId, FileId, NodeId};

use crate::convert::{parse, shard_from_row};
use crate::engine::{DbConn, FetchRows};
use crate::nodes::queue_deletes;
use crate::{JobThumbnails, MetaError, Result, Store};

/// What a derived file is (`files.derived_kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DerivedKind {
    Artifact(ArtifactKind),
    /// An aspect variant's stream identity: `/stream/{file_id}/…` serves its jobs.
    AspectVariant,
    /// A compute job's output (`compute_jobs.srt_file_id` and siblings).
    ComputeOutput(ComputeOutputKind),
}

impl DerivedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DerivedKind::Artifact(kind) => kind.as_str(),
            DerivedKind::AspectVariant => "aspect_variant",
            DerivedKind::ComputeOutput(kind) => kind.derived_kind(),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "aspect_variant" => Some(DerivedKind::AspectVariant),
            other => ArtifactKind::parse(other)
                .map(DerivedKind::Artifact)
                .or_else(|| {
                    ComputeOutputKind::from_derived_kind(other).map(DerivedKind::ComputeOutput)
                }),
        }
    }
}

/// A file derived from an uploaded one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DerivedFile {
    pub file_id: FileId,
    /// The uploaded file it was made from.
    pub derived_from: FileId,
    pub kind: DerivedKind,
}

/// One file a job produced (`job_artifacts`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobArtifact {
    pub job_id: String,
    pub kind: ArtifactKind,
    /// Orders sprite sheets; 0 for the poster and the VTT.
    pub seq: u32,
    pub file_id: FileId,
}

fn derived_from_row(row: &crate::engine::DbRow) -> Result<DerivedFile> {
    let kind_text: String = row.try_get("derived_kind")?;
    Ok(DerivedFile {
        file_id: parse(&row.try_get::<String, _>("file_id")?, "files.file_id")?,
        derived_from: parse(
            &row.try_get::<String, _>("derived_from")?,
            "files.derived_from",
        )?,
        kind: DerivedKind::parse(&kind_text).ok_or_else(|| MetaError::Corrupt {
            what: "files.derived_kind",
            detail: format!("unknown kind {kind_text:?}"),
        })?,
    })
}

fn artifact_from_row(row: &crate::engine::DbRow) -> Result<JobArtifact> {
    let kind_text: String = row.try_get("kind")?;
    Ok(JobArtifact {
        job_id: row.try_get("job_id")?,
        kind: ArtifactKind::parse(&kind_text).ok_or_else(|| MetaError::Corrupt {
            what: "job_artifacts.kind",
            detail: format!("unknown kind {kind_text:?}"),
        })?,
        seq: crate::convert::from_db(row.try_get::<i64, _>("seq")?, "job_artifacts.seq")?,
        file_id: parse(
            &row.try_get::<String, _>("file_id")?,
            "job_artifacts.file_id",
        )?,
    })
}

impl Store {
    /// Marks a file registered moments ago (still `pending`) as derived from
    /// `derived_from`, so its distribution leaves `objects` alone. False if the file
    /// is missing or no longer pending.
    pub async fn mark_derived(
        &self,
        file_id: FileId,
        derived_from: FileId,
        kind: DerivedKind,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE files SET derived_from = $1, derived_kind = $2 \
             WHERE file_id = $3 AND phase = 'pending'",
        )
        .bind(derived_from.to_string())
        .bind(kind.as_str())
        .bind(file_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// What `file_id` derives from, `None` for an uploaded (or missing) file.
    pub async fn derived_file(&self, file_id: FileId) -> Result<Option<DerivedFile>> {
        sqlx::query(
            "SELECT file_id, derived_from, derived_kind FROM files \
             WHERE file_id = $1 AND derived_from IS NOT NULL",
        )
        .bind(file_id.to_string())
        .fetch_row(&self.pool, derived_from_row)
        .await
    }

    /// Every file derived from `source`, oldest first.
    pub async fn derived_files(&self, source: FileId) -> Result<Vec<DerivedFile>> {
        sqlx::query(
            "SELECT file_id, derived_from, derived_kind FROM files \
             WHERE derived_from = $1 ORDER BY created_at, file_id",
        )
        .bind(source.to_string())
        .fetch_rows(&self.pool, derived_from_row)
        .await
    }

    /// Records `file_id` as the job's `(kind, seq)` artefact. A retried upload
    /// replaces the earlier row: the file it named is returned, for the caller to
    /// delete ([`Store::delete_derived_file`]). A job that no longer exists is a
    /// [`MetaError::Conflict`].
    pub async fn record_job_artifact(
        &self,
        job_id: &str,
        kind: ArtifactKind,
        seq: u32,
        file_id: FileId,
        now: i64,
    ) -> Result<Option<FileId>> {
        let mut tx = self.begin_write().await?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM encoding_jobs WHERE id = $1")
                .bind(job_id)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Err(MetaError::Conflict("the encoding job no longer exists"));
        }
        let previous: Option<String> = sqlx::query_scalar(
            "SELECT file_id FROM job_artifacts WHERE job_id = $1 AND kind = $2 AND seq = $3",
        )
        .bind(job_id)
        .bind(kind.as_str())
        .bind(i64::from(seq))
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO job_artifacts (job_id, kind, seq, file_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (job_id, kind, seq) DO UPDATE SET file_id = excluded.file_id, \
                 created_at = excluded.created_at",
        )
        .bind(job_id)
        .bind(kind.as_str())
        .bind(i64::from(seq))
        .bind(file_id.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let previous = previous
            .map(|p| parse::<FileId>(&p, "job_artifacts.file_id"))
            .transpose()?;
        Ok(previous.filter(|p| *p != file_id))
    }

    /// The job's artefacts by kind, then seq.
    pub async fn job_artifacts(&self, job_id: &str) -> Result<Vec<JobArtifact>> {
        sqlx::query(
            "SELECT job_id, kind, seq, file_id FROM job_artifacts WHERE job_id = $1 \
             ORDER BY kind, seq",
        )
        .bind(job_id)
        .fetch_rows(&self.pool, artifact_from_row)
        .await
    }

    /// Stores the job's registered thumbnails (`encoding_jobs.thumbnails`). False if
    /// the job is missing.
    pub async fn set_job_thumbnails(&self, job_id: &str, thumbs: &JobThumbnails) -> Result<bool> {
        let json = serde_json::to_string(thumbs).map_err(|e| MetaError::Corrupt {
            what: "encoding_jobs.thumbnails",
            detail: e.to_string(),
        })?;
        let done = sqlx::query("UPDATE encoding_jobs SET thumbnails = $1 WHERE id = $2")
            .bind(json)
            .bind(job_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes one derived file (rows, shards, its encodings and the artefact rows
    /// naming it) and queues the deletion of its blobs, which are returned. An
    /// uploaded file is never touched here: empty.
    pub async fn delete_derived_file(
        &self,
        file_id: FileId,
        now: i64,
    ) -> Result<Vec<(NodeId, BlobId)>> {
        let mut tx = self.begin_write().await?;
        let derived: Option<String> = sqlx::query_scalar(
            "SELECT derived_from FROM files WHERE file_id = $1 AND derived_from IS NOT NULL",
        )
        .bind(file_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if derived.is_none() {
            return Ok(vec![]);
        }
        let blobs = delete_derived_in(&mut tx, &file_id.to_string()).await?;
        queue_deletes(&mut tx, &blobs, now).await?;
        tx.commit().await?;
        Ok(blobs)
    }
}

/// Every file derived from `source` goes (inside the caller's transaction, which
/// queues the returned blobs): artefacts, and aspect-variant stream files with their
/// jobs and segments.
pub(crate) async fn delete_derived_of_in(
    conn: &mut DbConn,
    source: &str,
) -> Result<Vec<(NodeId, BlobId)>> {
    let ids: Vec<String> = sqlx::query_scalar("SELECT file_id FROM files WHERE derived_from = $1")
        .bind(source)
        .fetch_all(&mut *conn)
        .await?;
    let mut blobs = Vec::new();
    for id in ids {
        blobs.extend(delete_derived_in(conn, &id).await?);
    }
    Ok(blobs)
}

/// One derived file: its encodings (a variant stream file's jobs), then its rows.
async fn delete_derived_in(conn: &mut DbConn, file_id: &str) -> Result<Vec<(NodeId, BlobId)>> {
    let mut blobs = Store::delete_file_encodings_in(conn, file_id).await?;
    blobs.extend(delete_file_rows_in(conn, file_id).await?);
    Ok(blobs)
}

/// The job's artefact files and rows (the job is evicted or deleted).
pub(crate) async fn delete_job_artifacts_in(
    conn: &mut DbConn,
    job_id: &str,
) -> Result<Vec<(NodeId, BlobId)>> {
    let files: Vec<String> =
        sqlx::query_scalar("SELECT file_id FROM job_artifacts WHERE job_id = $1")
            .bind(job_id)
            .fetch_all(&mut *conn)
            .await?;
    sqlx::query("DELETE FROM job_artifacts WHERE job_id = $1")
        .bind(job_id)
        .execute(&mut *conn)
        .await?;
    let mut blobs = Vec::new();
    for file in files {
        blobs.extend(delete_file_rows_in(conn, &file).await?);
    }
    Ok(blobs)
}

/// A derived file's shard rows and row (no event: tenants never heard of it), plus
/// any artefact row still naming it. Returns its blobs (shards and upload blob).
async fn delete_file_rows_in(conn: &mut DbConn, file_id: &str) -> Result<Vec<(NodeId, BlobId)>> {
    let row = sqlx::query(
        "SELECT originator, upload_blob_id FROM files \
         WHERE file_id = $1 AND derived_from IS NOT NULL",
    )
    .bind(file_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(vec![]);
    };
    let mut blobs: Vec<(NodeId, BlobId)> = sqlx::query(
        "SELECT file_id, segment, shard_index, node_id, blob_id, size, blake3 \
         FROM shards WHERE file_id = $1",
    )
    .bind(file_id)
    .fetch_rows(&mut *conn, shard_from_row)
    .await?
    .into_iter()
    .map(|s| (s.node_id, s.blob_id))
    .collect();
    blobs.push((
        parse(&row.try_get::<String, _>("originator")?, "files.originator")?,
        parse(
            &row.try_get::<String, _>("upload_blob_id")?,
            "files.upload_blob_id",
        )?,
    ));
    for q in [
        "DELETE FROM shards WHERE file_id = $1",
        "DELETE FROM inline_envelopes WHERE file_id = $1",
        "DELETE FROM job_artifacts WHERE file_id = $1",
        "DELETE FROM files WHERE file_id = $1",
    ] {
        sqlx::query(q).bind(file_id).execute(&mut *conn).await?;
    }
    Ok(blobs)
}
