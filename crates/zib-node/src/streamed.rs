//! A single upload erasure-coded as it arrives: the plan is asked for before the
//! body is read, each segment's data shards are filled straight from the body, and
//! the segment is encoded and pushed to its holders while the next one is read. The
//! originator never writes the envelope, so the disk sees each byte once, as shards
//! (1.5x at 4+2), not twice plus a sync of the whole file.
//!
//! Durability is the same promise as the spooled path's: the client's `PUT` is
//! answered after every shard is fsync'd on its holder and the server recorded them.
//! A failure before that answers `503` with `Retry-After`: the token is still unspent,
//! so the client's retry asks for a fresh plan, and the shards of the failed attempt
//! are orphans the server's collector removes. An upload that cannot get a plan at all
//! (too few nodes online) is stored whole and distributed later, as before (`intake`).

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::task::JoinHandle;
use zib_erasure::Codec;

use crate::distribute::Span;
use zib_proto::node_rpc::{DistributionPlan, StoredShard};
use zib_proto::BlobId;

use crate::distribute::{self, DistributeError};
use crate::error::NodeApiError;
use crate::incoming::Incoming;
use crate::state::NodeState;

/// Segments encoded or being pushed while the next is read from the body: each holds
/// `(k + m) * shard_size` bytes, so this (plus the one being filled) bounds an
/// upload's memory.
const SEGMENTS_IN_FLIGHT: usize = 2;

#[derive(Debug)]
pub enum StreamedError {
    /// The body was refused or broke off (the client's side).
    Body(NodeApiError),
    /// A shard could not be placed, or the server refused the result.
    Distribute(DistributeError),
}

/// A segment's number and its encode-and-push task.
type SegmentTask = (u32, JoinHandle<Result<Vec<StoredShard>, DistributeError>>);

/// Reads `incoming` segment by segment into shards, pushes them and reports them to
/// the server (as the whole upload, or as its `part`). Returns how many shards were
/// stored and the body's BLAKE3.
pub async fn distribute_as_received(
    state: &Arc<NodeState>,
    upload: BlobId,
    plan: DistributionPlan,
    codec: Arc<Codec>,
    span: Span,
    part: Option<u32>,
    incoming: &mut Incoming,
) -> Result<(usize, blake3::Hash), StreamedError> {
    let mut hasher = blake3::Hasher::new();
    let mut in_flight: VecDeque<SegmentTask> = VecDeque::new();
    let mut done: Vec<Vec<StoredShard>> = Vec::with_capacity(plan.segments.len());
    let result = async {
        for segment_plan in plan.segments {
            let segment = segment_plan.segment;
            while in_flight.len() >= SEGMENTS_IN_FLIGHT {
                if let Some(oldest) = in_flight.pop_front() {
                    done.push(joined(oldest).await?);
                }
            }
            let shard_len = span.shard_len(segment);
            let permit = state
                .buffers
                .acquire(shard_len * span.layout.params.total_shards() as u64)
                .await;
            let shards = read_segment(&span, segment, incoming, &mut hasher).await?;
            let (state, codec) = (state.clone(), codec.clone());
            in_flight.push_back((
                segment,
                tokio::spawn(async move {
                    // Held until the segment's shards are pushed.
                    let _permit = permit;
                    let encoded = distribute::off_thread(segment, move || {
                        distribute::add_parity_and_hash(&codec, shards)
                    })
                    .await?;
                    distribute::push_segment(&state, segment_plan, shard_len, encoded).await
                }),
            ));
        }
        incoming.finish().await.map_err(StreamedError::Body)?;
        while let Some(task) = in_flight.pop_front() {
            done.push(joined(task).await?);
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        // The pushes already running finish (at most SEGMENTS_IN_FLIGHT): a stopped
        // one could leave a half-written file behind. What they stored is an orphan.
        for (_, task) in in_flight {
            let _ = task.await;
        }
        return Err(e);
    }
    let count = distribute::report(state, upload, done, part)
        .await
        .map_err(StreamedError::Distribute)?;
    Ok((count, hasher.finalize()))
}

/// An envelope's bytes besides its plaintext, for a small file: the header and a
/// tag per chunk, with room to spare.
const INLINE_ENVELOPE_SLACK: u64 = 64 * 1024;

/// A small upload the server keeps itself (the plan said `inline`): the body read
/// whole into memory (it is at most the server's `inline_threshold`, a few KiB) and
/// handed over; nothing is written here. Returns no shards and the body's BLAKE3.
pub async fn send_whole(
    state: &Arc<NodeState>,
    upload: BlobId,
    size: u64,
    incoming: &mut Incoming,
) -> Result<(usize, blake3::Hash), StreamedError> {
    let len = usize::try_from(size)
        .ok()
        .filter(|_| size <= zib_proto::node_rpc::INLINE_MAX_BYTES + INLINE_ENVELOPE_SLACK)
        .ok_or_else(|| {
            StreamedError::Distribute(DistributeError::BadPlan(format!(
                "an upload of {size} bytes cannot be sent inline"
            )))
        })?;
    let mut envelope = vec![0; len];
    incoming
        .fill(&mut envelope)
        .await
        .map_err(StreamedError::Body)?;
    incoming.finish().await.map_err(StreamedError::Body)?;
    let hash = blake3::hash(&envelope);
    distribute::send_inline(state, upload, envelope)
        .await
        .map_err(StreamedError::Distribute)?;
    Ok((0, hash))
}

/// The segment's data shards, filled from the body (the last one's tail is padding).
async fn read_segment(
    span: &Span,
    segment: u32,
    incoming: &mut Incoming,
    hasher: &mut blake3::Hasher,
) -> Result<Vec<Vec<u8>>, StreamedError> {
    let layout = &span.layout;
    let range = layout.segment_range(span.local(segment));
    // Errors name the segment by its number in the file, as the server knows it.
    let mut shards = distribute::segment_buffers(layout, span.local(segment))
        .map_err(|reason| StreamedError::Distribute(DistributeError::Encode { segment, reason }))?;
    let mut left = range.end - range.start;
    for shard in shards.iter_mut().take(layout.params.data_shards as usize) {
        let n = left.min(shard.len() as u64) as usize;
        if n == 0 {
            break;
        }
        incoming
            .fill(&mut shard[..n])
            .await
            .map_err(StreamedError::Body)?;
        hasher.update(&shard[..n]);
        left -= n as u64;
    }
    Ok(shards)
}

async fn joined((segment, task): SegmentTask) -> Result<Vec<StoredShard>, StreamedError> {
    task.await
        .map_err(|e| {
            StreamedError::Distribute(DistributeError::Encode {
                segment,
                reason: format!("a segment's task failed: {e}"),
            })
        })?
        .map_err(StreamedError::Distribute)
}
