//! Where files and blobs are deleted: a tenant's delete (API or S3), the eviction of a
//! superseded or cancelled upload (with its encodings). The blobs go through
//! `blob_removal`.

use std::path::Path;
use std::time::Duration;

use zib_meta::{BucketDeletion, DeletedFile};
use zib_proto::FileId;

use super::blob_removal::{delete_blobs_now, NodeCleanup};
use super::derived::cancel_variant_jobs;
use super::encoding::cancel::cancel_jobs_of_file;
use super::multipart_spool::{is_upload_id, UPLOAD_FILE};
use crate::error::{ApiError, ApiResult, InternalError};
use crate::state::{now_ms, Inner};

/// Encoding jobs of a deleted file give this reason.
pub const DELETE_REASON: &str = "the file was deleted";

/// Files that were superseded by a re-upload give this reason.
pub const SUPERSEDE_REASON: &str = "superseded by re-upload to same bucket+object_key";

/// How long a synchronous shard delete may take before the node is left to its
/// next heartbeat.
const SYNC_DELETE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long an eviction waits for a node before leaving it to the heartbeat.
const EVICT_TIMEOUT: Duration = Duration::from_secs(3);

/// A deleted file: its rows, and what its holders said.
pub struct Deleted {
    pub deleted: DeletedFile,
    pub node_cleanup: NodeCleanup,
}

/// Deletes a tenant's file, with every file derived from it (posters, sprites, aspect
/// variants and their encodes), and asks the holders to drop the blobs now. `None`
/// when the tenant has no such file (already deleted, or another tenant's).
pub async fn delete_file(
    state: &Inner,
    tenant_id: &str,
    file_id: FileId,
) -> ApiResult<Option<Deleted>> {
    // A poster or a variant's stream is not an upload: it goes with its source or
    // its job, never on its own (its job would name a file that is gone).
    if state.store.derived_file(file_id).await?.is_some() {
        return Ok(None);
    }
    // Its encode stops first (the node's lease ends, no later event); the delete
    // then takes the jobs' rows and segment copies with the file.
    if state
        .store
        .file_for_tenant(tenant_id, file_id)
        .await?
        .is_some()
    {
        cancel_jobs_of_file(state, file_id, DELETE_REASON).await?;
        cancel_variant_jobs(state, file_id, DELETE_REASON).await?;
        // Its AI runs too (their leases end, no `*.complete` follows).
        state
            .store
            .cancel_compute_jobs_of_file(file_id, DELETE_REASON, now_ms())
            .await?;
    }
    let Some(deleted) = state
        .store
        .delete_file(tenant_id, file_id, now_ms())
        .await?
    else {
        return Ok(None);
    };
    let node_cleanup = delete_blobs_now(state, &deleted.blobs, SYNC_DELETE_TIMEOUT).await?;
    tracing::info!(%file_id, "file deleted");
    Ok(Some(Deleted {
        deleted,
        node_cleanup,
    }))
}

/// Queues the deletion of a cancelled or superseded file's blobs, and of every file
/// derived from it, and tries them at once; holders that are offline get them on
/// their next heartbeat.
pub async fn evict(state: &Inner, file_id: FileId) {
    // Its aspect variants' encodes stop; the store then deletes every file derived
    // from it (artefacts, variant streams) with the eviction.
    if let Err(e) = cancel_variant_jobs(state, file_id, SUPERSEDE_REASON).await {
        tracing::error!(%file_id, error = %e, "cancelling the evicted file's variant encodes failed");
    }
    if let Err(e) = state
        .store
        .cancel_compute_jobs_of_file(file_id, SUPERSEDE_REASON, now_ms())
        .await
    {
        tracing::error!(%file_id, error = %e, "cancelling the evicted file's compute jobs failed");
    }
    match state.store.evict_file(file_id, now_ms()).await {
        Ok(blobs) => {
            if let Err(e) = delete_blobs_now(state, &blobs, EVICT_TIMEOUT).await {
                tracing::warn!(%file_id, error = %e, "eviction left to heartbeats");
            }
        }
        Err(e) => tracing::error!(%file_id, error = %e, "evicting a cancelled file failed"),
    }
    super::encoding::evict::evict_file_jobs(state, file_id).await;
}

/// Deletes the tenant's bucket when it is empty: no object, no registration still
/// uploading, no S3 multipart upload in progress (S3's `BucketNotEmpty` rule, with
/// uploads counted as content so their parts are never orphaned). Leftovers of
/// cancelled or failed uploads go with it.
pub async fn delete_bucket(state: &Inner, tenant_id: &str, bucket: &str) -> ApiResult<()> {
    let not_empty =
        |what: &str| ApiError::BucketNotEmpty(format!("bucket {bucket:?} is not empty: {what}"));
    if multipart_upload_in(&state.config.s3_spool_dir, tenant_id, bucket).await? {
        return Err(not_empty(
            "a multipart upload is in progress (complete or abort it first)",
        ));
    }
    match state.store.delete_empty_bucket(tenant_id, bucket).await? {
        BucketDeletion::NotFound => Err(ApiError::NotFound(format!("bucket {bucket:?} not found"))),
        BucketDeletion::NotEmpty(what) => Err(not_empty(what)),
        BucketDeletion::Deleted { leftover_blobs } => {
            delete_blobs_now(state, &leftover_blobs, EVICT_TIMEOUT).await?;
            tracing::info!(%tenant_id, %bucket, "bucket deleted");
            Ok(())
        }
    }
}

/// Whether the S3 multipart spool holds an upload of this tenant into `bucket`.
async fn multipart_upload_in(spool: &Path, tenant_id: &str, bucket: &str) -> ApiResult<bool> {
    /// The fields of the spool's upload record that say whose upload it is.
    #[derive(serde::Deserialize)]
    struct Owner {
        tenant_id: String,
        bucket: String,
    }
    let io = |e: std::io::Error| {
        ApiError::Internal(InternalError::Other(format!(
            "reading the multipart spool {}: {e}",
            spool.display()
        )))
    };
    let mut entries = match tokio::fs::read_dir(spool).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(e)),
    };
    while let Some(entry) = entries.next_entry().await.map_err(io)? {
        if !entry.file_name().to_str().is_some_and(is_upload_id) {
            continue;
        }
        // Gone meanwhile (completed, aborted) or half written: not in progress.
        let Ok(bytes) = tokio::fs::read(entry.path().join(UPLOAD_FILE)).await else {
            continue;
        };
        if serde_json::from_slice::<Owner>(&bytes)
            .is_ok_and(|o| o.tenant_id == tenant_id && o.bucket == bucket)
        {
            return Ok(true);
        }
    }
    Ok(false)
}
