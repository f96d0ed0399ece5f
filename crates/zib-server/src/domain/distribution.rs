//! Distribution: the plan the originator follows to place an upload's shards, and
//! the record of a finished distribution that makes the file current for its key.

use zib_erasure::Layout;
use zib_meta::{Distribution, FilePhase, ShardRow};
use zib_proto::node_rpc::{
    DistributedRequest, DistributionPlan, SegmentPlan, ShardTarget, UploadReceivedRequest,
};
use zib_proto::{BlobId, FileId, NodeId};

use super::deletion::{evict, SUPERSEDE_REASON};
use super::directory::NodeDirectory;
use super::encoding::cancel::cancel_jobs_of_file;
use super::placement;
use super::registration::shard_capability;
use crate::error::{ApiError, ApiResult, InternalError};
use crate::state::{now_ms, AppState, Inner};

/// The file uploaded under blob `raw`, if `node` is the originator it was assigned to.
async fn originator_upload(
    state: &Inner,
    raw: &str,
    node: &NodeId,
) -> ApiResult<(BlobId, zib_meta::FileRow)> {
    let not_found = || ApiError::NotFound(format!("upload {raw} not found"));
    let blob_id: BlobId = raw.parse().map_err(|_| not_found())?;
    let file = state
        .store
        .file_by_upload_blob(blob_id)
        .await?
        .ok_or_else(not_found)?;
    if &file.originator != node {
        return Err(ApiError::Forbidden(format!(
            "upload {blob_id} was assigned to another node"
        )));
    }
    Ok((blob_id, file))
}

/// The originator holds a whole envelope: the placement of every shard.
pub async fn plan(
    state: &AppState,
    raw_blob_id: &str,
    req: &UploadReceivedRequest,
) -> ApiResult<DistributionPlan> {
    let (blob_id, file) = originator_upload(state, raw_blob_id, &req.node_id).await?;
    if req.size != file.ciphertext_size {
        return Err(ApiError::invalid(
            "size",
            format!(
                "expected {} bytes, node holds {}",
                file.ciphertext_size, req.size
            ),
        ));
    }
    match file.phase {
        FilePhase::Pending => {
            state.store.mark_uploading(file.file_id).await?;
        }
        FilePhase::Uploading => {}
        other => {
            return Err(ApiError::Conflict(format!(
                "upload {blob_id} is {} and cannot be distributed again",
                other.as_str()
            )))
        }
    }

    let erasure = file.erasure();
    if stays_inline(state, &file).await? {
        return Ok(DistributionPlan {
            erasure,
            segments: vec![],
            inline: true,
        });
    }
    let now = now_ms();
    let layout = Layout::new(erasure, file.ciphertext_size);
    let directory = NodeDirectory::load(state).await?;
    let candidates = directory.placeable();
    let ordered = placement::zone_interleaved(&candidates);
    let width = erasure.total_shards();
    // A cluster with fewer nodes *registered* than shards per segment (a one-node
    // `zib dev`) could never place without doubles; it doubles up as before, and
    // its files are honestly below full redundancy, never `safe`.
    let undersized = !candidates.is_empty() && directory.all().count() < width;
    if undersized {
        tracing::warn!(
            registered = directory.all().count(),
            width,
            "fewer registered nodes than shards per segment: nodes hold several shards of a segment, and files never become safe"
        );
    }
    // Otherwise never two shards of a segment on one node: with too few nodes
    // online the originator keeps the upload (the file stays `uploading`) and asks
    // again.
    let too_few = |e: placement::TooFewNodes| {
        tracing::warn!(online = e.online, width = e.width, file_id = %file.file_id, "distribution deferred: too few nodes online");
        ApiError::TooFewNodes(format!(
            "{e}; the upload is kept and placed once enough are back"
        ))
    };
    let holders = |segment: u32| {
        if undersized {
            Ok(placement::crowded_holders(&ordered, segment, width))
        } else {
            placement::segment_holders(&ordered, segment, width).map_err(too_few)
        }
    };
    holders(0)?;
    let expires_at = (now as u64 / 1000) + state.config.upload_expiry.as_secs();
    let segments = (0..layout.segment_count())
        .map(|segment| {
            let shard_len = layout.shard_len(segment);
            let targets = holders(segment)?
                .into_iter()
                .enumerate()
                .map(|(index, node)| {
                    let blob_id = BlobId::new_random();
                    let token =
                        shard_capability(state, &node.node_id, blob_id, shard_len, expires_at);
                    ShardTarget {
                        index: index as u8,
                        node_id: node.node_id.clone(),
                        node_url: node.public_url.clone(),
                        blob_id,
                        token,
                    }
                })
                .collect();
            Ok(SegmentPlan { segment, targets })
        })
        .collect::<ApiResult<_>>()?;
    Ok(DistributionPlan {
        erasure,
        segments,
        inline: false,
    })
}

/// A tenant's single upload of at most `inline_threshold` bytes is kept whole in
/// the metadata store rather than sharded. A job's artefacts are always sharded.
async fn stays_inline(state: &Inner, file: &zib_meta::FileRow) -> ApiResult<bool> {
    Ok(state.config.keeps_inline(file.size)
        && file.part_count <= 1
        && state.store.derived_file(file.file_id).await?.is_none())
}

/// The originator sends a small upload's whole envelope (the plan said `inline`).
pub async fn record_inline_upload(
    state: &AppState,
    raw_blob_id: &str,
    node: &NodeId,
    envelope: &[u8],
) -> ApiResult<()> {
    let (blob_id, file) = originator_upload(state, raw_blob_id, node).await?;
    if !stays_inline(state, &file).await? {
        return Err(ApiError::Conflict(format!(
            "upload {blob_id} is not kept inline: distribute its shards"
        )));
    }
    if envelope.len() as u64 != file.ciphertext_size {
        return Err(ApiError::invalid(
            "body",
            format!(
                "expected the {}-byte envelope, got {} bytes",
                file.ciphertext_size,
                envelope.len()
            ),
        ));
    }
    let expected = super::read::envelope_header(&file)?;
    if !envelope.starts_with(&expected.encode()) {
        return Err(ApiError::invalid(
            "body",
            "the envelope header is not the one issued for this upload",
        ));
    }
    record_inline(state, file.file_id, envelope, true).await
}

/// Every shard is stored: record them, make the file current for its key, and evict
/// what it supersedes (or itself, when a newer upload already won the key).
pub async fn record(
    state: &AppState,
    raw_blob_id: &str,
    req: &DistributedRequest,
) -> ApiResult<()> {
    let (_, file) = originator_upload(state, raw_blob_id, &req.node_id).await?;
    let erasure = file.erasure();
    let layout = Layout::new(erasure, file.ciphertext_size);
    let width = erasure.total_shards();
    let expected = layout.segment_count() as usize * width;
    let mut seen = vec![false; expected];
    let mut rows = Vec::with_capacity(req.shards.len());
    for s in &req.shards {
        let slot = (s.segment as usize)
            .checked_mul(width)
            .and_then(|v| v.checked_add(s.index as usize))
            .filter(|&i| {
                s.segment < layout.segment_count() && (s.index as usize) < width && i < expected
            })
            .ok_or_else(|| {
                ApiError::invalid(
                    "shards",
                    format!("shard {}/{} is outside the file", s.segment, s.index),
                )
            })?;
        if std::mem::replace(&mut seen[slot], true) {
            return Err(ApiError::invalid(
                "shards",
                format!("shard {}/{} reported twice", s.segment, s.index),
            ));
        }
        if s.size != layout.shard_len(s.segment) {
            return Err(ApiError::invalid(
                "shards",
                format!("shard {}/{} has the wrong size", s.segment, s.index),
            ));
        }
        let blake3 = hex::decode(&s.blake3)
            .ok()
            .filter(|h| h.len() == 32)
            .ok_or_else(|| ApiError::invalid("shards", "blake3 must be 64 hex characters"))?;
        rows.push(ShardRow {
            file_id: file.file_id,
            segment: s.segment,
            index: s.index,
            node_id: s.node_id.clone(),
            blob_id: s.blob_id,
            size: s.size,
            blake3,
        });
    }
    if seen.iter().any(|s| !s) {
        return Err(ApiError::invalid(
            "shards",
            "not every shard of every segment was reported",
        ));
    }
    let outcome = state
        .store
        .complete_distribution(file.file_id, &rows, now_ms(), SUPERSEDE_REASON)
        .await
        .map_err(completion_error)?;
    tracing::info!(file_id = %file.file_id, shards = rows.len(), "file distributed");
    settle(state, file.file_id, outcome, MayDeclare::Yes).await
}

/// A small file's whole envelope, sealed, kept in the metadata store instead of on
/// nodes (`inline_threshold`): recorded like a distribution, and `safe` at once,
/// since it is as durable as the store that holds its key. `via_originator`: it
/// came through the file's originator, which is told to drop its record of it.
pub async fn record_inline(
    state: &AppState,
    file_id: FileId,
    envelope: &[u8],
    via_originator: bool,
) -> ApiResult<()> {
    let outcome = state
        .store
        .complete_inline(
            file_id,
            envelope,
            via_originator,
            now_ms(),
            SUPERSEDE_REASON,
        )
        .await
        .map_err(completion_error)?;
    tracing::info!(%file_id, bytes = envelope.len(), "file stored inline");
    settle(state, file_id, outcome, MayDeclare::Yes).await
}

/// A new small file whose sealed envelope the server holds already (the S3
/// gateway's PUT): registered and kept inline in one transaction ([`record_inline`]
/// without a `pending` row in between), with the gateway's `s3` attributes.
pub async fn record_new_inline(
    state: &AppState,
    mut row: zib_meta::FileRow,
    envelope: &[u8],
    s3: zib_meta::S3Content<'_>,
) -> ApiResult<()> {
    let store = &state.store;
    let first = store
        .insert_inline_file(&row, envelope, s3, now_ms(), SUPERSEDE_REASON)
        .await;
    let outcome = match first {
        // The bucket was deleted since it was looked up: a PUT names it into being
        // again, as on a first upload.
        Err(zib_meta::MetaError::BucketDeleted) => {
            row.bucket_id = state
                .store
                .ensure_bucket(&row.tenant_id, &row.bucket)
                .await?
                .id;
            store
                .insert_inline_file(&row, envelope, s3, now_ms(), SUPERSEDE_REASON)
                .await
        }
        outcome => outcome,
    }
    .map_err(completion_error)?;
    tracing::info!(file_id = %row.file_id, bytes = envelope.len(), "file stored inline");
    // An S3 PUT declares no pipeline: there is no encode to look up.
    settle(state, row.file_id, outcome, MayDeclare::No).await
}

fn completion_error(e: zib_meta::MetaError) -> ApiError {
    match e {
        zib_meta::MetaError::Conflict(what) => ApiError::Conflict(what.to_string()),
        other => ApiError::Internal(InternalError::Meta(other)),
    }
}

/// Whether a stored file can carry a declared pipeline (uploads initiated through
/// the API can; S3 PUTs cannot), so its encode is looked up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MayDeclare {
    Yes,
    No,
}

/// What follows a stored file: its declared encode, and the eviction of what it
/// superseded (or of itself, when a newer upload already won the key).
async fn settle(
    state: &AppState,
    file_id: FileId,
    outcome: Distribution,
    may_declare: MayDeclare,
) -> ApiResult<()> {
    match outcome {
        Distribution::Current { superseded } => {
            if may_declare == MayDeclare::Yes {
                super::encoding::request::enqueue_declared(state, file_id).await;
            }
            if let Some(prior) = superseded {
                tracing::info!(file_id = %prior, by = %file_id, "file superseded; evicting its bytes");
                // The reference: a re-upload cancels the prior file's encode (and
                // does not start one for the new file unless its pipeline says so).
                if let Err(e) = cancel_jobs_of_file(state, prior, SUPERSEDE_REASON).await {
                    tracing::error!(file_id = %prior, error = %e, "cancelling the superseded file's encode failed");
                }
                evict(state, prior).await;
            }
        }
        // A job's artefact: no key, no declared pipeline, nothing announced.
        Distribution::Derived => {
            tracing::info!(%file_id, "derived file stored");
        }
        Distribution::Stale { current } => {
            tracing::info!(%file_id, %current, "late upload of a superseded registration refused");
            evict(state, file_id).await;
            return Err(ApiError::Conflict(
                "this upload was superseded by a newer upload to the same bucket and key".into(),
            ));
        }
    }
    Ok(())
}
