//! Files, objects and buckets of the authenticated tenant.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use zib_meta::FileRow;
use zib_proto::api::{BucketInfo, BucketList, FileInfo, ObjectInfo, ObjectList};
use zib_proto::FileId;

use crate::auth::AuthTenant;
use crate::domain::deletion::{self, Deleted};
use crate::error::{ApiError, ApiResult};
use crate::state::{rfc3339, AppState};

/// A file id as the OpenAPI document declares it (`format: uuid`): the 36-character
/// hyphenated form only, so the server accepts exactly what the document calls valid.
fn parse_file_id(raw: &str) -> Option<FileId> {
    let hyphens_ok = raw.len() == 36
        && raw
            .char_indices()
            .all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) == (c == '-'));
    hyphens_ok.then(|| raw.parse().ok()).flatten()
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
    // Not a UUID is simply not found here: ids leak nothing either way.
    let not_found = || ApiError::NotFound(format!("file {raw_id} not found"));
    let id = parse_file_id(&raw_id).ok_or_else(not_found)?;
    let f = state
        .store
        .file_for_tenant(&tenant.id, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(to_file_info(&state, &f)))
}

pub async fn delete_file(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(raw_id): Path<String>,
) -> ApiResult<Json<Value>> {
    // A delete of a malformed id is a typo, not an idempotent retry: saying
    // "already deleted" would hide it. An id that parses but names nothing (or another
    // tenant's file) stays the contract's 200 `already_deleted`.
    let id = parse_file_id(&raw_id).ok_or_else(|| {
        ApiError::invalid(
            "file_id",
            format!(
                "{raw_id:?} is not a file id (a UUID such as 01846192-315c-4f0a-b766-12b18a26b209)"
            ),
        )
    })?;
    delete_and_report(&state, &tenant.id, id).await.map(Json)
}

/// `DELETE /v1/api/storage/{bucket}/{key...}`: the current file of that key.
pub async fn delete_object(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path((bucket, key)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    match state.store.object(&tenant.id, &bucket, &key).await? {
        Some(file) => delete_and_report(&state, &tenant.id, file.file_id)
            .await
            .map(Json),
        None => Ok(Json(json!({
            "success": true, "already_deleted": true, "bucket": bucket, "key": key,
        }))),
    }
}

async fn delete_and_report(state: &AppState, tenant_id: &str, id: FileId) -> ApiResult<Value> {
    let Some(Deleted {
        deleted,
        node_cleanup,
    }) = deletion::delete_file(state, tenant_id, id).await?
    else {
        return Ok(json!({"success": true, "already_deleted": true, "file_id": id}));
    };
    let was_current = deleted.file.phase.is_readable();
    Ok(json!({
        "success": true,
        "file_id": id,
        "bucket": deleted.file.bucket,
        "key": deleted.file.object_key,
        "deleted": {
            "files": 1,
            "shards": deleted.shard_rows,
            "s3_objects": u64::from(was_current),
            "video_segments": 0,
            "encoding_jobs": 0,
        },
        "node_cleanup": node_cleanup,
        "encoding_jobs_cancelled": 0,
    }))
}

pub async fn list_buckets(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
) -> ApiResult<Json<BucketList>> {
    let modes: std::collections::HashMap<_, _> = state
        .store
        .bucket_overwrite_modes(&tenant.id)
        .await?
        .into_iter()
        .collect();
    let buckets = state
        .store
        .list_bucket_stats(&tenant.id)
        .await?
        .into_iter()
        .map(|b| BucketInfo {
            overwrite: super::buckets::to_wire(modes.get(&b.name).copied().unwrap_or_default()),
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
