//! `GET /v1/openapi.json`: the hand-written OpenAPI 3 description of the tenant API
//! and the CDN. It is kept true by crates/zib-cli/tests/openapi.rs (routes compared
//! with the source, responses fuzzed by schemathesis), so edit it with the handlers.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

/// The document, as served. Embedded so a binary always describes itself.
pub const DOCUMENT: &str = include_str!("../openapi.json");

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/openapi.json", get(document))
}

async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_is_openapi_3_json() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        assert_eq!(doc["openapi"], "3.0.3");
        assert!(doc["paths"]["/v1/api/upload/initiate"]["post"].is_object());
    }
}
