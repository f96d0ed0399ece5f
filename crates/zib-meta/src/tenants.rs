//! Tenants and their buckets.

use rand::distributions::Alphanumeric;
use rand::Rng;
use sqlx::Row;

use crate::convert::{conflict_on_unique, from_db};
use crate::engine::{DbRow, FetchRows};
use crate::{now_millis, Bucket, BucketStats, Result, Store, Tenant};

/// `ten_` + 20 alphanumerics: about 119 random bits, and a pasted id says what it is.
fn new_tenant_id() -> String {
    let tail: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(20)
        .map(char::from)
        .collect();
    format!("ten_{tail}")
}

pub(crate) fn tenant_from_row(row: &DbRow) -> Result<Tenant> {
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        access_key: row.try_get("access_key")?,
        secret_hash: row.try_get("secret_hash")?,
        created_at: row.try_get("created_at")?,
    })
}

fn bucket_from_row(row: &DbRow) -> Result<Bucket> {
    Ok(Bucket {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Fails with [`crate::MetaError::Conflict`] when the access key is taken.
    pub async fn create_tenant(
        &self,
        name: &str,
        access_key: &str,
        secret_hash: &str,
    ) -> Result<Tenant> {
        let tenant = Tenant {
            id: new_tenant_id(),
            name: name.to_owned(),
            access_key: access_key.to_owned(),
            secret_hash: secret_hash.to_owned(),
            created_at: now_millis(),
        };
        sqlx::query(
            "INSERT INTO tenants (id, name, access_key, secret_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&tenant.id)
        .bind(&tenant.name)
        .bind(&tenant.access_key)
        .bind(&tenant.secret_hash)
        .bind(tenant.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_on_unique(e, "tenant access key already exists"))?;
        Ok(tenant)
    }

    pub async fn tenant_by_access_key(&self, access_key: &str) -> Result<Option<Tenant>> {
        sqlx::query(
            "SELECT id, name, access_key, secret_hash, created_at FROM tenants \
             WHERE access_key = $1",
        )
        .bind(access_key)
        .fetch_row(&self.pool, tenant_from_row)
        .await
    }

    pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        sqlx::query(
            "SELECT id, name, access_key, secret_hash, created_at FROM tenants \
             ORDER BY created_at, id",
        )
        .fetch_rows(&self.pool, tenant_from_row)
        .await
    }

    /// Returns the tenant's bucket, creating it on first use.
    pub async fn ensure_bucket(&self, tenant_id: &str, name: &str) -> Result<Bucket> {
        // Read first: nearly every upload goes to a bucket that exists, and a read
        // takes no write lock.
        if let Some(bucket) = self.bucket(tenant_id, name).await? {
            return Ok(bucket);
        }
        sqlx::query(
            "INSERT INTO buckets (tenant_id, name, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id, name) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        match self.bucket(tenant_id, name).await? {
            Some(bucket) => Ok(bucket),
            // Deleted between the two statements (a concurrent bucket delete).
            None => Err(sqlx::Error::RowNotFound.into()),
        }
    }

    pub async fn bucket(&self, tenant_id: &str, name: &str) -> Result<Option<Bucket>> {
        sqlx::query(
            "SELECT id, tenant_id, name, created_at FROM buckets \
             WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant_id)
        .bind(name)
        .fetch_row(&self.pool, bucket_from_row)
        .await
    }

    /// Every bucket of the tenant by name, empty ones with zeros. Counts and bytes
    /// (plaintext) cover the current file of each key when it is readable.
    pub async fn list_bucket_stats(&self, tenant_id: &str) -> Result<Vec<BucketStats>> {
        let rows = sqlx::query(
            "SELECT b.name, b.created_at, \
                    COUNT(f.file_id) AS object_count, \
                    CAST(COALESCE(SUM(f.size), 0) AS BIGINT) AS total_bytes \
             FROM buckets b \
             LEFT JOIN objects o ON o.bucket_id = b.id \
             LEFT JOIN files f ON f.file_id = o.file_id \
                               AND f.phase IN ('distributed', 'safe') \
             WHERE b.tenant_id = $1 \
             GROUP BY b.id, b.name, b.created_at \
             ORDER BY b.name",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(BucketStats {
                    name: row.try_get("name")?,
                    object_count: from_db(row.try_get("object_count")?, "object_count")?,
                    total_bytes: from_db(row.try_get("total_bytes")?, "total_bytes")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }
}
