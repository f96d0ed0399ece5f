//! A stored webhook event as its row reads and is written: shared by the event log,
//! the deliveries that join it, and the peer formats that store their own events.

use serde_json::Value;
use sqlx::Row;

use super::json_text;
use crate::engine::{DbConn, DbRow};
use crate::{MetaError, Result};

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

/// Columns of `webhook_events e`, for [`event_from_row`].
macro_rules! event_columns {
    () => {
        "e.id AS event_id, e.tenant_id AS event_tenant_id, e.event_type, e.file_id, \
         e.job_id, e.payload, e.created_at AS event_created_at"
    };
}
pub(super) use event_columns;

pub(super) fn event_from_row(row: &DbRow) -> Result<WebhookEvent> {
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

/// Stores an event whose id is already chosen (a lifecycle body carries its own id).
pub(super) async fn insert_event_with_id(conn: &mut DbConn, event: &WebhookEvent) -> Result<()> {
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
    .bind(event.created_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
