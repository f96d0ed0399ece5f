//! Bucket-wide deletes: DeleteBucket (an empty bucket only) and DeleteObjects (up to
//! 1000 keys in one request, each deleted exactly as DELETE of that key).

use futures::StreamExt;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Result};
use zib_meta::Tenant;

use super::errors::{api_to_s3, internal, no_such_bucket};
use super::versions;
use crate::domain::deletion;
use crate::error::ApiError;
use crate::state::AppState;

/// S3's ceiling for one DeleteObjects request.
const MAX_KEYS_PER_DELETE: usize = 1000;

/// How many keys of one DeleteObjects are deleted at once: each waits for its
/// holders' answers (up to a few seconds when a node is slow).
const CONCURRENT_DELETES: usize = 8;

/// DeleteBucket: the same rule as `DELETE /v1/api/me/buckets/{bucket}`.
pub async fn delete_bucket(state: &AppState, tenant: &Tenant, bucket: &str) -> S3Result<()> {
    deletion::delete_bucket(state, &tenant.id, bucket)
        .await
        .map_err(|e| match e {
            ApiError::NotFound(_) => no_such_bucket(bucket),
            e => api_to_s3(e),
        })
}

/// Deletes the current object of `key`, if any: what DeleteObject does.
pub async fn delete_key(
    state: &AppState,
    tenant_id: &str,
    bucket: &str,
    key: &str,
) -> S3Result<()> {
    let current = state
        .store
        .object(tenant_id, bucket, key)
        .await
        .map_err(internal)?;
    if let Some(file) = current {
        deletion::delete_file(state, tenant_id, file.file_id)
            .await
            .map_err(api_to_s3)?;
    }
    Ok(())
}

/// DeleteObjects: every listed key deleted as DeleteObject would (a missing key is
/// deleted too, as in S3), each reported `Deleted` or with its own `Error`; in
/// `Quiet` mode only the errors.
pub async fn delete_objects(
    state: &AppState,
    tenant: &Tenant,
    input: DeleteObjectsInput,
) -> S3Result<DeleteObjectsOutput> {
    let objects = input.delete.objects;
    if objects.is_empty() || objects.len() > MAX_KEYS_PER_DELETE {
        return Err(s3_error!(
            MalformedXML,
            "a DeleteObjects request lists between 1 and {MAX_KEYS_PER_DELETE} keys, not {}",
            objects.len()
        ));
    }
    match state.store.bucket(&tenant.id, &input.bucket).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(no_such_bucket(&input.bucket)),
        Err(e) => return Err(internal(e)),
    }
    let quiet = input.delete.quiet.unwrap_or(false);
    let bucket = input.bucket.as_str();
    let outcomes: Vec<(ObjectIdentifier, S3Result<()>)> = futures::stream::iter(objects)
        .map(|object| async move {
            let outcome = match versions::check_version_id(object.version_id.as_deref()) {
                Ok(()) => delete_key(state, &tenant.id, bucket, &object.key).await,
                Err(e) => Err(e),
            };
            (object, outcome)
        })
        .buffered(CONCURRENT_DELETES)
        .collect()
        .await;
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for (object, outcome) in outcomes {
        match outcome {
            Ok(()) if quiet => {}
            Ok(()) => deleted.push(DeletedObject {
                key: Some(object.key),
                version_id: object.version_id,
                ..Default::default()
            }),
            Err(e) => errors.push(error_entry(object, &e)),
        }
    }
    Ok(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: Some(errors),
        ..Default::default()
    })
}

fn error_entry(object: ObjectIdentifier, e: &S3Error) -> Error {
    Error {
        key: Some(object.key),
        version_id: object.version_id,
        code: Some(e.code().as_str().to_string()),
        message: Some(
            e.message()
                .unwrap_or("the key could not be deleted")
                .to_string(),
        ),
    }
}

/// The largest DeleteObjects body read: 1000 keys of up to 1024 bytes each,
/// XML-escaped, with their markup.
const MAX_DELETE_BODY: usize = 8 * 1024 * 1024;

/// `POST /{bucket}?delete`: a DeleteObjects request.
pub fn is_delete_objects(method: &http::Method, uri: &http::Uri) -> bool {
    method == http::Method::POST
        && uri.query().is_some_and(|q| {
            q.split('&')
                .any(|p| p == "delete" || p.starts_with("delete="))
        })
}

/// S3 requires a DeleteObjects body to carry its `Content-MD5` or an
/// `x-amz-checksum-*` (the AWS CLI and rclone send the first, boto3 ≥ 1.36 CRC32),
/// so that a list damaged on the way never deletes other keys. s3s does not check
/// either, so it is checked here while the body is still bytes (it stays readable).
pub async fn check_delete_body(headers: &http::HeaderMap, body: &mut s3s::Body) -> S3Result<()> {
    use s3s::crypto::{Checksum, Crc32, Crc32c, Crc64Nvme, Md5, Sha1, Sha256};
    fn digest<C: Checksum>(bytes: &[u8]) -> String {
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            C::checksum(bytes),
        )
    }
    let bytes = body.store_all_limited(MAX_DELETE_BODY).await.map_err(|e| {
        s3_error!(
            MalformedXML,
            "the DeleteObjects body could not be read whole ({e}); it lists at most 1000 keys"
        )
    })?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    type Digest = fn(&[u8]) -> String;
    let checks: [(&str, Digest); 6] = [
        ("content-md5", digest::<Md5>),
        ("x-amz-checksum-crc32", digest::<Crc32>),
        ("x-amz-checksum-crc32c", digest::<Crc32c>),
        ("x-amz-checksum-crc64nvme", digest::<Crc64Nvme>),
        ("x-amz-checksum-sha1", digest::<Sha1>),
        ("x-amz-checksum-sha256", digest::<Sha256>),
    ];
    let mut checked = false;
    for (name, compute) in checks {
        if let Some(sent) = header(name) {
            if compute(&bytes) != sent.trim() {
                return Err(s3_error!(
                    BadDigest,
                    "the {name} you specified did not match the DeleteObjects body"
                ));
            }
            checked = true;
        }
    }
    if checked {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidRequest,
            "Missing required header for this request: Content-MD5 (or an x-amz-checksum-*)"
        ))
    }
}
