//! `GET /v1/openapi.json`: the hand-written OpenAPI 3 description of the tenant API
//! and the CDN. It is kept true by crates/zib-cli/tests/openapi.rs (routes compared
//! with the source, every schemathesis check run against a live `zib dev`), so edit
//! it with the handlers.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use crate::state::AppState;

/// The document as written. Embedded so a binary always describes itself.
pub const DOCUMENT: &str = include_str!("../openapi.json");

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/openapi.json", get(document))
}

/// The document with what this server's configuration decides filled in: the
/// largest `file_size` an initiate accepts (`max_file_size`).
pub fn render(max_file_size: u64) -> String {
    let Ok(mut doc) = serde_json::from_str::<Value>(DOCUMENT) else {
        // Unreachable with the embedded document (a unit test parses it); serve it
        // as written rather than fail.
        return DOCUMENT.to_string();
    };
    if let Some(file_size) = doc
        .pointer_mut("/components/schemas/InitiateRequest/properties/file_size")
        .and_then(Value::as_object_mut)
    {
        file_size.insert("maximum".into(), max_file_size.into());
    }
    doc.to_string()
}

async fn document(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        render(state.config.max_file_size),
    )
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

    #[test]
    fn the_served_document_states_the_configured_maximum_file_size() {
        let doc: serde_json::Value = serde_json::from_str(&render(12_345)).unwrap();
        let file_size = &doc["components"]["schemas"]["InitiateRequest"]["properties"]["file_size"];
        assert_eq!(file_size["maximum"], 12_345);
        assert_eq!(file_size["minimum"], 0);
    }
}
