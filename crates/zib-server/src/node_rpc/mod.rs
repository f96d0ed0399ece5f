//! `/v1/node/*`: what nodes call (registration, heartbeats, distribution). Calls the
//! other way go through `domain::node_client`. The encoding job routes are in `jobs`,
//! a job's artefacts in `artifacts`, the AI compute jobs' in `compute`.

mod artifacts;
mod compute;
mod jobs;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use zib_meta::NodeRow;
use zib_proto::node_rpc::{
    DistributedRequest, DistributionPlan, HeartbeatRequest, HeartbeatResponse, InlineUploadQuery,
    NodeAction, NodeCommand, RegisterRequest, RegisterResponse, UploadReceivedRequest,
};

use crate::auth::ClusterAuth;
use crate::body::parse_json;
use crate::domain::distribution;
use crate::error::{ApiError, ApiResult};
use crate::state::{now_ms, AppState};

/// A job's source read as the node gets it: `206` with `Content-Range` for a range,
/// else `200`; encoding and compute jobs alike.
fn source_response<S>(
    read: crate::domain::encoding::source::SourceRead<S>,
) -> axum::response::Response
where
    S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    use axum::http::{header, HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    let (status, len) = match &read.range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, read.total),
    };
    let mut response = (status, axum::body::Body::from_stream(read.body)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(r) = &read.range {
        let value = format!("bytes {}-{}/{}", r.start, r.end - 1, read.total);
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    response
}

/// The lease token of a job call that has no JSON body to carry it (`X-ZiB-Lease`).
fn lease_token(headers: &axum::http::HeaderMap) -> ApiResult<&str> {
    headers
        .get(zib_proto::jobs::LEASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthorized(
            "the lease token header x-zib-lease is missing",
        ))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/node/register", post(register))
        .route("/v1/node/heartbeat", post(heartbeat))
        .route("/v1/node/uploads/{blob_id}/received", post(upload_received))
        .route(
            "/v1/node/uploads/{blob_id}/distributed",
            post(upload_distributed),
        )
        .route("/v1/node/uploads/{blob_id}/inline", post(upload_inline))
        .merge(jobs::router())
        .merge(artifacts::router())
        .merge(compute::router())
}

async fn register(
    State(state): State<AppState>,
    _: ClusterAuth,
    body: Bytes,
) -> ApiResult<Json<RegisterResponse>> {
    let req: RegisterRequest = parse_json(&body)?;
    if !(req.public_url.starts_with("http://") || req.public_url.starts_with("https://")) {
        return Err(ApiError::invalid("public_url", "must be an http(s) URL"));
    }
    let now = now_ms();
    let registered_at = state
        .store
        .node(&req.node_id)
        .await?
        .map(|n| n.registered_at)
        .unwrap_or(now);
    state
        .store
        .upsert_node(&NodeRow {
            node_id: req.node_id.clone(),
            public_url: req.public_url.trim_end_matches('/').to_string(),
            capacity_bytes: req.capacity_bytes,
            free_bytes: req.free_bytes,
            used_bytes: req.capacity_bytes.saturating_sub(req.free_bytes),
            zone: req.zone,
            capabilities: req.capabilities,
            last_heartbeat_at: now,
            registered_at,
            draining_since: None,
        })
        .await?;
    tracing::info!(node = %req.node_id, url = %req.public_url, "node registered");
    Ok(Json(RegisterResponse {
        capability_public_key: state.config.capability_signer.public_key_hex(),
        heartbeat_interval_secs: state.config.heartbeat_interval.as_secs().max(1),
    }))
}

async fn heartbeat(
    State(state): State<AppState>,
    _: ClusterAuth,
    body: Bytes,
) -> ApiResult<Json<HeartbeatResponse>> {
    let req: HeartbeatRequest = parse_json(&body)?;
    let now = now_ms();
    if !state
        .store
        .heartbeat(&req.node_id, req.free_bytes, req.used_bytes, now)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "node {} is not registered; register first",
            req.node_id
        )));
    }
    if !req.acked_commands.is_empty() {
        state
            .store
            .ack_commands(&req.node_id, &req.acked_commands, now)
            .await?;
    }
    let commands = state
        .store
        .pending_commands(&req.node_id)
        .await?
        .into_iter()
        .filter_map(|c| match serde_json::from_value::<NodeAction>(c.action) {
            Ok(action) => Some(NodeCommand { id: c.id, action }),
            Err(e) => {
                tracing::error!(command = c.id, error = %e, "unreadable node command skipped");
                None
            }
        })
        .collect();
    Ok(Json(HeartbeatResponse { commands }))
}

/// The originator holds a whole envelope: hand it the placement of every shard.
async fn upload_received(
    State(state): State<AppState>,
    _: ClusterAuth,
    Path(raw): Path<String>,
    body: Bytes,
) -> ApiResult<Json<DistributionPlan>> {
    let req: UploadReceivedRequest = parse_json(&body)?;
    distribution::plan(&state, &raw, &req).await.map(Json)
}

/// A small upload's whole envelope: kept in the metadata store, the file made current.
async fn upload_inline(
    State(state): State<AppState>,
    _: ClusterAuth,
    Path(raw): Path<String>,
    query: Result<Query<InlineUploadQuery>, QueryRejection>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let Query(query) =
        query.map_err(|e| ApiError::invalid("node_id", format!("a node id is required: {e}")))?;
    distribution::record_inline_upload(&state, &raw, &query.node_id, &body).await?;
    Ok(Json(json!({"status": "stored_inline"})))
}

/// Every shard is stored: record them, make the file current for its key.
async fn upload_distributed(
    State(state): State<AppState>,
    _: ClusterAuth,
    Path(raw): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: DistributedRequest = parse_json(&body)?;
    distribution::record(&state, &raw, &req).await?;
    Ok(Json(json!({"status": "distributed"})))
}
