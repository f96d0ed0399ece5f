//! Periodic re-audits of verified HLS segment copies, as `auditor` does for shards:
//! each copy is asked now and then for BLAKE3 keyed by a fresh nonce over one range
//! of the segment. The segment's prepared challenges are shared by its copies (the
//! same bytes); when they run out the copy goes back to the verifier.

use std::time::Duration;

use futures::StreamExt;
use zib_meta::SegmentReplica;
use zib_proto::node_rpc::ChallengeRequest;

use super::verifier::Challenge;
use super::{Tick, Worker, WorkerHandle};
use crate::domain::directory::NodeDirectory;
use crate::domain::encoding::stream::SEGMENT_REPAIRER_WORKER;
use crate::domain::node_client::NodeCallError;
use crate::state::{now_ms, AppState};

const CONCURRENCY: usize = 8;

pub struct SegmentAuditor;

enum Outcome {
    Passed(String),
    Exhausted,
    Failed,
    Unknown,
}

impl Worker for SegmentAuditor {
    fn name(&self) -> &'static str {
        "segment-auditor"
    }

    fn interval(&self, state: &AppState) -> Duration {
        (state.config.audit_interval / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    async fn tick(&mut self, state: &AppState, me: &WorkerHandle) -> Result<Tick, String> {
        let now = now_ms();
        let due_before = now - state.config.audit_interval.as_millis() as i64;
        let batch = state.config.audit_pace.max(1);
        let copies = state
            .store
            .segment_replicas_for_audit(batch, due_before)
            .await
            .map_err(|e| e.to_string())?;
        let nodes = NodeDirectory::load(state)
            .await
            .map_err(|e| e.to_string())?;
        let nodes = &nodes;
        let outcomes: Vec<(SegmentReplica, Outcome)> = futures::stream::iter(copies)
            .map(|copy| async move {
                let outcome = audit_one(state, nodes, &copy).await;
                (copy, outcome)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut failed = 0;
        for (copy, outcome) in &outcomes {
            let (blob, node) = (copy.segment.blob_id, &copy.replica.node_id);
            let recorded = match outcome {
                Outcome::Passed(rest) => {
                    state
                        .store
                        .record_segment_audit(blob, node, Some(rest), now)
                        .await
                }
                Outcome::Exhausted => {
                    state
                        .store
                        .record_segment_audit(blob, node, None, now)
                        .await
                }
                Outcome::Failed => {
                    tracing::warn!(%node, %blob, "segment copy failed its audit; queued for repair");
                    failed += 1;
                    state.store.mark_segment_replica_lost(blob, node).await
                }
                Outcome::Unknown => continue,
            };
            recorded.map_err(|e| e.to_string())?;
        }
        if failed > 0 {
            state.workers.wake(SEGMENT_REPAIRER_WORKER);
        }
        me.set_status(format!(
            "last sweep: {} segment copies due, {failed} failed",
            outcomes.len()
        ));
        if outcomes.len() as u32 == batch {
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Ok(Tick::Busy);
        }
        Ok(Tick::Idle)
    }
}

async fn audit_one(state: &AppState, nodes: &NodeDirectory, copy: &SegmentReplica) -> Outcome {
    let Some(node) = nodes.online_node(&copy.replica.node_id) else {
        return Outcome::Unknown;
    };
    let mut challenges: Vec<Challenge> = copy
        .segment
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
            copy.segment.blob_id,
            &question,
            state.config.shard_fetch_timeout,
        )
        .await;
    let passed = match answer {
        Ok(a) => a.blake3.eq_ignore_ascii_case(&challenge.answer),
        Err(NodeCallError::Body(_)) => false,
        Err(e) if e.is_refusal() => false,
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
