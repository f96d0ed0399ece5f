//! Operator endpoints, authenticated with the cluster token as a Bearer token
//! (docs/operations.md, "Status").

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use zib_proto::workers::{ClusterWorkers, NodeWorkers};

use crate::auth::ClusterAuth;
use crate::domain::directory::NodeDirectory;
use crate::error::ApiError;
use crate::state::AppState;

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
