//! Webhooks (DESIGN.md §9): the tenant API to configure them and read their history.
//! Delivery is `workers::webhook_dispatcher`; both go through the SSRF guard in
//! `domain::ssrf`. Events themselves are written by the metadata store in the
//! transaction of the change they report.

pub mod api;

use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

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
                .put(api::replace_endpoint)
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
