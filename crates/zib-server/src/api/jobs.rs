//! The Job Status API: `GET /v1/api/my-jobs?status=active|all` (each file's latest
//! encoding job), `DELETE /v1/api/my-jobs/{file_id}` (cancel) and `POST
//! /v1/api/my-jobs/{file_id}/retry`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::Json;
use zib_meta::{EncodingJobRow, JobPhase};
use zib_proto::encoding::{MyJob, MyJobs};
use zib_proto::FileId;

use crate::auth::AuthTenant;
use crate::body::parse_json;
use crate::domain::encoding::{cancel, request};
use crate::error::{ApiError, ApiResult};
use crate::state::{rfc3339, AppState, Inner};

/// Peers that must hold every segment before a job is `safe` (DESIGN.md §5).
pub const REPLICATION_TARGET: u32 = 3;

#[derive(Debug, serde::Deserialize)]
pub struct ListQuery {
    status: Option<String>,
}

pub async fn my_jobs(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<MyJobs>> {
    let active_only = match q.status.as_deref() {
        None | Some("active") => true,
        Some("all") => false,
        Some(other) => {
            return Err(ApiError::invalid(
                "status",
                format!("must be \"active\" or \"all\", got {other:?}"),
            ))
        }
    };
    let mut jobs = Vec::new();
    for (job, key) in state
        .store
        .my_encoding_jobs(&tenant.id, active_only)
        .await?
    {
        jobs.push(my_job(&state, &job, &key).await?);
    }
    Ok(Json(MyJobs { jobs }))
}

/// The my-jobs row of `job`, whose file has `object_key`.
pub async fn my_job(state: &Inner, job: &EncodingJobRow, object_key: &str) -> ApiResult<MyJob> {
    let title = object_key
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or(object_key)
        .to_string();
    Ok(MyJob {
        file_id: job.file_id,
        encoding_id: job.id.clone(),
        title,
        phase: job.phase.as_str().to_string(),
        phase_progress_pct: job.phase_progress_pct,
        phase_detail: job.phase_detail.clone(),
        phase_updated_at: rfc3339(job.phase_updated_at),
        replication_peer_count: state.store.job_replication_peer_count(&job.id).await?,
        replication_target_count: REPLICATION_TARGET,
        replication_safe_at: job.replication_safe_at.map(rfc3339),
        retry_count: job.retry_count,
        last_error: job.error_message.clone(),
        cancellable: !job.phase.is_terminal(),
        retriable: job.phase == JobPhase::FailedUserAction,
        created_at: rfc3339(job.created_at),
        node_id: job.node_id.as_ref().map(|n| n.to_string()),
    })
}

/// The tenant's file id from the path; anything else is simply not found.
fn file_id(raw: &str) -> ApiResult<FileId> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("no encoding job for file {raw}")))
}

/// The object key of the tenant's file (for the title), empty if it is gone.
async fn object_key(state: &Inner, tenant_id: &str, file_id: FileId) -> ApiResult<String> {
    Ok(state
        .store
        .file_for_tenant(tenant_id, file_id)
        .await?
        .map(|f| f.object_key)
        .unwrap_or_default())
}

pub async fn retry_job(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(raw): Path<String>,
) -> ApiResult<Json<MyJob>> {
    let id = file_id(&raw)?;
    let job = request::retry(&state, &tenant.id, id).await?;
    let key = object_key(&state, &tenant.id, id).await?;
    Ok(Json(my_job(&state, &job, &key).await?))
}

/// Why a job was cancelled when the tenant gives no `reason`.
pub const DEFAULT_CANCEL_REASON: &str = "cancelled by the tenant";
/// Longest `reason` kept (it is shown back as the job's `cancelled_reason`).
const MAX_REASON_CHARS: usize = 500;

/// The optional `{"reason": "..."}` body of a cancel.
fn cancel_reason(body: &[u8]) -> ApiResult<String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DEFAULT_CANCEL_REASON.to_string());
    }
    let map: serde_json::Map<String, serde_json::Value> = parse_json(body)?;
    if let Some(other) = map.keys().find(|k| k.as_str() != "reason") {
        return Err(ApiError::invalid(
            "reason",
            format!("unknown field {other:?}: the body is {{\"reason\": \"...\"}}"),
        ));
    }
    match map.get("reason") {
        None | Some(serde_json::Value::Null) => Ok(DEFAULT_CANCEL_REASON.to_string()),
        Some(serde_json::Value::String(r)) if r.trim().is_empty() => {
            Ok(DEFAULT_CANCEL_REASON.to_string())
        }
        Some(serde_json::Value::String(r))
            if r.chars().count() <= MAX_REASON_CHARS && !r.chars().any(char::is_control) =>
        {
            Ok(r.clone())
        }
        Some(_) => Err(ApiError::invalid(
            "reason",
            format!("must be a string of at most {MAX_REASON_CHARS} printable characters"),
        )),
    }
}

/// Cancels the file's latest job (and its aspect variants in flight): 404 without
/// one, 409 once it is terminal.
pub async fn cancel_job(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(raw): Path<String>,
    body: Bytes,
) -> ApiResult<Json<MyJob>> {
    let id = file_id(&raw)?;
    let reason = cancel_reason(&body)?;
    // A variant's stream file is not an upload (not listed either): its jobs go
    // with their main job's.
    let job = state
        .store
        .latest_encoding_job(&tenant.id, id)
        .await?
        .filter(|j| !j.is_variant())
        .ok_or_else(|| ApiError::NotFound(format!("no encoding job for file {id}")))?;
    let not_cancellable = |phase: JobPhase| {
        ApiError::Conflict(format!(
            "encoding job {} is {} and can no longer be cancelled",
            job.id,
            phase.as_str()
        ))
    };
    if job.phase.is_terminal() {
        return Err(not_cancellable(job.phase));
    }
    if !cancel::cancel_job(&state, &job, &reason).await? {
        // It reached a terminal phase meanwhile.
        let now = state.store.encoding_job(&job.id).await?;
        return Err(not_cancellable(now.map_or(job.phase, |j| j.phase)));
    }
    let cancelled = state
        .store
        .encoding_job(&job.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no encoding job for file {id}")))?;
    let key = object_key(&state, &tenant.id, id).await?;
    Ok(Json(my_job(&state, &cancelled, &key).await?))
}
