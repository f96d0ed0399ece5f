//! Counts read at scrape time by the server's `/metrics`: one query each, no rows.

use crate::convert::from_db;
use crate::{DeliveryStatus, Result, Store};

impl Store {
    /// How many webhook deliveries are in `status` (pending: waiting to be sent;
    /// failed: out of attempts, waiting for a manual redelivery).
    pub async fn count_webhook_deliveries(&self, status: DeliveryStatus) -> Result<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status = $1")
                .bind(status.as_str())
                .fetch_one(&self.pool)
                .await?;
        from_db(n, "webhook deliveries")
    }
}
