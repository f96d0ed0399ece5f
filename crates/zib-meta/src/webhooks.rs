//! Webhooks: tenant and per-upload targets, endpoints, the event outbox, deliveries
//! with leases, and the attempt log. Events are inserted by [`enqueue_event`] inside
//! the caller's transaction, so a state change and the event reporting it commit
//! together or not at all.

use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use zib_proto::FileId;

use crate::convert::from_db;
use crate::webhook_payloads::WEBHOOK_TEST;
use crate::{MetaError, Result, Store};

/// How long a response snippet may be in the attempt log.
pub const SNIPPET_MAX_BYTES: usize = 1024;

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
}

/// Changes to an endpoint; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    /// `Some(None)` subscribes to every event type.
    pub event_types: Option<Option<Vec<String>>>,
    pub enabled: Option<bool>,
}

/// An event to put in the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct NewWebhookEvent {
    pub tenant_id: String,
    pub event_type: String,
    pub file_id: Option<FileId>,
    pub job_id: Option<String>,
    /// The body, with `event` and `timestamp` (see [`crate::webhook_payloads`]).
    pub payload: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WebhookEvent {
    /// `evt_` + 32 hex (a UUIDv7, so ids sort by time).
    pub id: String,
    pub tenant_id: String,
    pub event_type: String,
    pub file_id: Option<String>,
    pub job_id: Option<String>,
    pub payload: Value,
    pub created_at: i64,
}

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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookAttempt {
    pub id: i64,
    pub delivery_id: String,
    pub event_id: String,
    /// 1 for the first attempt of the delivery, counting across redeliveries.
    pub attempt: u32,
    pub url: String,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub response_snippet: Option<String>,
    pub error: Option<String>,
    pub attempted_at: i64,
}

/// What one send attempt saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    pub url: String,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub response_snippet: Option<String>,
    pub error: Option<String>,
}

/// What becomes of a delivery after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    Succeeded,
    RetryAt(i64),
    /// Out of attempts (or no target left): only a manual redelivery sends it again.
    Failed,
}

fn corrupt(what: &'static str, value: &str) -> MetaError {
    MetaError::Corrupt {
        what,
        detail: format!("unexpected value {value:?}"),
    }
}

fn prefixed_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

/// Cuts at a character boundary at or below `max` bytes.
pub fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn json_text(value: &Value, what: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| MetaError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn event_types_text(types: &Option<Vec<String>>) -> Result<Option<String>> {
    types
        .as_ref()
        .map(|t| json_text(&Value::from(t.clone()), "webhook_endpoints.event_types"))
        .transpose()
}

fn endpoint_from_row(row: &SqliteRow) -> Result<WebhookEndpoint> {
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
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn tenant_webhook_from_row(row: &SqliteRow) -> Result<TenantWebhook> {
    Ok(TenantWebhook {
        tenant_id: row.try_get("tenant_id")?,
        url: row.try_get("url")?,
        secret: row.try_get("secret")?,
        previous_secret: row.try_get("previous_secret")?,
        previous_valid_until: row.try_get("previous_valid_until")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Columns of `webhook_events e`, for [`event_from_row`].
macro_rules! event_columns {
    () => {
        "e.id AS event_id, e.tenant_id AS event_tenant_id, e.event_type, e.file_id, \
         e.job_id, e.payload, e.created_at AS event_created_at"
    };
}

fn event_from_row(row: &SqliteRow) -> Result<WebhookEvent> {
    let payload: String = row.try_get("payload")?;
    Ok(WebhookEvent {
        id: row.try_get("event_id")?,
        tenant_id: row.try_get("event_tenant_id")?,
        event_type: row.try_get("event_type")?,
        file_id: row.try_get("file_id")?,
        job_id: row.try_get("job_id")?,
        payload: serde_json::from_str(&payload).map_err(|e| MetaError::Corrupt {
            what: "webhook_events.payload",
            detail: e.to_string(),
        })?,
        created_at: row.try_get("event_created_at")?,
    })
}

/// Columns of `webhook_deliveries d JOIN webhook_events e`, for [`delivery_from_row`].
macro_rules! delivery_columns {
    () => {
        "d.id, d.event_id, e.event_type, d.tenant_id, d.target, d.endpoint_id, d.url, \
         d.status, d.attempts, d.round_attempts, d.next_attempt_at, d.last_error, \
         d.created_at, d.updated_at"
    };
}

fn delivery_from_row(row: &SqliteRow) -> Result<WebhookDelivery> {
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

fn attempt_from_row(row: &SqliteRow) -> Result<WebhookAttempt> {
    let code: Option<i64> = row.try_get("status_code")?;
    Ok(WebhookAttempt {
        id: row.try_get("id")?,
        delivery_id: row.try_get("delivery_id")?,
        event_id: row.try_get("event_id")?,
        attempt: from_db(row.try_get("attempt")?, "webhook_attempts.attempt")?,
        url: row.try_get("url")?,
        status_code: code
            .map(|c| from_db(c, "webhook_attempts.status_code"))
            .transpose()?,
        latency_ms: from_db(row.try_get("latency_ms")?, "webhook_attempts.latency_ms")?,
        response_snippet: row.try_get("response_snippet")?,
        error: row.try_get("error")?,
        attempted_at: row.try_get("attempted_at")?,
    })
}

async fn insert_delivery(
    conn: &mut SqliteConnection,
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

/// One delivery per current target of the event: the upload's own URL if it gave
/// one, else the tenant default; plus every enabled endpoint subscribed to it.
async fn fan_out(conn: &mut SqliteConnection, event: &WebhookEvent, now: i64) -> Result<usize> {
    let mut count = 0;
    let request_url: Option<String> = match &event.file_id {
        Some(file_id) => {
            sqlx::query_scalar("SELECT url FROM file_webhooks WHERE file_id = $1")
                .bind(file_id)
                .fetch_optional(&mut *conn)
                .await?
        }
        None => None,
    };
    if let Some(url) = request_url {
        insert_delivery(conn, event, DeliveryTarget::Request, None, &url, now).await?;
        count += 1;
    } else {
        let tenant_url: Option<String> =
            sqlx::query_scalar("SELECT url FROM tenant_webhooks WHERE tenant_id = $1")
                .bind(&event.tenant_id)
                .fetch_optional(&mut *conn)
                .await?
                .flatten();
        if let Some(url) = tenant_url {
            insert_delivery(conn, event, DeliveryTarget::Tenant, None, &url, now).await?;
            count += 1;
        }
    }
    let endpoints = sqlx::query(
        "SELECT * FROM webhook_endpoints WHERE tenant_id = $1 AND enabled = 1 ORDER BY id",
    )
    .bind(&event.tenant_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(endpoint_from_row)
    .collect::<Result<Vec<_>>>()?;
    for ep in endpoints.iter().filter(|ep| ep.wants(&event.event_type)) {
        insert_delivery(
            conn,
            event,
            DeliveryTarget::Endpoint,
            Some(&ep.id),
            &ep.url,
            now,
        )
        .await?;
        count += 1;
    }
    Ok(count)
}

async fn insert_event(
    conn: &mut SqliteConnection,
    new: NewWebhookEvent,
    now: i64,
) -> Result<WebhookEvent> {
    let event = WebhookEvent {
        id: prefixed_id("evt_"),
        tenant_id: new.tenant_id,
        event_type: new.event_type,
        file_id: new.file_id.map(|f| f.to_string()),
        job_id: new.job_id,
        payload: new.payload,
        created_at: now,
    };
    sqlx::query(
        "INSERT INTO webhook_events (id, tenant_id, event_type, file_id, job_id, payload, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&event.id)
    .bind(&event.tenant_id)
    .bind(&event.event_type)
    .bind(&event.file_id)
    .bind(&event.job_id)
    .bind(json_text(&event.payload, "webhook_events.payload")?)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(event)
}

/// Puts an event in the outbox with its deliveries, inside the caller's transaction.
pub(crate) async fn enqueue_event(
    conn: &mut SqliteConnection,
    new: NewWebhookEvent,
    now: i64,
) -> Result<String> {
    let event = insert_event(conn, new, now).await?;
    fan_out(conn, &event, now).await?;
    Ok(event.id)
}

/// A file event with the contract's shape, inside the caller's transaction.
pub(crate) async fn enqueue_file_event(
    conn: &mut SqliteConnection,
    event_type: &str,
    file: &crate::FileRow,
    now: i64,
) -> Result<String> {
    let payload = crate::webhook_payloads::file_event(event_type, file, now);
    enqueue_event(
        conn,
        NewWebhookEvent {
            tenant_id: file.tenant_id.clone(),
            event_type: event_type.to_string(),
            file_id: Some(file.file_id),
            job_id: None,
            payload,
        },
        now,
    )
    .await
}

impl Store {
    // --- targets -------------------------------------------------------------------

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
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(tenant_webhook_from_row)
            .transpose()
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

    // --- endpoints -----------------------------------------------------------------

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
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, tenant_id, url, description, event_types, \
                 enabled, secret, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(&endpoint.id)
        .bind(&endpoint.tenant_id)
        .bind(&endpoint.url)
        .bind(&endpoint.description)
        .bind(event_types_text(&endpoint.event_types)?)
        .bind(i64::from(endpoint.enabled))
        .bind(&endpoint.secret)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(endpoint)
    }

    /// Oldest first.
    pub async fn list_webhook_endpoints(&self, tenant_id: &str) -> Result<Vec<WebhookEndpoint>> {
        sqlx::query("SELECT * FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id")
            .bind(tenant_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(endpoint_from_row)
            .collect()
    }

    /// `None` for a missing id and another tenant's alike.
    pub async fn webhook_endpoint(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<WebhookEndpoint>> {
        sqlx::query("SELECT * FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(tenant_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(endpoint_from_row)
            .transpose()
    }

    pub async fn update_webhook_endpoint(
        &self,
        tenant_id: &str,
        id: &str,
        patch: EndpointPatch,
        now: i64,
    ) -> Result<Option<WebhookEndpoint>> {
        let mut tx = self.begin_write().await?;
        let Some(mut ep) =
            sqlx::query("SELECT * FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2")
                .bind(id)
                .bind(tenant_id)
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(endpoint_from_row)
                .transpose()?
        else {
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
        ep.updated_at = now;
        sqlx::query(
            "UPDATE webhook_endpoints SET url = $1, description = $2, event_types = $3, \
                 enabled = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(&ep.url)
        .bind(&ep.description)
        .bind(event_types_text(&ep.event_types)?)
        .bind(i64::from(ep.enabled))
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

    // --- events --------------------------------------------------------------------

    /// Puts an event in the outbox, for events not tied to a state change of this
    /// crate (encoding and AI stages, when they exist).
    pub async fn emit_webhook_event(&self, new: NewWebhookEvent, now: i64) -> Result<String> {
        let mut tx = self.begin_write().await?;
        let id = enqueue_event(&mut tx, new, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// A `webhook.test` event delivered to this endpoint only, whatever it
    /// subscribes to. `None` if the endpoint is not the tenant's.
    pub async fn send_test_webhook(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
        now: i64,
    ) -> Result<Option<WebhookEvent>> {
        let mut tx = self.begin_write().await?;
        let Some(ep) =
            sqlx::query("SELECT * FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2")
                .bind(endpoint_id)
                .bind(tenant_id)
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(endpoint_from_row)
                .transpose()?
        else {
            return Ok(None);
        };
        let event = insert_event(
            &mut tx,
            NewWebhookEvent {
                tenant_id: tenant_id.to_string(),
                event_type: WEBHOOK_TEST.to_string(),
                file_id: None,
                job_id: None,
                payload: crate::webhook_payloads::webhook_test(&ep.id, now),
            },
            now,
        )
        .await?;
        insert_delivery(
            &mut tx,
            &event,
            DeliveryTarget::Endpoint,
            Some(&ep.id),
            &ep.url,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(event))
    }

    pub async fn webhook_event(&self, tenant_id: &str, id: &str) -> Result<Option<WebhookEvent>> {
        sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM webhook_events e WHERE e.id = $1 AND e.tenant_id = $2"
        ))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(event_from_row)
        .transpose()
    }

    /// Newest first; `file_id` narrows to one file's events.
    pub async fn list_webhook_events(
        &self,
        tenant_id: &str,
        file_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WebhookEvent>> {
        sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM webhook_events e WHERE e.tenant_id = $1 \
               AND ($2 IS NULL OR e.file_id = $2) \
             ORDER BY e.created_at DESC, e.id DESC LIMIT $3"
        ))
        .bind(tenant_id)
        .bind(file_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(event_from_row)
        .collect()
    }

    /// Sends the event again, now: every delivery of it goes back to pending with
    /// a fresh retry schedule. An event that had no target when it happened is
    /// fanned out to the current targets. `None` if the event is not the tenant's.
    pub async fn redeliver_webhook_event(
        &self,
        tenant_id: &str,
        event_id: &str,
        now: i64,
    ) -> Result<Option<usize>> {
        let mut tx = self.begin_write().await?;
        let Some(event) = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM webhook_events e WHERE e.id = $1 AND e.tenant_id = $2"
        ))
        .bind(event_id)
        .bind(tenant_id)
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(event_from_row)
        .transpose()?
        else {
            return Ok(None);
        };
        let reset = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', round_attempts = 0, \
                 next_attempt_at = $1, lease_until = NULL, lease_token = NULL, updated_at = $1 \
             WHERE event_id = $2 \
               AND (target <> 'endpoint' \
                    OR endpoint_id IN (SELECT id FROM webhook_endpoints))",
        )
        .bind(now)
        .bind(&event.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let count = if reset == 0 {
            let existing: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE event_id = $1")
                    .bind(&event.id)
                    .fetch_one(&mut *tx)
                    .await?;
            if existing == 0 {
                fan_out(&mut tx, &event, now).await?
            } else {
                0
            }
        } else {
            usize::try_from(reset).unwrap_or(usize::MAX)
        };
        tx.commit().await?;
        Ok(Some(count))
    }

    // --- deliveries and attempts -----------------------------------------------------

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
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(delivery_from_row)
        .collect()
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
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(delivery_from_row)
        .collect()
    }

    /// Every attempt at delivering the event, oldest first.
    pub async fn list_event_attempts(
        &self,
        tenant_id: &str,
        event_id: &str,
    ) -> Result<Vec<WebhookAttempt>> {
        sqlx::query(
            "SELECT a.* FROM webhook_attempts a \
             JOIN webhook_events e ON e.id = a.event_id \
             WHERE a.event_id = $1 AND e.tenant_id = $2 ORDER BY a.id",
        )
        .bind(event_id)
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(attempt_from_row)
        .collect()
    }

    /// Leases up to `limit` due deliveries until `now + lease_ms`. One statement
    /// marks them, so two dispatchers (or two servers) never hold the same one.
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
             WHERE id IN (SELECT id FROM webhook_deliveries \
                          WHERE status = 'pending' AND next_attempt_at <= $3 \
                            AND (lease_until IS NULL OR lease_until <= $3) \
                          ORDER BY next_attempt_at LIMIT $4)",
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
                let row = match &claimed.event.file_id {
                    Some(f) => {
                        sqlx::query("SELECT url, secret FROM file_webhooks WHERE file_id = $1")
                            .bind(f)
                            .fetch_optional(&self.pool)
                            .await?
                    }
                    None => None,
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

    /// Logs an attempt and moves the delivery on, if this dispatcher still holds
    /// its lease (the attempt is logged either way: it happened). Returns whether
    /// the lease was still held.
    pub async fn finish_webhook_attempt(
        &self,
        claimed: &ClaimedDelivery,
        record: &AttemptRecord,
        outcome: AttemptOutcome,
        now: i64,
    ) -> Result<bool> {
        let d = &claimed.delivery;
        let mut tx = self.begin_write().await?;
        let snippet = record
            .response_snippet
            .as_deref()
            .map(|s| truncate_utf8(s, SNIPPET_MAX_BYTES));
        let (status, next_at) = match outcome {
            AttemptOutcome::Succeeded => (DeliveryStatus::Succeeded, d.next_attempt_at),
            AttemptOutcome::RetryAt(at) => (DeliveryStatus::Pending, at),
            AttemptOutcome::Failed => (DeliveryStatus::Failed, d.next_attempt_at),
        };
        let held = sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, \
                 round_attempts = round_attempts + 1, next_attempt_at = $2, url = $3, \
                 last_error = $4, lease_until = NULL, lease_token = NULL, updated_at = $5 \
             WHERE id = $6 AND lease_token = $7 \
             RETURNING attempts",
        )
        .bind(status.as_str())
        .bind(next_at)
        .bind(&record.url)
        .bind(match outcome {
            AttemptOutcome::Succeeded => None,
            _ => record
                .error
                .clone()
                .or_else(|| record.status_code.map(|c| format!("HTTP {c}"))),
        })
        .bind(now)
        .bind(&d.id)
        .bind(&claimed.lease_token)
        .fetch_optional(&mut *tx)
        .await?;
        let attempt: i64 = match &held {
            Some(row) => row.try_get("attempts")?,
            None => i64::from(d.attempts) + 1,
        };
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, event_id, attempt, url, status_code, \
                 latency_ms, response_snippet, error, attempted_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&d.id)
        .bind(&d.event_id)
        .bind(attempt)
        .bind(&record.url)
        .bind(record.status_code.map(i64::from))
        .bind(i64::try_from(record.latency_ms).unwrap_or(i64::MAX))
        .bind(snippet)
        .bind(&record.error)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(held.is_some())
    }

    /// Deletes up to `batch` webhook events created before `before` whose deliveries
    /// have all ended (succeeded, or failed for good), with their deliveries and
    /// attempts: the log is history to inspect and redeliver from, and would otherwise
    /// grow for ever. An event with a delivery still pending is kept whatever its age.
    /// Returns how many events went; a full batch means there may be more.
    pub async fn prune_webhook_history(&self, before: i64, batch: u32) -> Result<u64> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT e.id FROM webhook_events e WHERE e.created_at < $1 \
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                               WHERE d.event_id = e.id AND d.status = 'pending') \
             ORDER BY e.created_at LIMIT $2",
        )
        .bind(before)
        .bind(i64::from(batch))
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            for sql in [
                "DELETE FROM webhook_attempts WHERE event_id = $1",
                "DELETE FROM webhook_deliveries WHERE event_id = $1",
                "DELETE FROM webhook_events WHERE id = $1",
            ] {
                sqlx::query(sql).bind(id).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(ids.len() as u64)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        assert_eq!(truncate_utf8("abc", 10), "abc");
    }

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
            created_at: 0,
            updated_at: 0,
        };
        assert!(ep.wants("file.ready"));
        ep.event_types = Some(vec!["file.deleted".into()]);
        assert!(!ep.wants("file.ready"));
        assert!(ep.wants("file.deleted"));
    }
}
