//! Managed endpoints: a URL, its own signing secret, and the event types it wants.

use serde_json::Value;
use sqlx::Row;
use zib_proto::peer_events::WebhookFormat;

use super::{json_text, prefixed_id};
use crate::engine::{DbConn, DbRow, FetchRows};
use crate::{MetaError, Result, Store};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// `ep_` + 32 hex.
    pub id: String,
    pub tenant_id: String,
    pub url: String,
    pub description: String,
    /// `None`: every event type.
    pub event_types: Option<Vec<String>>,
    pub enabled: bool,
    pub secret: String,
    /// The payload vocabulary it receives.
    pub format: WebhookFormat,
    pub created_at: i64,
    pub updated_at: i64,
}

impl WebhookEndpoint {
    pub fn wants(&self, event_type: &str) -> bool {
        match &self.event_types {
            None => true,
            Some(types) => types.iter().any(|t| t == event_type || t == "*"),
        }
    }
}

/// A new endpoint's settings.
#[derive(Clone, Debug)]
pub struct NewEndpoint {
    pub url: String,
    pub description: String,
    /// `None`: every event type.
    pub event_types: Option<Vec<String>>,
    pub enabled: bool,
    pub secret: String,
    pub format: WebhookFormat,
}

/// Changes to an endpoint; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    /// `Some(None)` subscribes to every event type.
    pub event_types: Option<Option<Vec<String>>>,
    pub enabled: Option<bool>,
    pub format: Option<WebhookFormat>,
    /// A new signing secret (a full update that gives one).
    pub secret: Option<String>,
}

fn event_types_text(types: &Option<Vec<String>>) -> Result<Option<String>> {
    types
        .as_ref()
        .map(|t| json_text(&Value::from(t.clone()), "webhook_endpoints.event_types"))
        .transpose()
}

pub(super) fn endpoint_from_row(row: &DbRow) -> Result<WebhookEndpoint> {
    let types: Option<String> = row.try_get("event_types")?;
    let event_types = types
        .map(|t| {
            serde_json::from_str::<Vec<String>>(&t).map_err(|e| MetaError::Corrupt {
                what: "webhook_endpoints.event_types",
                detail: e.to_string(),
            })
        })
        .transpose()?;
    Ok(WebhookEndpoint {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        event_types,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        secret: row.try_get("secret")?,
        format: {
            let text: String = row.try_get("format")?;
            WebhookFormat::parse(&text)
                .ok_or_else(|| super::corrupt("webhook_endpoints.format", &text))?
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The tenant's endpoint `id` (`None` for a missing id and another tenant's alike),
/// read on `conn`: a pooled connection, or the caller's transaction.
pub(super) async fn find_endpoint(
    conn: &mut DbConn,
    tenant_id: &str,
    id: &str,
) -> Result<Option<WebhookEndpoint>> {
    sqlx::query("SELECT * FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant_id)
        .fetch_row(&mut *conn, endpoint_from_row)
        .await
}

impl Store {
    pub async fn create_webhook_endpoint(
        &self,
        tenant_id: &str,
        new: NewEndpoint,
        now: i64,
    ) -> Result<WebhookEndpoint> {
        let endpoint = WebhookEndpoint {
            id: prefixed_id("ep_"),
            tenant_id: tenant_id.to_string(),
            url: new.url,
            description: new.description,
            event_types: new.event_types,
            enabled: new.enabled,
            secret: new.secret,
            format: new.format,
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, tenant_id, url, description, event_types, \
                 enabled, secret, format, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(&endpoint.id)
        .bind(&endpoint.tenant_id)
        .bind(&endpoint.url)
        .bind(&endpoint.description)
        .bind(event_types_text(&endpoint.event_types)?)
        .bind(i64::from(endpoint.enabled))
        .bind(&endpoint.secret)
        .bind(endpoint.format.as_str())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(endpoint)
    }

    /// Oldest first.
    pub async fn list_webhook_endpoints(&self, tenant_id: &str) -> Result<Vec<WebhookEndpoint>> {
        sqlx::query("SELECT * FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id")
            .bind(tenant_id)
            .fetch_rows(&self.pool, endpoint_from_row)
            .await
    }

    /// `None` for a missing id and another tenant's alike.
    pub async fn webhook_endpoint(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<WebhookEndpoint>> {
        let mut conn = self.pool.acquire().await?;
        find_endpoint(&mut conn, tenant_id, id).await
    }

    pub async fn update_webhook_endpoint(
        &self,
        tenant_id: &str,
        id: &str,
        patch: EndpointPatch,
        now: i64,
    ) -> Result<Option<WebhookEndpoint>> {
        let mut tx = self.begin_write().await?;
        let Some(mut ep) = find_endpoint(&mut tx, tenant_id, id).await? else {
            return Ok(None);
        };
        if let Some(url) = patch.url {
            ep.url = url;
        }
        if let Some(d) = patch.description {
            ep.description = d;
        }
        if let Some(t) = patch.event_types {
            ep.event_types = t;
        }
        if let Some(e) = patch.enabled {
            ep.enabled = e;
        }
        if let Some(f) = patch.format {
            ep.format = f;
        }
        if let Some(s) = patch.secret {
            ep.secret = s;
        }
        ep.updated_at = now;
        sqlx::query(
            "UPDATE webhook_endpoints SET url = $1, description = $2, event_types = $3, \
                 enabled = $4, format = $5, secret = $6, updated_at = $7 WHERE id = $8",
        )
        .bind(&ep.url)
        .bind(&ep.description)
        .bind(event_types_text(&ep.event_types)?)
        .bind(i64::from(ep.enabled))
        .bind(ep.format.as_str())
        .bind(&ep.secret)
        .bind(now)
        .bind(&ep.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(ep))
    }

    /// Deletes the endpoint; its pending deliveries fail with a reason (their
    /// history stays listable by event). False if there was no such endpoint.
    pub async fn delete_webhook_endpoint(
        &self,
        tenant_id: &str,
        id: &str,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let gone = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        if gone {
            sqlx::query(
                "UPDATE webhook_deliveries SET status = 'failed', \
                     last_error = 'endpoint deleted', updated_at = $1 \
                 WHERE endpoint_id = $2 AND status = 'pending'",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_filters() {
        let mut ep = WebhookEndpoint {
            id: "ep_1".into(),
            tenant_id: "t".into(),
            url: "u".into(),
            description: String::new(),
            event_types: None,
            enabled: true,
            secret: "s".into(),
            format: WebhookFormat::Zib,
            created_at: 0,
            updated_at: 0,
        };
        assert!(ep.wants("file.ready"));
        ep.event_types = Some(vec!["file.deleted".into()]);
        assert!(!ep.wants("file.ready"));
        assert!(ep.wants("file.deleted"));
    }
}
