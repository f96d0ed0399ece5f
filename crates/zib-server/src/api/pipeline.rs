//! `GET /v1/api/pipeline/{file_id}`: the rolled-up status of every declared stage.
//! Only the upload stage exists so far; undeclared stages are `null`. The upload
//! stage reports the file's redundancy as it is now (its weakest segment).

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};
use zib_meta::FilePhase;
use zib_proto::FileId;

use crate::auth::AuthTenant;
use crate::error::{ApiError, ApiResult};
use crate::state::{now_ms, rfc3339, AppState};

/// The upload phase shown for a `safe` file below full redundancy (docs/architecture.md).
pub const DEGRADED: &str = "degraded";

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
    let online_since = now_ms() - state.config.node_offline_after.as_millis() as i64;
    let redundancy = match file.phase {
        FilePhase::Distributed | FilePhase::Safe => {
            state.store.file_redundancy(id, online_since).await?
        }
        _ => None,
    };
    // A safe file that lost a shard (or a holder) says so until it is repaired: it
    // reads fine, but one more loss than usual could cost it.
    let degraded = file.phase == FilePhase::Safe && redundancy.is_some_and(|r| !r.is_full());
    let (status, upload_status) = match file.phase {
        FilePhase::Pending => ("queued", "pending"),
        FilePhase::Uploading => ("uploading", "uploading"),
        FilePhase::Distributed | FilePhase::Safe => ("complete", "complete"),
        FilePhase::Cancelled | FilePhase::Failed => ("failed", "failed"),
    };
    let mut upload = json!({
        "status": upload_status,
        "phase": if degraded { DEGRADED } else { file.phase.as_str() },
        "replication_safe_at": safe_at.map(rfc3339),
        "redundancy": redundancy.map(|r| json!({
            "live_shards": r.live_shards,
            "target": r.target,
            "weakest_segment": r.weakest_segment,
        })),
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
