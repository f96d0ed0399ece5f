//! One part of a file stored in parts (an S3 multipart upload), erasure-coded by the
//! server as its sealed bytes arrive: each segment is coded as soon as it is full
//! and its shards pushed to their holders while the next one fills, so the part is
//! never written whole anywhere. The part's shards are durable on their holders when
//! this returns; recording them (`Store::record_file_part`) is the caller's step, so
//! a part that fails leaves only unrecorded blobs, which the collector removes.

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use zib_erasure::{Codec, Layout};
use zib_meta::{FileRow, ShardRow};
use zib_proto::node_rpc::SegmentPlan;

use super::distribution::place_segments;
use crate::error::{ApiError, InternalError};
use crate::state::AppState;

/// Segment numbers reserved for each part: part `n`'s segments start at
/// `(n - 1) * SEGMENTS_PER_PART`, so parts coded in any order never share a number.
/// At the default 4 MiB segments a part may be 256 GiB; S3 allows 5 GiB.
pub const SEGMENTS_PER_PART: u32 = 1 << 16;

/// Parts coded at once by one server (`Inner::part_coding`): about 14 MiB each at the
/// default 4 MiB segments.
pub const PARTS_AT_ONCE: usize = 8;

/// The first segment number of part `number` (1-based).
pub fn first_segment_of(number: u32) -> u32 {
    number.saturating_sub(1).saturating_mul(SEGMENTS_PER_PART)
}

/// Why a part was not stored: its body's own error, or placing its shards failed.
pub enum PartFailure<E> {
    Body(E),
    Placement(ApiError),
}

impl<E> From<ApiError> for PartFailure<E> {
    fn from(e: ApiError) -> Self {
        PartFailure::Placement(e)
    }
}

impl<E> From<InternalError> for PartFailure<E> {
    fn from(e: InternalError) -> Self {
        PartFailure::Placement(e.into())
    }
}

/// Codes `sealed` (the part's whole envelope: exactly `ciphertext_size` bytes) into
/// segments numbered from `first_segment`, and pushes every shard to its holder.
/// Returns the shard rows to record with the part.
pub async fn code_part<S, E>(
    state: &AppState,
    file: &FileRow,
    first_segment: u32,
    ciphertext_size: u64,
    mut sealed: S,
) -> Result<Vec<ShardRow>, PartFailure<E>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let _slot = state
        .part_coding
        .acquire()
        .await
        .map_err(|e| InternalError::Other(format!("part coding closed: {e}")))?;
    let params = file.erasure();
    let layout = Layout::part(params, ciphertext_size);
    let count = layout.segment_count();
    if count > SEGMENTS_PER_PART {
        return Err(ApiError::invalid(
            "part",
            format!(
                "a part of {ciphertext_size} bytes makes {count} segments; at most \
                 {SEGMENTS_PER_PART} fit one part"
            ),
        )
        .into());
    }
    let plans = place_segments(
        state,
        file,
        (0..count).map(|s| (first_segment + s, layout.shard_len(s))),
    )
    .await?;
    let codec = Codec::new(params).map_err(|e| InternalError::Other(e.to_string()))?;
    let codec = std::sync::Arc::new(codec);

    let mut rows = Vec::with_capacity(plans.len() * params.total_shards());
    let mut pending = BytesMut::new();
    let mut pushing: Option<tokio::task::JoinHandle<Result<Vec<ShardRow>, ApiError>>> = None;
    for (local, plan) in (0..count).zip(plans) {
        let range = layout.segment_range(local);
        let want = usize::try_from(range.end - range.start)
            .map_err(|_| InternalError::Other("segment larger than memory".into()))?;
        while pending.len() < want {
            match sealed.next().await {
                Some(Ok(piece)) => pending.extend_from_slice(&piece),
                Some(Err(e)) => {
                    abandon(pushing).await;
                    return Err(PartFailure::Body(e));
                }
                None => {
                    abandon(pushing).await;
                    return Err(ApiError::invalid(
                        "body",
                        format!("the part ended before its {ciphertext_size} envelope bytes"),
                    )
                    .into());
                }
            }
        }
        let segment = pending.split_to(want).freeze();
        // One segment is pushed while the next one fills: memory stays at about two
        // segments and their shards, whatever the part's size.
        if let Some(previous) = pushing.take() {
            rows.extend(joined(previous).await?);
        }
        let task = push_segment(state, file, codec.clone(), plan, segment);
        pushing = Some(tokio::spawn(task));
    }
    if let Some(previous) = pushing.take() {
        rows.extend(joined(previous).await?);
    }
    if !pending.is_empty() {
        return Err(ApiError::invalid("body", "the part is longer than its envelope").into());
    }
    Ok(rows)
}

async fn abandon(pushing: Option<tokio::task::JoinHandle<Result<Vec<ShardRow>, ApiError>>>) {
    if let Some(task) = pushing {
        task.abort();
        let _ = task.await;
    }
}

async fn joined(
    task: tokio::task::JoinHandle<Result<Vec<ShardRow>, ApiError>>,
) -> Result<Vec<ShardRow>, ApiError> {
    task.await
        .map_err(|e| InternalError::Other(format!("a segment push failed: {e}")))?
}

/// Codes one segment and stores its shards on their holders, all at once.
fn push_segment(
    state: &AppState,
    file: &FileRow,
    codec: std::sync::Arc<Codec>,
    plan: SegmentPlan,
    segment: Bytes,
) -> impl std::future::Future<Output = Result<Vec<ShardRow>, ApiError>> + Send + 'static {
    let state = state.clone();
    let file_id = file.file_id;
    async move {
        let shards = tokio::task::spawn_blocking(move || {
            codec.encode_segment(&segment).map(|shards| {
                shards
                    .into_iter()
                    .map(|s| {
                        let hash = blake3::hash(&s);
                        (s, hash)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .await
        .map_err(|e| InternalError::Other(format!("coding a segment: {e}")))?
        .map_err(|e| InternalError::Other(format!("coding a segment: {e}")))?;
        let timeout = state.config.shard_fetch_timeout * 3;
        let pushes = plan
            .targets
            .iter()
            .zip(shards)
            .map(|(target, (bytes, hash))| {
                let state = state.clone();
                async move {
                    let size = bytes.len() as u64;
                    state
                        .nodes
                        .put_shard(
                            &target.node_url,
                            target.blob_id,
                            &target.token,
                            bytes,
                            timeout,
                        )
                        .await
                        .map_err(|e| {
                            ApiError::Unavailable(format!(
                                "storing shard {}/{} on node {} failed: {e}; retry the part",
                                plan.segment, target.index, target.node_id
                            ))
                        })?;
                    Ok::<_, ApiError>(ShardRow {
                        file_id,
                        segment: plan.segment,
                        index: target.index,
                        node_id: target.node_id.clone(),
                        blob_id: target.blob_id,
                        size,
                        blake3: hash.as_bytes().to_vec(),
                    })
                }
            });
        futures::future::try_join_all(pushes).await
    }
}
