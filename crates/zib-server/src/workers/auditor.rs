//! Periodic re-audits: each verified shard is asked, now and then, for BLAKE3 keyed
//! by a fresh nonce over a random range — which only the bytes themselves can answer.

use std::time::Duration;

use zib_proto::node_rpc::ChallengeRequest;

use super::verifier::Challenge;
use super::{Tick, Worker, WorkerHandle};
use crate::domain::directory::NodeDirectory;
use crate::domain::node_client::NodeCallError;
use crate::domain::REPAIRER_WORKER;
use crate::state::{now_ms, AppState};

const BATCH: u32 = 32;

pub struct Auditor;

impl Worker for Auditor {
    fn name(&self) -> &'static str {
        "auditor"
    }

    fn interval(&self, state: &AppState) -> Duration {
        // Sweeps run more often than each shard's turn comes round.
        (state.config.audit_interval / 10).max(Duration::from_secs(1))
    }

    async fn tick(&mut self, state: &AppState, me: &WorkerHandle) -> Result<Tick, String> {
        let now = now_ms();
        let due_before = now - state.config.audit_interval.as_millis() as i64;
        let targets = state
            .store
            .shards_for_audit(BATCH, due_before)
            .await
            .map_err(|e| e.to_string())?;
        let nodes = NodeDirectory::load(state)
            .await
            .map_err(|e| e.to_string())?;
        for target in &targets {
            let shard = &target.shard;
            let Some(node) = nodes.online_node(&shard.node_id) else {
                continue;
            };
            let mut challenges: Vec<Challenge> = target
                .challenges
                .as_deref()
                .and_then(|c| serde_json::from_str(c).ok())
                .unwrap_or_default();
            let Some(challenge) = challenges.pop() else {
                // Out of questions: the verifier reads it whole and prepares more.
                state
                    .store
                    .record_audit(shard.blob_id, None, now)
                    .await
                    .map_err(|e| e.to_string())?;
                continue;
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
                Err(e) if e.is_refusal() => false,
                // Unreachable or failing: not evidence of loss; heartbeats decide that.
                Err(_) => continue,
            };
            if passed {
                let rest = serde_json::to_string(&challenges).map_err(|e| e.to_string())?;
                state
                    .store
                    .record_audit(shard.blob_id, Some(&rest), now)
                    .await
                    .map_err(|e| e.to_string())?;
            } else {
                tracing::warn!(node = %shard.node_id, blob = %shard.blob_id, "shard failed its audit; queued for repair");
                state
                    .store
                    .mark_needs_repair(shard.blob_id)
                    .await
                    .map_err(|e| e.to_string())?;
                state.workers.wake(REPAIRER_WORKER);
            }
        }
        me.set_status(format!("last sweep: {} shards due", targets.len()));
        Ok(if targets.len() as u32 == BATCH {
            Tick::Busy
        } else {
            Tick::Idle
        })
    }
}
