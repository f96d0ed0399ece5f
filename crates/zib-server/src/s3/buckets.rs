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
