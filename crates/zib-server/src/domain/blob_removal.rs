//! Dropping blobs from their holders now, with the command queue as the fallback:
//! shared by deletes and evictions of files and of encodings, and by the workers that
//! collect what nothing points at. Holders that do not confirm keep a queued command
//! and get it on their next heartbeat.

use std::collections::HashMap;
use std::time::Duration;

use zib_proto::node_rpc::NodeAction;
use zib_proto::{BlobId, NodeId};

use super::directory::NodeDirectory;
use crate::error::ApiResult;
use crate::state::{now_ms, Inner};

/// Blobs whose holder confirmed the delete (`ok`), did not answer in time
/// (`failed`: retried on its next heartbeat), or is offline (`queued_for_offline`).
#[derive(Debug, Default, serde::Serialize)]
pub struct NodeCleanup {
    pub ok: u64,
    pub failed: u64,
    pub queued_for_offline: u64,
}

/// Asks every holder to drop its blobs now, counting blobs by outcome. Holders that
/// do not confirm keep the queued command and get it on their next heartbeat.
pub async fn delete_blobs_now(
    state: &Inner,
    blobs: &[(NodeId, BlobId)],
    timeout: Duration,
) -> ApiResult<NodeCleanup> {
    let mut by_node: HashMap<NodeId, Vec<BlobId>> = HashMap::new();
    for (node, blob) in blobs {
        by_node.entry(node.clone()).or_default().push(*blob);
    }
    let directory = NodeDirectory::load(state).await?;
    let mut cleanup = NodeCleanup::default();
    for (node_id, blob_ids) in by_node {
        let Some(node) = directory.online_node(&node_id) else {
            cleanup.queued_for_offline += blob_ids.len() as u64;
            continue;
        };
        let deletes = blob_ids
            .iter()
            .map(|b| state.nodes.delete_blob(&node.public_url, *b, timeout));
        let results = futures::future::join_all(deletes).await;
        let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
        cleanup.ok += ok;
        cleanup.failed += blob_ids.len() as u64 - ok;
        if ok == blob_ids.len() as u64 {
            // Everything confirmed: the queued command has nothing left to do.
            let done: Vec<i64> = state
                .store
                .pending_commands(&node_id)
                .await?
                .into_iter()
                .filter(|c| {
                    serde_json::from_value::<NodeAction>(c.action.clone()).is_ok_and(
                        |NodeAction::DeleteBlobs { blob_ids: ids }| {
                            ids.iter().all(|id| blob_ids.contains(id))
                        },
                    )
                })
                .map(|c| c.id)
                .collect();
            state.store.ack_commands(&node_id, &done, now_ms()).await?;
        }
    }
    Ok(cleanup)
}
