//! `/v1/node/*`: what nodes call (registration, heartbeats, distribution), and the
//! server's direct calls to nodes (shard deletes).

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use zib_erasure::Layout;
use zib_meta::{Distribution, FilePhase, NodeRow, ShardRow};
use zib_proto::node_rpc::{
    CapabilityClaims, CapabilityOp, DistributedRequest, DistributionPlan, HeartbeatRequest,
    HeartbeatResponse, NodeAction, NodeCommand, RegisterRequest, RegisterResponse, SegmentPlan,
    ShardTarget, UploadReceivedRequest,
};
use zib_proto::{BlobId, NodeId};

use crate::api::files::NodeCleanup;
use crate::api::parse_json;
use crate::auth::ClusterAuth;
use crate::error::{ApiError, ApiResult, InternalError};
use crate::placement;
use crate::state::{now_ms, AppState};

/// Files that were superseded by a re-upload give this reason.
pub const SUPERSEDE_REASON: &str = "superseded by re-upload to same bucket+object_key";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/node/register", post(register))
        .route("/v1/node/heartbeat", post(heartbeat))
        .route("/v1/node/uploads/{blob_id}/received", post(upload_received))
        .route(
            "/v1/node/uploads/{blob_id}/distributed",
            post(upload_distributed),
        )
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

/// The file uploaded under blob `raw`, if `node` is the originator it was assigned to.
async fn originator_upload(
    state: &AppState,
    raw: &str,
    node: &NodeId,
) -> ApiResult<(BlobId, zib_meta::FileRow)> {
    let not_found = || ApiError::NotFound(format!("upload {raw} not found"));
    let blob_id: BlobId = raw.parse().map_err(|_| not_found())?;
    let file = state
        .store
        .file_by_upload_blob(blob_id)
        .await?
        .ok_or_else(not_found)?;
    if &file.originator != node {
        return Err(ApiError::Forbidden(format!(
            "upload {blob_id} was assigned to another node"
        )));
    }
    Ok((blob_id, file))
}

/// A capability for `PUT /v1/shards/{blob_id}` on `node`, for exactly `size` bytes.
pub fn shard_capability(
    state: &AppState,
    node: &NodeId,
    blob_id: BlobId,
    size: u64,
    expires_at: u64,
) -> String {
    state.config.capability_signer.sign(&CapabilityClaims {
        op: CapabilityOp::Shard,
        node_id: node.clone(),
        blob_id,
        size,
        part: None,
        offset: None,
        parts: None,
        expires_at,
        jti: uuid::Uuid::new_v4().simple().to_string(),
    })
}

/// The originator holds a whole envelope: hand it the placement of every shard.
async fn upload_received(
    State(state): State<AppState>,
    _: ClusterAuth,
    Path(raw): Path<String>,
    body: Bytes,
) -> ApiResult<Json<DistributionPlan>> {
    let req: UploadReceivedRequest = parse_json(&body)?;
    let (blob_id, file) = originator_upload(&state, &raw, &req.node_id).await?;
    if req.size != file.ciphertext_size {
        return Err(ApiError::invalid(
            "size",
            format!(
                "expected {} bytes, node holds {}",
                file.ciphertext_size, req.size
            ),
        ));
    }
    match file.phase {
        FilePhase::Pending => {
            state.store.mark_uploading(file.file_id).await?;
        }
        FilePhase::Uploading => {}
        other => {
            return Err(ApiError::Conflict(format!(
                "upload {blob_id} is {} and cannot be distributed again",
                other.as_str()
            )))
        }
    }

    let now = now_ms();
    let erasure = file.erasure();
    let layout = Layout::new(erasure, file.ciphertext_size);
    let candidates: Vec<NodeRow> = state
        .store
        .list_nodes()
        .await?
        .into_iter()
        .filter(|n| state.is_online(n.last_heartbeat_at, now))
        .collect();
    if candidates.is_empty() {
        return Err(ApiError::Unavailable("no storage nodes available".into()));
    }
    if candidates.len() < erasure.total_shards() {
        tracing::warn!(
            online = candidates.len(),
            width = erasure.total_shards(),
            "fewer online nodes than shards per segment: some nodes hold several shards of a segment"
        );
    }
    let ordered = placement::zone_interleaved(&candidates);
    let expires_at = (now as u64 / 1000) + state.config.upload_expiry.as_secs();
    let segments = (0..layout.segment_count())
        .map(|segment| {
            let shard_len = layout.shard_len(segment);
            let targets = placement::segment_holders(&ordered, segment, erasure.total_shards())
                .into_iter()
                .enumerate()
                .map(|(index, node)| {
                    let blob_id = BlobId::new_random();
                    let token =
                        shard_capability(&state, &node.node_id, blob_id, shard_len, expires_at);
                    ShardTarget {
                        index: index as u8,
                        node_id: node.node_id.clone(),
                        node_url: node.public_url.clone(),
                        blob_id,
                        token,
                    }
                })
                .collect();
            SegmentPlan { segment, targets }
        })
        .collect();
    Ok(Json(DistributionPlan { erasure, segments }))
}

/// Every shard is stored: record them, make the file current for its key.
async fn upload_distributed(
    State(state): State<AppState>,
    _: ClusterAuth,
    Path(raw): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: DistributedRequest = parse_json(&body)?;
    let (_, file) = originator_upload(&state, &raw, &req.node_id).await?;
    let erasure = file.erasure();
    let layout = Layout::new(erasure, file.ciphertext_size);
    let width = erasure.total_shards();
    let expected = layout.segment_count() as usize * width;
    let mut seen = vec![false; expected];
    let mut rows = Vec::with_capacity(req.shards.len());
    for s in &req.shards {
        let slot = (s.segment as usize)
            .checked_mul(width)
            .and_then(|v| v.checked_add(s.index as usize))
            .filter(|&i| {
                s.segment < layout.segment_count() && (s.index as usize) < width && i < expected
            })
            .ok_or_else(|| {
                ApiError::invalid(
                    "shards",
                    format!("shard {}/{} is outside the file", s.segment, s.index),
                )
            })?;
        if std::mem::replace(&mut seen[slot], true) {
            return Err(ApiError::invalid(
                "shards",
                format!("shard {}/{} reported twice", s.segment, s.index),
            ));
        }
        if s.size != layout.shard_len(s.segment) {
            return Err(ApiError::invalid(
                "shards",
                format!("shard {}/{} has the wrong size", s.segment, s.index),
            ));
        }
        let blake3 = hex::decode(&s.blake3)
            .ok()
            .filter(|h| h.len() == 32)
            .ok_or_else(|| ApiError::invalid("shards", "blake3 must be 64 hex characters"))?;
        rows.push(ShardRow {
            file_id: file.file_id,
            segment: s.segment,
            index: s.index,
            node_id: s.node_id.clone(),
            blob_id: s.blob_id,
            size: s.size,
            blake3,
        });
    }
    if seen.iter().any(|s| !s) {
        return Err(ApiError::invalid(
            "shards",
            "not every shard of every segment was reported",
        ));
    }
    let outcome = state
        .store
        .complete_distribution(file.file_id, &rows, now_ms(), SUPERSEDE_REASON)
        .await
        .map_err(|e| match e {
            zib_meta::MetaError::Conflict(what) => ApiError::Conflict(what.to_string()),
            other => ApiError::Internal(InternalError::Meta(other)),
        })?;
    match outcome {
        Distribution::Current { superseded } => {
            tracing::info!(file_id = %file.file_id, shards = rows.len(), "file distributed");
            if let Some(prior) = superseded {
                tracing::info!(file_id = %prior, by = %file.file_id, "file superseded; evicting its bytes");
                evict(&state, prior).await;
            }
        }
        Distribution::Stale { current } => {
            tracing::info!(file_id = %file.file_id, %current, "late upload of a superseded registration refused");
            evict(&state, file.file_id).await;
            return Err(ApiError::Conflict(
                "this upload was superseded by a newer upload to the same bucket and key".into(),
            ));
        }
    }
    Ok(Json(json!({"status": "distributed"})))
}

/// Queues the deletion of a cancelled file's blobs and tries them at once; holders
/// that are offline get them on their next heartbeat.
pub async fn evict(state: &AppState, file_id: zib_proto::FileId) {
    match state.store.evict_file(file_id, now_ms()).await {
        Ok(blobs) => {
            if let Err(e) = delete_blobs_now(state, &blobs, EVICT_TIMEOUT).await {
                tracing::warn!(%file_id, error = %e, "eviction left to heartbeats");
            }
        }
        Err(e) => tracing::error!(%file_id, error = %e, "evicting a cancelled file failed"),
    }
}

/// How long an eviction waits for a node before leaving it to the heartbeat.
const EVICT_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks every holder to drop its blobs now, counting blobs by outcome. Holders that
/// do not confirm keep the queued command and get it on their next heartbeat.
pub async fn delete_blobs_now(
    state: &AppState,
    blobs: &[(NodeId, BlobId)],
    timeout: Duration,
) -> ApiResult<NodeCleanup> {
    let mut by_node: HashMap<NodeId, Vec<BlobId>> = HashMap::new();
    for (node, blob) in blobs {
        by_node.entry(node.clone()).or_default().push(*blob);
    }
    let now = now_ms();
    let nodes = state.store.list_nodes().await?;
    let mut cleanup = NodeCleanup::default();
    for (node_id, blob_ids) in by_node {
        let node = nodes
            .iter()
            .find(|n| n.node_id == node_id)
            .filter(|n| state.is_online(n.last_heartbeat_at, now));
        let Some(node) = node else {
            cleanup.queued_for_offline += blob_ids.len() as u64;
            continue;
        };
        let deletes = blob_ids.iter().map(|b| {
            state
                .http
                .delete(format!("{}/v1/shards/{b}", node.public_url))
                .bearer_auth(&state.config.cluster_token)
                .timeout(timeout)
                .send()
        });
        let results = futures::future::join_all(deletes).await;
        let ok = results
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|r| r.status().is_success()))
            .count() as u64;
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
