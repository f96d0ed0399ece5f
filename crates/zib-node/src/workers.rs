//! `GET /v1/workers`: this node's background workers, for the server's
//! `/v1/admin/workers` (cluster token, like every server→node call).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use zib_proto::workers::WorkerList;
use zib_util::worker::Registry;

use crate::shards::require_cluster_token;
use crate::state::NodeState;

pub async fn list(
    State(state): State<Arc<NodeState>>,
    Extension(registry): Extension<Registry>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = require_cluster_token(&state, &headers) {
        return e.into_response();
    }
    Json(WorkerList {
        workers: registry.statuses(),
    })
    .into_response()
}
