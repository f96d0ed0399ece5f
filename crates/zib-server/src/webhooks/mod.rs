//! Webhooks (DESIGN.md §9): the tenant API to configure them, the dispatcher that
//! delivers the outbox, and the SSRF guard both go through. Events themselves are
//! written by the metadata store in the transaction of the change they report.

pub mod api;
pub mod dispatcher;
pub mod ssrf;

use axum::routing::{get, post};
use axum::Router;
use zib_proto::FileId;

pub use dispatcher::Dispatcher;

use crate::error::{ApiError, ApiResult};
use crate::state::{now_ms, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/api/customers/{customer_id}/webhook",
            get(api::get_customer_webhook).patch(api::patch_customer_webhook),
        )
        .route(
            "/v1/api/customers/{customer_id}/webhook/secret",
            post(api::rotate_customer_secret),
        )
        .route(
            "/v1/api/webhooks/endpoints",
            get(api::list_endpoints).post(api::create_endpoint),
        )
        .route(
            "/v1/api/webhooks/endpoints/{id}",
            get(api::get_endpoint)
                .patch(api::update_endpoint)
                .delete(api::delete_endpoint),
        )
        .route(
            "/v1/api/webhooks/endpoints/{id}/test",
            post(api::test_endpoint),
        )
        .route(
            "/v1/api/webhooks/endpoints/{id}/deliveries",
            get(api::endpoint_deliveries),
        )
        .route("/v1/api/webhooks/events", get(api::list_events))
        .route("/v1/api/webhooks/events/{id}", get(api::get_event))
        .route(
            "/v1/api/webhooks/events/{id}/attempts",
            get(api::event_attempts),
        )
        .route(
            "/v1/api/webhooks/events/{id}/redeliver",
            post(api::redeliver_event),
        )
}

/// An upload's own webhook target, from `pipeline.webhook_url` / `webhook_secret`.
pub struct RequestTarget {
    url: String,
    secret: Option<String>,
}

/// Reads and checks the per-request target of an initiate's `pipeline` (before the
/// file is registered, so a refused URL registers nothing).
pub async fn request_target(
    state: &AppState,
    pipeline: &Option<serde_json::Value>,
) -> ApiResult<Option<RequestTarget>> {
    let Some(serde_json::Value::Object(p)) = pipeline else {
        return Ok(None);
    };
    let text = |field: &'static str| -> ApiResult<Option<String>> {
        match p.get(field.trim_start_matches("pipeline.")) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::invalid(field, "must be a string")),
        }
    };
    let url = text("pipeline.webhook_url")?;
    let secret = text("pipeline.webhook_secret")?;
    let Some(url) = url else {
        if secret.is_some() {
            return Err(ApiError::invalid(
                "pipeline.webhook_secret",
                "is only meaningful with pipeline.webhook_url",
            ));
        }
        return Ok(None);
    };
    let url = api::check_target(state, "pipeline.webhook_url", &url).await?;
    if let Some(s) = &secret {
        api::check_secret("pipeline.webhook_secret", s)?;
    }
    Ok(Some(RequestTarget { url, secret }))
}

/// Stores the target with the file: its events go there instead of the tenant
/// default.
pub async fn store_request_target(
    state: &AppState,
    file_id: FileId,
    target: Option<RequestTarget>,
) -> ApiResult<()> {
    if let Some(t) = target {
        state
            .store
            .set_file_webhook(file_id, &t.url, t.secret.as_deref(), now_ms())
            .await?;
    }
    Ok(())
}
