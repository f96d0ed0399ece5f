//! A bucket's own settings and its deletion: the overwrite mode an S3 PUT onto an
//! existing key follows, and removing a bucket that holds nothing any more.

use sqlx::Row;
use zib_proto::{BlobId, NodeId};

use crate::convert::{file_columns, file_from_row, parse};
use crate::engine::FetchRows;
use crate::nodes::queue_deletes;
use crate::{now_millis, Bucket, FileRow, MetaError, Result, Store};

/// What an S3 PUT (or Complete, or copy) onto a key holding a readable object does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OverwriteMode {
    /// The contract's rule: 409 unless the bytes are the same.
    #[default]
    Conflict,
    /// Replace it as an SDK re-upload does: a new file, the old one cancelled.
    Supersede,
}

impl OverwriteMode {
    pub fn as_str(self) -> &'static str {
        match self {
            OverwriteMode::Conflict => "conflict",
            OverwriteMode::Supersede => "supersede",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "conflict" => Some(OverwriteMode::Conflict),
            "supersede" => Some(OverwriteMode::Supersede),
            _ => None,
        }
    }
}

/// What a write to (bucket, key) checks before it stores anything.
#[derive(Debug, Default)]
pub struct WriteTarget {
    /// The bucket, if it exists, and its overwrite mode.
    pub bucket: Option<(Bucket, OverwriteMode)>,
    /// The key's current file, whatever its phase.
    pub current: Option<FileRow>,
}

fn mode_from_db(raw: &str) -> Result<OverwriteMode> {
    OverwriteMode::parse(raw).ok_or_else(|| MetaError::Corrupt {
        what: "buckets.overwrite_mode",
        detail: raw.to_string(),
    })
}

/// What [`Store::delete_empty_bucket`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum BucketDeletion {
    /// Gone; the blobs of leftover (cancelled or failed) uploads are queued for
    /// deletion on their holders.
    Deleted {
        leftover_blobs: Vec<(NodeId, BlobId)>,
    },
    /// The tenant has no such bucket.
    NotFound,
    /// Still holds something; the text says what.
    NotEmpty(&'static str),
}

impl Store {
    /// The bucket's overwrite mode; `None` when the tenant has no such bucket.
    pub async fn bucket_overwrite_mode(
        &self,
        tenant_id: &str,
        bucket: &str,
    ) -> Result<Option<OverwriteMode>> {
        let row =
            sqlx::query("SELECT overwrite_mode FROM buckets WHERE tenant_id = $1 AND name = $2")
                .bind(tenant_id)
                .bind(bucket)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            Some(row) => Ok(Some(mode_from_db(
                &row.try_get::<String, _>("overwrite_mode")?,
            )?)),
            None => Ok(None),
        }
    }

    /// The bucket, its overwrite mode and the key's current file, in one read: what
    /// every S3 PUT looks at first.
    pub async fn write_target(
        &self,
        tenant_id: &str,
        bucket: &str,
        key: &str,
    ) -> Result<WriteTarget> {
        let row = sqlx::query(concat!(
            "SELECT b.id AS target_bucket_id, b.created_at AS target_bucket_created_at, \
                 b.overwrite_mode, ",
            file_columns!(),
            " FROM buckets b \
             LEFT JOIN objects o ON o.bucket_id = b.id AND o.object_key = $3 \
             LEFT JOIN files f ON f.file_id = o.file_id AND f.bucket_id = b.id \
             WHERE b.tenant_id = $1 AND b.name = $2"
        ))
        .bind(tenant_id)
        .bind(bucket)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(WriteTarget::default());
        };
        let found = Bucket {
            id: row.try_get("target_bucket_id")?,
            tenant_id: tenant_id.to_string(),
            name: bucket.to_string(),
            created_at: row.try_get("target_bucket_created_at")?,
        };
        let mode = mode_from_db(&row.try_get::<String, _>("overwrite_mode")?)?;
        let has_file = row.try_get::<Option<String>, _>("file_id")?.is_some();
        Ok(WriteTarget {
            bucket: Some((found, mode)),
            current: has_file.then(|| file_from_row(&row)).transpose()?,
        })
    }

    /// Every bucket of the tenant with its overwrite mode, by name.
    pub async fn bucket_overwrite_modes(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<(String, OverwriteMode)>> {
        sqlx::query("SELECT name, overwrite_mode FROM buckets WHERE tenant_id = $1 ORDER BY name")
            .bind(tenant_id)
            .fetch_rows(&self.pool, |row| {
                Ok((
                    row.try_get("name")?,
                    mode_from_db(&row.try_get::<String, _>("overwrite_mode")?)?,
                ))
            })
            .await
    }

    /// Sets the bucket's overwrite mode, creating the bucket when it does not exist
    /// (as a first upload would), so a bucket can be prepared before its first sync.
    pub async fn set_bucket_overwrite_mode(
        &self,
        tenant_id: &str,
        bucket: &str,
        mode: OverwriteMode,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO buckets (tenant_id, name, created_at, overwrite_mode) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, name) DO UPDATE SET overwrite_mode = excluded.overwrite_mode",
        )
        .bind(tenant_id)
        .bind(bucket)
        .bind(now_millis())
        .bind(mode.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes the tenant's bucket if it holds no object and no upload in progress
    /// (a registration still `pending` or `uploading`), in one transaction, so an
    /// upload completing meanwhile either lands first (and the bucket is not empty)
    /// or finds the bucket gone. Rows of cancelled and failed uploads in it go with
    /// it (their history ends with the bucket); their remaining blobs are queued for
    /// deletion. S3 multipart uploads, spooled on disk, are the caller's to check.
    pub async fn delete_empty_bucket(
        &self,
        tenant_id: &str,
        bucket: &str,
    ) -> Result<BucketDeletion> {
        let mut tx = self.begin_write().await?;
        let found = sqlx::query("SELECT id FROM buckets WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id)
            .bind(bucket)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(found) = found else {
            return Ok(BucketDeletion::NotFound);
        };
        let bucket_id: i64 = found.try_get("id")?;
        let holds_object = sqlx::query("SELECT 1 AS one FROM objects WHERE bucket_id = $1 LIMIT 1")
            .bind(bucket_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if holds_object {
            return Ok(BucketDeletion::NotEmpty("the bucket holds objects"));
        }
        let uploading = sqlx::query(
            "SELECT 1 AS one FROM files WHERE bucket_id = $1 \
             AND phase IN ('pending', 'uploading') LIMIT 1",
        )
        .bind(bucket_id)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        if uploading {
            return Ok(BucketDeletion::NotEmpty(
                "an upload into the bucket is in progress",
            ));
        }
        let leftover_blobs: Vec<(NodeId, BlobId)> = sqlx::query(
            "SELECT s.node_id, s.blob_id FROM shards s JOIN files f ON f.file_id = s.file_id \
             WHERE f.bucket_id = $1",
        )
        .bind(bucket_id)
        .fetch_rows(&mut *tx, |row| {
            Ok((
                parse::<NodeId>(&row.try_get::<String, _>("node_id")?, "shards.node_id")?,
                parse::<BlobId>(&row.try_get::<String, _>("blob_id")?, "shards.blob_id")?,
            ))
        })
        .await?;
        queue_deletes(&mut tx, &leftover_blobs, now_millis()).await?;
        for statement in [
            "DELETE FROM shards WHERE file_id IN (SELECT file_id FROM files WHERE bucket_id = $1)",
            "DELETE FROM inline_envelopes WHERE file_id IN (SELECT file_id FROM files WHERE bucket_id = $1)",
            "DELETE FROM file_parts WHERE file_id IN (SELECT file_id FROM files WHERE bucket_id = $1)",
            "DELETE FROM file_webhooks WHERE file_id IN (SELECT file_id FROM files WHERE bucket_id = $1)",
            "DELETE FROM compute_jobs WHERE file_id IN (SELECT file_id FROM files WHERE bucket_id = $1)",
            "DELETE FROM files WHERE bucket_id = $1",
            "DELETE FROM buckets WHERE id = $1",
        ] {
            sqlx::query(statement)
                .bind(bucket_id)
                .execute(&mut *tx)
                .await?;
        }
        // A retried Complete of an upload into the old bucket must not answer for
        // a new bucket of the same name.
        sqlx::query("DELETE FROM s3_completed_uploads WHERE tenant_id = $1 AND bucket = $2")
            .bind(tenant_id)
            .bind(bucket)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(BucketDeletion::Deleted { leftover_blobs })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use zib_proto::FileId;

    use super::*;
    use crate::{FilePhase, FileRow, ShardRow, Tenant};

    async fn open() -> (tempfile::TempDir, Store, Tenant) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("meta.db"))
            .await
            .unwrap();
        let tenant = store.create_tenant("t", "AK", "x").await.unwrap();
        (dir, store, tenant)
    }

    /// A pending file of `key` in `bucket`, created at `at`.
    async fn pending(store: &Store, tenant: &Tenant, bucket: &str, key: &str, at: i64) -> FileRow {
        let b = store.ensure_bucket(&tenant.id, bucket).await.unwrap();
        let file = FileRow {
            file_id: FileId::new_random(),
            tenant_id: tenant.id.clone(),
            bucket_id: b.id,
            bucket: b.name.clone(),
            object_key: key.into(),
            size: 100,
            ciphertext_size: 116,
            content_type: "x".into(),
            phase: FilePhase::Pending,
            cancelled_reason: None,
            wrapped_dek: vec![1],
            chunk_size: 65536,
            nonce_prefix: vec![7; 7],
            data_shards: 2,
            parity_shards: 1,
            shard_size: 1024,
            originator: NodeId::from_str("ZB-ORIG01").unwrap(),
            upload_blob_id: BlobId::new_random(),
            part_count: 1,
            part_size: 0,
            expires_at: at + 9_000,
            created_at: at,
            distributed_at: None,
        };
        store.insert_file(&file).await.unwrap();
        file
    }

    async fn distribute(store: &Store, file: &FileRow) {
        let shards: Vec<ShardRow> = (0..3u8)
            .map(|i| ShardRow {
                file_id: file.file_id,
                segment: 0,
                index: i,
                node_id: NodeId::from_str("ZB-NODE01").unwrap(),
                blob_id: BlobId::new_random(),
                size: 58,
                blake3: vec![i; 32],
            })
            .collect();
        store
            .complete_distribution(file.file_id, &shards, 2_000, "superseded")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn only_an_empty_bucket_is_deleted_and_its_leftovers_go_with_it() {
        let (_dir, store, tenant) = open().await;
        let other = store.create_tenant("o", "AK2", "y").await.unwrap();
        assert_eq!(
            store.delete_empty_bucket(&tenant.id, "none").await.unwrap(),
            BucketDeletion::NotFound
        );

        let first = pending(&store, &tenant, "b", "k", 1_000).await;
        assert!(matches!(
            store.delete_empty_bucket(&tenant.id, "b").await.unwrap(),
            BucketDeletion::NotEmpty(_)
        ));
        distribute(&store, &first).await;
        // A re-upload supersedes the first file: it stays as a cancelled row.
        let second = pending(&store, &tenant, "b", "k", 1_500).await;
        distribute(&store, &second).await;
        assert!(matches!(
            store.delete_empty_bucket(&tenant.id, "b").await.unwrap(),
            BucketDeletion::NotEmpty("the bucket holds objects")
        ));
        assert_eq!(
            store.delete_empty_bucket(&other.id, "b").await.unwrap(),
            BucketDeletion::NotFound
        );

        store
            .delete_file(&tenant.id, second.file_id, 3_000)
            .await
            .unwrap();
        let BucketDeletion::Deleted { leftover_blobs } =
            store.delete_empty_bucket(&tenant.id, "b").await.unwrap()
        else {
            panic!("the emptied bucket was not deleted");
        };
        assert_eq!(leftover_blobs.len(), 3, "the superseded file's shards");
        assert!(store.bucket(&tenant.id, "b").await.unwrap().is_none());
        assert!(store
            .file_for_tenant(&tenant.id, first.file_id)
            .await
            .unwrap()
            .is_none());
        // The name can be used again, as a new bucket.
        store.ensure_bucket(&tenant.id, "b").await.unwrap();
        assert_eq!(
            store.bucket_overwrite_mode(&tenant.id, "b").await.unwrap(),
            Some(OverwriteMode::Conflict)
        );
    }

    #[tokio::test]
    async fn a_write_target_is_the_bucket_its_mode_and_that_key_of_that_tenant() {
        let (_dir, store, tenant) = open().await;
        let nothing = store.write_target(&tenant.id, "w", "k").await.unwrap();
        assert!(nothing.bucket.is_none() && nothing.current.is_none());

        let file = pending(&store, &tenant, "w", "k", 1_000).await;
        distribute(&store, &file).await;
        store
            .set_bucket_overwrite_mode(&tenant.id, "w", OverwriteMode::Supersede)
            .await
            .unwrap();
        let found = store.write_target(&tenant.id, "w", "k").await.unwrap();
        let (bucket, mode) = found.bucket.unwrap();
        assert_eq!(
            (bucket.id, mode),
            (file.bucket_id, OverwriteMode::Supersede)
        );
        assert_eq!(
            (bucket.tenant_id.as_str(), bucket.name.as_str()),
            (tenant.id.as_str(), "w")
        );
        let current = found.current.unwrap();
        assert_eq!(current, store.file(file.file_id).await.unwrap().unwrap());

        // Another key of the bucket has no file; another tenant's "w" is not this one.
        let other_key = store.write_target(&tenant.id, "w", "k2").await.unwrap();
        assert!(other_key.bucket.is_some() && other_key.current.is_none());
        let stranger = store.create_tenant("u", "AK2", "y").await.unwrap();
        let theirs = store.write_target(&stranger.id, "w", "k").await.unwrap();
        assert!(theirs.bucket.is_none() && theirs.current.is_none());
    }

    #[tokio::test]
    async fn the_overwrite_mode_is_per_bucket_and_creates_the_bucket() {
        let (_dir, store, tenant) = open().await;
        assert_eq!(
            store.bucket_overwrite_mode(&tenant.id, "s").await.unwrap(),
            None
        );
        store
            .set_bucket_overwrite_mode(&tenant.id, "s", OverwriteMode::Supersede)
            .await
            .unwrap();
        store.ensure_bucket(&tenant.id, "c").await.unwrap();
        assert_eq!(
            store.bucket_overwrite_modes(&tenant.id).await.unwrap(),
            vec![
                ("c".to_string(), OverwriteMode::Conflict),
                ("s".to_string(), OverwriteMode::Supersede)
            ]
        );
        store
            .set_bucket_overwrite_mode(&tenant.id, "s", OverwriteMode::Conflict)
            .await
            .unwrap();
        assert_eq!(
            store.bucket_overwrite_mode(&tenant.id, "s").await.unwrap(),
            Some(OverwriteMode::Conflict)
        );
    }
}
