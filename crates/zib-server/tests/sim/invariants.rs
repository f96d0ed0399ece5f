//! The invariants, checked against the simulated disks (the ground truth), not
//! against what the server believes. Each has a name that a failure reports.
//!
//! Every step:
//! - `durability`: no segment has fewer than k readable intact shards while at most
//!   m of its holders have failed (stopped, departed, or holding a damaged shard).
//! - `referenced_collected`: the server never deletes a blob its metadata still
//!   references.
//! - `safe_below_full_redundancy`: a file becomes `safe` only with every shard of
//!   every segment on a distinct holder the server can know is online (heartbeat
//!   within `node_offline_after`). Damage after a shard's verification is not
//!   counted here: only a re-read could see it (`damage_repaired_promptly` does).
//! - `recorded_hash_mismatch`: the store's shard hashes are the ones the
//!   originator computed.
//! - `damage_repaired_promptly`: a shard lost, cut short or rotted on a running
//!   node is rebuilt elsewhere within `REPAIR_BOUND_MS` (two audit intervals).
//!
//! After each calm period (faults stopped, nodes back, an hour of ticks):
//! - `repair_converges`: every shard of every live file is intact on a running node.
//! - `distinct_holders`: no two shards of a segment on one holder.
//! - `settles_safe`: every live file is `safe` (uploads that never finished expired).
//! - `deletes_reach_holders`: no blob of a deleted, superseded or expired file is
//!   left on any node.
//! - `orphans_collected`: no unreferenced blob older than twice the grace remains.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use zib_meta::{FilePhase, ShardRow};
use zib_proto::{BlobId, NodeId};

use super::cluster::World;
use super::driver::{Sim, K, M, REPAIR_BOUND_MS};

/// Whether `row`'s shard is on its holder's disk with the bytes it was recorded with.
pub fn intact(world: &World, row: &ShardRow) -> bool {
    world.node(&row.node_id).is_some_and(|n| {
        n.disk.get(&row.blob_id).is_some_and(|b| {
            b.bytes.len() as u64 == row.size
                && blake3::hash(&b.bytes).as_bytes().as_slice() == row.blake3.as_slice()
        })
    })
}

fn running(world: &World, node: &NodeId) -> bool {
    world.node(node).is_some_and(|n| n.up && !n.left)
}

fn lying(world: &World, node: &NodeId) -> bool {
    world.node(node).is_some_and(|n| n.liar)
}

/// Distinct holders of a segment's `rows` that failed it (not running, lying in
/// audits — the server rightly stops trusting them — or holding a damaged shard of
/// it), counting `also` as failed too.
pub fn failed_holders(world: &World, rows: &[ShardRow], also: Option<&NodeId>) -> usize {
    let mut failed: BTreeSet<&NodeId> = rows
        .iter()
        .filter(|r| !running(world, &r.node_id) || lying(world, &r.node_id) || !intact(world, r))
        .map(|r| &r.node_id)
        .collect();
    if let Some(n) = also {
        if rows.iter().any(|r| &r.node_id == n) {
            failed.insert(n);
        }
    }
    failed.len()
}

fn by_segment(rows: Vec<ShardRow>) -> BTreeMap<u32, Vec<ShardRow>> {
    let mut out: BTreeMap<u32, Vec<ShardRow>> = BTreeMap::new();
    for r in rows {
        out.entry(r.segment).or_default().push(r);
    }
    out
}

/// Why a segment is below full redundancy as far as the server can know (holders
/// online by heartbeat), if it is.
fn short_of_full(world: &World, rows: &[ShardRow], now: i64, offline_after: i64) -> Option<String> {
    let width = usize::from(K + M);
    if rows.len() != width {
        return Some(format!("{} shard rows of {width}", rows.len()));
    }
    let holders: HashSet<&NodeId> = rows.iter().map(|r| &r.node_id).collect();
    if holders.len() != width {
        return Some(format!("{} distinct holders of {width}", holders.len()));
    }
    let bad: Vec<String> = rows
        .iter()
        .filter(|r| {
            world
                .node(&r.node_id)
                // What the server can know: a node that left or crashed since its
                // last heartbeat still looks online until `node_offline_after`.
                .is_none_or(|n| now - n.last_heartbeat_ms > offline_after)
        })
        .map(|r| format!("shard {} on {} (holder offline)", r.index, r.node_id))
        .collect();
    (!bad.is_empty()).then(|| bad.join(", "))
}

impl Sim {
    /// The every-step invariants.
    pub async fn check_step(&mut self) {
        let mut found: Vec<(&'static str, String)> = Vec::new();
        let now = zib_util::time::now_ms();
        let offline_after = self.state.config.node_offline_after.as_millis() as i64;
        let mut current: HashSet<BlobId> = HashSet::new();
        let mut segments: Vec<Vec<ShardRow>> = Vec::new();
        let ordinals: Vec<u64> = self
            .files
            .iter()
            .filter(|(_, f)| !f.gone)
            .map(|(o, _)| *o)
            .collect();
        for ordinal in ordinals {
            let file_id = self.files[&ordinal].file_id;
            let row = self.state.store.file(file_id).await.expect("file read");
            let before = self.files[&ordinal].phase;
            let phase = match row {
                Some(r) => r.phase,
                None => {
                    self.files.get_mut(&ordinal).expect("file").gone = true;
                    continue;
                }
            };
            let file = self.files.get_mut(&ordinal).expect("file");
            file.phase = phase;
            if matches!(phase, FilePhase::Cancelled | FilePhase::Failed) {
                file.gone = true;
                continue;
            }
            if !matches!(phase, FilePhase::Distributed | FilePhase::Safe) {
                continue;
            }
            let rows = self
                .state
                .store
                .shards_for_file(file_id)
                .await
                .expect("shards read");
            let world = self.net.world();
            for r in &rows {
                current.insert(r.blob_id);
                file.blobs.insert((r.node_id.clone(), r.blob_id));
                if file
                    .expected
                    .get(&(r.segment, r.index))
                    .is_some_and(|h| h.as_slice() != r.blake3.as_slice())
                {
                    found.push((
                        "recorded_hash_mismatch",
                        format!(
                            "file {} ({}) shard {}/{}",
                            file_id, file.key, r.segment, r.index
                        ),
                    ));
                }
            }
            for (segment, rows) in by_segment(rows) {
                segments.push(rows.clone());
                let failed = failed_holders(&world, &rows, None);
                let readable = rows
                    .iter()
                    .filter(|r| running(&world, &r.node_id) && intact(&world, r))
                    .count();
                if failed <= usize::from(M) && readable < usize::from(K) {
                    let holders: Vec<String> = rows
                        .iter()
                        .map(|r| format!("{}:{}", r.index, r.node_id))
                        .collect();
                    found.push((
                        "durability",
                        format!(
                            "file {file_id} ({}) segment {segment}: {readable} readable shards with only {failed} failed holders; holders {}",
                            file.key,
                            holders.join(" ")
                        ),
                    ));
                }
                if phase == FilePhase::Safe && before != FilePhase::Safe {
                    if let Some(why) = short_of_full(&world, &rows, now, offline_after) {
                        found.push((
                            "safe_below_full_redundancy",
                            format!(
                                "file {file_id} ({}) became safe with segment {segment}: {why}",
                                file.key
                            ),
                        ));
                    }
                }
            }
        }

        self.segments = segments;
        let mut overdue = Vec::new();
        self.damaged.retain(|blob, (at, kind)| {
            if !current.contains(blob) {
                return false; // rebuilt elsewhere, or its file is gone
            }
            if now - *at > REPAIR_BOUND_MS {
                overdue.push(format!(
                    "{kind:?} of blob {blob} {} s ago",
                    (now - *at) / 1000
                ));
                return false;
            }
            true
        });
        for o in overdue {
            found.push((
                "damage_repaired_promptly",
                format!("{o} is still referenced, unrepaired"),
            ));
        }

        let deletes = std::mem::take(&mut self.net.world().server_deletes);
        let mut referenced: HashMap<NodeId, HashSet<BlobId>> = HashMap::new();
        for (node, blob) in deletes {
            if !referenced.contains_key(&node) {
                let refs = self
                    .state
                    .store
                    .referenced_blobs(&node)
                    .await
                    .expect("references read");
                referenced.insert(node.clone(), refs);
            }
            if referenced[&node].contains(&blob) {
                found.push((
                    "referenced_collected",
                    format!("blob {blob} deleted on {node} while metadata references it"),
                ));
            }
        }
        for (name, detail) in found {
            self.violate(name, detail);
        }
    }

    /// The after-calm invariants; gone files that passed are forgotten.
    pub async fn check_healed(&mut self) {
        let mut found: Vec<(&'static str, String)> = Vec::new();
        let grace = self.state.config.garbage_grace.as_millis() as i64;
        let now = zib_util::time::now_ms();
        let mut clean_gone = Vec::new();
        for (ordinal, file) in &self.files {
            let world_blobs = |world: &World| -> Vec<String> {
                file.blobs
                    .iter()
                    .filter(|(n, b)| {
                        world
                            .node(n)
                            .is_some_and(|n| !n.left && n.disk.contains_key(b))
                    })
                    .map(|(n, b)| format!("{b} on {n}"))
                    .collect()
            };
            if file.gone {
                let left = world_blobs(&self.net.world());
                if left.is_empty() {
                    clean_gone.push(*ordinal);
                } else {
                    found.push((
                        "deletes_reach_holders",
                        format!(
                            "file {} ({}) is gone but {}",
                            file.file_id,
                            file.key,
                            left.join(", ")
                        ),
                    ));
                }
                continue;
            }
            if file.phase != FilePhase::Safe {
                found.push((
                    "settles_safe",
                    format!(
                        "file {} ({}) is still {}",
                        file.file_id,
                        file.key,
                        file.phase.as_str()
                    ),
                ));
            }
            if !matches!(file.phase, FilePhase::Distributed | FilePhase::Safe) {
                continue;
            }
            let rows = self
                .state
                .store
                .shards_for_file(file.file_id)
                .await
                .expect("shards read");
            let world = self.net.world();
            for (segment, rows) in by_segment(rows) {
                let holders: HashSet<&NodeId> = rows.iter().map(|r| &r.node_id).collect();
                if holders.len() != rows.len() {
                    found.push((
                        "distinct_holders",
                        format!(
                            "file {} ({}) segment {segment}: {} shards on {} holders",
                            file.file_id,
                            file.key,
                            rows.len(),
                            holders.len()
                        ),
                    ));
                }
                let broken: Vec<String> = rows
                    .iter()
                    .filter(|r| !running(&world, &r.node_id) || !intact(&world, r))
                    .map(|r| {
                        let node = world.node(&r.node_id);
                        let blob = node.and_then(|n| n.disk.get(&r.blob_id));
                        format!(
                            "shard {} on {} (up {:?}, left {:?}, running nodes {}, on disk {:?}, \
                             {} of {} bytes)",
                            r.index,
                            r.node_id,
                            node.map(|n| n.up),
                            node.map(|n| n.left),
                            world.nodes.iter().filter(|n| n.up && !n.left).count(),
                            blob.is_some(),
                            blob.map_or(0, |b| b.bytes.len()),
                            r.size
                        )
                    })
                    .collect();
                if !broken.is_empty() {
                    found.push((
                        "repair_converges",
                        format!(
                            "file {} ({}) segment {segment}: still broken after calm: {}",
                            file.file_id,
                            file.key,
                            broken.join(", ")
                        ),
                    ));
                }
            }
        }
        for o in clean_gone {
            self.files.remove(&o);
        }

        let nodes: Vec<(NodeId, Vec<(BlobId, i64)>)> = self
            .net
            .world()
            .nodes
            .iter()
            .filter(|n| n.up && !n.left)
            .map(|n| {
                (
                    n.id.clone(),
                    n.disk
                        .iter()
                        .map(|(b, blob)| (*b, blob.modified_ms))
                        .collect(),
                )
            })
            .collect();
        for (node, blobs) in nodes {
            let refs = self
                .state
                .store
                .referenced_blobs(&node)
                .await
                .expect("references read");
            let stale: Vec<String> = blobs
                .iter()
                .filter(|(b, modified)| !refs.contains(b) && now - modified > 2 * grace)
                .map(|(b, _)| b.to_string())
                .collect();
            if !stale.is_empty() {
                found.push((
                    "orphans_collected",
                    format!(
                        "{node} still holds {} unreferenced blobs: {}",
                        stale.len(),
                        stale.join(", ")
                    ),
                ));
            }
        }
        for (name, detail) in found {
            self.violate(name, detail);
        }
    }
}
