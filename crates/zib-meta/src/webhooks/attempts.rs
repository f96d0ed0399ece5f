//! The attempt log: every send of a delivery, what came back, and what it did to
//! the delivery (done, retry later, or failed for good).

use sqlx::Row;

use super::{ClaimedDelivery, DeliveryStatus};
use crate::convert::from_db;
use crate::engine::{DbRow, FetchRows};
use crate::{Result, Store};

/// How long a response snippet may be in the attempt log.
pub const SNIPPET_MAX_BYTES: usize = 1024;

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

fn attempt_from_row(row: &DbRow) -> Result<WebhookAttempt> {
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

impl Store {
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
        .fetch_rows(&self.pool, attempt_from_row)
        .await
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
}
