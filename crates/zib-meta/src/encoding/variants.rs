//! Aspect-variant jobs (docs/video.md, "Thumbnails and aspect variants"): a 9:16
//! rendition is a child job of a main job, encoding the main job's uploaded source
//! into its own stream file. The stream file is a derived `files` row with no bytes
//! of its own (`/stream/{file_id}/…` serves its live child's segments), one per
//! (source, ratio) and reused across re-encodes so its URL never changes. Children
//! are created in the transaction that creates their main job, or on top of the
//! file's live encode by a backfill (`aspect_variants_only`).

use zib_proto::FileId;

use super::{job_from_row, job_select, EncodingJobRow, JobPhase};
use crate::engine::{DbConn, FetchRows};
use crate::{FilePhase, MetaError, Result, Store};

/// `files.derived_kind` of an aspect variant's stream file.
pub const ASPECT_VARIANT_KIND: &str = "aspect_variant";

/// A variant job to create; the ids and keys are made by the caller (it holds the
/// master key), the stream file only used when the source has none for the ratio.
#[derive(Clone, Debug, PartialEq)]
pub struct NewVariantJob {
    /// The child's encoding_id (a UUID).
    pub id: String,
    /// `"9:16"`.
    pub aspect_ratio: String,
    /// The child's own AES-128 key, wrapped under the master key (context: `id`).
    pub wrapped_hls_key: Vec<u8>,
    pub stream_file: NewStreamFile,
}

/// A stream file to create if the source has no live one for the ratio yet.
#[derive(Clone, Debug, PartialEq)]
pub struct NewStreamFile {
    pub file_id: FileId,
    /// A data key nothing encrypts with (the row needs one), wrapped for `file_id`.
    pub wrapped_dek: Vec<u8>,
    /// 7 bytes.
    pub nonce_prefix: Vec<u8>,
}

/// What a backfill came to.
#[derive(Clone, Debug, PartialEq)]
pub enum VariantCreation {
    /// The children of `parent` for the asked ratios, in the asked order: each one
    /// already in flight or encoded, or created now.
    Queued {
        parent: Box<EncodingJobRow>,
        children: Vec<EncodingJobRow>,
    },
    /// The file has no encoded live job to add variants to.
    NotEncoded,
    /// The file is not (or no longer) uploaded and distributed: its phase, `None`
    /// when the row is gone.
    FileNotReady(Option<FilePhase>),
}

/// The object key of a source's stream file for `ratio`: beside the source, under
/// `.zib/` like the job's artefacts (never in `objects`, so never listed).
pub fn variant_object_key(source_key: &str, ratio: &str) -> String {
    format!("{source_key}/.zib/variant-{}", ratio.replace(':', "x"))
}

/// The phase of file `file_id`, read on `conn` (`None`: no row).
pub(crate) async fn file_phase(conn: &mut DbConn, file_id: FileId) -> Result<Option<FilePhase>> {
    let phase: Option<String> = sqlx::query_scalar("SELECT phase FROM files WHERE file_id = $1")
        .bind(file_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    phase
        .map(|p| {
            FilePhase::parse(&p).ok_or_else(|| MetaError::Corrupt {
                what: "files.phase",
                detail: format!("unknown phase {p:?}"),
            })
        })
        .transpose()
}

/// The variant jobs of `parent_id`, oldest first, read on `conn`.
pub(crate) async fn children_in(conn: &mut DbConn, parent_id: &str) -> Result<Vec<EncodingJobRow>> {
    sqlx::query(concat!(
        job_select!(),
        " WHERE parent_job_id = $1 ORDER BY created_at, id"
    ))
    .bind(parent_id)
    .fetch_rows(&mut *conn, job_from_row)
    .await
}

/// The source's stream file for `ratio`, created from `candidate` (phase
/// `distributed` with no shards: readable for the CDN and the claim, never promoted
/// to `safe` nor repaired, never a pending upload) when it has none.
async fn stream_file(
    conn: &mut DbConn,
    source: FileId,
    ratio: &str,
    candidate: &NewStreamFile,
    now: i64,
) -> Result<FileId> {
    let source_key: Option<String> =
        sqlx::query_scalar("SELECT object_key FROM files WHERE file_id = $1")
            .bind(source.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    let source_key = source_key.ok_or(MetaError::Conflict("the variant's source file vanished"))?;
    let key = variant_object_key(&source_key, ratio);
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT file_id FROM files WHERE derived_from = $1 AND derived_kind = $2 \
           AND object_key = $3 AND phase IN ('distributed', 'safe') \
         ORDER BY created_at LIMIT 1",
    )
    .bind(source.to_string())
    .bind(ASPECT_VARIANT_KIND)
    .bind(&key)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = existing {
        return crate::convert::parse::<FileId>(&id, "files.file_id");
    }
    sqlx::query(
        "INSERT INTO files (file_id, tenant_id, bucket_id, object_key, size, \
             ciphertext_size, content_type, phase, wrapped_dek, chunk_size, nonce_prefix, \
             data_shards, parity_shards, shard_size, originator, upload_blob_id, part_count, \
             expires_at, created_at, distributed_at, derived_from, derived_kind) \
         SELECT $1, tenant_id, bucket_id, $2, 0, 0, 'application/vnd.apple.mpegurl', \
             'distributed', $3, chunk_size, $4, data_shards, parity_shards, 0, originator, \
             $5, 0, $6, $6, $6, file_id, $7 \
         FROM files WHERE file_id = $8",
    )
    .bind(candidate.file_id.to_string())
    .bind(&key)
    .bind(&candidate.wrapped_dek)
    .bind(&candidate.nonce_prefix)
    // Never stored: unique like every upload blob id, so nothing else can match it.
    .bind(zib_proto::BlobId::new_random().to_string())
    .bind(now)
    .bind(ASPECT_VARIANT_KIND)
    .bind(source.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(candidate.file_id)
}

/// Creates a child of `parent` per entry of `variants` (queued, the parent's
/// options, `detail` while queued), each on the source's stream file for its ratio.
/// An in-flight child of another main job on the same stream file is cancelled: the
/// newer main job's variant replaces it. Each child's `encoding.complete` goes to
/// `webhook` when given, else to the parent's own request target (if it has one).
pub(crate) async fn insert_children(
    conn: &mut DbConn,
    parent: &EncodingJobRow,
    variants: &[NewVariantJob],
    webhook: Option<&(String, Option<String>)>,
    detail: &str,
    now: i64,
) -> Result<Vec<EncodingJobRow>> {
    let options = serde_json::to_string(&parent.options).map_err(|e| MetaError::Corrupt {
        what: "encoding_jobs.options",
        detail: e.to_string(),
    })?;
    let mut children = Vec::with_capacity(variants.len());
    for v in variants {
        let stream =
            stream_file(conn, parent.file_id, &v.aspect_ratio, &v.stream_file, now).await?;
        sqlx::query(
            "DELETE FROM live_encodings WHERE job_id IN (SELECT id FROM encoding_jobs \
                 WHERE file_id = $1 AND parent_job_id <> $2 \
                   AND phase IN ('queued', 'encoding', 'sharding', 'failed'))",
        )
        .bind(stream.to_string())
        .bind(&parent.id)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "UPDATE encoding_jobs SET phase = $1, cancelled_reason = $2, phase_updated_at = $3, \
                 phase_detail = NULL, lease_node = NULL, lease_token_hash = NULL, \
                 lease_expires_at = NULL \
             WHERE file_id = $4 AND parent_job_id <> $5 \
               AND phase IN ('queued', 'encoding', 'sharding', 'failed')",
        )
        .bind(JobPhase::Cancelled.as_str())
        .bind(format!("replaced by encoding {}", v.id))
        .bind(now)
        .bind(stream.to_string())
        .bind(&parent.id)
        .execute(&mut *conn)
        .await?;
        // After the parent (claimed first, oldest first) and strictly after the
        // stream file's previous job, so "the latest job" is never a tie.
        let previous: Option<i64> =
            sqlx::query_scalar("SELECT MAX(created_at) FROM encoding_jobs WHERE file_id = $1")
                .bind(stream.to_string())
                .fetch_one(&mut *conn)
                .await?;
        let created_at = previous
            .map_or(now, |p| now.max(p + 1))
            .max(parent.created_at + 1);
        sqlx::query(
            "INSERT INTO encoding_jobs (id, file_id, tenant_id, phase, progress, \
                 phase_progress_pct, phase_detail, phase_updated_at, options, wrapped_hls_key, \
                 retry_count, created_at, source_file_id, parent_job_id, aspect_ratio) \
             VALUES ($1, $2, $3, $4, 0, 0, $5, $6, $7, $8, 0, $9, $10, $11, $12)",
        )
        .bind(&v.id)
        .bind(stream.to_string())
        .bind(&parent.tenant_id)
        .bind(JobPhase::Queued.as_str())
        .bind(detail)
        .bind(now)
        .bind(&options)
        .bind(&v.wrapped_hls_key)
        .bind(created_at)
        .bind(parent.file_id.to_string())
        .bind(&parent.id)
        .bind(&v.aspect_ratio)
        .execute(&mut *conn)
        .await?;
        match webhook {
            Some((url, secret)) => {
                sqlx::query(
                    "INSERT INTO job_webhooks (job_id, url, secret, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&v.id)
                .bind(url)
                .bind(secret)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            }
            None => {
                sqlx::query(
                    "INSERT INTO job_webhooks (job_id, url, secret, created_at) \
                     SELECT $1, url, secret, $2 FROM job_webhooks WHERE job_id = $3",
                )
                .bind(&v.id)
                .bind(now)
                .bind(&parent.id)
                .execute(&mut *conn)
                .await?;
            }
        }
        let child = sqlx::query(concat!(job_select!(), " WHERE id = $1"))
            .bind(&v.id)
            .fetch_row(&mut *conn, job_from_row)
            .await?
            .ok_or(MetaError::Conflict("the new variant job vanished"))?;
        children.push(child);
    }
    Ok(children)
}

impl Store {
    /// Backfill: variant jobs on top of the live encoded job of `source` (no main
    /// pass). A ratio whose child of that job is in flight or encoded is answered
    /// with it; otherwise (none yet, or it failed or was cancelled) a new child is
    /// created (its `encoding.complete` going to `webhook`, else to the parent's
    /// request target). One write transaction, so two racing backfills create one
    /// child.
    pub async fn create_variant_jobs(
        &self,
        source: FileId,
        variants: Vec<NewVariantJob>,
        webhook: Option<(String, Option<String>)>,
        detail: &str,
        now: i64,
    ) -> Result<VariantCreation> {
        let mut tx = self.begin_write().await?;
        match file_phase(&mut tx, source).await? {
            Some(FilePhase::Distributed | FilePhase::Safe) => {}
            other => return Ok(VariantCreation::FileNotReady(other)),
        }
        let parent = sqlx::query(concat!(
            job_select!(),
            " WHERE id = (SELECT job_id FROM live_encodings WHERE file_id = $1) \
              AND file_id = $1 AND parent_job_id IS NULL \
              AND phase IN ('local_complete', 'replicating', 'safe')"
        ))
        .bind(source.to_string())
        .fetch_row(&mut *tx, job_from_row)
        .await?;
        let Some(parent) = parent else {
            return Ok(VariantCreation::NotEncoded);
        };
        let existing = children_in(&mut tx, &parent.id).await?;
        let mut children = Vec::with_capacity(variants.len());
        for v in variants {
            let found = existing
                .iter()
                .rev()
                .chain(children.iter())
                .find(|c: &&EncodingJobRow| {
                    c.aspect_ratio.as_deref() == Some(v.aspect_ratio.as_str())
                        && (c.phase.is_in_flight() || c.phase.is_encoded())
                })
                .cloned();
            match found {
                Some(child) => children.push(child),
                None => {
                    let mut made =
                        insert_children(&mut tx, &parent, &[v], webhook.as_ref(), detail, now)
                            .await?;
                    children.append(&mut made);
                }
            }
        }
        tx.commit().await?;
        Ok(VariantCreation::Queued {
            parent: Box::new(parent),
            children,
        })
    }

    /// The variant jobs of main job `parent_id`, oldest first.
    pub async fn variant_jobs(&self, parent_id: &str) -> Result<Vec<EncodingJobRow>> {
        let mut conn = self.pool.acquire().await?;
        children_in(&mut conn, parent_id).await
    }
}

#[cfg(test)]
#[path = "variants_tests.rs"]
mod tests;
