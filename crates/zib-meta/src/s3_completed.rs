//! Completed S3 multipart uploads, kept so a client that retries
//! CompleteMultipartUpload after a lost answer gets the same result instead of
//! `NoSuchUpload`, and an in-place metadata update of an object (S3's copy onto itself).

use sqlx::Row;
use zib_proto::FileId;

use crate::convert::parse;
use crate::{Result, Store};

/// What a CompleteMultipartUpload answered; only the same tenant, bucket and key
/// may read it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedUpload {
    pub upload_id: String,
    pub tenant_id: String,
    pub bucket: String,
    pub key: String,
    pub file_id: FileId,
    /// The object's ETag (hex MD5 of its plaintext), without quotes.
    pub etag: String,
    pub completed_at: i64,
}

impl Store {
    /// Records a completed upload; a second record of the same id keeps the first.
    pub async fn record_completed_upload(&self, done: &CompletedUpload) -> Result<()> {
        sqlx::query(
            "INSERT INTO s3_completed_uploads \
                 (upload_id, tenant_id, bucket, object_key, file_id, etag, completed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (upload_id) DO NOTHING",
        )
        .bind(&done.upload_id)
        .bind(&done.tenant_id)
        .bind(&done.bucket)
        .bind(&done.key)
        .bind(done.file_id.to_string())
        .bind(&done.etag)
        .bind(done.completed_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The completed upload of this id for this tenant, bucket and key; `None` for
    /// an unknown id and for another asker alike.
    pub async fn completed_upload(
        &self,
        upload_id: &str,
        tenant_id: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Option<CompletedUpload>> {
        let row = sqlx::query(
            "SELECT file_id, etag, completed_at FROM s3_completed_uploads \
             WHERE upload_id = $1 AND tenant_id = $2 AND bucket = $3 AND object_key = $4",
        )
        .bind(upload_id)
        .bind(tenant_id)
        .bind(bucket)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let file_id: String = row.try_get("file_id")?;
        Ok(Some(CompletedUpload {
            upload_id: upload_id.to_string(),
            tenant_id: tenant_id.to_string(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            file_id: parse(&file_id, "s3_completed_uploads.file_id")?,
            etag: row.try_get("etag")?,
            completed_at: row.try_get("completed_at")?,
        }))
    }

    /// Forgets uploads completed before `before` (unix ms); returns how many.
    pub async fn expire_completed_uploads(&self, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM s3_completed_uploads WHERE completed_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Changes a file's content type in place (S3's copy of an object onto itself
    /// with `x-amz-metadata-directive: REPLACE`).
    pub async fn set_content_type(&self, file_id: FileId, content_type: &str) -> Result<()> {
        sqlx::query("UPDATE files SET content_type = $1 WHERE file_id = $2")
            .bind(content_type)
            .bind(file_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_sqlite(&dir.path().join("meta.db"))
            .await
            .expect("open store");
        (dir, store)
    }

    #[tokio::test]
    async fn a_completed_upload_is_found_by_its_owner_only_until_it_expires() {
        let (_dir, store) = store().await;
        let tenant = store
            .create_tenant("t", "AK1", "hash")
            .await
            .expect("tenant");
        let done = CompletedUpload {
            upload_id: "u1".into(),
            tenant_id: tenant.id.clone(),
            bucket: "b".into(),
            key: "k".into(),
            file_id: FileId(uuid::Uuid::new_v4()),
            etag: "abc".into(),
            completed_at: 1_000,
        };
        store.record_completed_upload(&done).await.expect("record");
        // A second record (a racing retry) keeps the first.
        let mut again = done.clone();
        again.etag = "other".into();
        store.record_completed_upload(&again).await.expect("again");
        let found = store.completed_upload("u1", &tenant.id, "b", "k").await;
        assert_eq!(found.expect("read"), Some(done.clone()));
        for (t, b, k) in [("ten_other", "b", "k"), (tenant.id.as_str(), "x", "k")] {
            let other = store.completed_upload("u1", t, b, k).await.expect("read");
            assert_eq!(other, None);
        }
        let other_key = store.completed_upload("u1", &tenant.id, "b", "k2").await;
        assert_eq!(other_key.expect("read"), None);
        assert_eq!(
            store.expire_completed_uploads(1_000).await.expect("keep"),
            0
        );
        assert_eq!(
            store.expire_completed_uploads(1_001).await.expect("drop"),
            1
        );
        let gone = store.completed_upload("u1", &tenant.id, "b", "k").await;
        assert_eq!(gone.expect("read"), None);
    }
}
