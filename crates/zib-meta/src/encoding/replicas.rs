//! Segment replica durability (verify, audit, repair, promote to `safe`) and the
//! eviction of a job's output.

use std::collections::BTreeSet;

use sqlx::Row;
use zib_proto::{BlobId, FileId, NodeId};

use super::hls::{replica_columns, replica_from_row, segment_columns, segment_from_row};
use super::hls::{ReplicaRow, SegmentRow};
use super::JobPhase;
use crate::convert::{from_db, parse};
use crate::engine::{DbRow, FetchRows};
use crate::nodes::{queue_delete, queue_deletes};
use crate::{Result, Store};

/// One copy of one segment, for the verifier, the auditor and the repairer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentReplica {
    pub segment: SegmentRow,
    pub replica: ReplicaRow,
}

/// How far an encoded job's replication got: the least-replicated segment's count
/// of verified copies on online nodes other than the origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobReplication {
    pub job_id: String,
    pub file_id: FileId,
    pub phase: JobPhase,
    pub phase_detail: Option<String>,
    /// The encoding node (its copies do not count).
    pub origin: Option<NodeId>,
    /// `None` for a job with no segment at all.
    pub min_verified_peers: Option<u32>,
}

fn segment_replica_from_row(row: &DbRow) -> Result<SegmentReplica> {
    Ok(SegmentReplica {
        segment: segment_from_row(row)?,
        replica: replica_from_row(row)?,
    })
}

/// Jobs whose output is being served or kept: a cancelled or failed job's segments
/// are evicted, not verified or repaired.
const KEPT_JOB: &str =
    "j.phase IN ('encoding', 'sharding', 'local_complete', 'replicating', 'safe')";

impl Store {
    /// Every (holder, blob) of a job's segments: each replica, and the encoding node
    /// for every segment (it stores one before any replica row exists).
    async fn job_blobs_in(
        conn: &mut crate::engine::DbConn,
        job_id: &str,
    ) -> Result<Vec<(NodeId, BlobId)>> {
        let rows = sqlx::query(
            "SELECT p.node_id AS node_id, p.blob_id AS blob_id FROM segment_replicas p \
               JOIN hls_segments s ON s.blob_id = p.blob_id WHERE s.job_id = $1 \
             UNION \
             SELECT j.node_id AS node_id, s.blob_id AS blob_id FROM hls_segments s \
               JOIN encoding_jobs j ON j.id = s.job_id \
             WHERE s.job_id = $1 AND j.node_id IS NOT NULL",
        )
        .bind(job_id)
        .fetch_all(&mut *conn)
        .await?;
        let mut out = BTreeSet::new();
        for row in rows {
            out.insert((
                parse::<NodeId>(&row.try_get::<String, _>("node_id")?, "segment holder")?,
                parse::<BlobId>(&row.try_get::<String, _>("blob_id")?, "segment blob")?,
            ));
        }
        Ok(out.into_iter().collect())
    }

    /// Deletes every encoding row of a file being deleted (its jobs reference it):
    /// jobs, their webhooks, live pointer, renditions, segments and copies, and its
    /// compute jobs. Returns
    /// every segment copy, for the caller to queue and delete with the file's blobs.
    pub(crate) async fn delete_file_encodings_in(
        conn: &mut crate::engine::DbConn,
        file_id: &str,
    ) -> Result<Vec<(NodeId, BlobId)>> {
        // Its compute jobs reference the file and its encoding jobs.
        crate::compute::delete_file_compute_jobs_in(conn, file_id).await?;
        let jobs: Vec<String> =
            sqlx::query_scalar("SELECT id FROM encoding_jobs WHERE file_id = $1")
                .bind(file_id)
                .fetch_all(&mut *conn)
                .await?;
        let mut blobs = Vec::new();
        for job in &jobs {
            blobs.extend(Self::job_blobs_in(conn, job).await?);
            blobs.extend(crate::derived::delete_job_artifacts_in(conn, job).await?);
            sqlx::query(
                "DELETE FROM segment_replicas WHERE blob_id IN \
                 (SELECT blob_id FROM hls_segments WHERE job_id = $1)",
            )
            .bind(job)
            .execute(&mut *conn)
            .await?;
            for q in [
                "DELETE FROM hls_segments WHERE job_id = $1",
                "DELETE FROM hls_renditions WHERE job_id = $1",
                "DELETE FROM job_webhooks WHERE job_id = $1",
                "DELETE FROM live_encodings WHERE job_id = $1",
            ] {
                sqlx::query(q).bind(job).execute(&mut *conn).await?;
            }
        }
        sqlx::query("DELETE FROM live_encodings WHERE file_id = $1")
            .bind(file_id)
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM encoding_jobs WHERE file_id = $1")
            .bind(file_id)
            .execute(&mut *conn)
            .await?;
        Ok(blobs)
    }

    /// Every (holder, blob) of a job's segments, without changing anything.
    pub async fn job_segment_blobs(&self, job_id: &str) -> Result<Vec<(NodeId, BlobId)>> {
        let mut conn = self.pool.acquire().await?;
        Self::job_blobs_in(&mut conn, job_id).await
    }

    /// Drops a job's output: queues the deletion of every segment copy on its holder
    /// and of its artefact files (poster, sprites), deletes its replica, segment and
    /// rendition rows, its artefacts' rows, and the file's live pointer if it named
    /// this job. The job row stays (its history). Returns what to delete now.
    pub async fn evict_job_output(&self, job_id: &str, now: i64) -> Result<Vec<(NodeId, BlobId)>> {
        let mut tx = self.begin_write().await?;
        let mut blobs = Self::job_blobs_in(&mut tx, job_id).await?;
        blobs.extend(crate::derived::delete_job_artifacts_in(&mut tx, job_id).await?);
        sqlx::query(
            "DELETE FROM segment_replicas WHERE blob_id IN \
             (SELECT blob_id FROM hls_segments WHERE job_id = $1)",
        )
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        for table in [
            "DELETE FROM hls_segments WHERE job_id = $1",
            "DELETE FROM hls_renditions WHERE job_id = $1",
            "DELETE FROM live_encodings WHERE job_id = $1",
        ] {
            sqlx::query(table).bind(job_id).execute(&mut *tx).await?;
        }
        queue_deletes(&mut tx, &blobs, now).await?;
        tx.commit().await?;
        Ok(blobs)
    }

    /// The jobs of a file that still have output (renditions or segments) to evict.
    pub async fn file_jobs_with_output(&self, file_id: FileId) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT j.id FROM encoding_jobs j WHERE j.file_id = $1 \
               AND (EXISTS (SELECT 1 FROM hls_segments s WHERE s.job_id = j.id) \
                    OR EXISTS (SELECT 1 FROM hls_renditions r WHERE r.job_id = j.id)) \
             ORDER BY j.created_at",
        )
        .bind(file_id.to_string())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Segment copies never verified (or to verify again), of jobs still kept.
    pub async fn segment_replicas_to_verify(&self, limit: u32) -> Result<Vec<SegmentReplica>> {
        sqlx::query(concat!(
            "SELECT ",
            segment_columns!(),
            ", ",
            replica_columns!(),
            " FROM segment_replicas p JOIN hls_segments s ON s.blob_id = p.blob_id \
              JOIN encoding_jobs j ON j.id = s.job_id \
             WHERE p.verified_at IS NULL AND p.needs_repair = 0 AND ",
            "j.phase IN ('encoding', 'sharding', 'local_complete', 'replicating', 'safe')",
            " ORDER BY p.created_at LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_rows(&self.pool, segment_replica_from_row)
        .await
    }

    /// Records a verification of one copy: verified (with the segment's fresh
    /// challenges), or missing/corrupt so the repairer replaces it.
    pub async fn record_segment_verification(
        &self,
        blob_id: BlobId,
        node: &NodeId,
        ok: bool,
        challenges: Option<&str>,
        now: i64,
    ) -> Result<()> {
        if !ok {
            return self.mark_segment_replica_lost(blob_id, node).await;
        }
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE segment_replicas SET verified_at = $1, last_audit_at = $1, needs_repair = 0 \
             WHERE blob_id = $2 AND node_id = $3",
        )
        .bind(now)
        .bind(blob_id.to_string())
        .bind(node.as_str())
        .execute(&mut *tx)
        .await?;
        if let Some(c) = challenges {
            sqlx::query("UPDATE hls_segments SET challenges = $1 WHERE blob_id = $2")
                .bind(c)
                .bind(blob_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A copy is missing or corrupt (verification, audit or a CDN read): queued for
    /// the repairer, and no longer counted as verified.
    pub async fn mark_segment_replica_lost(&self, blob_id: BlobId, node: &NodeId) -> Result<()> {
        sqlx::query(
            "UPDATE segment_replicas SET needs_repair = 1, verified_at = NULL \
             WHERE blob_id = $1 AND node_id = $2",
        )
        .bind(blob_id.to_string())
        .bind(node.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Verified copies least recently audited (before `audited_before`).
    pub async fn segment_replicas_for_audit(
        &self,
        limit: u32,
        audited_before: i64,
    ) -> Result<Vec<SegmentReplica>> {
        sqlx::query(concat!(
            "SELECT ",
            segment_columns!(),
            ", ",
            replica_columns!(),
            " FROM segment_replicas p JOIN hls_segments s ON s.blob_id = p.blob_id \
             WHERE p.verified_at IS NOT NULL AND p.needs_repair = 0 \
               AND COALESCE(p.last_audit_at, 0) < $1 \
             ORDER BY COALESCE(p.last_audit_at, 0) LIMIT $2"
        ))
        .bind(audited_before)
        .bind(i64::from(limit))
        .fetch_rows(&self.pool, segment_replica_from_row)
        .await
    }

    /// A passed audit of one copy: the segment keeps the challenges left. `None`
    /// (none left) sends the copy back to the verifier, which reads it whole and
    /// prepares new ones.
    pub async fn record_segment_audit(
        &self,
        blob_id: BlobId,
        node: &NodeId,
        challenges: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let q = if challenges.is_some() {
            "UPDATE segment_replicas SET last_audit_at = $1 WHERE blob_id = $2 AND node_id = $3"
        } else {
            "UPDATE segment_replicas SET last_audit_at = $1, verified_at = NULL \
             WHERE blob_id = $2 AND node_id = $3"
        };
        sqlx::query(q)
            .bind(now)
            .bind(blob_id.to_string())
            .bind(node.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE hls_segments SET challenges = $1 WHERE blob_id = $2")
            .bind(challenges)
            .bind(blob_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Copies to replace: marked missing/corrupt, or held by one of `lost_nodes`, of
    /// jobs still kept.
    pub async fn segment_replicas_needing_repair(
        &self,
        lost_nodes: &[NodeId],
        limit: u32,
    ) -> Result<Vec<SegmentReplica>> {
        let mut query = format!(
            "SELECT {}, {} FROM segment_replicas p JOIN hls_segments s ON s.blob_id = p.blob_id \
               JOIN encoding_jobs j ON j.id = s.job_id \
             WHERE {KEPT_JOB} AND (p.needs_repair = 1",
            segment_columns!(),
            replica_columns!()
        );
        for i in 0..lost_nodes.len() {
            query.push_str(&format!(" OR p.node_id = ${}", i + 2));
        }
        query.push_str(") ORDER BY p.blob_id, p.node_id LIMIT $1");
        // Only numbered placeholders are spliced in; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(query)).bind(i64::from(limit));
        for n in lost_nodes {
            q = q.bind(n.as_str());
        }
        q.fetch_rows(&self.pool, segment_replica_from_row).await
    }

    /// Moves one copy of a segment from `old_node` to `new_node` (which stored it:
    /// unverified until the verifier reads it), if the old row still exists (a
    /// concurrent repair or an eviction wins otherwise: false). The old holder is
    /// told to drop its copy whenever it comes back.
    pub async fn replace_segment_replica(
        &self,
        blob_id: BlobId,
        old_node: &NodeId,
        new_node: &NodeId,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let gone = sqlx::query("DELETE FROM segment_replicas WHERE blob_id = $1 AND node_id = $2")
            .bind(blob_id.to_string())
            .bind(old_node.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO segment_replicas (blob_id, node_id, is_origin, created_at) \
             VALUES ($1, $2, 0, $3) \
             ON CONFLICT (blob_id, node_id) DO UPDATE SET needs_repair = 0, verified_at = NULL",
        )
        .bind(blob_id.to_string())
        .bind(new_node.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        queue_delete(&mut tx, old_node, vec![blob_id], now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// How replicated every job in `local_complete` or `replicating` is: per job, the
    /// least count, over its segments, of verified copies not awaiting repair on
    /// nodes other than the origin whose last heartbeat is at or after
    /// `online_since`.
    pub async fn encoded_job_replication(&self, online_since: i64) -> Result<Vec<JobReplication>> {
        let rows = sqlx::query(
            "SELECT j.id, j.file_id, j.phase, j.phase_detail, j.node_id, \
               (SELECT MIN(c) FROM (SELECT (SELECT COUNT(DISTINCT p.node_id) \
                    FROM segment_replicas p JOIN nodes n ON n.node_id = p.node_id \
                    WHERE p.blob_id = s.blob_id AND p.is_origin = 0 \
                      AND p.verified_at IS NOT NULL AND p.needs_repair = 0 \
                      AND (j.node_id IS NULL OR p.node_id <> j.node_id) \
                      AND n.last_heartbeat_at >= $1) AS c \
                  FROM hls_segments s WHERE s.job_id = j.id)) AS min_peers \
             FROM encoding_jobs j WHERE j.phase IN ('local_complete', 'replicating') \
             ORDER BY j.created_at",
        )
        .bind(online_since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let phase: String = row.try_get("phase")?;
                Ok(JobReplication {
                    job_id: row.try_get("id")?,
                    file_id: parse(
                        &row.try_get::<String, _>("file_id")?,
                        "encoding_jobs.file_id",
                    )?,
                    phase: JobPhase::parse(&phase).unwrap_or(JobPhase::Replicating),
                    phase_detail: row.try_get("phase_detail")?,
                    origin: row
                        .try_get::<Option<String>, _>("node_id")?
                        .map(|t| parse(&t, "encoding_jobs.node_id"))
                        .transpose()?,
                    min_verified_peers: row
                        .try_get::<Option<i64>, _>("min_peers")?
                        .map(|v| from_db(v, "replica count"))
                        .transpose()?,
                })
            })
            .collect()
    }

    /// Moves an encoded job along replication: to `replicating` with `detail`, or to
    /// `safe` (with `replication_safe_at`), only from `local_complete`/`replicating`
    /// (a cancel meanwhile wins). Progress stays 100. Returns whether it moved.
    pub async fn set_job_replication(
        &self,
        job_id: &str,
        to: JobPhase,
        phase_progress_pct: f64,
        detail: &str,
        now: i64,
    ) -> Result<bool> {
        let safe_at = (to == JobPhase::Safe).then_some(now);
        let done = sqlx::query(
            "UPDATE encoding_jobs SET phase = $1, phase_detail = $2, phase_progress_pct = $3, \
                 phase_updated_at = CASE WHEN phase = $1 THEN phase_updated_at ELSE $4 END, \
                 replication_safe_at = COALESCE($5, replication_safe_at), progress = 100 \
             WHERE id = $6 AND phase IN ('local_complete', 'replicating')",
        )
        .bind(to.as_str())
        .bind(detail)
        .bind(phase_progress_pct)
        .bind(now)
        .bind(safe_at)
        .bind(job_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done > 0)
    }
}
