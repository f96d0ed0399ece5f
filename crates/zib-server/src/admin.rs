//! Operator endpoints, authenticated with the cluster token as a Bearer token
//! (docs/operations.md, "Status").

use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use zib_proto::admin::{NodeList, NodeStatus};
use zib_proto::workers::{ClusterWorkers, NodeWorkers};
use zib_proto::NodeId;

use crate::auth::ClusterAuth;
use crate::domain::directory::NodeDirectory;
use crate::error::ApiError;
use crate::state::AppState;

/// A node that has not answered by then is listed with an error: one slow node must
/// not hold up the whole listing.
const NODE_STATUS_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/workers", get(workers))
        .route("/v1/admin/nodes", get(nodes))
        .route(
            "/v1/admin/nodes/{node_id}/drain",
            post(start_drain).delete(end_drain),
        )
}

/// `GET /v1/admin/workers`: this server's workers and every node's, each node asked
/// concurrently.
async fn workers(
    _: ClusterAuth,
    State(state): State<AppState>,
) -> Result<Json<ClusterWorkers>, ApiError> {
    let directory = NodeDirectory::load(&state).await?;
    let asks = directory.all().cloned().map(|node| {
        let online = directory.is_online(&node);
        let state = state.clone();
        async move {
            let answer = if online {
                state
                    .nodes
                    .workers(&node.public_url, NODE_STATUS_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())
            } else {
                Err("offline: not asked".to_string())
            };
            let (workers, error) = match answer {
                Ok(list) => (list.workers, None),
                Err(e) => (Vec::new(), Some(e)),
            };
            NodeWorkers {
                node_id: node.node_id,
                url: node.public_url,
                online,
                workers,
                error,
            }
        }
    });
    let nodes = futures::future::join_all(asks).await;
    Ok(Json(ClusterWorkers {
        server: state.workers.statuses(),
        nodes,
    }))
}

/// `GET /v1/admin/nodes`: every registered node, its drain and what it holds.
async fn nodes(_: ClusterAuth, State(state): State<AppState>) -> Result<Json<NodeList>, ApiError> {
    let directory = NodeDirectory::load(&state).await?;
    let mut nodes = Vec::new();
    for node in directory.all() {
        nodes.push(node_status(&state, &directory, node).await?);
    }
    Ok(Json(NodeList { nodes }))
}

/// `POST /v1/admin/nodes/{node_id}/drain`: placement skips the node from now on,
/// and the repairers move its shards and segment copies to other nodes.
async fn start_drain(
    auth: ClusterAuth,
    state: State<AppState>,
    node_id: Path<String>,
) -> Result<Json<NodeStatus>, ApiError> {
    set_drain(auth, state, node_id, true).await
}

/// `DELETE /v1/admin/nodes/{node_id}/drain`: the node takes new data again (what
/// was moved off it stays moved).
async fn end_drain(
    auth: ClusterAuth,
    state: State<AppState>,
    node_id: Path<String>,
) -> Result<Json<NodeStatus>, ApiError> {
    set_drain(auth, state, node_id, false).await
}

async fn set_drain(
    _: ClusterAuth,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    draining: bool,
) -> Result<Json<NodeStatus>, ApiError> {
    let node_id: NodeId = raw
        .parse()
        .map_err(|_| ApiError::invalid("node_id", format!("{raw:?} is not a node id")))?;
    let since = draining.then(crate::state::now_ms);
    if !state.store.set_node_draining(&node_id, since).await? {
        return Err(ApiError::NotFound(format!("no node {node_id}")));
    }
    if draining {
        tracing::info!(node = %node_id, "node drain started");
        state.workers.wake(crate::domain::REPAIRER_WORKER);
    } else {
        tracing::info!(node = %node_id, "node drain ended");
    }
    let directory = NodeDirectory::load(&state).await?;
    let node = directory
        .get(&node_id)
        .ok_or_else(|| ApiError::NotFound(format!("no node {node_id}")))?;
    Ok(Json(node_status(&state, &directory, node).await?))
}

async fn node_status(
    state: &AppState,
    directory: &NodeDirectory,
    node: &zib_meta::NodeRow,
) -> Result<NodeStatus, ApiError> {
    let held = state.store.node_holdings(&node.node_id).await?;
    let holds_data = held.shards + held.segment_copies > 0;
    let node_state = match (node.draining_since, holds_data) {
        (None, _) => "active",
        (Some(_), true) => "draining",
        (Some(_), false) => "drained",
    };
    Ok(NodeStatus {
        node_id: node.node_id.clone(),
        url: node.public_url.clone(),
        zone: node.zone.clone(),
        online: directory.is_online(node),
        state: node_state.to_string(),
        draining_since: node.draining_since.map(zib_util::time::rfc3339),
        shards: held.shards,
        segment_copies: held.segment_copies,
        free_bytes: node.free_bytes,
        used_bytes: node.used_bytes,
    })
}
