//! Operator endpoints, authenticated with the cluster token as a Bearer token
//! (docs/operations.md, "Status").

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use zib_proto::workers::{ClusterWorkers, NodeWorkers, WorkerList};

use crate::auth::ClusterAuth;
use crate::error::ApiError;
use crate::state::{now_ms, AppState};

/// A node that has not answered by then is listed with an error: one slow node must
/// not hold up the whole listing.
const NODE_STATUS_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/admin/workers", get(workers))
}

/// `GET /v1/admin/workers`: this server's workers and every node's, each node asked
/// concurrently.
async fn workers(
    _: ClusterAuth,
    State(state): State<AppState>,
) -> Result<Json<ClusterWorkers>, ApiError> {
    let now = now_ms();
    let nodes = state.store.list_nodes().await?;
    let asks = nodes.into_iter().map(|node| {
        let state = state.clone();
        async move {
            let online = state.is_online(node.last_heartbeat_at, now);
            let answer = if online {
                node_workers(&state, &node.public_url).await
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

async fn node_workers(state: &AppState, node_url: &str) -> Result<WorkerList, String> {
    let resp = state
        .http
        .get(format!("{node_url}/v1/workers"))
        .bearer_auth(&state.config.cluster_token)
        .timeout(NODE_STATUS_TIMEOUT)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    resp.json::<WorkerList>().await.map_err(|e| e.to_string())
}
