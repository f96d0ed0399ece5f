//! Uploads stored here whose distribution never finished (the node was killed
//! mid-way, the server or a peer was down) are distributed again without any help
//! from the client: once the node is registered, then periodically.
//!
//! While the server has too few nodes online to place shards on distinct nodes, a
//! pass stops at the first upload told so (each distribution already waits a while
//! with backoff); the next pass asks again.
//!
//! An upload is pending while its `pending/{blob}` marker exists: written before the
//! upload entered the blob store, removed once the server acknowledged the shards or
//! refused the upload for good (see [`crate::distribute::distribute`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use zib_proto::BlobId;
use zib_util::worker::{Tick, Worker, WorkerHandle};

use crate::distribute;
use crate::state::NodeState;

/// Between periodic passes. A const rather than configuration on purpose: the
/// public `NodeConfig` stays as it is, and 30 s is short next to an upload token's
/// lifetime yet costs nothing when no upload is pending (one directory listing).
const RESUME_INTERVAL: Duration = Duration::from_secs(30);
/// After a client saw a distribution fail: long enough for a restarting peer or
/// server to come back, short enough that the uploader hardly notices.
const RESUME_SOON: Duration = Duration::from_secs(2);
/// How often to look whether the node has registered (it must, to be handed a plan).
const REGISTRATION_POLL: Duration = Duration::from_millis(250);

/// Resumes pending distributions: every [`RESUME_INTERVAL`], and [`RESUME_SOON`]
/// after a client saw one fail (`NodeState::resume_wakeup`).
pub struct Resume {
    state: Arc<NodeState>,
    /// When the last pass ended: a tick sooner than the interval after it was woken.
    last_pass: Option<Instant>,
}

impl Resume {
    pub fn new(state: Arc<NodeState>) -> Self {
        Resume {
            state,
            last_pass: None,
        }
    }
}

impl Worker for Resume {
    fn name(&self) -> &str {
        "resume"
    }

    /// Until registered (it must be, to be handed a plan), only look whether it is.
    fn interval(&self) -> Duration {
        if self.state.is_registered() {
            RESUME_INTERVAL
        } else {
            REGISTRATION_POLL
        }
    }

    fn woken(&self) -> impl Future<Output = ()> + Send {
        self.state.resume_wakeup.notified()
    }

    /// A distribution cut short by shutdown resumes at the next start: its marker
    /// stays.
    fn interruptible(&self) -> bool {
        true
    }

    async fn tick(&mut self, me: &WorkerHandle) -> Result<Tick, String> {
        if !self.state.is_registered() {
            me.set_status("waiting for the node to register");
            return Ok(Tick::Idle);
        }
        let woken = self
            .last_pass
            .is_some_and(|at| at.elapsed() < RESUME_INTERVAL);
        if woken {
            me.set_status("a distribution failed; resuming shortly");
            tokio::time::sleep(RESUME_SOON).await;
        }
        me.set_status("resuming pending uploads");
        let resumed = resume_pending(&self.state).await;
        self.last_pass = Some(Instant::now());
        me.set_status(format!("last pass looked at {resumed} pending upload(s)"));
        Ok(Tick::Idle)
    }
}

/// One pass over every pending upload, one at a time so a backlog after a long
/// outage does not swamp the peers.
/// How many uploads were pending.
async fn resume_pending(state: &Arc<NodeState>) -> usize {
    let pending = match state.store.pending().await {
        Ok(pending) => pending,
        Err(e) => {
            tracing::warn!(error = %e, "could not list uploads pending distribution");
            return 0;
        }
    };
    let n = pending.len();
    for blob in pending {
        if resume_one(state, blob).await == Resumed::TooFewNodes {
            // No other upload can be placed either: all wait for the next pass.
            break;
        }
    }
    n
}

#[derive(PartialEq, Eq)]
enum Resumed {
    Done,
    /// The server has too few nodes online to place shards without doubling up.
    TooFewNodes,
}

async fn resume_one(state: &Arc<NodeState>, blob: BlobId) -> Resumed {
    // A client completing this upload right now does the work itself.
    let Some(_guard) = state.begin(blob.to_string()) else {
        return Resumed::Done;
    };
    if !state.store.is_pending(blob).await {
        return Resumed::Done;
    }
    let clear = || async {
        if let Err(e) = state.store.clear_pending(blob).await {
            tracing::warn!(%blob, error = %e, "could not remove the pending-distribution marker");
        }
    };
    if state.store.is_distributed(blob).await {
        // The node stopped between recording the server's acknowledgement and
        // removing the marker.
        clear().await;
        return Resumed::Done;
    }
    // A whole stored upload wins over part markers a completion left behind.
    let whole = state.store.exists(blob).await;
    if let Some(parts) = state.store.marked_parts(blob).await.filter(|_| !whole) {
        // A multipart upload completed part by part: the parts kept here are coded
        // from the partial file, then the server is told it is complete.
        tracing::info!(%blob, parts, "resuming the distribution of a multipart upload's parts");
        let finished = distribute::finish_parts(state, blob, parts).await;
        return match finished {
            Ok(shards) => {
                tracing::info!(%blob, shards, "multipart upload distributed on resume");
                Resumed::Done
            }
            Err(distribute::DistributeError::WholeOnly) => {
                // Placed whole, yet not stored whole: nothing to resume from.
                tracing::warn!(%blob, "a multipart upload placed whole was never stored whole");
                clear().await;
                Resumed::Done
            }
            Err(e) => resume_failed(blob, e),
        };
    }
    let size = match tokio::fs::metadata(state.store.blob_path(blob)).await {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The node stopped before the upload entered the store (the client was
            // never told it succeeded), or the server had it deleted.
            clear().await;
            return Resumed::Done;
        }
        Err(e) => {
            tracing::warn!(%blob, error = %e, "cannot read a pending upload; will retry");
            return Resumed::Done;
        }
    };
    tracing::info!(%blob, size, "resuming the distribution of a stored upload");
    match distribute::distribute(state, blob, size).await {
        Ok(shards) => {
            tracing::info!(%blob, shards, "upload distributed on resume");
            Resumed::Done
        }
        Err(e) => resume_failed(blob, e),
    }
}

fn resume_failed(blob: BlobId, e: distribute::DistributeError) -> Resumed {
    match e {
        e if e.too_few_nodes() => {
            tracing::info!(%blob, retry_in_secs = RESUME_INTERVAL.as_secs(), "too few nodes online to place the shards; the upload waits here");
            return Resumed::TooFewNodes;
        }
        e => match e.final_refusal() {
            Some(refusal) => tracing::info!(
                %blob,
                reason = %refusal,
                "the server refused this upload for good; its bytes stay until the server deletes them"
            ),
            None => tracing::warn!(
                %blob,
                error = %e,
                retry_in_secs = RESUME_INTERVAL.as_secs(),
                "resumed distribution failed"
            ),
        },
    }
    Resumed::Done
}
