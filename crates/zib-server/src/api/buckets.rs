//! A tenant's buckets as things of their own: their overwrite mode and their deletion
//! (listing stays with the files, in `files::list_buckets`).

use axum::extract::{Path, State};
use axum::Json;
use zib_meta::OverwriteMode;
use zib_proto::api::{self, BucketDeleted, BucketInfo, BucketSettings};

use crate::auth::AuthTenant;
use crate::body::parse_json;
use crate::domain::deletion;
use crate::domain::registration::validate_bucket;
use crate::error::{ApiError, ApiResult};
use crate::state::{rfc3339, AppState};

pub fn to_wire(mode: OverwriteMode) -> api::OverwriteMode {
    match mode {
        OverwriteMode::Conflict => api::OverwriteMode::Conflict,
        OverwriteMode::Supersede => api::OverwriteMode::Supersede,
    }
}

fn from_wire(mode: api::OverwriteMode) -> OverwriteMode {
    match mode {
        api::OverwriteMode::Conflict => OverwriteMode::Conflict,
        api::OverwriteMode::Supersede => OverwriteMode::Supersede,
    }
}

/// `DELETE /v1/api/me/buckets/{bucket}`: only an empty bucket (no object, no upload
/// in progress), as S3's DeleteBucket.
pub async fn delete_bucket(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(bucket): Path<String>,
) -> ApiResult<Json<BucketDeleted>> {
    deletion::delete_bucket(&state, &tenant.id, &bucket).await?;
    Ok(Json(BucketDeleted {
        success: true,
        bucket,
    }))
}

/// `PATCH /v1/api/me/buckets/{bucket}` with `{"overwrite": "supersede" | "conflict"}`.
/// A missing bucket is created (buckets also come into being on first upload), so a
/// bucket can be set up before the first `sync` into it.
pub async fn update_bucket(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(bucket): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<BucketInfo>> {
    validate_bucket(&bucket)?;
    let settings = parse_settings(&body)?;
    state
        .store
        .set_bucket_overwrite_mode(&tenant.id, &bucket, from_wire(settings.overwrite))
        .await?;
    let stats = state
        .store
        .list_bucket_stats(&tenant.id)
        .await?
        .into_iter()
        .find(|b| b.name == bucket)
        .ok_or_else(|| ApiError::NotFound(format!("bucket {bucket:?} not found")))?;
    Ok(Json(BucketInfo {
        name: stats.name,
        object_count: stats.object_count,
        total_bytes: stats.total_bytes,
        created_at: rfc3339(stats.created_at),
        overwrite: settings.overwrite,
    }))
}

/// The body, with a missing or unknown mode named as the field it is.
fn parse_settings(body: &[u8]) -> ApiResult<BucketSettings> {
    let value: serde_json::Map<String, serde_json::Value> = parse_json(body)?;
    if let Some(other) = value.keys().find(|k| k.as_str() != "overwrite") {
        return Err(ApiError::invalid(
            "overwrite",
            format!("unknown field {other:?}: the body is {{\"overwrite\": \"supersede\" | \"conflict\"}}"),
        ));
    }
    let overwrite = match value.get("overwrite").and_then(|v| v.as_str()) {
        Some("conflict") => api::OverwriteMode::Conflict,
        Some("supersede") => api::OverwriteMode::Supersede,
        _ => {
            return Err(ApiError::invalid(
                "overwrite",
                "is required and must be \"supersede\" or \"conflict\"",
            ))
        }
    };
    Ok(BucketSettings { overwrite })
}
