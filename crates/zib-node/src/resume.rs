//! Uploads stored here whose distribution never finished (the node was killed
//! mid-way, the server or a peer was down) are distributed again without any help
//! from the client: once the node is registered, then periodically.
//!
//! An upload is pending while its `pending/{blob}` marker exists: written before the
//! upload entered the blob store, removed once the server acknowledged the shards or
//! refused the upload for good (see [`crate::distribute::distribute`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use zib_proto::BlobId;

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

pub async fn run(state: Arc<NodeState>, cancel: CancellationToken) {
    loop {
        while !state.is_registered() {
            if sleep_or_cancel(REGISTRATION_POLL, &cancel).await {
                return;
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = resume_pending(&state) => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(RESUME_INTERVAL) => {}
            _ = state.resume_wakeup.notified() => {
                if sleep_or_cancel(RESUME_SOON, &cancel).await {
                    return;
                }
            }
        }
    }
}

/// One pass over every pending upload, one at a time so a backlog after a long
/// outage does not swamp the peers.
async fn resume_pending(state: &Arc<NodeState>) {
    let pending = match state.store.pending().await {
        Ok(pending) => pending,
        Err(e) => {
            tracing::warn!(error = %e, "could not list uploads pending distribution");
            return;
        }
    };
    for blob in pending {
        resume_one(state, blob).await;
    }
}

async fn resume_one(state: &Arc<NodeState>, blob: BlobId) {
    // A client completing this upload right now does the work itself.
    let Some(_guard) = state.begin(blob.to_string()) else {
        return;
    };
    if !state.store.is_pending(blob).await {
        return;
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
        return;
    }
    let size = match tokio::fs::metadata(state.store.blob_path(blob)).await {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The node stopped before the upload entered the store (the client was
            // never told it succeeded), or the server had it deleted.
            clear().await;
            return;
        }
        Err(e) => {
            tracing::warn!(%blob, error = %e, "cannot read a pending upload; will retry");
            return;
        }
    };
    tracing::info!(%blob, size, "resuming the distribution of a stored upload");
    match distribute::distribute(state, blob, size).await {
        Ok(shards) => tracing::info!(%blob, shards, "upload distributed on resume"),
        Err(e) => match e.final_refusal() {
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
}

/// `true` when cancelled.
async fn sleep_or_cancel(duration: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(duration) => false,
    }
}
