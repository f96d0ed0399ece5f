//! Multipart files whose parts are erasure-coded on their own as they arrive: each
//! part's shards are recorded as the part is stored, while the file is still
//! uploading, and the upload's completion then only checks that every part is in
//! and makes the file current (no second pass over its bytes).

use std::ops::Range;

use sqlx::Row;
use zib_proto::{BlobId, NodeId};

use crate::convert::shard_from_row;
use crate::files::{complete_in, insert_shards, Held};
use crate::nodes::queue_deletes;
use crate::{Distribution, FilePhase, MetaError, Result, ShardRow, Store};
use zib_proto::FileId;

impl Store {
    /// Records the shards of one part (its `segments`) of a file still uploading.
    /// The shards of an earlier attempt at the same part (stored, but its client
    /// never heard so, and sent it again) are replaced: their rows go and their
    /// blobs' deletion is queued (holders get it with their next heartbeat); they are
    /// returned so the caller can say how many.
    pub async fn record_part_shards(
        &self,
        file_id: FileId,
        segments: Range<u32>,
        shards: &[ShardRow],
        now: i64,
    ) -> Result<Vec<(NodeId, BlobId)>> {
        let file_text = file_id.to_string();
        let mut tx = self.begin_write().await?;
        mark_uploading_in(&mut tx, &file_text, None).await?;
        let replaced = delete_segment_shards(
            &mut tx,
            &file_text,
            i64::from(segments.start)..i64::from(segments.end),
        )
        .await?;
        insert_shards(&mut tx, &file_text, shards, now).await?;
        queue_deletes(&mut tx, &replaced, now).await?;
        tx.commit().await?;
        Ok(replaced)
    }

    /// Completes a file whose parts' shards were all recorded by
    /// [`Store::record_part_shards`]: as [`Store::complete_distribution`], once the
    /// store holds exactly `expected` shards of it.
    pub async fn complete_parts(
        &self,
        file_id: FileId,
        expected: u64,
        now: i64,
        supersede_reason: &str,
    ) -> Result<Distribution> {
        let file_text = file_id.to_string();
        let mut tx = self.begin_write().await?;
        let held: i64 = sqlx::query("SELECT COUNT(*) AS n FROM shards WHERE file_id = $1")
            .bind(&file_text)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if u64::try_from(held).ok() != Some(expected) {
            return Err(MetaError::Conflict(
                "not every part of the upload has its shards recorded",
            ));
        }
        let outcome = complete_in(
            &mut tx,
            file_id,
            None,
            Held::Shards(&[]),
            now,
            supersede_reason,
        )
        .await?;
        tx.commit().await?;
        Ok(outcome)
    }
}

/// Deletes the shard rows of a file's `segments`; returns their blobs (the caller
/// queues their deletion).
pub(crate) async fn delete_segment_shards(
    conn: &mut crate::engine::DbConn,
    file_text: &str,
    segments: Range<i64>,
) -> Result<Vec<(NodeId, BlobId)>> {
    sqlx::query(
        "DELETE FROM shards WHERE file_id = $1 AND segment >= $2 AND segment < $3 \
         RETURNING file_id, segment, shard_index, node_id, blob_id, size, blake3",
    )
    .bind(file_text)
    .bind(segments.start)
    .bind(segments.end)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| shard_from_row(row).map(|s| (s.node_id, s.blob_id)))
    .collect()
}

/// Moves a file still awaiting distribution to `uploading` (and its expiry to
/// `expires_at`, if later): a part of it is being recorded. A conflict once it is
/// complete, failed or gone.
pub(crate) async fn mark_uploading_in(
    conn: &mut crate::engine::DbConn,
    file_text: &str,
    expires_at: Option<i64>,
) -> Result<()> {
    let awaiting = sqlx::query(
        "UPDATE files SET phase = $1, \
             expires_at = CASE WHEN $4 IS NOT NULL AND expires_at < $4 THEN $4 \
                 ELSE expires_at END \
         WHERE file_id = $2 AND phase IN ($3, $1) RETURNING file_id",
    )
    .bind(FilePhase::Uploading.as_str())
    .bind(file_text)
    .bind(FilePhase::Pending.as_str())
    .bind(expires_at)
    .fetch_optional(&mut *conn)
    .await?;
    if awaiting.is_none() {
        return Err(MetaError::Conflict("file is not awaiting distribution"));
    }
    Ok(())
}
