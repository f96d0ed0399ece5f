//! The event outbox: an event is stored with one delivery per target it has when it
//! happens, inside the transaction of the change it reports.

use serde_json::Value;
use sqlx::Row;
use zib_proto::events::{file_event, webhook_test, EventFile, WEBHOOK_TEST};
use zib_proto::peer_events::WebhookFormat;
use zib_proto::FileId;

use super::deliveries::insert_delivery;
use super::endpoints::{endpoint_from_row, find_endpoint, WebhookEndpoint};
use super::event_rows::{event_columns, event_from_row, insert_event_with_id, WebhookEvent};
use super::{formats, prefixed_id, DeliveryTarget};
use crate::engine::{DbConn, FetchRows};
use crate::{Result, Store};

/// An event to put in the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct NewWebhookEvent {
    pub tenant_id: String,
    pub event_type: String,
    pub file_id: Option<FileId>,
    pub job_id: Option<String>,
    /// The body, with `event` and `timestamp` (see [`zib_proto::events`]).
    pub payload: Value,
}

/// Where an event is delivered: its request's own URL or else the tenant default
/// (zib-format events only), plus the tenant's enabled endpoints of its format.
struct Targets {
    direct: Option<(DeliveryTarget, String)>,
    endpoints: Vec<WebhookEndpoint>,
}

impl Targets {
    /// The targets of `event` as they are now.
    async fn of(conn: &mut DbConn, event: &WebhookEvent) -> Result<Self> {
        let format = WebhookFormat::of_payload(&event.payload);
        // Request and tenant targets always speak zib; the same statement says
        // whether the tenant has zib endpoints at all (most have none).
        let (direct, any_endpoints) = if format == WebhookFormat::Zib {
            direct_target(conn, event).await?
        } else {
            (None, true)
        };
        if !any_endpoints {
            return Ok(Self {
                direct,
                endpoints: Vec::new(),
            });
        }
        let endpoints = sqlx::query(
            "SELECT * FROM webhook_endpoints WHERE tenant_id = $1 AND enabled = 1 \
             AND format = $2 ORDER BY id",
        )
        .bind(&event.tenant_id)
        .bind(format.as_str())
        .fetch_rows(&mut *conn, endpoint_from_row)
        .await?;
        Ok(Self { direct, endpoints })
    }

    /// Whether `next` has the same targets as `event` (same tenant, file, job and
    /// format), so they need not be read again.
    fn shared(event: &WebhookEvent, next: &WebhookEvent) -> bool {
        event.tenant_id == next.tenant_id
            && event.file_id == next.file_id
            && event.job_id == next.job_id
            && WebhookFormat::of_payload(&event.payload) == WebhookFormat::of_payload(&next.payload)
    }

    /// One delivery of `event` per target that wants it; how many.
    async fn deliver(&self, conn: &mut DbConn, event: &WebhookEvent, now: i64) -> Result<usize> {
        let mut count = 0;
        if let Some((kind, url)) = &self.direct {
            insert_delivery(conn, event, *kind, None, url, now).await?;
            count += 1;
        }
        for ep in self
            .endpoints
            .iter()
            .filter(|ep| ep.wants(&event.event_type))
        {
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
}

/// The request's own target (its job's `webhook_url` from `encoding/request`, else
/// its file's `pipeline.webhook_url` from initiate), else the tenant default: one
/// statement, as it runs for every event.
///
/// Also whether the tenant has an enabled zib-format endpoint, so the endpoints
/// are read only when there is one.
async fn direct_target(
    conn: &mut DbConn,
    event: &WebhookEvent,
) -> Result<(Option<(DeliveryTarget, String)>, bool)> {
    let row = sqlx::query(
        "SELECT (SELECT url FROM job_webhooks WHERE job_id = $1) AS job_url, \
             (SELECT url FROM file_webhooks WHERE file_id = $2) AS file_url, \
             (SELECT url FROM tenant_webhooks WHERE tenant_id = $3) AS tenant_url, \
             EXISTS (SELECT 1 FROM webhook_endpoints WHERE tenant_id = $3 AND enabled = 1 \
                     AND format = $4) AS any_endpoints",
    )
    .bind(event.job_id.as_deref())
    .bind(event.file_id.as_deref())
    .bind(&event.tenant_id)
    .bind(WebhookFormat::Zib.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let any_endpoints: bool = row.try_get("any_endpoints")?;
    let request: Option<String> = match row.try_get::<Option<String>, _>("job_url")? {
        Some(url) => Some(url),
        None => row.try_get("file_url")?,
    };
    if let Some(url) = request {
        return Ok((Some((DeliveryTarget::Request, url)), any_endpoints));
    }
    let tenant_url: Option<String> = row.try_get("tenant_url")?;
    Ok((
        tenant_url.map(|url| (DeliveryTarget::Tenant, url)),
        any_endpoints,
    ))
}

async fn insert_event(conn: &mut DbConn, new: NewWebhookEvent, now: i64) -> Result<WebhookEvent> {
    let event = WebhookEvent {
        id: prefixed_id("evt_"),
        tenant_id: new.tenant_id,
        event_type: new.event_type,
        file_id: new.file_id.map(|f| f.to_string()),
        job_id: new.job_id,
        payload: new.payload,
        created_at: now,
    };
    insert_event_with_id(conn, &event).await?;
    Ok(event)
}

/// The tenant's event `id`, read on `conn`: a pooled connection, or the caller's
/// transaction.
async fn find_event(conn: &mut DbConn, tenant_id: &str, id: &str) -> Result<Option<WebhookEvent>> {
    sqlx::query(concat!(
        "SELECT ",
        event_columns!(),
        " FROM webhook_events e WHERE e.id = $1 AND e.tenant_id = $2"
    ))
    .bind(id)
    .bind(tenant_id)
    .fetch_row(&mut *conn, event_from_row)
    .await
}

/// Puts an event in the outbox with its deliveries, inside the caller's transaction,
/// and the peer-format events of the transition it reports (`formats`).
pub(crate) async fn enqueue_event(
    conn: &mut DbConn,
    new: NewWebhookEvent,
    now: i64,
) -> Result<String> {
    let event = insert_event(conn, new, now).await?;
    Targets::of(conn, &event)
        .await?
        .deliver(conn, &event, now)
        .await?;
    formats::translate(conn, &event, now, &mut formats::NotVideo::default()).await?;
    Ok(event.id)
}

/// [`enqueue_event`] for several events of one change, in order; targets shared by
/// consecutive events (one file's `file.ready` then `file.replicated`) are read once,
/// and so is a file found to be no video.
pub(crate) async fn enqueue_events(
    conn: &mut DbConn,
    news: Vec<NewWebhookEvent>,
    now: i64,
) -> Result<()> {
    let mut previous: Option<(WebhookEvent, Targets)> = None;
    let mut not_video = formats::NotVideo::default();
    for new in news {
        let event = insert_event(conn, new, now).await?;
        let targets = match previous.take() {
            Some((before, targets)) if Targets::shared(&before, &event) => targets,
            _ => Targets::of(conn, &event).await?,
        };
        targets.deliver(conn, &event, now).await?;
        formats::translate(conn, &event, now, &mut not_video).await?;
        previous = Some((event, targets));
    }
    Ok(())
}

/// A file event with the contract's shape, inside the caller's transaction.
pub(crate) async fn enqueue_file_event(
    conn: &mut DbConn,
    event_type: &str,
    file: &crate::FileRow,
    now: i64,
) -> Result<String> {
    enqueue_event(conn, new_file_event(event_type, file, now), now).await
}

/// Several file events of `file`, in order ([`enqueue_events`]).
pub(crate) async fn enqueue_file_events(
    conn: &mut DbConn,
    event_types: &[&str],
    file: &crate::FileRow,
    now: i64,
) -> Result<()> {
    let news = event_types
        .iter()
        .map(|event_type| new_file_event(event_type, file, now))
        .collect();
    enqueue_events(conn, news, now).await
}

fn new_file_event(event_type: &str, file: &crate::FileRow, now: i64) -> NewWebhookEvent {
    let payload = file_event(
        event_type,
        &EventFile {
            file_id: file.file_id,
            customer_id: &file.tenant_id,
            bucket: &file.bucket,
            object_key: &file.object_key,
            size_bytes: file.size,
            content_type: &file.content_type,
            phase: file.phase.as_str(),
            cancelled_reason: file.cancelled_reason.as_deref(),
        },
        now,
    );
    NewWebhookEvent {
        tenant_id: file.tenant_id.clone(),
        event_type: event_type.to_string(),
        file_id: Some(file.file_id),
        job_id: None,
        payload,
    }
}

impl Store {
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
        let Some(ep) = find_endpoint(&mut tx, tenant_id, endpoint_id).await? else {
            return Ok(None);
        };
        let event = insert_event(
            &mut tx,
            NewWebhookEvent {
                tenant_id: tenant_id.to_string(),
                event_type: WEBHOOK_TEST.to_string(),
                file_id: None,
                job_id: None,
                payload: webhook_test(&ep.id, now),
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
        let mut conn = self.pool.acquire().await?;
        find_event(&mut conn, tenant_id, id).await
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
        .fetch_rows(&self.pool, event_from_row)
        .await
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
        let Some(event) = find_event(&mut tx, tenant_id, event_id).await? else {
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
                Targets::of(&mut tx, &event)
                    .await?
                    .deliver(&mut tx, &event, now)
                    .await?
            } else {
                0
            }
        } else {
            usize::try_from(reset).unwrap_or(usize::MAX)
        };
        tx.commit().await?;
        Ok(Some(count))
    }
}
