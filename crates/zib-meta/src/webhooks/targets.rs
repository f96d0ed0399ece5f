//! Where a tenant's events go by default, and an upload's own target
//! (`pipeline.webhook_url`), which beats the default for that file's events.

use sqlx::Row;
use zib_proto::FileId;

use crate::engine::{DbRow, FetchRows};
use crate::{Result, Store};

/// The tenant's default target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantWebhook {
    pub tenant_id: String,
    pub url: Option<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_valid_until: Option<i64>,
    pub updated_at: i64,
}

fn tenant_webhook_from_row(row: &DbRow) -> Result<TenantWebhook> {
    Ok(TenantWebhook {
        tenant_id: row.try_get("tenant_id")?,
        url: row.try_get("url")?,
        secret: row.try_get("secret")?,
        previous_secret: row.try_get("previous_secret")?,
        previous_valid_until: row.try_get("previous_valid_until")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Records an upload's own target (`pipeline.webhook_url`), which beats the
    /// tenant default for that file's events. A `None` secret signs with the
    /// tenant's secrets.
    pub async fn set_file_webhook(
        &self,
        file_id: FileId,
        url: &str,
        secret: Option<&str>,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO file_webhooks (file_id, url, secret, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (file_id) DO UPDATE SET url = excluded.url, secret = excluded.secret",
        )
        .bind(file_id.to_string())
        .bind(url)
        .bind(secret)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn tenant_webhook(&self, tenant_id: &str) -> Result<Option<TenantWebhook>> {
        sqlx::query("SELECT * FROM tenant_webhooks WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_row(&self.pool, tenant_webhook_from_row)
            .await
    }

    /// Sets (or clears, with `None`) the tenant's default URL. The first call stores
    /// `initial_secret`; later calls keep the secret.
    pub async fn set_tenant_webhook_url(
        &self,
        tenant_id: &str,
        url: Option<&str>,
        initial_secret: &str,
        now: i64,
    ) -> Result<TenantWebhook> {
        let row = sqlx::query(
            "INSERT INTO tenant_webhooks (tenant_id, url, secret, updated_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id) DO UPDATE SET url = excluded.url, \
                 updated_at = excluded.updated_at \
             RETURNING *",
        )
        .bind(tenant_id)
        .bind(url)
        .bind(initial_secret)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        tenant_webhook_from_row(&row)
    }

    /// Replaces the tenant's secret; the one it replaces keeps signing (as a second
    /// signature) until `previous_valid_until`.
    pub async fn rotate_tenant_webhook_secret(
        &self,
        tenant_id: &str,
        new_secret: &str,
        previous_valid_until: i64,
        now: i64,
    ) -> Result<TenantWebhook> {
        let row = sqlx::query(
            "INSERT INTO tenant_webhooks (tenant_id, url, secret, updated_at) \
             VALUES ($1, NULL, $2, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET secret = excluded.secret, \
                 previous_secret = tenant_webhooks.secret, previous_valid_until = $4, \
                 updated_at = excluded.updated_at \
             RETURNING *",
        )
        .bind(tenant_id)
        .bind(new_secret)
        .bind(now)
        .bind(previous_valid_until)
        .fetch_one(&self.pool)
        .await?;
        tenant_webhook_from_row(&row)
    }
}
