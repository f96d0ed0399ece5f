//! Tenant API under `/v1/api`, one module per resource.

pub mod buckets;
pub mod files;
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
}
