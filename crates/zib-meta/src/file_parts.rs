//! Files stored as one envelope per part (S3 multipart uploads). Each part is
//! recorded with its shards as it is stored, while the file is uploading; the
//! upload's completion keeps the parts it lists, drops the others and makes the file
//! current: rows only, no second pass over the bytes.

use sqlx::Row;
use zib_proto::{BlobId, FileId, NodeId};

use crate::convert::{from_db, shard_from_row, to_db};
use crate::files::{complete_in, insert_shards, Held};
use crate::nodes::queue_deletes;
use crate::part_shards::{delete_segment_shards, mark_uploading_in};
use crate::{Checksums, Distribution, FilePhase, MetaError, Result, S3Content, ShardRow, Store};

/// One part of a file stored in parts: its own envelope (`nonce_prefix`, under the
/// file's data key), coded into segments `first_segment..first_segment + segment_count`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePart {
    pub number: u32,
    pub first_segment: u32,
    pub segment_count: u32,
    /// Plaintext bytes.
    pub size: u64,
    /// Envelope bytes, header included.
    pub ciphertext_size: u64,
    /// 7 bytes.
    pub nonce_prefix: Vec<u8>,
    /// Hex MD5 of the part's plaintext (its S3 ETag).
    pub md5: String,
    pub checksums: Checksums,
    pub created_at: i64,
}

/// What a completion of a file in parts makes of it.
pub struct ListedCompletion<'a> {
    /// The parts that make the object, ascending, with the MD5 each was listed with
    /// (a part sent again since is refused, not taken unseen).
    pub parts: &'a [(u32, &'a str)],
    pub s3: S3Content<'a>,
}

fn part_from_row(row: &crate::engine::DbRow) -> Result<FilePart> {
    let checksums: Option<String> = row.try_get("checksums")?;
    Ok(FilePart {
        number: from_db(row.try_get("part_number")?, "file_parts.part_number")?,
        first_segment: from_db(row.try_get("first_segment")?, "file_parts.first_segment")?,
        segment_count: from_db(row.try_get("segment_count")?, "file_parts.segment_count")?,
        size: from_db(row.try_get("size")?, "file_parts.size")?,
        ciphertext_size: from_db(
            row.try_get("ciphertext_size")?,
            "file_parts.ciphertext_size",
        )?,
        nonce_prefix: row.try_get("nonce_prefix")?,
        md5: row.try_get("md5")?,
        checksums: match checksums {
            Some(json) => serde_json::from_str(&json).map_err(|e| MetaError::Corrupt {
                what: "file_parts.checksums",
                detail: e.to_string(),
            })?,
            None => Checksums::new(),
        },
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Records one stored part and its shards, for a file still awaiting
    /// distribution. An earlier attempt at the same part number (sent again) is
    /// replaced: its row and shard rows go, its blobs' deletion is queued; the file's
    /// expiry moves to `expires_at` if that is later. Returns the replaced blobs.
    pub async fn record_file_part(
        &self,
        file_id: FileId,
        part: &FilePart,
        shards: &[ShardRow],
        now: i64,
        expires_at: i64,
    ) -> Result<Vec<(NodeId, BlobId)>> {
        let file_text = file_id.to_string();
        let mut tx = self.begin_write().await?;
        // A new part keeps the upload from expiring for another `expires_at`.
        mark_uploading_in(&mut tx, &file_text, Some(expires_at)).await?;
        let replaced = drop_parts_in(&mut tx, &file_text, Some(part.number)).await?;
        let checksums = if part.checksums.is_empty() {
            None
        } else {
            Some(
                serde_json::to_string(&part.checksums).map_err(|e| MetaError::Corrupt {
                    what: "file_parts.checksums",
                    detail: e.to_string(),
                })?,
            )
        };
        sqlx::query(
            "INSERT INTO file_parts (file_id, part_number, first_segment, segment_count, \
                 size, ciphertext_size, nonce_prefix, md5, checksums, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&file_text)
        .bind(i64::from(part.number))
        .bind(i64::from(part.first_segment))
        .bind(i64::from(part.segment_count))
        .bind(to_db(part.size, "size")?)
        .bind(to_db(part.ciphertext_size, "ciphertext_size")?)
        .bind(&part.nonce_prefix)
        .bind(&part.md5)
        .bind(checksums)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        insert_shards(&mut tx, &file_text, shards, now).await?;
        queue_deletes(&mut tx, &replaced, now).await?;
        tx.commit().await?;
        Ok(replaced)
    }

    /// The parts of a file stored in parts, by part number (none for other files).
    pub async fn file_parts(&self, file_id: FileId) -> Result<Vec<FilePart>> {
        let rows = sqlx::query(
            "SELECT part_number, first_segment, segment_count, size, ciphertext_size, \
                 nonce_prefix, md5, checksums, created_at \
             FROM file_parts WHERE file_id = $1 ORDER BY part_number",
        )
        .bind(file_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(part_from_row).collect()
    }

    /// The shard rows of segments `segments` of a file.
    pub async fn shards_in_segments(
        &self,
        file_id: FileId,
        segments: std::ops::Range<u32>,
    ) -> Result<Vec<ShardRow>> {
        let rows = sqlx::query(
            "SELECT file_id, segment, shard_index, node_id, blob_id, size, blake3 \
             FROM shards WHERE file_id = $1 AND segment >= $2 AND segment < $3 \
             ORDER BY segment, shard_index",
        )
        .bind(file_id.to_string())
        .bind(i64::from(segments.start))
        .bind(i64::from(segments.end))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(shard_from_row).collect()
    }

    /// Completes a file stored in parts: the parts not listed go (their shards'
    /// deletion queued), the file takes the listed parts' sizes and the object's S3
    /// attributes, and becomes current as [`Store::complete_distribution`] makes a
    /// file current, once the listed parts hold every shard of their segments.
    pub async fn complete_file_parts(
        &self,
        file_id: FileId,
        done: ListedCompletion<'_>,
        now: i64,
        supersede_reason: &str,
    ) -> Result<Distribution> {
        let file_text = file_id.to_string();
        let mut tx = self.begin_write().await?;
        let stored = sqlx::query("SELECT part_number, md5 FROM file_parts WHERE file_id = $1")
            .bind(&file_text)
            .fetch_all(&mut *tx)
            .await?;
        let mut dropped = Vec::new();
        for row in stored {
            let number: u32 = from_db(row.try_get("part_number")?, "file_parts.part_number")?;
            let md5: String = row.try_get("md5")?;
            match done.parts.binary_search_by_key(&number, |(n, _)| *n) {
                Ok(i) if done.parts[i].1 != md5 => {
                    return Err(MetaError::Conflict(
                        "a listed part was sent again meanwhile",
                    ))
                }
                Ok(_) => {}
                Err(_) => dropped.push(number),
            }
        }
        let mut blobs = Vec::new();
        for number in dropped {
            blobs.extend(drop_parts_in(&mut tx, &file_text, Some(number)).await?);
        }
        let sizes = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(p.size), 0) AS size, \
                 COALESCE(SUM(p.ciphertext_size), 0) AS ciphertext_size, \
                 COALESCE(SUM(p.segment_count), 0) * MAX(f.data_shards + f.parity_shards) \
                     AS expected \
             FROM file_parts p JOIN files f ON f.file_id = p.file_id WHERE p.file_id = $1",
        )
        .bind(&file_text)
        .fetch_one(&mut *tx)
        .await?;
        let count: i64 = sizes.try_get("n")?;
        if u64::try_from(count).ok() != Some(done.parts.len() as u64) {
            return Err(MetaError::Conflict("a listed part is not stored"));
        }
        let held: i64 = sqlx::query("SELECT COUNT(*) AS n FROM shards WHERE file_id = $1")
            .bind(&file_text)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        let expected: Option<i64> = sizes.try_get("expected")?;
        if held != expected.unwrap_or(0) {
            return Err(MetaError::Conflict(
                "the listed parts do not hold every shard of their segments",
            ));
        }
        let size: i64 = sizes.try_get("size")?;
        let ciphertext_size: i64 = sizes.try_get("ciphertext_size")?;
        sqlx::query(
            "UPDATE files SET size = $1, ciphertext_size = $2, part_count = $3 \
             WHERE file_id = $4",
        )
        .bind(size)
        .bind(ciphertext_size)
        .bind(count)
        .bind(&file_text)
        .execute(&mut *tx)
        .await?;
        queue_deletes(&mut tx, &blobs, now).await?;
        let outcome = complete_in(
            &mut tx,
            file_id,
            None,
            Held::Listed(done.s3),
            now,
            supersede_reason,
        )
        .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Ends a file in parts that will not be completed (an aborted upload): it fails
    /// with `reason`, and its parts' rows and shard rows go, their blobs' deletion
    /// queued. Returns how many blobs; a conflict once the file is complete.
    pub async fn drop_file_parts(&self, file_id: FileId, reason: &str, now: i64) -> Result<usize> {
        let file_text = file_id.to_string();
        let mut tx = self.begin_write().await?;
        let ended = sqlx::query(
            "UPDATE files SET phase = $1, cancelled_reason = $2 \
             WHERE file_id = $3 AND phase IN ($4, $5) RETURNING file_id",
        )
        .bind(FilePhase::Failed.as_str())
        .bind(reason)
        .bind(&file_text)
        .bind(FilePhase::Pending.as_str())
        .bind(FilePhase::Uploading.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if ended.is_none() {
            return Err(MetaError::Conflict("file is not awaiting distribution"));
        }
        let blobs = drop_parts_in(&mut tx, &file_text, None).await?;
        queue_deletes(&mut tx, &blobs, now).await?;
        tx.commit().await?;
        Ok(blobs.len())
    }
}

/// Deletes part `number`'s row (every part's, with `None`) and the shard rows of its
/// segments; returns their blobs (the caller queues their deletion).
async fn drop_parts_in(
    conn: &mut crate::engine::DbConn,
    file_text: &str,
    number: Option<u32>,
) -> Result<Vec<(NodeId, BlobId)>> {
    let parts = sqlx::query(
        "DELETE FROM file_parts WHERE file_id = $1 AND ($2 IS NULL OR part_number = $2) \
         RETURNING first_segment, segment_count",
    )
    .bind(file_text)
    .bind(number.map(i64::from))
    .fetch_all(&mut *conn)
    .await?;
    let mut blobs = Vec::new();
    for part in parts {
        let first: i64 = part.try_get("first_segment")?;
        let count: i64 = part.try_get("segment_count")?;
        blobs.extend(delete_segment_shards(conn, file_text, first..first + count).await?);
    }
    Ok(blobs)
}
