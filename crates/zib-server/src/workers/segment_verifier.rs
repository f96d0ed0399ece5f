//! Reads every new copy of an HLS segment back from its holder, checks it against the
//! BLAKE3 the encoding node reported and prepares the segment's audit challenges from
//! the verified bytes; then moves encoded jobs along replication: `local_complete` →
//! `replicating` → `safe` once every segment is verified on enough nodes other than
//! the one that encoded it (DESIGN.md §5). Fewer nodes than that: the job waits in
//! `replicating` and its `phase_detail` says why.

use std::time::Duration;

use futures::StreamExt;
use zib_meta::{JobPhase, JobReplication, SegmentReplica};

use super::verifier::make_challenges;
use super::{Tick, Worker, WorkerHandle};
use crate::domain::directory::NodeDirectory;
use crate::domain::encoding::replication::SEGMENT_REPLICAS;
use crate::domain::encoding::stream::SEGMENT_REPAIRER_WORKER;
use crate::state::{now_ms, AppState};

/// Copies verified per tick, and concurrently.
const BATCH: u32 = 64;
const CONCURRENCY: usize = 8;

pub struct SegmentVerifier;

impl Worker for SegmentVerifier {
    fn name(&self) -> &'static str {
        "segment-verifier"
    }

    fn interval(&self, state: &AppState) -> Duration {
        state.config.verify_interval
    }

    async fn tick(&mut self, state: &AppState, me: &WorkerHandle) -> Result<Tick, String> {
        let copies = state
            .store
            .segment_replicas_to_verify(BATCH)
            .await
            .map_err(|e| e.to_string())?;
        let nodes = NodeDirectory::load(state)
            .await
            .map_err(|e| e.to_string())?;
        let nodes = &nodes;
        let results: Vec<bool> = futures::stream::iter(copies.clone())
            .map(|copy| async move { verify_one(state, nodes, &copy).await })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let checked = results.iter().filter(|done| **done).count();
        let (moved, safe) = promote(state, nodes).await?;
        me.set_status(format!(
            "last sweep: {checked} of {} new segment copies checked; {moved} jobs moved, {safe} became safe",
            copies.len()
        ));
        Ok(if checked > 0 && copies.len() as u32 == BATCH {
            Tick::Busy
        } else {
            Tick::Idle
        })
    }
}

/// Verifies one copy; false when its holder gave no answer either way.
async fn verify_one(state: &AppState, nodes: &NodeDirectory, copy: &SegmentReplica) -> bool {
    let (segment, replica) = (&copy.segment, &copy.replica);
    // An offline holder is the repairer's business.
    let Some(node) = nodes.online_node(&replica.node_id) else {
        return false;
    };
    let fetched = state
        .nodes
        .fetch_blob(
            &node.public_url,
            segment.blob_id,
            state.config.shard_fetch_timeout,
        )
        .await;
    let (ok, challenges) = match fetched {
        Ok(Some(bytes))
            if bytes.len() as u64 == segment.size
                && blake3::hash(&bytes).as_bytes().as_slice() == segment.blake3.as_slice() =>
        {
            // The segment's challenges are shared by its copies: prepared once, and
            // again when the audits used them up.
            let used_up = segment
                .challenges
                .as_deref()
                .and_then(|c| serde_json::from_str::<Vec<serde_json::Value>>(c).ok())
                .is_none_or(|c| c.is_empty());
            let fresh = used_up
                .then(|| serde_json::to_string(&make_challenges(&bytes)).ok())
                .flatten();
            (true, fresh)
        }
        Ok(_) => {
            tracing::warn!(node = %replica.node_id, blob = %segment.blob_id, "segment copy missing or corrupt on its holder");
            (false, None)
        }
        Err(e) => {
            tracing::debug!(node = %replica.node_id, error = %e, "segment verification deferred");
            return false;
        }
    };
    match state
        .store
        .record_segment_verification(
            segment.blob_id,
            &replica.node_id,
            ok,
            challenges.as_deref(),
            now_ms(),
        )
        .await
    {
        Err(e) => tracing::error!(error = %e, "recording a segment verification failed"),
        Ok(()) if !ok => {
            state.workers.wake(SEGMENT_REPAIRER_WORKER);
        }
        Ok(()) => {}
    }
    true
}

/// Where an encoded job stands in replication: its next phase, how far within it,
/// and the sentence my-jobs shows.
pub fn replication_step(
    job: &JobReplication,
    other_nodes_online: usize,
) -> (JobPhase, f64, String) {
    let target = SEGMENT_REPLICAS;
    let verified = job.min_verified_peers.unwrap_or(0);
    if job.min_verified_peers.is_some() && verified >= target {
        return (
            JobPhase::Safe,
            100.0,
            format!("every segment verified on {target} peers"),
        );
    }
    let pct = f64::from(verified.min(target)) * 100.0 / f64::from(target);
    let mut detail = format!("peer {verified} of {target} verified");
    if other_nodes_online < target as usize {
        detail.push_str(&format!(
            "; waiting for nodes: only {other_nodes_online} other than the encoding node online, {target} needed"
        ));
    }
    (JobPhase::Replicating, pct, detail)
}

/// Moves every encoded job whose replication changed; returns (moved, became safe).
async fn promote(state: &AppState, nodes: &NodeDirectory) -> Result<(usize, usize), String> {
    let now = now_ms();
    let online_since = crate::domain::directory::online_since(state);
    let jobs = state
        .store
        .encoded_job_replication(online_since)
        .await
        .map_err(|e| e.to_string())?;
    // A node being drained is no place for a copy.
    let online = nodes.placeable();
    let (mut moved, mut safe) = (0, 0);
    for job in &jobs {
        let others = online
            .iter()
            .filter(|n| Some(&n.node_id) != job.origin.as_ref())
            .count();
        let (to, pct, detail) = replication_step(job, others);
        if to == job.phase && job.phase_detail.as_deref() == Some(detail.as_str()) {
            continue;
        }
        let done = state
            .store
            .set_job_replication(&job.job_id, to, pct, &detail, now)
            .await
            .map_err(|e| e.to_string())?;
        if done {
            moved += 1;
            if to == JobPhase::Safe {
                safe += 1;
                tracing::info!(job_id = %job.job_id, file_id = %job.file_id, "encoding is safe");
            }
        }
    }
    Ok((moved, safe))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(min: Option<u32>) -> JobReplication {
        JobReplication {
            job_id: "j".into(),
            file_id: zib_proto::FileId::new_random(),
            phase: JobPhase::LocalComplete,
            phase_detail: None,
            origin: None,
            min_verified_peers: min,
        }
    }

    #[test]
    fn safe_only_when_every_segment_has_three_verified_peers() {
        assert_eq!(replication_step(&job(Some(3)), 5).0, JobPhase::Safe);
        assert_eq!(replication_step(&job(Some(4)), 5).0, JobPhase::Safe);
        let (phase, pct, detail) = replication_step(&job(Some(2)), 5);
        assert_eq!(phase, JobPhase::Replicating);
        assert!((pct - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(detail, "peer 2 of 3 verified");
        // No segment at all is not "every segment replicated".
        assert_eq!(replication_step(&job(None), 5).0, JobPhase::Replicating);
    }

    #[test]
    fn too_few_nodes_says_so() {
        let (phase, _, detail) = replication_step(&job(Some(2)), 2);
        assert_eq!(phase, JobPhase::Replicating);
        assert!(
            detail.contains("only 2 other than the encoding node online"),
            "{detail}"
        );
    }
}
