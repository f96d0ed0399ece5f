//! Conditional requests on the S3 surface.
//!
//! Reads (GET/HEAD): `If-Match`, `If-None-Match`, `If-Modified-Since`,
//! `If-Unmodified-Since`, evaluated by `domain::conditional` against the ETag S3 serves
//! (the MD5, or the file id). Writes: `If-None-Match: *` (create only: 412 when the key
//! holds an object) on PutObject and CompleteMultipartUpload, and `If-Match: <etag>`
//! on PutObject (412 unless the key holds an object with that ETag). A write whose
//! condition holds then meets the usual overwrite rule (the 409 for other bytes).

use http::{HeaderMap, HeaderValue, StatusCode};
use s3s::dto::ETagCondition;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Result};
use zib_meta::FileRow;

use crate::domain::conditional::{self, Precondition};
use crate::state::AppState;

use super::errors::internal;

/// The condition a write puts on the key's current object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum WriteCondition {
    #[default]
    None,
    /// `If-None-Match: *`: only if the key holds no object.
    Absent,
    /// `If-Match`: only if the key's current object has this ETag (`*`: any object).
    Matches(ETagCondition),
}

impl WriteCondition {
    /// From a write's headers. S3 takes only `*` in a write's If-None-Match.
    pub fn from_headers(
        if_match: Option<&ETagCondition>,
        if_none_match: Option<&ETagCondition>,
    ) -> S3Result<Self> {
        match (if_match, if_none_match) {
            (Some(_), Some(_)) => Err(s3_error!(
                NotImplemented,
                "If-Match and If-None-Match together on a write are not supported"
            )),
            (_, Some(ETagCondition::Any)) => Ok(WriteCondition::Absent),
            (_, Some(ETagCondition::ETag(_))) => Err(s3_error!(
                NotImplemented,
                "If-None-Match on a write only takes * (create only if the key is free)"
            )),
            (Some(cond), None) => Ok(WriteCondition::Matches(cond.clone())),
            (None, None) => Ok(WriteCondition::None),
        }
    }
}

fn precondition_failed() -> S3Error {
    s3_error!(
        PreconditionFailed,
        "At least one of the pre-conditions you specified did not hold"
    )
}

/// Checks the write's condition against the key's current readable object, if any.
pub async fn check_write(
    state: &AppState,
    condition: &WriteCondition,
    current: Option<&FileRow>,
) -> S3Result<()> {
    match (condition, current) {
        (WriteCondition::None, _) => Ok(()),
        (WriteCondition::Absent, None) => Ok(()),
        (WriteCondition::Absent, Some(_)) | (WriteCondition::Matches(_), None) => {
            Err(precondition_failed())
        }
        (WriteCondition::Matches(ETagCondition::Any), Some(_)) => Ok(()),
        (WriteCondition::Matches(ETagCondition::ETag(wanted)), Some(file)) => {
            let md5 = state
                .store
                .plaintext_md5(file.file_id)
                .await
                .map_err(internal)?;
            if wanted.value() == served_etag(md5.as_deref(), file) {
                Ok(())
            } else {
                Err(precondition_failed())
            }
        }
    }
}

/// The ETag S3 serves for a file (unquoted): see `dto::etag`.
pub fn served_etag(md5: Option<&str>, file: &FileRow) -> String {
    md5.map(str::to_string)
        .unwrap_or_else(|| file.file_id.0.simple().to_string())
}

/// The preconditions of a GET or HEAD: `Ok` to serve; 304 `NotModified` (with the
/// object's ETag and Last-Modified, as S3 sends them) or 412 `PreconditionFailed`.
pub fn check_read(headers: &HeaderMap, etag: &str, last_modified_ms: i64) -> S3Result<()> {
    match conditional::evaluate(headers, &[etag], last_modified_ms) {
        Precondition::Proceed => Ok(()),
        Precondition::Failed => Err(precondition_failed()),
        Precondition::NotModified => {
            let mut err = S3Error::new(S3ErrorCode::NotModified);
            err.set_status_code(StatusCode::NOT_MODIFIED);
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
                h.insert(http::header::ETAG, v);
            }
            if let Ok(v) = HeaderValue::from_str(&conditional::http_date(last_modified_ms)) {
                h.insert(http::header::LAST_MODIFIED, v);
            }
            err.set_headers(h);
            Err(err)
        }
    }
}
