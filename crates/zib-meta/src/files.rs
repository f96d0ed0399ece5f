//! Files, their shards and the object pointers that make one file current per key.

use sqlx::Row;
use zib_proto::events::{FILE_DELETED, FILE_FAILED, FILE_READY, FILE_REPLICATED};
use zib_proto::{BlobId, FileId, NodeId};

use crate::compute::cancel_compute_of_file_in;
use crate::convert::{
    conflict_on_unique, file_from_row, file_select, parse, shard_from_row, to_db,
};
use crate::derived::delete_derived_of_in;
use crate::engine::{DbConn, FetchRows};
use crate::nodes::{queue_delete, queue_deletes};
use crate::webhooks::{enqueue_file_event, enqueue_file_events};
use crate::{
    DeletedFile, Distribution, FilePhase, FileRow, MetaError, ObjectRow, Result, S3Content,
    ShardRow, Store,
};

impl Store {
    /// Inserts a new file in phase `pending`. `bucket` and `created_at` of the row
    /// are taken as given.
    ///
    /// The row's `phase`, `cancelled_reason` and `distributed_at` are ignored: a new
    /// file always starts pending. A reused `file_id` or `upload_blob_id` is a
    /// [`MetaError::Conflict`].
    pub async fn insert_file(&self, file: &FileRow) -> Result<()> {
        let mut tx = self.begin_write().await?;
        insert_file_in(&mut tx, file).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A new small file kept inline, from registration to `safe` in one
    /// transaction: the S3 gateway's PUT of a small object, whose bytes it already
    /// holds sealed. The file row, its envelope, its S3 attributes, the key's
    /// object and every event ([`Store::insert_file`] then
    /// [`Store::complete_inline`], with one commit).
    pub async fn insert_inline_file(
        &self,
        file: &FileRow,
        envelope: &[u8],
        s3: S3Content<'_>,
        now: i64,
        supersede_reason: &str,
    ) -> Result<Distribution> {
        let mut tx = self.begin_write().await?;
        insert_file_in(&mut tx, file).await?;
        let held = Held::Inline {
            envelope,
            via_originator: false,
            s3: Some(s3),
        };
        let outcome = complete_in(
            &mut tx,
            file.file_id,
            Some(file),
            held,
            now,
            supersede_reason,
        )
        .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Any tenant's file: for the CDN, whose URL is the capability.
    pub async fn file(&self, file_id: FileId) -> Result<Option<FileRow>> {
        sqlx::query(concat!(file_select!(), " WHERE f.file_id = $1"))
            .bind(file_id.to_string())
            .fetch_row(&self.pool, file_from_row)
            .await
    }

    /// The tenant's file, or `None` for a missing id and another tenant's id alike.
    pub async fn file_for_tenant(
        &self,
        tenant_id: &str,
        file_id: FileId,
    ) -> Result<Option<FileRow>> {
        sqlx::query(concat!(
            file_select!(),
            " WHERE f.file_id = $1 AND f.tenant_id = $2"
        ))
        .bind(file_id.to_string())
        .bind(tenant_id)
        .fetch_row(&self.pool, file_from_row)
        .await
    }

    pub async fn file_by_upload_blob(&self, blob_id: BlobId) -> Result<Option<FileRow>> {
        sqlx::query(concat!(file_select!(), " WHERE f.upload_blob_id = $1"))
            .bind(blob_id.to_string())
            .fetch_row(&self.pool, file_from_row)
            .await
    }

    /// Moves `pending` → `uploading`; false if the file was in another phase.
    pub async fn mark_uploading(&self, file_id: FileId) -> Result<bool> {
        let done = sqlx::query("UPDATE files SET phase = $1 WHERE file_id = $2 AND phase = $3")
            .bind(FilePhase::Uploading.as_str())
            .bind(file_id.to_string())
            .bind(FilePhase::Pending.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Sets `failed` with a reason (kept in `cancelled_reason`). A missing file is
    /// not an error: there is nothing left to fail.
    pub async fn mark_failed(&self, file_id: FileId, reason: &str) -> Result<()> {
        sqlx::query("UPDATE files SET phase = $1, cancelled_reason = $2 WHERE file_id = $3")
            .bind(FilePhase::Failed.as_str())
            .bind(reason)
            .bind(file_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// In one transaction: records every shard, moves the file to `distributed`, and
    /// points (bucket, key) at it. A file previously current for that key becomes
    /// `cancelled` with `cancelled_reason = supersede_reason`; its id is returned.
    /// If the current file was *registered* after this one, this one is the stale
    /// upload: it becomes `cancelled` instead and [`Distribution::Stale`] says so.
    ///
    /// Shards are recorded under `file_id` whatever their own `file_id` says. A file
    /// that is missing or not `pending`/`uploading` is a [`MetaError::Conflict`] and
    /// nothing changes. When two uploads of one key finish, the later one wins. A
    /// derived file ([`Store::mark_derived`]) only gets its shards:
    /// [`Distribution::Derived`].
    pub async fn complete_distribution(
        &self,
        file_id: FileId,
        shards: &[ShardRow],
        now: i64,
        supersede_reason: &str,
    ) -> Result<Distribution> {
        self.complete(file_id, Held::Shards(shards), now, supersede_reason)
            .await
    }

    /// [`Store::complete_distribution`] for a small file whose whole `envelope` is
    /// kept in the store itself: no shards, no node holds it. Its durability is the
    /// store's, so it goes straight to `safe` (`file.ready`, then
    /// `file.replicated`, in the same transaction). `via_originator`: the envelope
    /// came through the file's originator, whose record of the upload is then
    /// dropped, as when a sharded file becomes safe.
    pub async fn complete_inline(
        &self,
        file_id: FileId,
        envelope: &[u8],
        via_originator: bool,
        now: i64,
        supersede_reason: &str,
    ) -> Result<Distribution> {
        let held = Held::Inline {
            envelope,
            via_originator,
            s3: None,
        };
        self.complete(file_id, held, now, supersede_reason).await
    }

    /// The envelope of a file kept inline ([`Store::complete_inline`]).
    pub async fn inline_envelope(&self, file_id: FileId) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT envelope FROM inline_envelopes WHERE file_id = $1")
                .bind(file_id.to_string())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn complete(
        &self,
        file_id: FileId,
        held: Held<'_>,
        now: i64,
        supersede_reason: &str,
    ) -> Result<Distribution> {
        let mut tx = self.begin_write().await?;
        let outcome = complete_in(&mut tx, file_id, None, held, now, supersede_reason).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// By segment, then shard index.
    pub async fn shards_for_file(&self, file_id: FileId) -> Result<Vec<ShardRow>> {
        sqlx::query(
            "SELECT file_id, segment, shard_index, node_id, blob_id, size, blake3 \
             FROM shards WHERE file_id = $1 ORDER BY segment, shard_index",
        )
        .bind(file_id.to_string())
        .fetch_rows(&self.pool, shard_from_row)
        .await
    }

    /// Current objects of a bucket whose key starts with `prefix`, by key.
    ///
    /// Only readable (distributed or safe) files are listed. Keys compare by bytes,
    /// as S3 orders them; the prefix test is exact (no LIKE wildcards, no case folding).
    pub async fn list_objects(
        &self,
        tenant_id: &str,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<ObjectRow>> {
        // `>=` lets the (bucket_id, object_key) key seek to the prefix; substr makes
        // the match exact.
        let rows = sqlx::query(concat!(
            file_select!(),
            " JOIN objects o ON o.file_id = f.file_id AND o.bucket_id = f.bucket_id \
             WHERE b.tenant_id = $1 AND b.name = $2 \
               AND o.object_key >= $3 AND substr(o.object_key, 1, length($3)) = $3 \
               AND f.phase IN ('distributed', 'safe') \
             ORDER BY o.object_key"
        ))
        .bind(tenant_id)
        .bind(bucket)
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let file = file_from_row(row)?;
                Ok(ObjectRow {
                    key: file.object_key.clone(),
                    file,
                })
            })
            .collect()
    }

    /// The current file of (bucket, key) for this tenant.
    ///
    /// Returned whatever its phase (a current file may since have failed), so the
    /// caller can tell "gone" from "broken"; check [`FilePhase::is_readable`].
    pub async fn object(
        &self,
        tenant_id: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Option<FileRow>> {
        sqlx::query(concat!(
            file_select!(),
            " JOIN objects o ON o.file_id = f.file_id AND o.bucket_id = f.bucket_id \
             WHERE b.tenant_id = $1 AND b.name = $2 AND o.object_key = $3"
        ))
        .bind(tenant_id)
        .bind(bucket)
        .bind(key)
        .fetch_row(&self.pool, file_from_row)
        .await
    }

    /// Deletes the tenant's file, its shard rows, its object pointer (if current), its
    /// encodings and every file derived from it in one transaction, and queues a
    /// `delete_blobs` command for every holder. `None` for a missing id and another
    /// tenant's id alike.
    pub async fn delete_file(
        &self,
        tenant_id: &str,
        file_id: FileId,
        now: i64,
    ) -> Result<Option<DeletedFile>> {
        let file_text = file_id.to_string();
        let mut tx = self.begin_write().await?;

        let file = sqlx::query(concat!(
            file_select!(),
            " WHERE f.file_id = $1 AND f.tenant_id = $2"
        ))
        .bind(&file_text)
        .bind(tenant_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(file) = file.as_ref().map(file_from_row).transpose()? else {
            return Ok(None);
        };

        let shards = sqlx::query(
            "SELECT file_id, segment, shard_index, node_id, blob_id, size, blake3 \
             FROM shards WHERE file_id = $1 ORDER BY segment, shard_index",
        )
        .bind(&file_text)
        .fetch_rows(&mut *tx, shard_from_row)
        .await?;
        let mut blobs: Vec<(NodeId, BlobId)> = shards
            .into_iter()
            .map(|shard| (shard.node_id, shard.blob_id))
            .collect();
        blobs.push((file.originator.clone(), file.upload_blob_id));

        let shard_rows = sqlx::query("DELETE FROM shards WHERE file_id = $1")
            .bind(&file_text)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM inline_envelopes WHERE file_id = $1")
            .bind(&file_text)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM file_parts WHERE file_id = $1")
            .bind(&file_text)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "DELETE FROM objects WHERE bucket_id = $1 AND object_key = $2 AND file_id = $3",
        )
        .bind(file.bucket_id)
        .bind(&file.object_key)
        .bind(&file_text)
        .execute(&mut *tx)
        .await?;
        // Its encodings reference it: they go with it, segment copies included, and
        // so does what the video pipeline derived from it (artefacts, variants).
        blobs.extend(Store::delete_file_encodings_in(&mut tx, &file_text).await?);
        blobs.extend(delete_derived_of_in(&mut tx, &file_text).await?);
        sqlx::query("DELETE FROM files WHERE file_id = $1")
            .bind(&file_text)
            .execute(&mut *tx)
            .await?;
        enqueue_file_event(&mut tx, FILE_DELETED, &file, now).await?;

        queue_deletes(&mut tx, &blobs, now).await?;

        tx.commit().await?;
        Ok(Some(DeletedFile {
            file,
            blobs,
            shard_rows,
        }))
    }
}

/// Reads the file as it now is inside `tx` and queues its event there. A derived
/// file (a job's artefact) is never announced: the tenant did not upload it.
pub(crate) async fn file_event_in_tx(
    tx: &mut DbConn,
    event_type: &str,
    file_id: &str,
    now: i64,
) -> Result<()> {
    file_events_in_tx(tx, &[event_type], file_id, now).await
}

/// [`file_event_in_tx`] for several events of one change, in order, the file and
/// its webhook targets read once.
pub(crate) async fn file_events_in_tx(
    tx: &mut DbConn,
    event_types: &[&str],
    file_id: &str,
    now: i64,
) -> Result<()> {
    let file = sqlx::query(concat!(
        file_select!(),
        " WHERE f.file_id = $1 AND f.derived_from IS NULL"
    ))
    .bind(file_id)
    .fetch_row(&mut *tx, file_from_row)
    .await?;
    if let Some(file) = file {
        enqueue_file_events(tx, event_types, &file, now).await?;
    }
    Ok(())
}

/// Inserts `file` (phase `pending`) and its upload-started event on `conn`.
async fn insert_file_in(conn: &mut DbConn, file: &FileRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO files (file_id, tenant_id, bucket_id, object_key, size, \
             ciphertext_size, content_type, phase, wrapped_dek, chunk_size, \
             nonce_prefix, data_shards, parity_shards, shard_size, originator, \
             upload_blob_id, part_count, part_size, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
             $16, $17, $18, $19, $20)",
    )
    .bind(file.file_id.to_string())
    .bind(&file.tenant_id)
    .bind(file.bucket_id)
    .bind(&file.object_key)
    .bind(to_db(file.size, "size")?)
    .bind(to_db(file.ciphertext_size, "ciphertext_size")?)
    .bind(&file.content_type)
    .bind(FilePhase::Pending.as_str())
    .bind(&file.wrapped_dek)
    .bind(i64::from(file.chunk_size))
    .bind(&file.nonce_prefix)
    .bind(i64::from(file.data_shards))
    .bind(i64::from(file.parity_shards))
    .bind(i64::from(file.shard_size))
    .bind(file.originator.as_str())
    .bind(file.upload_blob_id.to_string())
    .bind(i64::from(file.part_count))
    .bind(to_db(file.part_size, "part_size")?)
    .bind(file.expires_at)
    .bind(file.created_at)
    .execute(&mut *conn)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => MetaError::BucketDeleted,
        _ => conflict_on_unique(e, "file id or upload blob id already exists"),
    })?;
    crate::webhooks::upload_started(conn, file, file.created_at).await
}

/// [`Store::complete_distribution`] and [`Store::complete_inline`] on `conn`, the
/// caller's transaction (which the caller commits).
/// `inserted`: the row as this transaction inserted it, when it did (its events
/// are then built from it, not read back).
pub(crate) async fn complete_in(
    conn: &mut DbConn,
    file_id: FileId,
    inserted: Option<&FileRow>,
    held: Held<'_>,
    now: i64,
    supersede_reason: &str,
) -> Result<Distribution> {
    let file_text = file_id.to_string();

    let (phase, safe_at, s3) = match held {
        Held::Shards(_) => (FilePhase::Distributed, None, None),
        Held::Inline { s3, .. } => (FilePhase::Safe, Some(now), s3),
        Held::Listed(s3) => (FilePhase::Distributed, None, Some(s3)),
    };
    let columns = s3.map(|c| c.columns()).transpose()?;
    let (checksums, headers, tags) = match columns {
        Some(c) => (c.checksums, c.headers, c.tags),
        None => (None, None, None),
    };
    let target = sqlx::query(
        "UPDATE files SET phase = $1, distributed_at = $2, replication_safe_at = $3, \
             plaintext_md5 = COALESCE($7, plaintext_md5), \
             checksums = COALESCE($8, checksums), \
             object_headers = COALESCE($9, object_headers), tags = COALESCE($10, tags) \
         WHERE file_id = $4 AND phase IN ($5, $6) \
         RETURNING bucket_id, object_key, created_at, derived_from, originator, \
             upload_blob_id",
    )
    .bind(phase.as_str())
    .bind(now)
    .bind(safe_at)
    .bind(&file_text)
    .bind(FilePhase::Pending.as_str())
    .bind(FilePhase::Uploading.as_str())
    .bind(s3.map(|c| c.md5_hex))
    .bind(checksums)
    .bind(headers)
    .bind(tags)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(target) = target else {
        return Err(MetaError::Conflict("file is not awaiting distribution"));
    };
    let bucket_id: i64 = target.try_get("bucket_id")?;
    let object_key: String = target.try_get("object_key")?;
    let created_at: i64 = target.try_get("created_at")?;
    let derived = target
        .try_get::<Option<String>, _>("derived_from")?
        .is_some();

    let shards = match held {
        Held::Shards(shards) => shards,
        Held::Listed(_) => &[],
        Held::Inline {
            envelope,
            via_originator,
            ..
        } => {
            sqlx::query("INSERT INTO inline_envelopes (file_id, envelope) VALUES ($1, $2)")
                .bind(&file_text)
                .bind(envelope)
                .execute(&mut *conn)
                .await?;
            if via_originator {
                let originator: NodeId = parse(
                    &target.try_get::<String, _>("originator")?,
                    "files.originator",
                )?;
                let upload: BlobId = parse(
                    &target.try_get::<String, _>("upload_blob_id")?,
                    "files.upload_blob_id",
                )?;
                queue_delete(conn, &originator, vec![upload], now).await?;
            }
            &[]
        }
    };
    insert_shards(conn, &file_text, shards, now).await?;

    // A derived file has no key of its own: it never becomes current, supersedes
    // nothing and is never announced.
    if derived {
        return Ok(Distribution::Derived);
    }

    let previous = sqlx::query(
        "SELECT o.file_id, f.created_at FROM objects o JOIN files f ON f.file_id = o.file_id \
         WHERE o.bucket_id = $1 AND o.object_key = $2",
    )
    .bind(bucket_id)
    .bind(&object_key)
    .fetch_optional(&mut *conn)
    .await?;
    let previous = match previous {
        Some(row) => {
            let id: String = row.try_get("file_id")?;
            let at: i64 = row.try_get("created_at")?;
            (id != file_text).then_some((parse::<FileId>(&id, "objects.file_id")?, at))
        }
        None => None,
    };
    // A newer registration of the same key already completed: this upload is
    // the superseded one, and never becomes current.
    if let Some((current, current_created)) = previous {
        if current_created > created_at {
            sqlx::query("UPDATE files SET phase = $1, cancelled_reason = $2 WHERE file_id = $3")
                .bind(FilePhase::Cancelled.as_str())
                .bind(supersede_reason)
                .bind(&file_text)
                .execute(&mut *conn)
                .await?;
            cancel_compute_of_file_in(conn, &file_text, supersede_reason, now).await?;
            file_event_in_tx(conn, FILE_FAILED, &file_text, now).await?;
            return Ok(Distribution::Stale { current });
        }
    }
    let superseded = previous.map(|(id, _)| id);
    if let Some(old) = superseded {
        sqlx::query("UPDATE files SET phase = $1, cancelled_reason = $2 WHERE file_id = $3")
            .bind(FilePhase::Cancelled.as_str())
            .bind(supersede_reason)
            .bind(old.to_string())
            .execute(&mut *conn)
            .await?;
        // Its AI runs stop with it (its encoding jobs are the caller's to cancel).
        cancel_compute_of_file_in(conn, &old.to_string(), supersede_reason, now).await?;
        file_event_in_tx(conn, FILE_FAILED, &old.to_string(), now).await?;
    }

    sqlx::query(
        "INSERT INTO objects (bucket_id, object_key, file_id, updated_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (bucket_id, object_key) \
         DO UPDATE SET file_id = excluded.file_id, updated_at = excluded.updated_at",
    )
    .bind(bucket_id)
    .bind(&object_key)
    .bind(&file_text)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    // Kept inline, it is safe already: both events, in order.
    let events: &[&str] = match held {
        Held::Shards(_) | Held::Listed(_) => &[FILE_READY],
        Held::Inline { .. } => &[FILE_READY, FILE_REPLICATED],
    };
    match inserted {
        Some(row) => {
            let file = FileRow {
                phase,
                distributed_at: Some(now),
                ..row.clone()
            };
            enqueue_file_events(conn, events, &file, now).await?;
        }
        None => file_events_in_tx(conn, events, &file_text, now).await?,
    }

    Ok(Distribution::Current { superseded })
}

/// Where a completed file's envelope is held.
#[derive(Clone, Copy)]
pub(crate) enum Held<'a> {
    /// Erasure-coded on nodes.
    Shards(&'a [ShardRow]),
    /// Whole, in the store (small files).
    Inline {
        envelope: &'a [u8],
        via_originator: bool,
        s3: Option<S3Content<'a>>,
    },
    /// Erasure-coded on nodes part by part, each part's shards recorded with it
    /// (`file_parts`); the object's S3 attributes come with the completion.
    Listed(S3Content<'a>),
}

/// Inserts a file's shard rows; a shard or blob id already recorded is a conflict.
pub(crate) async fn insert_shards(
    conn: &mut DbConn,
    file_text: &str,
    shards: &[ShardRow],
    now: i64,
) -> Result<()> {
    for shard in shards {
        sqlx::query(
            "INSERT INTO shards (file_id, segment, shard_index, node_id, blob_id, size, \
                 blake3, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(file_text)
        .bind(i64::from(shard.segment))
        .bind(i64::from(shard.index))
        .bind(shard.node_id.as_str())
        .bind(shard.blob_id.to_string())
        .bind(to_db(shard.size, "shards.size")?)
        .bind(&shard.blake3)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(|e| conflict_on_unique(e, "shard or shard blob id already exists"))?;
    }
    Ok(())
}
