//! Pruning: settled history older than the retention window goes, in batches.

use crate::{Result, Store};

impl Store {
    /// Deletes up to `batch` webhook events created before `before` whose deliveries
    /// have all ended (succeeded, or failed for good), with their deliveries and
    /// attempts: the log is history to inspect and redeliver from, and would otherwise
    /// grow for ever. An event with a delivery still pending is kept whatever its age.
    /// Returns how many events went; a full batch means there may be more.
    pub async fn prune_webhook_history(&self, before: i64, batch: u32) -> Result<u64> {
        let mut tx = self.begin_write().await?;
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
}
