//! What the CDN answers besides the bytes: the headers an S3 client stored with the
//! object (`Cache-Control` replacing the CDN's default, `Content-Disposition`,
//! `Content-Encoding`, `Content-Language`, `Expires`, `x-amz-meta-*`), `Last-Modified`,
//! and the answers of a conditional request (304, 412).

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zib_meta::{FileRow, ObjectHeaders};
use zib_proto::api::ErrorBody;
use zib_proto::error_codes;

use crate::domain::conditional;
use crate::request_id;

/// For objects stored without a `Cache-Control` of their own.
pub const DEFAULT_CACHE_CONTROL: &str = "public, max-age=3600";

/// The validators and caching headers every answer about the object carries, 304s too.
pub fn validators(out: &mut HeaderMap, file: &FileRow, etag: &str, stored: &ObjectHeaders) {
    set(out, header::ETAG, etag);
    set(
        out,
        header::LAST_MODIFIED,
        &conditional::http_date(modified_ms(file)),
    );
    set(
        out,
        header::CACHE_CONTROL,
        stored
            .cache_control
            .as_deref()
            .unwrap_or(DEFAULT_CACHE_CONTROL),
    );
    if let Some(expires) = &stored.expires {
        set(out, header::EXPIRES, expires);
    }
}

/// The representation headers stored with the object, and its user metadata.
pub fn representation(out: &mut HeaderMap, stored: &ObjectHeaders) {
    let optional = [
        (header::CONTENT_DISPOSITION, &stored.content_disposition),
        (header::CONTENT_ENCODING, &stored.content_encoding),
        (header::CONTENT_LANGUAGE, &stored.content_language),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            set(out, name, value);
        }
    }
    for (name, value) in &stored.metadata {
        let Ok(name) = HeaderName::from_bytes(format!("x-amz-meta-{name}").as_bytes()) else {
            continue;
        };
        set(out, name, &header_text(value));
    }
}

/// When the object became readable.
pub fn modified_ms(file: &FileRow) -> i64 {
    file.distributed_at.unwrap_or(file.created_at)
}

/// A metadata value as S3 sends it: as is when it is printable ASCII, otherwise
/// RFC 2047 (`=?UTF-8?B?...?=`), since header values are ASCII.
fn header_text(value: &str) -> String {
    if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        value.to_string()
    } else {
        format!("=?UTF-8?B?{}?=", STANDARD.encode(value))
    }
}

/// 412, in the API's JSON error shape.
pub fn precondition_failed(file_id: &str) -> Response {
    let body = ErrorBody {
        error: format!(
            "object {file_id}: a precondition (If-Match, If-Unmodified-Since) does not hold"
        ),
        code: error_codes::PRECONDITION_FAILED.to_string(),
        request_id: request_id::current(),
    };
    (StatusCode::PRECONDITION_FAILED, Json(body)).into_response()
}

pub fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_metadata_is_rfc_2047() {
        assert_eq!(header_text("plain value"), "plain value");
        assert_eq!(header_text("café"), "=?UTF-8?B?Y2Fmw6k=?=");
    }
}
