//! Tenant API under `/v1/api`, one module per resource.

pub mod buckets;
pub mod compute;
pub mod encoding;
pub mod files;
pub mod jobs;
pub mod pipeline;
pub mod upload;

use axum::routing::{delete, get, post};
use axum::Router;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/api/upload/initiate", post(upload::initiate))
        .route(
            "/v1/api/file/{file_id}",
            get(files::file_info).delete(files::delete_file),
        )
        .route("/v1/api/me/buckets", get(files::list_buckets))
        .route(
            "/v1/api/me/buckets/{bucket}",
            delete(buckets::delete_bucket).patch(buckets::update_bucket),
        )
        .route("/v1/api/storage/{bucket}", get(files::list_objects))
        .route(
            "/v1/api/storage/{bucket}/{*key}",
            delete(files::delete_object),
        )
        .route("/v1/api/pipeline/{file_id}", get(pipeline::pipeline_status))
        .route("/v1/api/encoding/request", post(encoding::request_encoding))
        .route("/v1/api/encoding/jobs", post(encoding::request_encoding))
        .route(
            "/v1/api/encoding/jobs/{encoding_id}",
            get(encoding::job_status),
        )
        .route(
            "/v1/api/compute/transcription",
            post(compute::submit_transcription),
        )
        .route("/v1/api/compute/vision", post(compute::submit_vision))
        .route("/v1/api/compute/jobs/{job_id}", get(compute::job_status))
        .route("/v1/api/my-jobs", get(jobs::my_jobs))
        .route("/v1/api/my-jobs/{file_id}", delete(jobs::cancel_job))
        .route("/v1/api/my-jobs/{file_id}/retry", post(jobs::retry_job))
}
