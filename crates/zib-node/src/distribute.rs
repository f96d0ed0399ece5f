//! Distribution: once an upload is stored, ask the server where its shards go,
//! erasure-code it segment by segment and push each shard to its node.
//!
//! Only a few segments are in flight at once, so memory stays flat whatever the
//! file's size. The whole envelope stays on this node: durability work drops it
//! once the file is verified safe elsewhere.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reqwest::StatusCode;
use zib_erasure::{Codec, Layout};
use zib_proto::error_codes as codes;
use zib_proto::node_rpc::{
    DistributedRequest, DistributionPlan, SegmentPlan, ShardStored, ShardTarget, StoredShard,
    UploadReceivedRequest,
};
use zib_proto::BlobId;

use crate::rpc::RpcError;
use crate::state::NodeState;
use crate::store::PartHeld;

/// Segments encoded or being pushed at once: enough to keep the disk, the CPU and
/// the network busy together; each costs `(k + m) * shard_size` bytes of memory.
const SEGMENTS_IN_FLIGHT: usize = 3;
/// A push that failed on the network or with a 5xx is tried this many times in all.
const PUSH_ATTEMPTS: u32 = 3;
/// Short: a peer that stays down for longer is for the server to re-place around.
const PUSH_RETRY_DELAY: Duration = Duration::from_millis(200);
/// While the server has too few nodes online to give every shard of a segment its
/// own node, the plan is asked for again after pauses doubling from the first to
/// the longest, for this long in all (the uploading client waits meanwhile); then
/// the upload is left to the resume worker, which keeps asking.
const PLAN_RETRY_FIRST: Duration = Duration::from_millis(500);
const PLAN_RETRY_LONGEST: Duration = Duration::from_secs(8);
const PLAN_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum DistributeError {
    #[error("the server did not say where the shards go: {0}")]
    Plan(#[source] RpcError),
    #[error("the server's distribution plan is unusable: {0}")]
    BadPlan(String),
    #[error("could not read and encode segment {segment}: {reason}")]
    Encode { segment: u32, reason: String },
    #[error("could not store shard {index} of segment {segment} on node {node_id} ({node_url}): {reason}")]
    Push {
        segment: u32,
        index: u8,
        node_id: String,
        node_url: String,
        reason: String,
    },
    #[error("could not store shard {index} of segment {segment} on this node: {reason}")]
    Local {
        segment: u32,
        index: u8,
        reason: String,
    },
    #[error("the server did not accept the list of stored shards: {0}")]
    Report(#[source] RpcError),
    #[error("the server places this upload whole, not part by part")]
    WholeOnly,
}

impl DistributeError {
    /// The server cannot place the shards yet (too few nodes online): worth asking
    /// again later, and pointless for other uploads in the meantime.
    pub fn too_few_nodes(&self) -> bool {
        matches!(self, DistributeError::Plan(rpc)
            if rpc.server_body().is_some_and(|b| b.code == codes::TOO_FEW_NODES))
    }

    /// The server places this upload whole at its completion (it was registered
    /// before parts were coded on arrival): a part's plan is refused as invalid.
    pub fn placed_whole(&self) -> bool {
        matches!(self, DistributeError::Plan(rpc) if rpc.status() == Some(StatusCode::BAD_REQUEST))
    }

    /// The server's answer when it refused this upload for good: it is unknown
    /// (expired and failed), already distributed, superseded or cancelled, or belongs
    /// to another node. Trying again can never succeed.
    pub fn final_refusal(&self) -> Option<&RpcError> {
        let rpc = match self {
            DistributeError::Plan(rpc) | DistributeError::Report(rpc) => rpc,
            _ => return None,
        };
        matches!(
            rpc.status(),
            Some(
                StatusCode::NOT_FOUND
                    | StatusCode::CONFLICT
                    | StatusCode::GONE
                    | StatusCode::FORBIDDEN
            )
        )
        .then_some(rpc)
    }
}

/// Distributes a stored upload and settles its pending marker: removed once the
/// server acknowledged the shards, or refused the upload for good. The bytes stay
/// either way; deleting them is the server's call.
///
/// Returns how many shards were stored.
pub async fn distribute(
    state: &Arc<NodeState>,
    upload: BlobId,
    size: u64,
) -> Result<usize, DistributeError> {
    settle_pending(state, upload, distribute_once(state, upload, size).await).await
}

/// Removes an upload's pending marker once the server acknowledged its shards or
/// refused it for good; otherwise the resume task tries again.
async fn settle_pending(
    state: &NodeState,
    upload: BlobId,
    result: Result<usize, DistributeError>,
) -> Result<usize, DistributeError> {
    let settled = match &result {
        Ok(_) => true,
        Err(e) => e.final_refusal().is_some(),
    };
    if settled {
        if let Err(e) = state.store.clear_pending(upload).await {
            // Harmless: the next resume pass asks again and is refused.
            tracing::warn!(%upload, error = %e, "could not remove the pending-distribution marker");
        }
    }
    result
}

async fn distribute_once(
    state: &Arc<NodeState>,
    upload: BlobId,
    size: u64,
) -> Result<usize, DistributeError> {
    let plan = request_plan(state, upload, size, None).await?;
    let (codec, span) = checked(&plan, size, None)?;

    let source = state.store.blob_path(upload);
    if plan.inline {
        let envelope = tokio::fs::read(&source)
            .await
            .map_err(|e| DistributeError::Encode {
                segment: 0,
                reason: format!("reading {}: {e}", source.display()),
            })?;
        send_inline(state, upload, envelope).await?;
        // Only once the server has it: on restart, this record tells the resumer
        // that the stored upload needs nothing more.
        if let Err(e) = state.store.mark_distributed(upload).await {
            tracing::warn!(%upload, error = %e, "could not record that the upload is distributed");
        }
        return Ok(0);
    }
    let per_segment = distribute_from_file(state, &codec, span, &source, plan.segments).await?;
    let count = report(state, upload, per_segment, None).await?;
    if let Err(e) = state.store.mark_distributed(upload).await {
        // The server already knows; a retry would only be told 409.
        tracing::warn!(%upload, error = %e, "could not record that the upload is distributed");
    }
    Ok(count)
}

/// Finishes a multipart upload whose parts are coded on their own: every part kept
/// in the partial file (no plan could be had when it arrived) is coded from there
/// and reported, then the server is told the upload is complete. Settles the
/// upload's pending marker as [`distribute`] does, and drops the partial file and
/// part markers once the server has the file.
///
/// [`DistributeError::WholeOnly`] when the server places this upload whole (it was
/// registered before parts were coded on arrival): nothing was changed.
pub async fn finish_parts(
    state: &Arc<NodeState>,
    upload: BlobId,
    parts: u32,
) -> Result<usize, DistributeError> {
    settle_pending(state, upload, finish_parts_once(state, upload, parts).await).await
}

async fn finish_parts_once(
    state: &Arc<NodeState>,
    upload: BlobId,
    parts: u32,
) -> Result<usize, DistributeError> {
    let source = state.store.partial_path(upload);
    let mut offset = 0;
    let mut coded_now = 0;
    let mut any_coded = false;
    for part in 1..=parts {
        let held =
            state
                .store
                .part_held(upload, part)
                .await
                .ok_or_else(|| DistributeError::Encode {
                    segment: 0,
                    reason: format!("part {part} of the upload is not held here"),
                })?;
        if held.coded {
            any_coded = true;
        } else {
            let plan = match request_plan(state, upload, held.size, Some(part)).await {
                Err(e) if !any_coded && e.placed_whole() => return Err(DistributeError::WholeOnly),
                plan => plan?,
            };
            let (codec, mut span) = checked(&plan, held.size, Some(part))?;
            span.file_offset = offset;
            let per_segment =
                distribute_from_file(state, &codec, span, &source, plan.segments).await?;
            coded_now += report(state, upload, per_segment, Some(part)).await?;
            let coded = PartHeld {
                coded: true,
                ..held
            };
            if let Err(e) = state.store.mark_part(upload, part, coded).await {
                // A later pass codes the part again; the server replaces its shards.
                tracing::warn!(%upload, part, error = %e, "could not record that a part is coded");
            }
            any_coded = true;
        }
        offset += held.size;
    }
    report(state, upload, Vec::new(), None).await?;
    if let Err(e) = state.store.mark_distributed(upload).await {
        tracing::warn!(%upload, error = %e, "could not record that the upload is distributed");
    }
    let _ = tokio::fs::remove_file(&source).await;
    let _ = tokio::fs::remove_dir_all(state.store.parts_dir(upload)).await;
    Ok(coded_now)
}

/// Encodes and pushes the planned segments of a stored file, a few at once.
async fn distribute_from_file(
    state: &Arc<NodeState>,
    codec: &Arc<Codec>,
    span: Span,
    source: &std::path::Path,
    segments: Vec<SegmentPlan>,
) -> Result<Vec<Vec<StoredShard>>, DistributeError> {
    futures::stream::iter(segments)
        .map(|segment| {
            distribute_segment(
                state.clone(),
                codec.clone(),
                span,
                source.to_path_buf(),
                segment,
            )
        })
        .buffer_unordered(SEGMENTS_IN_FLIGHT)
        .try_collect()
        .await
}

/// Tells the server where every shard went: of the whole upload (which makes the
/// file current), or of one `part`. Returns how many shards that was.
pub(crate) async fn report(
    state: &NodeState,
    upload: BlobId,
    per_segment: Vec<Vec<StoredShard>>,
    part: Option<u32>,
) -> Result<usize, DistributeError> {
    let mut shards: Vec<StoredShard> = per_segment.into_iter().flatten().collect();
    shards.sort_by_key(|s| (s.segment, s.index));
    let count = shards.len();
    state
        .server
        .upload_distributed(
            upload,
            &DistributedRequest {
                node_id: state.node_id.clone(),
                shards,
                part,
            },
        )
        .await
        .map_err(DistributeError::Report)?;
    Ok(count)
}

/// Hands a small upload's whole envelope to the server, which keeps it (the plan
/// said `inline`): no shards anywhere.
pub(crate) async fn send_inline(
    state: &NodeState,
    upload: BlobId,
    envelope: Vec<u8>,
) -> Result<(), DistributeError> {
    state
        .server
        .upload_inline(upload, &state.node_id, envelope)
        .await
        .map_err(DistributeError::Report)
}

/// The bytes a plan places: a whole upload, or one part of it. A part is segmented
/// on its own; its segments are numbered across the whole file from
/// `first_segment`, and its bytes start at `file_offset` in a stored upload.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub layout: Layout,
    pub first_segment: u32,
    pub file_offset: u64,
}

impl Span {
    /// Segment `segment` of the file, numbered within this span's own layout.
    pub fn local(&self, segment: u32) -> u32 {
        segment.saturating_sub(self.first_segment)
    }

    pub fn shard_len(&self, segment: u32) -> u64 {
        self.layout.shard_len(self.local(segment))
    }

    /// Where the segment's bytes are in the stored upload.
    fn file_range(&self, segment: u32) -> std::ops::Range<u64> {
        let range = self.layout.segment_range(self.local(segment));
        range.start + self.file_offset..range.end + self.file_offset
    }
}

/// The server's plan, asked for once, and checked against the upload's (or the
/// part's) size: what an upload asks before its body is read, to erasure-code it
/// as it arrives.
pub(crate) async fn plan_now(
    state: &NodeState,
    upload: BlobId,
    size: u64,
    part: Option<u32>,
) -> Result<(DistributionPlan, Arc<Codec>, Span), DistributeError> {
    let plan = ask_plan(state, upload, size, part).await?;
    let (codec, span) = checked(&plan, size, part)?;
    if part.is_some() && plan.inline {
        return Err(DistributeError::BadPlan(
            "a part cannot be kept inline".into(),
        ));
    }
    Ok((plan, codec, span))
}

async fn ask_plan(
    state: &NodeState,
    upload: BlobId,
    size: u64,
    part: Option<u32>,
) -> Result<DistributionPlan, DistributeError> {
    state
        .server
        .upload_received(
            upload,
            &UploadReceivedRequest {
                node_id: state.node_id.clone(),
                size,
                part,
            },
        )
        .await
        .map_err(DistributeError::Plan)
}

/// The codec and span a plan implies, once the plan is known to fit the upload (or
/// its `part`, segmented as a part is: see `zib_erasure::Parts`).
fn checked(
    plan: &DistributionPlan,
    size: u64,
    part: Option<u32>,
) -> Result<(Arc<Codec>, Span), DistributeError> {
    // Codec first: it refuses parameters that Layout's arithmetic could not survive.
    let codec =
        Arc::new(Codec::new(plan.erasure).map_err(|e| DistributeError::BadPlan(e.to_string()))?);
    let layout = match part {
        None => Layout::new(plan.erasure, size),
        Some(_) => Layout::part(plan.erasure, size),
    };
    let span = Span {
        layout,
        first_segment: plan.first_segment,
        file_offset: 0,
    };
    if plan.inline {
        if !plan.segments.is_empty() {
            return Err(DistributeError::BadPlan(
                "it says inline and places shards".into(),
            ));
        }
    } else {
        check_plan(&span, &plan.segments)?;
    }
    Ok((codec, span))
}

/// The server's plan, asked for again with backoff while it has too few nodes
/// online for one (up to [`PLAN_WAIT`]).
async fn request_plan(
    state: &NodeState,
    upload: BlobId,
    size: u64,
    part: Option<u32>,
) -> Result<DistributionPlan, DistributeError> {
    let started = tokio::time::Instant::now();
    let mut pause = PLAN_RETRY_FIRST;
    loop {
        match ask_plan(state, upload, size, part).await {
            Err(e) if e.too_few_nodes() && started.elapsed() + pause <= PLAN_WAIT => {
                tracing::info!(%upload, retry_in_ms = pause.as_millis() as u64, "too few nodes online to place the shards; waiting");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(PLAN_RETRY_LONGEST);
            }
            other => return other,
        }
    }
}

fn check_plan(span: &Span, segments: &[SegmentPlan]) -> Result<(), DistributeError> {
    let layout = &span.layout;
    let expected = layout.segment_count();
    if segments.len() != expected as usize {
        return Err(DistributeError::BadPlan(format!(
            "it has {} segments, but {} bytes make {expected}",
            segments.len(),
            layout.total_len
        )));
    }
    let total = layout.params.total_shards();
    for (position, segment) in segments.iter().enumerate() {
        if segment.segment.checked_sub(span.first_segment) != u32::try_from(position).ok() {
            return Err(DistributeError::BadPlan(format!(
                "segment {} is listed in position {position}",
                segment.segment
            )));
        }
        if segment.targets.len() != total {
            return Err(DistributeError::BadPlan(format!(
                "segment {} has {} targets, not {total}",
                segment.segment,
                segment.targets.len()
            )));
        }
        if let Some((i, t)) = segment
            .targets
            .iter()
            .enumerate()
            .find(|(i, t)| t.index as usize != *i)
        {
            return Err(DistributeError::BadPlan(format!(
                "segment {} lists shard {} in position {i}",
                segment.segment, t.index
            )));
        }
    }
    Ok(())
}

async fn distribute_segment(
    state: Arc<NodeState>,
    codec: Arc<Codec>,
    span: Span,
    source: PathBuf,
    plan: SegmentPlan,
) -> Result<Vec<StoredShard>, DistributeError> {
    let segment = plan.segment;
    let shard_len = span.shard_len(segment);
    // Held until the segment's shards are pushed.
    let _permit = state
        .buffers
        .acquire(shard_len * span.layout.params.total_shards() as u64)
        .await;
    let encoded = off_thread(segment, move || {
        read_data_shards(&source, &span, segment)
            .and_then(|shards| add_parity_and_hash(&codec, shards))
    })
    .await?;
    push_segment(&state, plan, shard_len, encoded).await
}

/// Runs a segment's CPU and disk work on the blocking pool.
pub(crate) async fn off_thread<T: Send + 'static>(
    segment: u32,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, DistributeError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| DistributeError::Encode {
            segment,
            reason: format!("encoding task failed: {e}"),
        })?
        .map_err(|reason| DistributeError::Encode { segment, reason })
}

/// Stores a segment's encoded shards on the plan's holders (this node included), all
/// at once; returns what the server is to record.
pub(crate) async fn push_segment(
    state: &Arc<NodeState>,
    plan: SegmentPlan,
    shard_len: u64,
    encoded: Vec<(Bytes, String)>,
) -> Result<Vec<StoredShard>, DistributeError> {
    let segment = plan.segment;
    let pushes = plan
        .targets
        .into_iter()
        .zip(encoded)
        .map(|(target, (bytes, blake3))| {
            let state = state.clone();
            async move {
                store_shard(&state, segment, &target, bytes).await?;
                Ok::<_, DistributeError>(StoredShard {
                    segment,
                    index: target.index,
                    blob_id: target.blob_id,
                    node_id: target.node_id,
                    size: shard_len,
                    blake3,
                })
            }
        });
    futures::future::try_join_all(pushes).await
}

/// Zeroed buffers for every shard of `segment`: the caller fills the data shards'
/// leading bytes (the tail of the last one stays zero padding).
pub(crate) fn segment_buffers(layout: &Layout, segment: u32) -> Result<Vec<Vec<u8>>, String> {
    let shard_len = usize::try_from(layout.shard_len(segment))
        .map_err(|_| "shard length does not fit in memory".to_string())?;
    Ok((0..layout.params.total_shards())
        .map(|_| vec![0u8; shard_len])
        .collect())
}

/// Reads one segment of a stored upload straight into its data shards.
fn read_data_shards(
    source: &std::path::Path,
    span: &Span,
    segment: u32,
) -> Result<Vec<Vec<u8>>, String> {
    let range = span.file_range(segment);
    let data_shards = span.layout.params.data_shards as usize;
    let mut shards = segment_buffers(&span.layout, span.local(segment))?;
    let shard_len = shards.first().map_or(0, Vec::len);
    let mut file =
        std::fs::File::open(source).map_err(|e| format!("cannot open the upload: {e}"))?;
    for (i, shard) in shards.iter_mut().take(data_shards).enumerate() {
        let start = range.start + (i * shard_len) as u64;
        if start >= range.end {
            break;
        }
        let n = (range.end - start).min(shard_len as u64) as usize;
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(&mut shard[..n]))
            .map_err(|e| {
                format!(
                    "cannot read bytes {start}..{} of the upload: {e}",
                    start + n as u64
                )
            })?;
    }
    Ok(shards)
}

/// Adds a segment's parity shards and hashes every shard.
pub(crate) fn add_parity_and_hash(
    codec: &Codec,
    mut shards: Vec<Vec<u8>>,
) -> Result<Vec<(Bytes, String)>, String> {
    codec
        .encode_parity(&mut shards)
        .map_err(|e| e.to_string())?;
    Ok(shards
        .into_iter()
        .map(|shard| {
            let hash = blake3::hash(&shard).to_hex().to_string();
            (Bytes::from(shard), hash)
        })
        .collect())
}

async fn store_shard(
    state: &NodeState,
    segment: u32,
    target: &ShardTarget,
    bytes: Bytes,
) -> Result<(), DistributeError> {
    if target.node_id == state.node_id {
        if state.store.exists(target.blob_id).await {
            return Ok(());
        }
        return state
            .store
            .put_bytes(target.blob_id, &bytes)
            .await
            .map_err(|e| DistributeError::Local {
                segment,
                index: target.index,
                reason: e.to_string(),
            });
    }
    push_blob(
        state,
        &target.node_url,
        target.blob_id,
        &target.token,
        bytes,
    )
    .await
    .map(|_| ())
    .map_err(|reason| DistributeError::Push {
        segment,
        index: target.index,
        node_id: target.node_id.to_string(),
        node_url: target.node_url.clone(),
        reason,
    })
}

/// Pushes a blob (a shard, or an HLS segment) to a peer with `PUT
/// {node_url}/v1/shards/{blob}?token=`, retrying network failures and 5xx answers.
///
/// Returns the BLAKE3 the peer says it stored (hex), or `None` when a retry found
/// the blob already stored (an earlier attempt landed and only its answer was lost).
pub(crate) async fn push_blob(
    state: &NodeState,
    node_url: &str,
    blob: BlobId,
    token: &str,
    bytes: Bytes,
) -> Result<Option<String>, String> {
    let url = format!("{}/v1/shards/{blob}", node_url.trim_end_matches('/'));
    let mut last_error = String::new();
    for attempt in 0..PUSH_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(PUSH_RETRY_DELAY * attempt).await;
        }
        let sent = state
            .peers
            .put(&url)
            .query(&[("token", token)])
            .body(bytes.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                let stored = response.json::<ShardStored>().await.ok();
                return Ok(stored.map(|s| s.blake3));
            }
            // A retry that finds the blob stored or the token spent means an earlier
            // attempt landed and only its answer was lost.
            Ok(response) if attempt > 0 && response.status() == StatusCode::CONFLICT => {
                return Ok(None)
            }
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                let detail = serde_json::from_str::<zib_proto::api::ErrorBody>(&body)
                    .map(|b| b.error)
                    .unwrap_or_else(|_| body.chars().take(200).collect());
                last_error = format!("peer answered {status}: {detail}");
                let retryable = status.is_server_error()
                    || status == StatusCode::REQUEST_TIMEOUT
                    || status == StatusCode::TOO_MANY_REQUESTS;
                if !retryable {
                    break;
                }
            }
            // without_url: the URL carries the token, which must never reach a log.
            Err(e) => last_error = format!("peer unreachable: {}", e.without_url()),
        }
    }
    Err(last_error)
}
