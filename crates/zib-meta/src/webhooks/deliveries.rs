//! Deliveries: one per (event, target), pending until an attempt succeeds or the
//! retries run out. A dispatcher leases due ones, so no two send the same delivery
//! at once, and resolves where each goes at send time.

use sqlx::Row;
use zib_proto::events::WEBHOOK_TEST;

use super::event_rows::{event_columns, event_from_row};
use super::{corrupt, prefixed_id, TenantWebhook, WebhookEvent};
use crate::convert::from_db;
use crate::engine::{DbConn, DbRow, FetchRows};
use crate::{Result, Store};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryTarget {
    /// The upload's own `pipeline.webhook_url`.
    Request,
    /// The tenant default; URL and secrets are read at send time.
    Tenant,
    /// A managed endpoint; URL and secret are read at send time.
    Endpoint,
}

impl DeliveryTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryTarget::Request => "request",
            DeliveryTarget::Tenant => "tenant",
            DeliveryTarget::Endpoint => "endpoint",
        }
    }
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "request" => DeliveryTarget::Request,
            "tenant" => DeliveryTarget::Tenant,
            "endpoint" => DeliveryTarget::Endpoint,
            other => return Err(corrupt("webhook_deliveries.target", other)),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "pending" => DeliveryStatus::Pending,
            "succeeded" => DeliveryStatus::Succeeded,
            "failed" => DeliveryStatus::Failed,
            other => return Err(corrupt("webhook_deliveries.status", other)),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// `dlv_` + 32 hex.
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub tenant_id: String,
    pub target: DeliveryTarget,
    pub endpoint_id: Option<String>,
    pub url: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// Attempts since the last manual redelivery: they pick the backoff step.
    pub round_attempts: u32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A delivery a dispatcher holds the lease of.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedDelivery {
    pub delivery: WebhookDelivery,
    pub event: WebhookEvent,
    /// Proves the lease when the attempt is recorded.
    pub lease_token: String,
}

/// Where a delivery goes now, and the secrets that sign it (current first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedTarget {
    pub url: String,
    pub secrets: Vec<String>,
}

/// Columns of `webhook_deliveries d JOIN webhook_events e`, for [`delivery_from_row`].
macro_rules! delivery_columns {
    () => {
        "d.id, d.event_id, e.event_type, d.tenant_id, d.target, d.endpoint_id, d.url, \
         d.status, d.attempts, d.round_attempts, d.next_attempt_at, d.last_error, \
         d.created_at, d.updated_at"
    };
}

fn delivery_from_row(row: &DbRow) -> Result<WebhookDelivery> {
    Ok(WebhookDelivery {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        tenant_id: row.try_get("tenant_id")?,
        target: DeliveryTarget::parse(&row.try_get::<String, _>("target")?)?,
        endpoint_id: row.try_get("endpoint_id")?,
        url: row.try_get("url")?,
        status: DeliveryStatus::parse(&row.try_get::<String, _>("status")?)?,
        attempts: from_db(row.try_get("attempts")?, "webhook_deliveries.attempts")?,
        round_attempts: from_db(
            row.try_get("round_attempts")?,
            "webhook_deliveries.round_attempts",
        )?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) async fn insert_delivery(
    conn: &mut DbConn,
    event: &WebhookEvent,
    target: DeliveryTarget,
    endpoint_id: Option<&str>,
    url: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, event_id, tenant_id, target, endpoint_id, url, \
             status, attempts, round_attempts, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, 0, $7, $7, $7)",
    )
    .bind(prefixed_id("dlv_"))
    .bind(&event.id)
    .bind(&event.tenant_id)
    .bind(target.as_str())
    .bind(endpoint_id)
    .bind(url)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// Newest first.
    pub async fn list_endpoint_deliveries(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>> {
        sqlx::query(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
             WHERE d.endpoint_id = $1 AND d.tenant_id = $2 \
             ORDER BY d.created_at DESC, d.id DESC LIMIT $3"
        ))
        .bind(endpoint_id)
        .bind(tenant_id)
        .bind(i64::from(limit))
        .fetch_rows(&self.pool, delivery_from_row)
        .await
    }

    pub async fn list_event_deliveries(
        &self,
        tenant_id: &str,
        event_id: &str,
    ) -> Result<Vec<WebhookDelivery>> {
        sqlx::query(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
             WHERE d.event_id = $1 AND d.tenant_id = $2 ORDER BY d.id"
        ))
        .bind(event_id)
        .bind(tenant_id)
        .fetch_rows(&self.pool, delivery_from_row)
        .await
    }

    /// Leases up to `limit` due deliveries until `now + lease_ms`. One statement
    /// marks them, so two dispatchers (or two servers) never hold the same one.
    /// A job's events go to each target in order: a delivery waits while an earlier
    /// event of the same job is still pending for the same target (a lifecycle
    /// receiver never sees `complete` before `sharding`); a delivery that gave up
    /// (`failed`) no longer holds the ones after it.
    pub async fn claim_webhook_deliveries(
        &self,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut tx = self.begin_write().await?;
        let claimed = sqlx::query(
            "UPDATE webhook_deliveries SET lease_until = $1, lease_token = $2 \
             WHERE id IN (SELECT d.id FROM webhook_deliveries d \
                          JOIN webhook_events e ON e.id = d.event_id \
                          WHERE d.status = 'pending' AND d.next_attempt_at <= $3 \
                            AND (d.lease_until IS NULL OR d.lease_until <= $3) \
                            AND (e.job_id IS NULL OR NOT EXISTS ( \
                                SELECT 1 FROM webhook_deliveries p \
                                JOIN webhook_events pe ON pe.id = p.event_id \
                                WHERE p.status = 'pending' AND pe.job_id = e.job_id \
                                  AND pe.id < e.id AND p.target = d.target \
                                  AND COALESCE(p.endpoint_id, '') = COALESCE(d.endpoint_id, ''))) \
                          ORDER BY d.next_attempt_at LIMIT $4)",
        )
        .bind(now + lease_ms)
        .bind(&token)
        .bind(now)
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            tx.commit().await?;
            return Ok(vec![]);
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            delivery_columns!(),
            ", ",
            event_columns!(),
            " FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
             WHERE d.lease_token = $1 ORDER BY d.next_attempt_at"
        ))
        .bind(&token)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                Ok(ClaimedDelivery {
                    delivery: delivery_from_row(row)?,
                    event: event_from_row(row)?,
                    lease_token: token.clone(),
                })
            })
            .collect()
    }

    /// The URL and secrets a delivery goes out with now: a request target's own, the
    /// tenant's current one (with the previous secret while its overlap lasts), an
    /// endpoint's. `Err(reason)` when there is nowhere to send it any more.
    pub async fn resolve_webhook_target(
        &self,
        claimed: &ClaimedDelivery,
        now: i64,
    ) -> Result<std::result::Result<ResolvedTarget, String>> {
        let d = &claimed.delivery;
        let tenant_secrets = |t: Option<TenantWebhook>| -> Vec<String> {
            let Some(t) = t else { return vec![] };
            let mut secrets = vec![t.secret];
            if let (Some(prev), Some(until)) = (t.previous_secret, t.previous_valid_until) {
                if now < until {
                    secrets.push(prev);
                }
            }
            secrets
        };
        Ok(match d.target {
            DeliveryTarget::Request => {
                // The job's own target beats the file's, as in `fan_out`.
                let job_row = match &claimed.event.job_id {
                    Some(j) => {
                        sqlx::query("SELECT url, secret FROM job_webhooks WHERE job_id = $1")
                            .bind(j)
                            .fetch_optional(&self.pool)
                            .await?
                    }
                    None => None,
                };
                let row = match (job_row, &claimed.event.file_id) {
                    (Some(r), _) => Some(r),
                    (None, Some(f)) => {
                        sqlx::query("SELECT url, secret FROM file_webhooks WHERE file_id = $1")
                            .bind(f)
                            .fetch_optional(&self.pool)
                            .await?
                    }
                    (None, None) => None,
                };
                let (url, secret): (String, Option<String>) = match row {
                    Some(r) => (r.try_get("url")?, r.try_get("secret")?),
                    None => (d.url.clone(), None),
                };
                let secrets = match secret {
                    Some(s) => vec![s],
                    None => tenant_secrets(self.tenant_webhook(&d.tenant_id).await?),
                };
                Ok(ResolvedTarget { url, secrets })
            }
            DeliveryTarget::Tenant => match self.tenant_webhook(&d.tenant_id).await? {
                Some(t) => match t.url.clone() {
                    Some(url) => Ok(ResolvedTarget {
                        url,
                        secrets: tenant_secrets(Some(t)),
                    }),
                    None => Err("the tenant webhook URL has been cleared".into()),
                },
                None => Err("the tenant has no webhook configured".into()),
            },
            DeliveryTarget::Endpoint => {
                let ep = match &d.endpoint_id {
                    Some(id) => self.webhook_endpoint(&d.tenant_id, id).await?,
                    None => None,
                };
                match ep {
                    Some(ep) if ep.enabled || claimed.event.event_type == WEBHOOK_TEST => {
                        Ok(ResolvedTarget {
                            url: ep.url,
                            secrets: vec![ep.secret],
                        })
                    }
                    Some(_) => Err("endpoint disabled".into()),
                    None => Err("endpoint deleted".into()),
                }
            }
        })
    }

    /// How many deliveries wait to be sent (for status lines and tests).
    pub async fn pending_webhook_deliveries(&self) -> Result<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'")
                .fetch_one(&self.pool)
                .await?;
        from_db(n, "pending deliveries")
    }
}
