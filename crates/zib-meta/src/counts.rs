//! Counts read at scrape time by the server's `/metrics`: one query each, no rows.

use sqlx::Row;

use crate::convert::from_db;
use crate::{DeliveryStatus, FilePhase, MetaError, Result, Store};

impl Store {
    /// Files per lifecycle phase, in one scan; phases with no file are absent.
    pub async fn count_files_by_phase(&self) -> Result<Vec<(FilePhase, u64)>> {
        let rows = sqlx::query("SELECT phase, COUNT(*) AS n FROM files GROUP BY phase")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let phase: String = row.try_get("phase")?;
                let phase = FilePhase::parse(&phase).ok_or_else(|| MetaError::Corrupt {
                    what: "files.phase",
                    detail: phase.clone(),
                })?;
                Ok((phase, from_db(row.try_get::<i64, _>("n")?, "file count")?))
            })
            .collect()
    }

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
