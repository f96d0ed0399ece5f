//! Rebuilds shards that are lost (their node silent past `repair_after`) or corrupt
//! (failed verification, audit or a CDN read) from `k` surviving shards of the same
//! segment, onto nodes that hold no other shard of it. Idempotent: all state is in
//! the store, so a restart simply picks up what is still marked.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use std::time::Instant;

use futures::StreamExt;
use zib_erasure::Codec;
use zib_meta::{NodeRow, ShardRow};
use zib_proto::{BlobId, FileId, NodeId};

use super::{Tick, Worker, WorkerHandle};
use crate::domain::directory::NodeDirectory;
use crate::domain::layout::shard_len_of;
use crate::domain::placement;
use crate::domain::registration::shard_capability;
use crate::domain::REPAIRER_WORKER;
use crate::state::{now_ms, AppState};

/// Shards looked at per tick.
const BATCH: u32 = 64;
/// Segments rebuilt at once: enough to overlap network and CPU, few enough that
/// repair never crowds out foreground reads.
const SEGMENTS_IN_PARALLEL: usize = 4;
/// Lifetime of the capability for one rebuilt shard's push: it is used at once.
const REBUILT_SHARD_TOKEN_SECS: u64 = 600;

#[derive(Default)]
pub struct Repairer {
    last_doubled_scan: Option<Instant>,
}

impl Repairer {
    /// Queues the extra shard of every doubled placement (placed before placement
    /// refused to double up), so it is rebuilt on a node free of its segment, once
    /// there is one, and its old copy dropped. A scan of every shard row: as often
    /// as the inventory sweeps.
    async fn queue_doubled(&mut self, state: &AppState) -> Result<(), String> {
        if self
            .last_doubled_scan
            .is_some_and(|t| t.elapsed() < state.config.inventory_interval)
        {
            return Ok(());
        }
        self.last_doubled_scan = Some(Instant::now());
        let doubled = state
            .store
            .doubled_shards(BATCH)
            .await
            .map_err(|e| e.to_string())?;
        for s in &doubled {
            tracing::warn!(file_id = %s.file_id, segment = s.segment, index = s.index, node = %s.node_id, "two shards of a segment on one node; moving one");
            state
                .store
                .mark_needs_repair(s.blob_id)
                .await
                .map_err(|e| e.to_string())?;
        }
        if doubled.len() as u32 == BATCH {
            // More to find: look again next tick.
            self.last_doubled_scan = None;
        }
        Ok(())
    }
}

impl Worker for Repairer {
    fn name(&self) -> &'static str {
        REPAIRER_WORKER
    }

    fn interval(&self, state: &AppState) -> Duration {
        (state.config.repair_after / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }

    async fn tick(&mut self, state: &AppState, me: &WorkerHandle) -> Result<Tick, String> {
        self.queue_doubled(state).await?;
        let now = now_ms();
        let nodes = NodeDirectory::load(state)
            .await
            .map_err(|e| e.to_string())?;
        let repair_after = state.config.repair_after.as_millis() as i64;
        // Lost nodes, and nodes being drained: what either holds is rebuilt elsewhere.
        let lost: Vec<NodeId> = nodes
            .all()
            .filter(|n| now - n.last_heartbeat_at > repair_after || n.draining_since.is_some())
            .map(|n| n.node_id.clone())
            .collect();
        let broken = state
            .store
            .shards_needing_repair(&lost, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        if broken.is_empty() {
            me.set_status(format!("nothing queued; {} nodes lost", lost.len()));
            return Ok(Tick::Idle);
        }
        let queued = broken.len();
        let mut by_segment: BTreeMap<(FileId, u32), Vec<ShardRow>> = BTreeMap::new();
        for s in broken {
            by_segment
                .entry((s.file_id, s.segment))
                .or_default()
                .push(s);
        }
        let (repaired, waiting): (usize, usize) = futures::stream::iter(by_segment)
            .map(|((file_id, segment), targets)| {
                let (nodes, lost) = (&nodes, &lost);
                async move {
                    match repair_segment(state, nodes, lost, file_id, segment, &targets).await {
                        Ok(n) => (n, 0),
                        Err(Deferred::NoFreeNode) => (0, 1),
                        Err(Deferred::Failed(e)) => {
                            tracing::warn!(%file_id, segment, error = %e, "segment repair deferred");
                            (0, 0)
                        }
                    }
                }
            })
            .buffer_unordered(SEGMENTS_IN_PARALLEL)
            .fold((0, 0), |a, b| async move { (a.0 + b.0, a.1 + b.1) })
            .await;
        if waiting > 0 {
            tracing::debug!(
                segments = waiting,
                "repairs wait for a node free of their segment"
            );
        }
        me.set_status(format!(
            "last tick: {repaired} of {queued} queued shards rebuilt; {waiting} segments wait for a node free of their shards"
        ));
        Ok(if repaired > 0 { Tick::Busy } else { Tick::Idle })
    }
}

/// Why a segment was not repaired this tick.
enum Deferred {
    /// Every online node already holds a shard of the segment: it waits for one
    /// that does not (a node returning or joining) rather than doubling up.
    NoFreeNode,
    Failed(String),
}

impl From<String> for Deferred {
    fn from(e: String) -> Self {
        Deferred::Failed(e)
    }
}

impl From<&str> for Deferred {
    fn from(e: &str) -> Self {
        Deferred::Failed(e.to_string())
    }
}

async fn repair_segment(
    state: &AppState,
    nodes: &NodeDirectory,
    lost: &[NodeId],
    file_id: FileId,
    segment: u32,
    targets: &[ShardRow],
) -> Result<usize, Deferred> {
    let file = state
        .store
        .file(file_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("file is gone")?;
    let params = file.erasure();
    let parts = if file.in_listed_parts() {
        state
            .store
            .file_parts(file_id)
            .await
            .map_err(|e| e.to_string())?
    } else {
        Vec::new()
    };
    let codec = Codec::new(params).map_err(|e| e.to_string())?;
    let shard_len = shard_len_of(&file, &parts, segment).ok_or("no part holds the segment")?;
    let rows: Vec<ShardRow> = state
        .store
        .shards_for_file(file_id)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|s| s.segment == segment)
        .collect();
    let broken: HashSet<BlobId> = targets.iter().map(|s| s.blob_id).collect();

    // New holders: online, not lost, holding no intact shard of this segment (so a
    // doubled shard moves away), in the zone the segment uses least; a node other
    // than the one that lost the shard when there is one (its disk may be failing).
    let mut holders: Vec<NodeRow> = rows
        .iter()
        .filter(|r| !broken.contains(&r.blob_id))
        .map(|r| holder_row(nodes, &r.node_id))
        .collect();
    let candidates: Vec<_> = nodes
        .placeable()
        .into_iter()
        .filter(|n| !lost.contains(&n.node_id) && n.free_bytes >= shard_len)
        .collect();
    let ordered = placement::zone_interleaved(&candidates);
    {
        let taken: Vec<&NodeRow> = holders.iter().collect();
        if placement::repair_target(&ordered, &taken).is_none() {
            // Checked before any shard is fetched: a segment that cannot move yet
            // costs nothing per tick.
            return Err(Deferred::NoFreeNode);
        }
    }

    // Gather intact survivors, checked against their recorded BLAKE3.
    let mut slots: Vec<Option<Vec<u8>>> = vec![None; params.total_shards()];
    for row in rows.iter().filter(|r| !broken.contains(&r.blob_id)) {
        let Some(node) = nodes.online_node(&row.node_id) else {
            continue;
        };
        let fetched = state
            .nodes
            .fetch_blob(
                &node.public_url,
                row.blob_id,
                state.config.shard_fetch_timeout,
            )
            .await;
        if let Ok(Some(bytes)) = fetched {
            let bytes = Vec::from(bytes);
            if bytes.len() as u64 == shard_len
                && blake3::hash(&bytes).as_bytes().as_slice() == row.blake3.as_slice()
            {
                if let Some(slot) = slots.get_mut(row.index as usize) {
                    *slot = Some(bytes);
                }
            } else {
                let _ = state.store.mark_needs_repair(row.blob_id).await;
            }
        }
        if slots.iter().flatten().count() >= params.data_shards as usize {
            break;
        }
    }
    codec
        .reconstruct(segment, &mut slots)
        .map_err(|e| e.to_string())?;

    let mut done = 0;
    for target in targets {
        let Some(bytes) = slots.get(target.index as usize).and_then(|s| s.as_ref()) else {
            continue;
        };
        if blake3::hash(bytes).as_bytes().as_slice() != target.blake3.as_slice() {
            return Err(Deferred::Failed(format!(
                "rebuilt shard {} does not match its recorded hash",
                target.index
            )));
        }
        let taken: Vec<&NodeRow> = holders.iter().collect();
        let elsewhere: Vec<NodeRow> = ordered
            .iter()
            .filter(|n| n.node_id != target.node_id)
            .cloned()
            .collect();
        let Some(node) = placement::repair_target(&elsewhere, &taken)
            .or_else(|| placement::repair_target(&ordered, &taken))
        else {
            // Never a second shard of this segment on one node: wait for a free one.
            return Err(Deferred::NoFreeNode);
        };
        let blob_id = BlobId::new_random();
        let expires_at = (now_ms() / 1000) as u64 + REBUILT_SHARD_TOKEN_SECS;
        let token = shard_capability(state, &node.node_id, blob_id, shard_len, expires_at);
        state
            .nodes
            .put_shard(
                &node.public_url,
                blob_id,
                &token,
                bytes.clone(),
                state.config.shard_fetch_timeout * 3,
            )
            .await
            .map_err(|e| {
                Deferred::Failed(format!(
                    "pushing the rebuilt shard to {}: {e}",
                    node.node_id
                ))
            })?;
        if state
            .store
            .replace_shard(target, &node.node_id, blob_id, now_ms())
            .await
            .map_err(|e| e.to_string())?
        {
            tracing::info!(%file_id, segment, index = target.index, from = %target.node_id, to = %node.node_id, "shard rebuilt");
            holders.push(node.clone());
            done += 1;
        }
    }
    Ok(done)
}

/// A holder's directory row (for its zone); a node the directory no longer lists
/// still occupies its place, as a zone of its own.
fn holder_row(nodes: &NodeDirectory, id: &NodeId) -> NodeRow {
    nodes.get(id).cloned().unwrap_or_else(|| NodeRow {
        node_id: id.clone(),
        public_url: String::new(),
        capacity_bytes: 0,
        free_bytes: 0,
        used_bytes: 0,
        zone: None,
        capabilities: vec![],
        last_heartbeat_at: 0,
        registered_at: 0,
        draining_since: None,
    })
}
