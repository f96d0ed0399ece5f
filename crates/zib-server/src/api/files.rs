//! Files, objects and buckets of the authenticated tenant.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use zib_meta::FileRow;
use zib_proto::api::{BucketInfo, BucketList, FileInfo, ObjectInfo, ObjectList};
use zib_proto::FileId;

use crate::auth::AuthTenant;
use crate::error::{ApiError, ApiResult};
use crate::state::{now_ms, rfc3339, AppState};

/// A path id that is not a UUID is simply not found: ids leak nothing either way.
fn parse_file_id(raw: &str) -> Option<FileId> {
    raw.parse().ok()
}

fn to_file_info(state: &AppState, f: &FileRow) -> FileInfo {
    FileInfo {
        file_id: f.file_id,
        bucket: f.bucket.clone(),
        key: f.object_key.clone(),
        file_size: f.size,
        content_type: f.content_type.clone(),
        phase: f.phase.as_str().to_string(),
        cdn_url: state.cdn_url(f.file_id),
        created_at: rfc3339(f.created_at),
    }
}

pub async fn file_info(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(raw_id): Path<String>,
) -> ApiResult<Json<FileInfo>> {
    let not_found = || ApiError::NotFound(format!("file {raw_id} not found"));
    let id = parse_file_id(&raw_id).ok_or_else(not_found)?;
    let f = state
        .store
        .file_for_tenant(&tenant.id, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(to_file_info(&state, &f)))
}

/// How long a synchronous shard delete may take before the node is left to its
/// next heartbeat.
const SYNC_DELETE_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn delete_file(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(raw_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let already = || Json(json!({"success": true, "already_deleted": true}));
    let Some(id) = parse_file_id(&raw_id) else {
        return Ok(already());
    };
    let Some(deleted) = state.store.delete_file(&tenant.id, id, now_ms()).await? else {
        return Ok(already());
    };
    let node_cleanup =
        crate::node_rpc::delete_blobs_now(&state, &deleted.blobs, SYNC_DELETE_TIMEOUT).await?;
    Ok(Json(json!({
        "success": true,
        "file_id": id,
        "deleted": {"files": 1, "shards": deleted.shard_rows},
        "node_cleanup": node_cleanup,
    })))
}

pub async fn list_buckets(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
) -> ApiResult<Json<BucketList>> {
    let buckets = state
        .store
        .list_bucket_stats(&tenant.id)
        .await?
        .into_iter()
        .map(|b| BucketInfo {
            name: b.name,
            object_count: b.object_count,
            total_bytes: b.total_bytes,
            created_at: rfc3339(b.created_at),
        })
        .collect();
    Ok(Json(BucketList { buckets }))
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    prefix: Option<String>,
}

pub async fn list_objects(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(bucket): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<ObjectList>> {
    if state.store.bucket(&tenant.id, &bucket).await?.is_none() {
        return Err(ApiError::NotFound(format!("bucket {bucket:?} not found")));
    }
    let objects = state
        .store
        .list_objects(&tenant.id, &bucket, q.prefix.as_deref().unwrap_or(""))
        .await?
        .into_iter()
        .map(|o| ObjectInfo {
            key: o.key,
            file_id: o.file.file_id,
            size: o.file.size,
            content_type: o.file.content_type.clone(),
            phase: o.file.phase.as_str().to_string(),
            cdn_url: state.cdn_url(o.file.file_id),
            created_at: rfc3339(o.file.created_at),
        })
        .collect();
    Ok(Json(ObjectList { bucket, objects }))
}

/// `node_id → "ok" | "queued_for_offline" | "failed"`.
pub type NodeCleanup = BTreeMap<String, &'static str>;
