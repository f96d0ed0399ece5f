//! The Job Status API: `GET /v1/api/my-jobs?status=active|all` (each file's latest
//! encoding job), `DELETE /v1/api/my-jobs/{file_id}` (cancel) and `POST
//! /v1/api/my-jobs/{file_id}/retry`.

use axum::extract::{Path, Query, State};
use axum::Json;
use zib_meta::{EncodingJobRow, JobPhase};
use zib_proto::encoding::{MyJob, MyJobs};
use zib_proto::FileId;

use crate::auth::AuthTenant;
use crate::domain::encoding::request;
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
