//! Replaces lost HLS segment copies: a copy marked missing or corrupt (verification,
//! audit, a CDN read) or held by a node silent past `repair_after` is copied from an
//! intact holder (checked against the segment's BLAKE3) to an online node that holds
//! none of it, with a `Segment` capability, and the old copy's row moved there. The
//! new copy is verified like any other before it counts toward `safe`.

use std::time::Duration;

use futures::StreamExt;
use zib_meta::SegmentReplica;
use zib_proto::NodeId;

use super::{Tick, Worker, WorkerHandle};
use crate::domain::directory::NodeDirectory;
use crate::domain::encoding::replication::{replica_targets, segment_capability};
use crate::domain::encoding::stream::SEGMENT_REPAIRER_WORKER;
use crate::state::{now_ms, AppState};

const BATCH: u32 = 64;
const IN_PARALLEL: usize = 4;
/// Lifetime of the capability for one copy's push: it is used at once.
const COPY_TOKEN_SECS: u64 = 600;

pub struct SegmentRepairer;

impl Worker for SegmentRepairer {
    fn name(&self) -> &'static str {
        SEGMENT_REPAIRER_WORKER
    }

    fn interval(&self, state: &AppState) -> Duration {
        (state.config.repair_after / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }

    async fn tick(&mut self, state: &AppState, me: &WorkerHandle) -> Result<Tick, String> {
        let now = now_ms();
        let nodes = NodeDirectory::load(state)
            .await
            .map_err(|e| e.to_string())?;
        let repair_after = state.config.repair_after.as_millis() as i64;
        // Lost nodes, and nodes being drained: their copies are replaced elsewhere.
        let lost: Vec<NodeId> = nodes
            .all()
            .filter(|n| now - n.last_heartbeat_at > repair_after || n.draining_since.is_some())
            .map(|n| n.node_id.clone())
            .collect();
        let broken = state
            .store
            .segment_replicas_needing_repair(&lost, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        if broken.is_empty() {
            me.set_status(format!(
                "no segment copy to replace; {} nodes lost",
                lost.len()
            ));
            return Ok(Tick::Idle);
        }
        let (nodes, lost) = (&nodes, &lost);
        let outcomes: Vec<Result<bool, String>> = futures::stream::iter(broken.clone())
            .map(|copy| async move { repair_one(state, nodes, lost, &copy).await })
            .buffer_unordered(IN_PARALLEL)
            .collect()
            .await;
        let repaired = outcomes.iter().filter(|o| matches!(o, Ok(true))).count();
        for e in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            tracing::warn!(error = %e, "segment copy repair deferred");
        }
        me.set_status(format!(
            "last tick: {repaired} of {} segment copies replaced",
            broken.len()
        ));
        Ok(if repaired > 0 && broken.len() as u32 == BATCH {
            Tick::Busy
        } else {
            Tick::Idle
        })
    }
}

/// Copies one segment from an intact holder to a new node. `Ok(false)`: no node to
/// put it on yet, or a concurrent change won.
async fn repair_one(
    state: &AppState,
    nodes: &NodeDirectory,
    lost: &[NodeId],
    copy: &SegmentReplica,
) -> Result<bool, String> {
    let blob_id = copy.segment.blob_id;
    let Some(holders) = state
        .store
        .segment_holders(blob_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(false);
    };
    let job = state
        .store
        .encoding_job(&copy.segment.job_id)
        .await
        .map_err(|e| e.to_string())?;
    let origin = job.and_then(|j| j.node_id);
    // Every node holding (or having held) it, so the new copy goes somewhere else.
    let mut taken: Vec<NodeId> = holders.replicas.iter().map(|r| r.node_id.clone()).collect();
    taken.extend(origin.iter().cloned());
    taken.extend(lost.iter().cloned());
    let Some(target) = replica_targets(nodes, &taken, copy.segment.size, 1)
        .into_iter()
        .next()
    else {
        return Ok(false);
    };

    // Sources: intact-looking copies first (verified, then the rest), then the
    // encoding node; every one is checked against the recorded hash.
    let mut sources: Vec<NodeId> = holders
        .replicas
        .iter()
        .filter(|r| !r.needs_repair && r.node_id != copy.replica.node_id)
        .map(|r| (r.verified_at.is_none(), r.node_id.clone()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    if let Some(o) = origin.filter(|o| *o != copy.replica.node_id && !sources.contains(o)) {
        sources.push(o);
    }
    // A node being drained still serves its own copy: the last source to try.
    let own = &copy.replica.node_id;
    if nodes.get(own).is_some_and(|n| n.draining_since.is_some()) && !sources.contains(own) {
        sources.push(own.clone());
    }
    let mut bytes = None;
    for source in &sources {
        let Some(node) = nodes.online_node(source) else {
            continue;
        };
        if let Ok(Some(b)) = state
            .nodes
            .fetch_blob(&node.public_url, blob_id, state.config.shard_fetch_timeout)
            .await
        {
            if b.len() as u64 == copy.segment.size
                && blake3::hash(&b).as_bytes().as_slice() == copy.segment.blake3.as_slice()
            {
                bytes = Some(b);
                break;
            }
            let _ = state.store.mark_segment_replica_lost(blob_id, source).await;
        }
    }
    let Some(bytes) = bytes else {
        return Err(format!(
            "segment {blob_id}: no intact copy reachable to repair from"
        ));
    };
    let expires_at = (now_ms() / 1000) as u64 + COPY_TOKEN_SECS;
    let token = segment_capability(
        state,
        &target.node_id,
        blob_id,
        copy.segment.size,
        expires_at,
    );
    state
        .nodes
        .put_shard(
            &target.public_url,
            blob_id,
            &token,
            bytes.to_vec(),
            state.config.shard_fetch_timeout * 3,
        )
        .await
        .map_err(|e| format!("pushing segment {blob_id} to {}: {e}", target.node_id))?;
    let moved = state
        .store
        .replace_segment_replica(blob_id, &copy.replica.node_id, &target.node_id, now_ms())
        .await
        .map_err(|e| e.to_string())?;
    if moved {
        tracing::info!(blob = %blob_id, from = %copy.replica.node_id, to = %target.node_id, "segment copy replaced");
        state.workers.wake("segment-verifier");
    }
    Ok(moved)
}
