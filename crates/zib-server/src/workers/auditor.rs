//! Periodic re-audits: each verified shard — data and parity alike, as a rotted
//! parity shard is never read until it is needed — is asked, now and then, for
//! BLAKE3 keyed by a fresh nonce over one of its ranges, which only the bytes
//! themselves can answer. At most `audit_pace` shards a second.

use std::time::{Duration, Instant};

use futures::StreamExt;
use zib_meta::AuditTarget;
use zib_proto::node_rpc::ChallengeRequest;

use super::verifier::Challenge;
use super::{Tick, Worker, WorkerHandle};
use crate::domain::directory::NodeDirectory;
use crate::domain::node_client::NodeCallError;
use crate::domain::REPAIRER_WORKER;
use crate::state::{now_ms, AppState};

/// Challenges in flight at once.
const CONCURRENCY: usize = 8;

pub struct Auditor;

/// What one challenge showed.
enum Outcome {
    Passed(String),
    /// Out of prepared questions: the verifier reads it whole and prepares more.
    Exhausted,
    Failed,
    /// Holder offline, unreachable or failing: no evidence either way.
    Unknown,
}

impl Worker for Auditor {
    fn name(&self) -> &'static str {
        "auditor"
    }

    fn interval(&self, state: &AppState) -> Duration {
        // Sweeps run more often than each shard's turn comes round.
        (state.config.audit_interval / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    async fn tick(&mut self, state: &AppState, me: &WorkerHandle) -> Result<Tick, String> {
        let started = Instant::now();
        let now = now_ms();
        let due_before = now - state.config.audit_interval.as_millis() as i64;
        // One second's worth of shards per tick; a full batch ticks again at once.
        let batch = state.config.audit_pace.max(1);
        let targets = state
            .store
            .shards_for_audit(batch, due_before)
            .await
            .map_err(|e| e.to_string())?;
        let nodes = NodeDirectory::load(state)
            .await
            .map_err(|e| e.to_string())?;
        let nodes = &nodes;
        let outcomes: Vec<(AuditTarget, Outcome)> = futures::stream::iter(targets)
            .map(|target| async move {
                let outcome = audit_one(state, nodes, &target).await;
                (target, outcome)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut failed = 0;
        for (target, outcome) in &outcomes {
            let blob = target.shard.blob_id;
            let recorded = match outcome {
                Outcome::Passed(rest) => state.store.record_audit(blob, Some(rest), now).await,
                Outcome::Exhausted => state.store.record_audit(blob, None, now).await,
                Outcome::Failed => {
                    tracing::warn!(node = %target.shard.node_id, %blob, index = target.shard.index, "shard failed its audit; queued for repair");
                    failed += 1;
                    state.store.mark_needs_repair(blob).await
                }
                Outcome::Unknown => continue,
            };
            recorded.map_err(|e| e.to_string())?;
        }
        if failed > 0 {
            state.workers.wake(REPAIRER_WORKER);
        }
        me.set_status(format!(
            "last sweep: {} shards due, {failed} failed",
            outcomes.len()
        ));
        if outcomes.len() as u32 == batch {
            // Keep to the pace: the rest of this second before the next batch.
            if let Some(rest) = Duration::from_secs(1).checked_sub(started.elapsed()) {
                tokio::time::sleep(rest).await;
            }
            return Ok(Tick::Busy);
        }
        Ok(Tick::Idle)
    }
}

async fn audit_one(state: &AppState, nodes: &NodeDirectory, target: &AuditTarget) -> Outcome {
    let shard = &target.shard;
    let Some(node) = nodes.online_node(&shard.node_id) else {
        return Outcome::Unknown;
    };
    let mut challenges: Vec<Challenge> = target
        .challenges
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_default();
    let Some(challenge) = challenges.pop() else {
        return Outcome::Exhausted;
    };
    let question = ChallengeRequest {
        nonce: challenge.nonce.clone(),
        offset: challenge.offset,
        len: challenge.len,
    };
    let answer = state
        .nodes
        .challenge(
            &node.public_url,
            shard.blob_id,
            &question,
            state.config.shard_fetch_timeout,
        )
        .await;
    let passed = match answer {
        Ok(a) => a.blake3.eq_ignore_ascii_case(&challenge.answer),
        // A garbled answer is no proof of holding the bytes.
        Err(NodeCallError::Body(_)) => false,
        // The node answered and refused: it does not have the blob (or not that
        // range of it: a truncated shard).
        Err(e) if e.is_refusal() => false,
        // Unreachable or failing: not evidence of loss; heartbeats decide that.
        Err(_) => return Outcome::Unknown,
    };
    if !passed {
        return Outcome::Failed;
    }
    match serde_json::to_string(&challenges) {
        Ok(rest) => Outcome::Passed(rest),
        Err(_) => Outcome::Exhausted,
    }
}
