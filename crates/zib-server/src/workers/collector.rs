//! Garbage: registrations that expired without completing, blobs on nodes that no
//! metadata points to (left by crashes or abandoned uploads), webhook history past
//! its retention, and S3 multipart uploads left neither completed nor aborted. Nothing referenced is ever collected, and nothing younger than
//! `garbage_grace`. The same inventory of each node shows the opposite too: shards
//! metadata places there that the node no longer has (or has short), queued for
//! repair at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use zib_proto::node_rpc::InventoryEntry;
use zib_proto::{BlobId, NodeId};

use super::{Tick, Worker, WorkerHandle};
use crate::domain::blob_removal::delete_blobs_now;
use crate::domain::directory::NodeDirectory;
use crate::domain::multipart_spool::collect_abandoned;
use crate::domain::node_client::NodeCallError;
use crate::domain::REPAIRER_WORKER;
use crate::state::{now_ms, AppState};

/// How long a node may take to list every blob it stores.
const INVENTORY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Collector {
    last_orphan_sweep: Option<Instant>,
    last_retention_sweep: Option<Instant>,
}

/// Webhook events deleted per transaction: short write locks, however large the backlog.
const WEBHOOK_PRUNE_BATCH: u32 = 500;
/// Retentions are counted in days, and each sweep scans (the event table, every
/// multipart spool): hourly is often enough.
const RETENTION_SWEEP_EVERY: Duration = Duration::from_secs(3600);

impl Collector {
    /// At most once per RETENTION_SWEEP_EVERY: webhook history past its retention, and
    /// S3 multipart uploads idle past theirs.
    async fn retention_sweep(&mut self, state: &AppState, now: i64) -> Result<(), String> {
        if self
            .last_retention_sweep
            .is_some_and(|t| t.elapsed() < RETENTION_SWEEP_EVERY)
        {
            return Ok(());
        }
        self.last_retention_sweep = Some(Instant::now());
        let spool = &state.config.s3_spool_dir;
        match collect_abandoned(spool, state.config.s3_multipart_expiry).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "abandoned s3 multipart uploads removed"),
            Err(e) => {
                tracing::warn!(dir = %spool.display(), error = %e, "sweeping s3 multipart spools")
            }
        }
        // Completed uploads are remembered (for a retried Complete) as long as spools.
        let before = now.saturating_sub(state.config.s3_multipart_expiry.as_millis() as i64);
        match state.store.expire_completed_uploads(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(n, "completed s3 multipart uploads forgotten"),
            Err(e) => tracing::warn!(error = %e, "expiring completed s3 multipart uploads"),
        }
        prune_webhook_history(state, now).await
    }
}

/// Deletes the webhook history older than the retention, a batch at a time.
async fn prune_webhook_history(state: &AppState, now: i64) -> Result<(), String> {
    let before = now.saturating_sub(state.config.webhook_retention.as_millis() as i64);
    let mut pruned = 0;
    loop {
        let n = state
            .store
            .prune_webhook_history(before, WEBHOOK_PRUNE_BATCH)
            .await
            .map_err(|e| e.to_string())?;
        pruned += n;
        if n < u64::from(WEBHOOK_PRUNE_BATCH) {
            break;
        }
    }
    if pruned > 0 {
        tracing::info!(pruned, "webhook events past their retention deleted");
    }
    Ok(())
}

impl Worker for Collector {
    fn name(&self) -> &'static str {
        "collector"
    }

    fn interval(&self, state: &AppState) -> Duration {
        state.config.collect_interval
    }

    async fn tick(&mut self, state: &AppState, me: &WorkerHandle) -> Result<Tick, String> {
        let now = now_ms();
        let grace = state.config.garbage_grace.as_millis() as i64;
        let expired = state
            .store
            .expire_abandoned_uploads(now, grace)
            .await
            .map_err(|e| e.to_string())?;
        for f in &expired {
            tracing::info!(file_id = %f.file_id, "abandoned upload expired");
            let blobs = [(f.originator.clone(), f.upload_blob_id)];
            let _ = delete_blobs_now(state, &blobs, Duration::from_secs(3)).await;
        }
        self.retention_sweep(state, now).await?;
        me.set_status(format!(
            "last tick: {} abandoned uploads expired",
            expired.len()
        ));

        // Inventory sweeps list every blob of every node: keep them rarer.
        let every = (state.config.garbage_grace / 4).min(state.config.inventory_interval);
        if self.last_orphan_sweep.is_some_and(|t| t.elapsed() < every) {
            return Ok(Tick::Idle);
        }
        self.last_orphan_sweep = Some(Instant::now());
        let nodes = NodeDirectory::load(state)
            .await
            .map_err(|e| e.to_string())?;
        for node in nodes.online() {
            let node_id = node.node_id;
            let listed_at = now_ms();
            let inventory = match state
                .nodes
                .inventory(&node.public_url, INVENTORY_TIMEOUT)
                .await
            {
                Ok(inventory) => inventory,
                Err(NodeCallError::Body(e)) => return Err(e.to_string()),
                Err(_) => continue,
            };
            let referenced = state
                .store
                .referenced_blobs(&node_id)
                .await
                .map_err(|e| e.to_string())?;
            queue_missing(state, &node_id, &inventory.blobs, listed_at).await?;
            let orphans: Vec<_> = inventory
                .blobs
                .into_iter()
                .filter(|b| !referenced.contains(&b.blob_id) && now - b.modified_at_ms > grace)
                .map(|b| (node_id.clone(), b.blob_id))
                .collect();
            if !orphans.is_empty() {
                tracing::info!(node = %node_id, count = orphans.len(), "collecting orphan blobs");
                delete_blobs_now(state, &orphans, Duration::from_secs(5))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(Tick::Idle)
    }
}

/// Shards metadata places on `node` (recorded before its inventory was taken) that
/// the inventory lacks or lists with the wrong size: lost on a live node, so queued
/// for repair now, and the repairer woken.
async fn queue_missing(
    state: &AppState,
    node: &NodeId,
    listed: &[InventoryEntry],
    listed_at: i64,
) -> Result<(), String> {
    let sizes: HashMap<BlobId, u64> = listed.iter().map(|b| (b.blob_id, b.size)).collect();
    let held = state
        .store
        .shards_held_by(node, listed_at)
        .await
        .map_err(|e| e.to_string())?;
    let mut queued = 0;
    for shard in held {
        let problem = match sizes.get(&shard.blob_id) {
            None => "missing",
            Some(&size) if size != shard.size => "the wrong size",
            Some(_) => continue,
        };
        tracing::warn!(%node, blob = %shard.blob_id, file_id = %shard.file_id, segment = shard.segment, index = shard.index, "shard {problem} on its live holder; queued for repair");
        state
            .store
            .mark_needs_repair(shard.blob_id)
            .await
            .map_err(|e| e.to_string())?;
        queued += 1;
    }
    if queued > 0 {
        state.workers.wake(REPAIRER_WORKER);
    }
    Ok(())
}
