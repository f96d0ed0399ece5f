//! `/v1/node/compute/*`: the AI node's side of a compute job (zib_proto::compute):
//! claim, lease renewals, the source ciphertext, each output, done or failed. The
//! lifecycle is `domain::compute::lifecycle`; a lapsed or cancelled lease is `410`.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use zib_proto::compute::{ComputeClaimRequest, ComputeDone, ComputeLeaseRenewal};
use zib_proto::jobs::{ArtifactStored, JobFailure, LeaseStatus, MAX_ARTIFACT_BYTES};

use crate::auth::ClusterAuth;
use crate::body::parse_json;
use crate::domain::compute::lifecycle;
use crate::error::ApiResult;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/node/compute/claim", post(claim))
        .route("/v1/node/compute/{job_id}/lease", post(renew))
        .route("/v1/node/compute/{job_id}/source", get(source))
        .route(
            "/v1/node/compute/{job_id}/outputs/{kind}",
            // A larger body is refused with 413 before it is read whole.
            post(output).layer(DefaultBodyLimit::max(MAX_ARTIFACT_BYTES)),
        )
        .route("/v1/node/compute/{job_id}/done", post(done))
        .route("/v1/node/compute/{job_id}/failed", post(failed))
}

/// `200` with a job, or `204` when none is waiting.
async fn claim(State(state): State<AppState>, _: ClusterAuth, body: Bytes) -> ApiResult<Response> {
    let req: ComputeClaimRequest = parse_json(&body)?;
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
    let req: ComputeLeaseRenewal = parse_json(&body)?;
    lifecycle::renew(&state, &job_id, &req).await.map(Json)
}

async fn source(
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

async fn output(
    State(state): State<AppState>,
    _: ClusterAuth,
    Path((job_id, kind)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<ArtifactStored>> {
    let token = super::lease_token(&headers)?;
    lifecycle::store_output(&state, &job_id, token, &kind, body)
        .await
        .map(Json)
}

async fn done(
    State(state): State<AppState>,
    _: ClusterAuth,
    Path(job_id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let req: ComputeDone = parse_json(&body)?;
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
