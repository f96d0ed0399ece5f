//! `GET /sdk/zib-sdk.js`: the browser SDK, embedded in the binary so the server and the
//! SDK it hands out always come from the same build.

use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

/// The SDK source, as committed in `sdk/js/`.
pub const SDK_SOURCE: &str = include_str!("../../../sdk/js/zib-sdk.js");

/// Short enough that a fixed SDK reaches browsers within minutes, long enough that a
/// page's repeat loads never wait on us; the ETag makes revalidation a 304.
const CACHE_CONTROL: &str = "public, max-age=300";

/// Strong validator: the content hash, computed once per process.
static SDK_ETAG: LazyLock<String> = LazyLock::new(|| {
    let digest = Sha256::digest(SDK_SOURCE.as_bytes());
    format!("\"{}\"", hex::encode(&digest[..16]))
});

/// Stateless, so it merges into the app router whatever its state type.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/sdk/zib-sdk.js", get(serve_sdk))
}

async fn serve_sdk(headers: HeaderMap) -> Response {
    let etag = SDK_ETAG.as_str();
    let mut response = if if_none_match_hits(&headers, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            )],
            SDK_SOURCE,
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    if let Ok(value) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, value);
    }
    // Any site may load the script, also with crossorigin="anonymous" (for SRI).
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("etag"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `If-None-Match` uses the weak comparison (RFC 9110 §13.1.2): `W/` is ignored.
fn if_none_match_hits(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_matching_follows_the_weak_comparison() {
        let etag = SDK_ETAG.as_str();
        let mut headers = HeaderMap::new();
        assert!(!if_none_match_hits(&headers, etag));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"other\", W/{etag}")).unwrap(),
        );
        assert!(if_none_match_hits(&headers, etag));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match_hits(&headers, etag));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"x\""));
        assert!(!if_none_match_hits(&headers, etag));
    }
}
