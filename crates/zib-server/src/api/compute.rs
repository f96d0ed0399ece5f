//! `POST /v1/api/compute/transcription`, `POST /v1/api/compute/vision` and `GET
//! /v1/api/compute/jobs/{job_id}`: AI runs over a stored video, asked alone
//! (`domain::compute`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use zib_proto::compute::{ComputeJobStatus, ComputeKind, TranscriptionRequest, VisionRequest};

use crate::auth::AuthTenant;
use crate::body::parse_json;
use crate::domain::compute::{request, views};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `202` with a new job, `200` naming the in-flight one.
fn answer((created, body): (bool, zib_proto::compute::ComputeSubmitted)) -> Response {
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

pub async fn submit_transcription(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    body: Bytes,
) -> ApiResult<Response> {
    let req: TranscriptionRequest = parse_json(&body)?;
    let submitted = request::submit(
        &state,
        &tenant.id,
        ComputeKind::Transcription,
        &req.file_id,
        req.tier.as_deref(),
    )
    .await?;
    Ok(answer(submitted))
}

pub async fn submit_vision(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    body: Bytes,
) -> ApiResult<Response> {
    let req: VisionRequest = parse_json(&body)?;
    let submitted = request::submit(
        &state,
        &tenant.id,
        ComputeKind::Vision,
        &req.file_id,
        req.tier.as_deref(),
    )
    .await?;
    Ok(answer(submitted))
}

/// Another tenant's job is missing, like one that never existed.
pub async fn job_status(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(job_id): Path<String>,
) -> ApiResult<Json<ComputeJobStatus>> {
    let job = state
        .store
        .compute_job_for_tenant(&tenant.id, &job_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("compute job {job_id} not found")))?;
    Ok(Json(views::status_of(&state, &job)))
}
