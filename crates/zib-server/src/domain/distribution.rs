//! Distribution: the plan the originator follows to place an upload's shards, and
//! the record of a finished distribution that makes the file current for its key.

use std::ops::Range;

use zib_erasure::Layout;
use zib_meta::{Distribution, FilePhase, FileRow, ShardRow};
use zib_proto::node_rpc::{
    DistributedRequest, DistributionPlan, SegmentPlan, ShardTarget, StoredShard,
    UploadReceivedRequest,
};
use zib_proto::{BlobId, FileId, NodeId};

use super::deletion::{evict, SUPERSEDE_REASON};
use super::directory::NodeDirectory;
use super::encoding::cancel::cancel_jobs_of_file;
use super::layout::layout_of;
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

/// The segments a plan or a report is about: the whole file's, or one part's (of
/// a file whose parts are coded on their own), with the part's ciphertext size.
fn segments_of(file: &FileRow, layout: &Layout, part: Option<u32>) -> ApiResult<(Range<u32>, u64)> {
    let Some(part) = part else {
        if file.part_size > 0 {
            return Err(ApiError::Conflict(format!(
                "the parts of upload {} are coded on their own: place and report them part by part",
                file.upload_blob_id
            )));
        }
        return Ok((0..layout.segment_count(), file.ciphertext_size));
    };
    if file.part_size == 0 {
        // A registration from before parts were coded on arrival: the originator
        // keeps the part and places the whole upload at `complete`.
        return Err(ApiError::invalid(
            "part",
            format!(
                "upload {} is placed whole at its completion, not part by part",
                file.upload_blob_id
            ),
        ));
    }
    if part == 0 || part > file.part_count {
        return Err(ApiError::invalid(
            "part",
            format!("part {part} is not one of the upload's {}", file.part_count),
        ));
    }
    let range = layout.part_range(part - 1);
    Ok((layout.part_segments(part - 1), range.end - range.start))
}

/// The originator holds a whole envelope, or one part of it: the placement of
/// every shard of its segments.
pub async fn plan(
    state: &AppState,
    raw_blob_id: &str,
    req: &UploadReceivedRequest,
) -> ApiResult<DistributionPlan> {
    let (blob_id, file) = originator_upload(state, raw_blob_id, &req.node_id).await?;
    let layout = layout_of(&file);
    let (segments, size) = segments_of(&file, &layout, req.part)?;
    if req.size != size {
        return Err(ApiError::invalid(
            "size",
            format!("expected {size} bytes, node holds {}", req.size),
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
    if req.part.is_none() && stays_inline(state, &file).await? {
        return Ok(DistributionPlan {
            erasure,
            segments: vec![],
            inline: true,
            first_segment: 0,
        });
    }
    let first_segment = segments.start;
    let segments = place_segments(
        state,
        &file,
        segments.map(|segment| (segment, layout.shard_len(segment))),
    )
    .await?;
    Ok(DistributionPlan {
        erasure,
        segments,
        inline: false,
        first_segment,
    })
}

/// Where each shard of `segments` (numbers, with their shards' length) goes, with a
/// capability for each: never two shards of a segment on one node, unless the
/// cluster has fewer nodes registered than shards per segment.
pub async fn place_segments(
    state: &AppState,
    file: &FileRow,
    segments: impl Iterator<Item = (u32, u64)>,
) -> ApiResult<Vec<SegmentPlan>> {
    let erasure = file.erasure();
    let now = now_ms();
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
    let expires_at = (now as u64 / 1000) + state.config.upload_expiry.as_secs();
    let mut segments = segments.peekable();
    if let Some((first, _)) = segments.peek() {
        holders(*first)?;
    }
    segments
        .map(|(segment, shard_len)| {
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
        .collect::<ApiResult<_>>()
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
/// what it supersedes (or itself, when a newer upload already won the key). For an
/// upload whose parts are coded on their own: one part's shards are recorded (the
/// file stays uploading), or, with no part named, the file is complete.
pub async fn record(
    state: &AppState,
    raw_blob_id: &str,
    req: &DistributedRequest,
) -> ApiResult<()> {
    let (_, file) = originator_upload(state, raw_blob_id, &req.node_id).await?;
    let layout = layout_of(&file);
    if file.part_size > 0 && req.part.is_none() {
        return complete_parts(state, &file, &layout, req).await;
    }
    let (segments, _) = segments_of(&file, &layout, req.part)?;
    let rows = checked_shards(&file, &layout, segments.clone(), &req.shards)?;
    if let Some(part) = req.part {
        let replaced = state
            .store
            .record_part_shards(file.file_id, segments, &rows, now_ms())
            .await
            .map_err(completion_error)?;
        tracing::debug!(file_id = %file.file_id, part, shards = rows.len(), replaced = replaced.len(), "part distributed");
        return Ok(());
    }
    let outcome = state
        .store
        .complete_distribution(file.file_id, &rows, now_ms(), SUPERSEDE_REASON)
        .await
        .map_err(completion_error)?;
    tracing::info!(file_id = %file.file_id, shards = rows.len(), "file distributed");
    settle(state, file.file_id, outcome, MayDeclare::Yes).await
}

/// Every part of an upload coded part by part is in: the file is complete once the
/// store holds every shard of every segment.
async fn complete_parts(
    state: &AppState,
    file: &FileRow,
    layout: &Layout,
    req: &DistributedRequest,
) -> ApiResult<()> {
    if !req.shards.is_empty() {
        return Err(ApiError::invalid(
            "shards",
            "the parts' shards are reported with their parts; completion names none",
        ));
    }
    let expected = u64::from(layout.segment_count()) * file.erasure().total_shards() as u64;
    let outcome = state
        .store
        .complete_parts(file.file_id, expected, now_ms(), SUPERSEDE_REASON)
        .await
        .map_err(completion_error)?;
    tracing::info!(file_id = %file.file_id, parts = file.part_count, shards = expected, "file distributed part by part");
    settle(state, file.file_id, outcome, MayDeclare::Yes).await
}

/// The reported shards as rows, once they are exactly every shard of `segments`,
/// each of its segment's size.
fn checked_shards(
    file: &FileRow,
    layout: &Layout,
    segments: Range<u32>,
    shards: &[StoredShard],
) -> ApiResult<Vec<ShardRow>> {
    let width = file.erasure().total_shards();
    let expected = (segments.end - segments.start) as usize * width;
    let mut seen = vec![false; expected];
    let mut rows = Vec::with_capacity(shards.len());
    for s in shards {
        let slot = s
            .segment
            .checked_sub(segments.start)
            .filter(|_| segments.contains(&s.segment) && (s.index as usize) < width)
            .map(|local| local as usize * width + s.index as usize)
            .filter(|&i| i < expected)
            .ok_or_else(|| {
                ApiError::invalid(
                    "shards",
                    format!("shard {}/{} is outside the upload", s.segment, s.index),
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
    Ok(rows)
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

/// Every listed part of a file stored in parts (an S3 multipart upload) is in: the
/// file becomes current for its key, from rows alone.
pub async fn record_parts_completion(
    state: &AppState,
    file_id: FileId,
    done: zib_meta::ListedCompletion<'_>,
) -> ApiResult<()> {
    let parts = done.parts.len();
    let outcome = state
        .store
        .complete_file_parts(file_id, done, now_ms(), SUPERSEDE_REASON)
        .await
        .map_err(completion_error)?;
    tracing::info!(%file_id, parts, "file in parts completed");
    // An S3 upload declares no pipeline: there is no encode to look up.
    settle(state, file_id, outcome, MayDeclare::No).await
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
