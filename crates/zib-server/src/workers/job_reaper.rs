//! Watches encoding leases: a job whose node stopped renewing fails transiently (it
//! is retried after the backoff, or waits for the tenant once the retry budget is
//! spent; a compute job likewise goes back to the queue or fails after its tries), and a cancelled job's segments are evicted (a replaced encode's only once
//! the grace for players mid-stream has passed).

use std::time::Duration;

use super::{Tick, Worker, WorkerHandle};
use crate::domain::encoding::cancel::evict_segments;
use crate::domain::encoding::lifecycle::{event_builder, retry_policy, LAPSED_ERROR};
use crate::state::{now_ms, AppState};

/// Jobs handled per tick.
const BATCH: u32 = 32;
/// Sweeps are this often at most, and more often for short leases.
const MAX_INTERVAL: Duration = Duration::from_secs(5);

pub struct JobReaper;

impl Worker for JobReaper {
    fn name(&self) -> &'static str {
        "job_reaper"
    }

    fn interval(&self, state: &AppState) -> Duration {
        (state.config.encoding_lease / 4).clamp(Duration::from_millis(250), MAX_INTERVAL)
    }

    async fn tick(&mut self, state: &AppState, me: &WorkerHandle) -> Result<Tick, String> {
        let now = now_ms();
        let events = event_builder(state, now);
        let lapsed = state
            .store
            .requeue_lapsed_encoding_jobs(LAPSED_ERROR, retry_policy(state), now, BATCH, &events)
            .await
            .map_err(|e| e.to_string())?;
        for job in &lapsed {
            tracing::warn!(job = %job.id, node = ?job.lease_node, retries = job.retry_count, "encoding lease lapsed");
        }
        let lapsed_compute = state
            .store
            .requeue_lapsed_compute_jobs(now)
            .await
            .map_err(|e| e.to_string())?;
        if lapsed_compute > 0 {
            tracing::warn!(jobs = lapsed_compute, "compute leases lapsed; requeued");
        }
        let grace =
            i64::try_from(state.config.encoding_eviction_grace.as_millis()).unwrap_or(i64::MAX);
        let to_evict = state
            .store
            .cancelled_jobs_to_evict(now.saturating_sub(grace), BATCH)
            .await
            .map_err(|e| e.to_string())?;
        for job in &to_evict {
            evict_segments(state, &job.id).await;
        }
        me.set_status(format!(
            "{} lapsed lease(s) requeued, {lapsed_compute} lapsed compute lease(s) requeued, {} cancelled job(s) evicted",
            lapsed.len(),
            to_evict.len()
        ));
        Ok(if lapsed.len() as u32 == BATCH {
            Tick::Busy
        } else {
            Tick::Idle
        })
    }
}
