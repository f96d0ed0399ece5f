//! Reads every newly stored shard back from its holder, checks it against the BLAKE3
//! the originator reported, and prepares audit challenges from the verified bytes.
//! Files whose shards are all verified on enough peers become `safe`.

use std::time::Duration;

use futures::StreamExt;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Tick, Worker, WorkerHandle};
use crate::domain::blob_removal::delete_blobs_now;
use crate::domain::directory::NodeDirectory;
use crate::domain::REPAIRER_WORKER;
use crate::state::{now_ms, AppState};

/// Shards verified per tick, and concurrently.
const BATCH: u32 = 64;
const CONCURRENCY: usize = 8;
/// Challenges prepared per verified shard; when they run out the shard is read whole
/// again and gets new ones.
const CHALLENGES_PER_SHARD: usize = 8;

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

/// Challenges over ranges that together cover every byte of the shard, in random
/// order: a single flipped bit anywhere fails one of them, so a shard's rot is
/// found within one round of its challenges, not by chance.
pub fn make_challenges(bytes: &[u8]) -> Vec<Challenge> {
    let mut rng = rand::thread_rng();
    let size = bytes.len() as u64;
    let n = (CHALLENGES_PER_SHARD as u64).min(size);
    let mut ranges: Vec<(u64, u64)> = (0..n).map(|i| (i * size / n, (i + 1) * size / n)).collect();
    ranges.shuffle(&mut rng);
    ranges
        .into_iter()
        .map(|(start, end)| {
            let nonce: [u8; 32] = rng.gen();
            Challenge {
                nonce: hex::encode(nonce),
                offset: start,
                len: end - start,
                answer: zib_crypto::challenge::challenge_answer(
                    &nonce,
                    &bytes[start as usize..end as usize],
                ),
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

        let now = now_ms();
        let safe = state
            .store
            .promote_safe_files(
                state.config.safe_min_peers,
                crate::domain::directory::online_since(state),
                now,
            )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_cover_every_byte_once() {
        for size in [0usize, 1, 5, 8, 1000, 262_147] {
            let bytes: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
            let challenges = make_challenges(&bytes);
            assert_eq!(challenges.len(), CHALLENGES_PER_SHARD.min(size));
            let mut covered = vec![0u8; size];
            for c in &challenges {
                assert!(c.len > 0);
                for b in &mut covered[c.offset as usize..(c.offset + c.len) as usize] {
                    *b += 1;
                }
                let nonce: [u8; 32] = hex::decode(&c.nonce).unwrap().try_into().unwrap();
                let range = &bytes[c.offset as usize..(c.offset + c.len) as usize];
                assert_eq!(
                    zib_crypto::challenge::challenge_answer(&nonce, range),
                    c.answer
                );
            }
            assert!(covered.iter().all(|&n| n == 1), "size {size}");
        }
    }
}
