//! S3 error documents from the server's own errors.

use s3s::{s3_error, S3Error, S3ErrorCode};

use crate::error::ApiError;

pub fn with_request_id(mut err: S3Error) -> S3Error {
    if let Some(id) = crate::request_id::current() {
        err.set_request_id(id);
    }
    err
}

/// The same failure an `/v1/api` caller would get, worded as S3 clients expect.
pub fn api_to_s3(e: ApiError) -> S3Error {
    let message = e.to_string();
    let err = match &e {
        ApiError::InvalidField {
            field: "bucket", ..
        } => S3Error::with_message(S3ErrorCode::InvalidBucketName, message),
        ApiError::InvalidField { field: "key", .. } => {
            S3Error::with_message(S3ErrorCode::KeyTooLongError, message)
        }
        ApiError::InvalidField { .. } | ApiError::BadJson(_) => {
            S3Error::with_message(S3ErrorCode::InvalidArgument, message)
        }
        ApiError::Unauthorized(_) => {
            S3Error::with_message(S3ErrorCode::InvalidAccessKeyId, message)
        }
        ApiError::Forbidden(_) => S3Error::with_message(S3ErrorCode::AccessDenied, message),
        // (`Gone` is node RPC only: an encoding lease.)
        ApiError::NotFound(_) | ApiError::Gone(_) => {
            S3Error::with_message(S3ErrorCode::NoSuchKey, message)
        }
        ApiError::Conflict(_) => return conflict(message),
        ApiError::BucketNotEmpty(_) => S3Error::with_message(S3ErrorCode::BucketNotEmpty, message),
        ApiError::RangeNotSatisfiable { .. } => {
            S3Error::with_message(S3ErrorCode::InvalidRange, message)
        }
        ApiError::Unavailable(_) | ApiError::TooFewNodes(_) | ApiError::Upstream(_) => {
            S3Error::with_message(S3ErrorCode::ServiceUnavailable, message)
        }
        ApiError::Unreadable(_) => {
            let mut err = S3Error::with_message(S3ErrorCode::Custom("Unreadable".into()), message);
            err.set_status_code(http::StatusCode::BAD_GATEWAY);
            err
        }
        ApiError::Internal(inner) => {
            tracing::error!(error = %inner, "internal error");
            S3Error::with_message(S3ErrorCode::InternalError, "internal error")
        }
    };
    with_request_id(err)
}

/// The contract's 409: the key already holds different content.
pub fn conflict(message: String) -> S3Error {
    let mut err = S3Error::with_message(S3ErrorCode::Custom("KeyAlreadyExists".into()), message);
    err.set_status_code(http::StatusCode::CONFLICT);
    with_request_id(err)
}

pub fn internal(e: impl std::fmt::Display) -> S3Error {
    tracing::error!(error = %e, "internal error");
    with_request_id(s3_error!(InternalError, "internal error"))
}

pub fn no_such_bucket(bucket: &str) -> S3Error {
    with_request_id(s3_error!(NoSuchBucket, "bucket {bucket:?} does not exist"))
}

pub fn no_such_key(bucket: &str, key: &str) -> S3Error {
    with_request_id(s3_error!(NoSuchKey, "{bucket}/{key} does not exist"))
}
