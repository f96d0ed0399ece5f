//! `POST /v1/api/upload/initiate`: read and validate the request, then register the
//! upload in the domain layer.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use zib_proto::api::{InitiateRequest, Registration};
use zib_proto::pipeline::Pipeline;

use crate::auth::AuthTenant;
use crate::body::parse_json;
use crate::domain::registration::{
    register, validate_bucket, validate_content_type, validate_key, Sender,
};
use crate::domain::webhook_targets;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `file_size: 0` is accepted although the contract lists it among its 400 examples:
/// empty files are real (S3 clients upload them, `rclone copy` of a folder meets them),
/// and an empty file is stored as any other (docs/architecture.md, "Empty files").
fn validate_file_size(v: Option<serde_json::Value>, max: u64) -> Result<u64, ApiError> {
    let v = v.ok_or_else(|| ApiError::invalid("file_size", "is required (bytes, >= 0)"))?;
    let n = v.as_u64().ok_or_else(|| {
        ApiError::invalid(
            "file_size",
            format!("must be a non-negative integer, got {v}"),
        )
    })?;
    if n > max {
        return Err(ApiError::invalid(
            "file_size",
            format!("{n} bytes exceeds the maximum file size of {max} bytes"),
        ));
    }
    Ok(n)
}

pub async fn initiate(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    body: Bytes,
) -> ApiResult<Json<Registration>> {
    let req: InitiateRequest = parse_json(&body)?;
    let bucket = req
        .bucket
        .ok_or_else(|| ApiError::invalid("bucket", "is required"))?;
    validate_bucket(&bucket)?;
    let key = req
        .key
        .ok_or_else(|| ApiError::invalid("key", "is required"))?;
    validate_key(&key)?;
    let file_size = validate_file_size(req.file_size, state.config.max_file_size)?;
    let content_type = validate_content_type(req.content_type)?;
    let pipeline = Pipeline::from_json(req.pipeline.as_ref())
        .and_then(|p| p.with_legacy_capabilities(req.capabilities.as_ref()))
        .map_err(|e| ApiError::invalid(e.field, e.reason))?;
    let webhook = webhook_targets::request_target(&state, &pipeline).await?;

    let registered = register(
        &state,
        &tenant.id,
        bucket,
        key,
        file_size,
        content_type,
        Sender::Client {
            required: &pipeline.required_capabilities(),
        },
    )
    .await?;
    webhook_targets::store_request_target(&state, registered.registration.file_id, webhook).await?;
    // Kept for the pipeline status's `declared` and the encode enqueued once the
    // upload is distributed (domain::encoding::request::enqueue_declared).
    let declared = pipeline.declared();
    if declared.as_object().is_some_and(|m| !m.is_empty()) {
        state
            .store
            .set_file_pipeline(registered.registration.file_id, &declared)
            .await?;
    }
    Ok(Json(registered.registration))
}
