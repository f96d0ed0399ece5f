//! `/v1/node/jobs/*`: the encoding node's side of a job (zib_proto::jobs): claim,
//! lease renewals, the source ciphertext, and what it produced. The lifecycle itself
//! is `domain::encoding::lifecycle`; a lapsed lease or a cancelled job is `410 Gone`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use zib_proto::jobs::{
    ClaimRequest, JobDone, JobFailure, JobProbed, LeaseRenewal, LeaseStatus, RenditionDone,
    ReplicasStored, SegmentStored, SegmentTargets,
};

use crate::auth::ClusterAuth;
use crate::body::parse_json;
use crate::domain::encoding::lifecycle;
use crate::error::ApiResult;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/node/jobs/claim", post(claim))
        .route("/v1/node/jobs/{job_id}/lease", post(renew))
        .route("/v1/node/jobs/{job_id}/source", get(job_source))
        .route("/v1/node/jobs/{job_id}/probed", post(probed))
        .route("/v1/node/jobs/{job_id}/segments", post(segment))
        .route("/v1/node/jobs/{job_id}/replicas", post(replicas))
        .route(
            "/v1/node/jobs/{job_id}/renditions/{name}/published",
            post(published),
        )
        .route("/v1/node/jobs/{job_id}/done", post(done))
        .route("/v1/node/jobs/{job_id}/failed", post(failed))
}

/// `200` with a job, or `204` when none is waiting.
async fn claim(State(state): State<AppState>, _: ClusterAuth, body: Bytes) -> ApiResult<Response> {
    let req: ClaimRequest = parse_json(&body)?;
    Ok(match lifecycle::claim(&state, &req).await? {
        Some(job) => Json(job).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

async fn renew(
    State(state): State<AppState>,
    _: ClusterAuth,
    Path(job_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<LeaseStatus>> {
    let req: LeaseRenewal = parse_json(&body)?;
    lifecycle::renew(&state, &job_id, &req).await.map(Json)
}

async fn job_source(
    State(state): State<AppState>,
    _: ClusterAuth,
    Path(job_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let token = super::lease_token(&headers)?;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let read = lifecycle::source(&state, &job_id, token, range).await?;
    Ok(super::source_response(read))
}

async fn probed(
    State(state): State<AppState>,
    _: ClusterAuth,
    Path(job_id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let req: JobProbed = parse_json(&body)?;
    lifecycle::probed(&state, &job_id, &req).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn segment(
    State(state): State<AppState>,
    _: ClusterAuth,
    Path(job_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<SegmentTargets>> {
    let req: SegmentStored = parse_json(&body)?;
    lifecycle::segment_stored(&state, &job_id, &req)
        .await
        .map(Json)
}

async fn replicas(
    State(state): State<AppState>,
    _: ClusterAuth,
    Path(job_id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let req: ReplicasStored = parse_json(&body)?;
    lifecycle::replicas_stored(&state, &job_id, &req).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn published(
    State(state): State<AppState>,
    _: ClusterAuth,
    Path((job_id, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let req: RenditionDone = parse_json(&body)?;
    lifecycle::rendition_published(&state, &job_id, &name, &req).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn done(
    State(state): State<AppState>,
    _: ClusterAuth,
    Path(job_id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let req: JobDone = parse_json(&body)?;
    lifecycle::done(&state, &job_id, &req).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn failed(
    State(state): State<AppState>,
    _: ClusterAuth,
    Path(job_id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let req: JobFailure = parse_json(&body)?;
    lifecycle::failed(&state, &job_id, &req).await?;
    Ok(StatusCode::NO_CONTENT)
}
