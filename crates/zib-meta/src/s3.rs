//! Queries of the S3-compatible surface: tenants' sealed S3 secrets, plaintext
//! digests of gateway uploads, and bounded pages of a bucket's current objects.

use sqlx::Row;
use zib_proto::FileId;

use crate::convert::{from_db, parse};
use crate::tenants::tenant_from_row;
use crate::{Result, Store, Tenant};

/// One current, readable object of a bucket, with what an S3 listing shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3ObjectEntry {
    pub key: String,
    pub file_id: FileId,
    /// Plaintext bytes.
    pub size: u64,
    pub content_type: String,
    /// When the file became current (distributed), else when it was registered.
    pub modified_at: i64,
    /// Hex MD5 of the plaintext when the S3 gateway uploaded it.
    pub plaintext_md5: Option<String>,
}

/// Where a listing page starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListFrom {
    /// Keys strictly after this one.
    After(String),
    /// Keys at or after this one.
    AtOrAfter(String),
}

/// A listing page's query; `$cmp` compares keys with the start bound (`$4`).
macro_rules! list_page_sql {
    ($cmp:literal) => {
        concat!(
            "SELECT o.object_key, f.file_id, f.size, f.content_type, f.created_at, \
                    f.distributed_at, f.plaintext_md5 \
             FROM objects o \
             JOIN buckets b ON b.id = o.bucket_id \
             JOIN files f ON f.file_id = o.file_id \
             WHERE b.tenant_id = $1 AND b.name = $2 \
               AND o.object_key >= $3 AND substr(o.object_key, 1, length($3)) = $3 \
               AND o.object_key ",
            $cmp,
            " $4 \
               AND f.phase IN ('distributed', 'safe') \
             ORDER BY o.object_key LIMIT $5"
        )
    };
}

impl Store {
    /// Stores the tenant's sealed S3 secret (replacing any previous one).
    pub async fn set_tenant_s3_secret(&self, tenant_id: &str, sealed: &[u8]) -> Result<()> {
        sqlx::query("UPDATE tenants SET s3_secret_sealed = $1 WHERE id = $2")
            .bind(sealed)
            .bind(tenant_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The tenant and sealed S3 secret of an access key; `None` for an unknown key,
    /// `Some((tenant, None))` for a tenant whose secret the server has not sealed yet.
    pub async fn tenant_s3_secret(
        &self,
        access_key: &str,
    ) -> Result<Option<(Tenant, Option<Vec<u8>>)>> {
        let row = sqlx::query(
            "SELECT id, name, access_key, secret_hash, created_at, s3_secret_sealed \
             FROM tenants WHERE access_key = $1",
        )
        .bind(access_key)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some((
                tenant_from_row(&row)?,
                row.try_get("s3_secret_sealed")?,
            ))),
        }
    }

    /// Whether the tenant's S3 secret is sealed already (checked before re-sealing).
    pub async fn has_tenant_s3_secret(&self, tenant_id: &str) -> Result<bool> {
        let row =
            sqlx::query("SELECT s3_secret_sealed IS NOT NULL AS sealed FROM tenants WHERE id = $1")
                .bind(tenant_id)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            None => Ok(false),
            Some(row) => Ok(row.try_get::<bool, _>("sealed")?),
        }
    }

    pub async fn plaintext_md5(&self, file_id: FileId) -> Result<Option<String>> {
        let row = sqlx::query("SELECT plaintext_md5 FROM files WHERE file_id = $1")
            .bind(file_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(row.try_get("plaintext_md5")?),
        }
    }

    /// Up to `limit` current, readable objects of the bucket whose key starts with
    /// `prefix`, from `from`, by key (bytewise, as S3 orders them). Seeks on the
    /// objects primary key, so a page costs its size, not the bucket's.
    pub async fn list_s3_objects_page(
        &self,
        tenant_id: &str,
        bucket: &str,
        prefix: &str,
        from: &ListFrom,
        limit: u32,
    ) -> Result<Vec<S3ObjectEntry>> {
        let (bound, inclusive) = match from {
            ListFrom::After(k) => (k.as_str(), false),
            ListFrom::AtOrAfter(k) => (k.as_str(), true),
        };
        // The seek starts at the larger of the prefix and the bound.
        let sql = if inclusive {
            list_page_sql!(">=")
        } else {
            list_page_sql!(">")
        };
        let rows = sqlx::query(sql)
            .bind(tenant_id)
            .bind(bucket)
            .bind(prefix)
            .bind(bound)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let file_id: String = row.try_get("file_id")?;
                let created_at: i64 = row.try_get("created_at")?;
                let distributed_at: Option<i64> = row.try_get("distributed_at")?;
                Ok(S3ObjectEntry {
                    key: row.try_get("object_key")?,
                    file_id: parse(&file_id, "files.file_id")?,
                    size: from_db(row.try_get("size")?, "files.size")?,
                    content_type: row.try_get("content_type")?,
                    modified_at: distributed_at.unwrap_or(created_at),
                    plaintext_md5: row.try_get("plaintext_md5")?,
                })
            })
            .collect()
    }
}
