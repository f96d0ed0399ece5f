//! `/v1/node/jobs/{job_id}/artifacts/{kind}` and `/v1/node/jobs/{job_id}/thumbnails`:
//! the encoding node hands over a job's poster, sprite sheets and sprite VTT as
//! plaintext, and then names the set. Storing them is `domain::derived`.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use zib_proto::jobs::{ArtifactKind, ArtifactStored, ThumbnailsRegistered, MAX_ARTIFACT_BYTES};

use crate::auth::ClusterAuth;
use crate::body::parse_json;
use crate::domain::derived;
use crate::domain::encoding::lifecycle;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/node/jobs/{job_id}/artifacts/{kind}",
            // A larger body is refused with 413 before it is read whole.
            post(artifact).layer(DefaultBodyLimit::max(MAX_ARTIFACT_BYTES)),
        )
        .route("/v1/node/jobs/{job_id}/thumbnails", post(thumbnails))
}

#[derive(serde::Deserialize)]
struct ArtifactQuery {
    #[serde(default)]
    seq: u32,
}

async fn artifact(
    State(state): State<AppState>,
    _: ClusterAuth,
    Path((job_id, kind)): Path<(String, String)>,
    Query(query): Query<ArtifactQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<ArtifactStored>> {
    let token = super::lease_token(&headers)?;
    let job = lifecycle::leased_job(&state, &job_id, token).await?;
    let kind = ArtifactKind::parse(&kind).ok_or_else(|| {
        ApiError::invalid(
            "kind",
            format!("{kind:?} is not an artefact kind (poster, sprite_sheet, sprite_vtt)"),
        )
    })?;
    if body.is_empty() {
        return Err(ApiError::invalid("body", "an artefact cannot be empty"));
    }
    derived::store_artifact(&state, &job, kind, query.seq, body)
        .await
        .map(Json)
}

async fn thumbnails(
    State(state): State<AppState>,
    _: ClusterAuth,
    Path(job_id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let req: ThumbnailsRegistered = parse_json(&body)?;
    derived::register_thumbnails(&state, &job_id, &req).await?;
    Ok(StatusCode::NO_CONTENT)
}
