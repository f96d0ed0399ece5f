//! `GET /v1/api/pipeline/{file_id}`: the rolled-up status of every declared stage.
//! Only the upload stage exists so far; undeclared stages are `null`.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};
use zib_meta::FilePhase;
use zib_proto::FileId;

use crate::auth::AuthTenant;
use crate::error::{ApiError, ApiResult};
use crate::state::{rfc3339, AppState};

pub async fn pipeline_status(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(raw_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let not_found = || ApiError::NotFound(format!("file {raw_id} not found"));
    let id: FileId = raw_id.parse().map_err(|_| not_found())?;
    let file = state
        .store
        .file_for_tenant(&tenant.id, id)
        .await?
        .ok_or_else(not_found)?;
    let safe_at = state.store.replication_safe_at(id).await?;
    let (status, upload_status) = match file.phase {
        FilePhase::Pending => ("queued", "pending"),
        FilePhase::Uploading => ("uploading", "uploading"),
        FilePhase::Distributed | FilePhase::Safe => ("complete", "complete"),
        FilePhase::Cancelled | FilePhase::Failed => ("failed", "failed"),
    };
    let mut upload = json!({
        "status": upload_status,
        "phase": file.phase.as_str(),
        "replication_safe_at": safe_at.map(rfc3339),
    });
    if matches!(file.phase, FilePhase::Cancelled | FilePhase::Failed) {
        upload["cancelled_reason"] = json!(file.cancelled_reason);
    }
    let error = match file.phase {
        FilePhase::Cancelled | FilePhase::Failed => json!(file.cancelled_reason),
        _ => Value::Null,
    };
    Ok(Json(json!({
        "file_id": id,
        "status": status,
        "cdn_url": state.cdn_url(id),
        "declared": {},
        "stages": {
            "upload": upload,
            "encoding": null,
            "transcription": null,
            "vision": null,
        },
        "error": error,
    })))
}
