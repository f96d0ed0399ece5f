//! Reads every newly stored shard back from its holder, checks it against the BLAKE3
//! the originator reported, and prepares audit challenges from the verified bytes.
//! Files whose shards are all verified on enough peers become `safe`.

use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Tick, Worker, WorkerHandle};
use crate::domain::deletion::delete_blobs_now;
use crate::domain::directory::NodeDirectory;
use crate::domain::REPAIRER_WORKER;
use crate::state::{now_ms, AppState};

/// Shards verified per tick, and concurrently.
const BATCH: u32 = 64;
const CONCURRENCY: usize = 8;
/// Challenges prepared per verified shard; when they run out the shard is read whole
/// again and gets new ones.
const CHALLENGES_PER_SHARD: usize = 8;
/// Bytes a challenge covers at most: enough that answering needs the data.
const CHALLENGE_MAX_LEN: u64 = 64 * 1024;

/// One audit question and its expected answer: BLAKE3 keyed by `nonce` over
/// `len` bytes at `offset`. A stored record (the shard row's `challenges` column),
/// not a wire shape: what goes to the node is `zib_proto::node_rpc::ChallengeRequest`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Challenge {
    pub nonce: String,
    pub offset: u64,
    pub len: u64,
    pub answer: String,
}

pub fn make_challenges(bytes: &[u8]) -> Vec<Challenge> {
    let mut rng = rand::thread_rng();
    let size = bytes.len() as u64;
    (0..CHALLENGES_PER_SHARD)
        .filter(|_| size > 0)
        .map(|_| {
            let nonce: [u8; 32] = rng.gen();
            let offset = rng.gen_range(0..size);
            let len = rng.gen_range(1..=CHALLENGE_MAX_LEN.min(size - offset));
            let range = &bytes[offset as usize..(offset + len) as usize];
            Challenge {
                nonce: hex::encode(nonce),
                offset,
                len,
                answer: zib_crypto::challenge::challenge_answer(&nonce, range),
            }
        })
        .collect()
}

pub struct Verifier;

impl Worker for Verifier {
    fn name(&self) -> &'static str {
        "verifier"
    }

    fn interval(&self, state: &AppState) -> Duration {
        state.config.verify_interval
    }

    async fn tick(&mut self, state: &AppState, me: &WorkerHandle) -> Result<Tick, String> {
        let shards = state
            .store
            .shards_to_verify(BATCH)
            .await
            .map_err(|e| e.to_string())?;
        let nodes = NodeDirectory::load(state)
            .await
            .map_err(|e| e.to_string())?;
        let checked = futures::stream::iter(shards.clone())
            .map(|shard| {
                let url = nodes.online_node(&shard.node_id).map(|n| n.public_url.clone());
                let state = state.clone();
                async move {
                    let state = &state;
                    // An offline holder is the repairer's business.
                    let url = url?;
                    let fetched = state
                        .nodes
                        .fetch_blob(&url, shard.blob_id, state.config.shard_fetch_timeout)
                        .await;
                    let outcome = match fetched {
                        Ok(Some(bytes))
                            if bytes.len() as u64 == shard.size
                                && blake3::hash(&bytes).as_bytes().as_slice() == shard.blake3.as_slice() =>
                        {
                            Some(serde_json::to_string(&make_challenges(&bytes)).ok())
                        }
                        Ok(_) => {
                            tracing::warn!(node = %shard.node_id, blob = %shard.blob_id, "shard missing or corrupt on its holder");
                            Some(None)
                        }
                        Err(e) => {
                            tracing::debug!(node = %shard.node_id, error = %e, "verification deferred");
                            return None;
                        }
                    };
                    let now = now_ms();
                    let ok = matches!(outcome, Some(Some(_)));
                    let challenges = outcome.flatten();
                    if let Err(e) = state
                        .store
                        .record_verification(shard.blob_id, ok, challenges.as_deref(), now)
                        .await
                    {
                        tracing::error!(error = %e, "recording a verification failed");
                    } else if !ok {
                        // A missing or corrupt shard is queued: rebuild it now.
                        state.workers.wake(REPAIRER_WORKER);
                    }
                    Some(())
                }
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(|x| async move { x })
            .count()
            .await;

        let safe = state
            .store
            .promote_safe_files(state.config.safe_min_peers, now_ms())
            .await
            .map_err(|e| e.to_string())?;
        for file in &safe {
            tracing::info!(file_id = %file.file_id, "file is safe; originator may drop its full copy");
            let blobs = [(file.originator.clone(), file.upload_blob_id)];
            if let Err(e) = delete_blobs_now(state, &blobs, Duration::from_secs(3)).await {
                tracing::debug!(error = %e, "originator copy left to its heartbeat");
            }
        }
        me.set_status(format!(
            "last sweep: {checked} of {} new shards verified, {} files became safe",
            shards.len(),
            safe.len()
        ));
        Ok(if checked > 0 && shards.len() as u32 == BATCH {
            Tick::Busy
        } else {
            Tick::Idle
        })
    }
}
