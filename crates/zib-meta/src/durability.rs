//! Verification, audits, repair, supersede eviction and garbage collection: the
//! queries behind the server's durability workers.

use std::collections::HashSet;

use sqlx::Row;
use zib_proto::events::{FILE_FAILED, FILE_REPLICATED};
use zib_proto::{BlobId, FileId, NodeId};

use crate::convert::{file_from_row, file_select, parse, shard_from_row};
use crate::engine::FetchRows;
use crate::files::file_event_in_tx;
use crate::nodes::{queue_delete, queue_deletes};
use crate::{FilePhase, FileRow, Result, ShardRow, Store};

/// Columns read by [`shard_from_row`], from `shards s`.
macro_rules! shard_columns {
    () => {
        "s.file_id, s.segment, s.shard_index, s.node_id, s.blob_id, s.size, s.blake3"
    };
}

/// A verified shard with the challenges it can still be audited with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditTarget {
    pub shard: ShardRow,
    /// JSON array as stored; the server owns its format.
    pub challenges: Option<String>,
}

/// A file that just became `safe`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafeFile {
    pub file_id: FileId,
    pub originator: NodeId,
    pub upload_blob_id: BlobId,
}

impl Store {
    /// Shards of readable files that were never verified (or must be re-verified).
    pub async fn shards_to_verify(&self, limit: u32) -> Result<Vec<ShardRow>> {
        sqlx::query(concat!(
            "SELECT ",
            shard_columns!(),
            " FROM shards s JOIN files f ON f.file_id = s.file_id \
             WHERE s.verified_at IS NULL AND s.needs_repair = 0 \
               AND f.phase IN ('distributed', 'safe') \
             ORDER BY s.created_at LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_rows(&self.pool, shard_from_row)
        .await
    }

    /// Records a verification of the shard stored as `blob_id`: verified with fresh
    /// challenges, or lost/corrupt (`ok == false`) so the repairer rebuilds it.
    pub async fn record_verification(
        &self,
        blob_id: BlobId,
        ok: bool,
        challenges: Option<&str>,
        now: i64,
    ) -> Result<()> {
        if ok {
            sqlx::query(
                "UPDATE shards SET verified_at = $1, challenges = $2, last_audit_at = $1 \
                 WHERE blob_id = $3",
            )
            .bind(now)
            .bind(challenges)
            .bind(blob_id.to_string())
            .execute(&self.pool)
            .await?;
        } else {
            self.mark_needs_repair(blob_id).await?;
        }
        Ok(())
    }

    pub async fn mark_needs_repair(&self, blob_id: BlobId) -> Result<()> {
        sqlx::query("UPDATE shards SET needs_repair = 1, verified_at = NULL WHERE blob_id = $1")
            .bind(blob_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moves every `distributed` file whose shards are all verified, none awaiting
    /// repair, no two shards of a segment on one node, held by at least `min_peers`
    /// distinct nodes other than the originator, every holder online (a heartbeat at
    /// or after `online_since`: a shard verified before its holder went silent is no
    /// proof it is there now), to `safe`; and queues the drop of the originator's full
    /// copy — only now.
    pub async fn promote_safe_files(
        &self,
        min_peers: u32,
        online_since: i64,
        now: i64,
    ) -> Result<Vec<SafeFile>> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "SELECT f.file_id, f.originator, f.upload_blob_id FROM files f \
             WHERE f.phase = 'distributed' \
               AND NOT EXISTS (SELECT 1 FROM shards s WHERE s.file_id = f.file_id \
                               AND (s.verified_at IS NULL OR s.needs_repair = 1)) \
               AND NOT EXISTS (SELECT 1 FROM shards a JOIN shards b \
                               ON b.file_id = a.file_id AND b.segment = a.segment \
                                  AND b.node_id = a.node_id AND b.shard_index > a.shard_index \
                               WHERE a.file_id = f.file_id) \
               AND NOT EXISTS (SELECT 1 FROM shards s LEFT JOIN nodes n ON n.node_id = s.node_id \
                               WHERE s.file_id = f.file_id \
                                 AND COALESCE(n.last_heartbeat_at, 0) < $2) \
               AND (SELECT COUNT(DISTINCT s.node_id) FROM shards s \
                    WHERE s.file_id = f.file_id AND s.node_id <> f.originator) >= $1",
        )
        .bind(i64::from(min_peers))
        .bind(online_since)
        .fetch_all(&mut *tx)
        .await?;
        let mut safe = Vec::with_capacity(rows.len());
        for row in rows {
            let file = SafeFile {
                file_id: parse(&row.try_get::<String, _>("file_id")?, "files.file_id")?,
                originator: parse(&row.try_get::<String, _>("originator")?, "files.originator")?,
                upload_blob_id: parse(
                    &row.try_get::<String, _>("upload_blob_id")?,
                    "files.upload_blob_id",
                )?,
            };
            sqlx::query(
                "UPDATE files SET phase = 'safe', replication_safe_at = $1 \
                 WHERE file_id = $2 AND phase = 'distributed'",
            )
            .bind(now)
            .bind(file.file_id.to_string())
            .execute(&mut *tx)
            .await?;
            queue_delete(&mut tx, &file.originator, vec![file.upload_blob_id], now).await?;
            file_event_in_tx(&mut tx, FILE_REPLICATED, &file.file_id.to_string(), now).await?;
            safe.push(file);
        }
        tx.commit().await?;
        Ok(safe)
    }

    /// When the file became safe.
    pub async fn replication_safe_at(&self, file_id: FileId) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar::<_, Option<i64>>(
            "SELECT replication_safe_at FROM files WHERE file_id = $1",
        )
        .bind(file_id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }

    /// Verified shards least recently audited, for periodic re-audits.
    pub async fn shards_for_audit(
        &self,
        limit: u32,
        audited_before: i64,
    ) -> Result<Vec<AuditTarget>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            shard_columns!(),
            ", s.challenges FROM shards s \
             WHERE s.verified_at IS NOT NULL AND s.needs_repair = 0 \
               AND COALESCE(s.last_audit_at, 0) < $1 \
             ORDER BY COALESCE(s.last_audit_at, 0) LIMIT $2"
        ))
        .bind(audited_before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditTarget {
                    shard: shard_from_row(row)?,
                    challenges: row.try_get("challenges")?,
                })
            })
            .collect()
    }

    /// Stores what is left of a shard's challenges after a passed audit. `None`
    /// clears verification so the verifier reads the shard whole and issues new ones.
    pub async fn record_audit(
        &self,
        blob_id: BlobId,
        challenges: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let q = if challenges.is_some() {
            "UPDATE shards SET challenges = $1, last_audit_at = $2 WHERE blob_id = $3"
        } else {
            "UPDATE shards SET challenges = $1, last_audit_at = $2, verified_at = NULL WHERE blob_id = $3"
        };
        sqlx::query(q)
            .bind(challenges)
            .bind(now)
            .bind(blob_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Shards to rebuild: marked lost/corrupt, or held by one of `lost_nodes`.
    pub async fn shards_needing_repair(
        &self,
        lost_nodes: &[NodeId],
        limit: u32,
    ) -> Result<Vec<ShardRow>> {
        let mut query = format!(
            "SELECT {} FROM shards s JOIN files f ON f.file_id = s.file_id \
             WHERE f.phase IN ('distributed', 'safe') AND (s.needs_repair = 1",
            shard_columns!()
        );
        for i in 0..lost_nodes.len() {
            query.push_str(&format!(" OR s.node_id = ${}", i + 2));
        }
        query.push_str(") ORDER BY s.file_id, s.segment, s.shard_index LIMIT $1");
        // Only numbered placeholders are spliced in; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(query)).bind(i64::from(limit));
        for n in lost_nodes {
            q = q.bind(n.as_str());
        }
        q.fetch_rows(&self.pool, shard_from_row).await
    }

    /// Points a shard at its rebuilt copy, if it still is `old_blob` (a concurrent
    /// repair or delete wins otherwise: returns false). The old copy's holder is
    /// told to drop it, whenever it comes back.
    pub async fn replace_shard(
        &self,
        old: &ShardRow,
        new_node: &NodeId,
        new_blob: BlobId,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE shards SET node_id = $1, blob_id = $2, verified_at = NULL, needs_repair = 0, \
                 challenges = NULL, last_audit_at = NULL, created_at = $3 \
             WHERE blob_id = $4",
        )
        .bind(new_node.as_str())
        .bind(new_blob.to_string())
        .bind(now)
        .bind(old.blob_id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(false);
        }
        queue_delete(&mut tx, &old.node_id, vec![old.blob_id], now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Drops a cancelled file's shard rows and queues the deletion of every blob it
    /// had (shards and the originator's upload), keeping the file row for audit.
    /// Files derived from it are deleted outright, their blobs returned too.
    pub async fn evict_file(&self, file_id: FileId, now: i64) -> Result<Vec<(NodeId, BlobId)>> {
        let mut tx = self.begin_write().await?;
        let file = sqlx::query(concat!(file_select!(), " WHERE f.file_id = $1"))
            .bind(file_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(file) = file.as_ref().map(file_from_row).transpose()? else {
            return Ok(vec![]);
        };
        let mut blobs: Vec<(NodeId, BlobId)> = sqlx::query(concat!(
            "SELECT ",
            shard_columns!(),
            " FROM shards s WHERE s.file_id = $1"
        ))
        .bind(file_id.to_string())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| shard_from_row(r).map(|s| (s.node_id, s.blob_id)))
        .collect::<Result<_>>()?;
        if file.phase != FilePhase::Safe {
            blobs.push((file.originator.clone(), file.upload_blob_id));
        }
        sqlx::query("DELETE FROM shards WHERE file_id = $1")
            .bind(file_id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM inline_envelopes WHERE file_id = $1")
            .bind(file_id.to_string())
            .execute(&mut *tx)
            .await?;
        // What the video pipeline made from it goes with it: artefacts, and variant
        // stream files with their jobs and segments.
        blobs.extend(crate::derived::delete_derived_of_in(&mut tx, &file_id.to_string()).await?);
        queue_deletes(&mut tx, &blobs, now).await?;
        tx.commit().await?;
        Ok(blobs)
    }

    /// Registrations that expired more than `grace_ms` ago without completing:
    /// marked `failed`, the deletion of their upload blob (on the originator) and of
    /// the shards of parts already coded queued.
    pub async fn expire_abandoned_uploads(&self, now: i64, grace_ms: i64) -> Result<Vec<FileRow>> {
        let mut tx = self.begin_write().await?;
        let files = sqlx::query(concat!(
            file_select!(),
            " WHERE f.phase IN ('pending', 'uploading') AND f.expires_at < $1"
        ))
        .bind(now - grace_ms)
        .fetch_rows(&mut *tx, file_from_row)
        .await?;
        for f in &files {
            sqlx::query(
                "UPDATE files SET phase = 'failed', \
                     cancelled_reason = 'upload registration expired before the upload completed' \
                 WHERE file_id = $1",
            )
            .bind(f.file_id.to_string())
            .execute(&mut *tx)
            .await?;
            // The tenant hears of it like of any other upload that ended without a file.
            file_event_in_tx(&mut tx, FILE_FAILED, &f.file_id.to_string(), now).await?;
            queue_delete(&mut tx, &f.originator, vec![f.upload_blob_id], now).await?;
            // Parts coded as they arrived already have shards on their holders.
            let parts: Vec<(NodeId, BlobId)> = sqlx::query(
                "DELETE FROM shards WHERE file_id = $1 \
                 RETURNING file_id, segment, shard_index, node_id, blob_id, size, blake3",
            )
            .bind(f.file_id.to_string())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| shard_from_row(row).map(|s| (s.node_id, s.blob_id)))
            .collect::<Result<_>>()?;
            queue_deletes(&mut tx, &parts, now).await?;
        }
        tx.commit().await?;
        Ok(files)
    }

    /// Every blob id metadata still points to on `node`: shards it holds, upload
    /// blobs it holds for files not yet safe or ended, and HLS segment copies (a
    /// replica row, or a segment it encoded). Anything else it stores is an orphan.
    pub async fn referenced_blobs(&self, node: &NodeId) -> Result<HashSet<BlobId>> {
        let mut out = HashSet::new();
        for text in sqlx::query_scalar::<_, String>(
            "SELECT blob_id FROM shards WHERE node_id = $1 \
             UNION ALL \
             SELECT upload_blob_id FROM files WHERE originator = $1 \
               AND phase IN ('pending', 'uploading', 'distributed') \
             UNION ALL \
             SELECT blob_id FROM segment_replicas WHERE node_id = $1 \
             UNION ALL \
             SELECT s.blob_id FROM hls_segments s JOIN encoding_jobs j ON j.id = s.job_id \
               WHERE j.node_id = $1",
        )
        .bind(node.as_str())
        .fetch_all(&self.pool)
        .await?
        {
            out.insert(parse::<BlobId>(&text, "blob id")?);
        }
        Ok(out)
    }

    /// Whether any metadata still points to `blob` on any node (the same references
    /// as [`Store::referenced_blobs`]). A blob nothing names is an orphan wherever
    /// it is stored.
    pub async fn blob_referenced(&self, blob: BlobId) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM shards WHERE blob_id = $1 \
             UNION ALL \
             SELECT 1 FROM files WHERE upload_blob_id = $1 \
               AND phase IN ('pending', 'uploading', 'distributed') \
             UNION ALL \
             SELECT 1 FROM segment_replicas WHERE blob_id = $1 \
             UNION ALL \
             SELECT 1 FROM hls_segments WHERE blob_id = $1 \
             LIMIT 1",
        )
        .bind(blob.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// How many files are in any of `phases` (operations and tests).
    pub async fn count_files_in_phases(&self, phases: &[FilePhase]) -> Result<u64> {
        let mut total = 0u64;
        for phase in phases {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM files WHERE phase = $1")
                .bind(phase.as_str())
                .fetch_one(&self.pool)
                .await?;
            total += u64::try_from(n).unwrap_or(0);
        }
        Ok(total)
    }
}
