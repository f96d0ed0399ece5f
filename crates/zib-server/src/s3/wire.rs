//! What every answer of the S3 surface carries whatever produced it (our
//! operations, s3s's own refusals, the Bearer check): the request id the server logs,
//! as `x-amz-request-id` / `x-amz-id-2` and as `<RequestId>` in error documents; and
//! the presigned-URL expiry rule S3 applies before it looks at a signature.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::HeaderValue;
use http_body::Body as _;
use s3s::{S3Error, S3ErrorCode};

use super::s3_error_response;

/// S3's longest presigned validity: SigV4 signing keys last a week.
pub const MAX_PRESIGNED_EXPIRY_SECS: i64 = 7 * 24 * 3600;

/// Error documents are a few hundred bytes; anything larger is left as it is.
const MAX_ERROR_DOCUMENT: u64 = 64 * 1024;

pub async fn layer(req: Request, next: Next) -> Response {
    let id = crate::request_id::current();
    let mut response = match presigned_expiry_problem(req.uri().query().unwrap_or("")) {
        Some(err) => s3_error_response(err),
        None => next.run(req).await,
    };
    let Some(id) = id else {
        return response;
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-amz-request-id", v.clone());
        response.headers_mut().insert("x-amz-id-2", v);
    }
    with_request_id_in_body(response, &id).await
}

/// The refusal S3 gives a presigned URL whose `X-Amz-Expires` is negative or over a
/// week (403 `AuthorizationQueryParametersError`), before its signature is checked.
fn presigned_expiry_problem(query: &str) -> Option<S3Error> {
    // A number needs no escaping but a sign might be sent as `%2D` / `%2B`.
    let expires = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "X-Amz-Expires")
        .map(|(_, value)| value.replace("%2D", "-").replace("%2B", "+"))?;
    let seconds = expires.parse::<i64>().ok()?;
    let message = if seconds < 0 {
        "X-Amz-Expires must be non-negative"
    } else if seconds > MAX_PRESIGNED_EXPIRY_SECS {
        "X-Amz-Expires must be less than a week (in seconds); that is, the given \
         X-Amz-Expires must be less than 604800 seconds"
    } else {
        return None;
    };
    let mut err = S3Error::with_message(
        S3ErrorCode::Custom("AuthorizationQueryParametersError".into()),
        message,
    );
    err.set_status_code(http::StatusCode::FORBIDDEN);
    Some(err)
}

/// Adds `<RequestId>` to an XML error document that has none (s3s writes its own
/// refusals, signature and parse errors, without one).
async fn with_request_id_in_body(response: Response, id: &str) -> Response {
    let is_xml = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/xml"));
    let small = response
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n > 0 && n <= MAX_ERROR_DOCUMENT);
    let status = response.status();
    if !(is_xml
        && small
        && (status.is_client_error() || status.is_server_error() || status.is_redirection()))
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_DOCUMENT as usize).await else {
        // A full body of known size does not fail to collect; answer without it.
        parts.headers.remove(CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    };
    let patched = insert_request_id(&bytes, id);
    let body = match patched {
        Some(patched) => {
            if let Ok(v) = HeaderValue::from_str(&patched.len().to_string()) {
                if parts.headers.contains_key(CONTENT_LENGTH) {
                    parts.headers.insert(CONTENT_LENGTH, v);
                }
            }
            Body::from(patched)
        }
        None => Body::from(bytes),
    };
    Response::from_parts(parts, body)
}

/// The document with `<RequestId>id</RequestId>` before `</Error>`; `None` when it is
/// not an error document or already names a request id.
fn insert_request_id(doc: &[u8], id: &str) -> Option<Vec<u8>> {
    const END: &[u8] = b"</Error>";
    if doc
        .windows(b"<RequestId>".len())
        .any(|w| w == b"<RequestId>")
    {
        return None;
    }
    let at = doc.windows(END.len()).rposition(|w| w == END)?;
    let escaped = id
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let mut out = Vec::with_capacity(doc.len() + escaped.len() + 23);
    out.extend_from_slice(&doc[..at]);
    out.extend_from_slice(b"<RequestId>");
    out.extend_from_slice(escaped.as_bytes());
    out.extend_from_slice(b"</RequestId>");
    out.extend_from_slice(&doc[at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_goes_inside_the_error_once() {
        let doc = b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>";
        let patched = insert_request_id(doc, "req_1").unwrap();
        assert_eq!(
            patched,
            b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><RequestId>req_1</RequestId></Error>"
        );
        assert_eq!(insert_request_id(&patched, "req_2"), None);
        assert_eq!(insert_request_id(b"<ListBucketResult/>", "req_1"), None);
    }

    #[test]
    fn presigned_expiry_is_bounded_as_s3_bounds_it() {
        let code = |q: &str| {
            presigned_expiry_problem(q).map(|e| (e.status_code(), e.code().as_str().to_string()))
        };
        assert_eq!(code("X-Amz-Expires=604800&X-Amz-Date=x"), None);
        assert_eq!(code("X-Amz-Expires=0"), None);
        assert_eq!(code("list-type=2"), None);
        for bad in ["X-Amz-Expires=604801", "a=b&X-Amz-Expires=-1"] {
            assert_eq!(
                code(bad),
                Some((
                    Some(http::StatusCode::FORBIDDEN),
                    "AuthorizationQueryParametersError".to_string()
                )),
                "{bad}"
            );
        }
    }
}
