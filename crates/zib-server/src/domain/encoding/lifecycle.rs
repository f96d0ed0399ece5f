//! An encoding job driven by the node holding its lease (docs/video.md): claim,
//! renewals with progress, the probe and ladder, each segment and its replicas, rungs
//! published, done or failed. Every call after the claim proves the lease (its token,
//! hashed, on an unlapsed lease of a job not cancelled); a call that cannot is `410
//! Gone`, so the node stops. The events each step sends are written by the store in
//! the step's own transaction, with bodies from `events`.

use rand::RngCore;
use sha2::{Digest, Sha256};
use zib_meta::{
    EncodingJobRow, JobEvent, LeaseUpdate, NewRendition, NewSegment, NewWebhookEvent,
    ProgressThrottle, RetryPolicy,
};
use zib_proto::events::{EncodingStep, ProgressStage};
use zib_proto::jobs::{
    ClaimRequest, ClaimedJob, JobDone, JobFailure, JobProbed, JobStage, LeaseRenewal, LeaseStatus,
    RenditionDone, ReplicaTarget, ReplicasStored, SegmentStored, SegmentTargets,
};
use zib_proto::node_rpc::{CapabilityClaims, CapabilityOp};
use zib_proto::{BlobId, NodeId};

use super::events;
use crate::domain::blob_removal::delete_blobs_now;
use crate::domain::directory::NodeDirectory;
use crate::domain::placement;
use crate::error::{ApiError, ApiResult, InternalError};
use crate::state::{now_ms, Inner};

/// The capability a node advertises when ffmpeg and ffprobe work on it.
pub const ENCODE_CAPABILITY: &str = "encode";
/// The error a lapsed lease leaves on the job (tenant-readable).
pub const LAPSED_ERROR: &str = "the encoding node stopped answering";
/// Peers each segment is pushed to (the encoder's own copy does not count).
pub const SEGMENT_REPLICAS: usize = 3;
/// How long deleting copies pushed after their job ended waits for their holders.
const LATE_REPLICA_DELETE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// `encoding.progress` at most every 10 s, unless progress moved 5 points.
pub const PROGRESS_THROTTLE: ProgressThrottle = ProgressThrottle {
    min_interval_ms: 10_000,
    min_points: 5,
};

/// The stored form of a lease token: only its hash is kept.
pub fn lease_token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Transient failures and lapses retry under this.
pub fn retry_policy(state: &Inner) -> RetryPolicy {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    RetryPolicy {
        budget: state.config.encoding_retry_budget,
        backoff_base_ms: ms(state.config.encoding_retry_backoff),
        backoff_cap_ms: ms(state.config.encoding_retry_backoff_max),
    }
}

pub(crate) fn lease_ms(state: &Inner) -> i64 {
    i64::try_from(state.config.encoding_lease.as_millis()).unwrap_or(i64::MAX)
}

/// The outbox rows of the lifecycle's steps, bodies from `events`. An
/// aspect-variant job sends only its `encoding.complete` (a failed variant is simply
/// absent; the tenant follows the main job).
pub fn event_builder(
    state: &Inner,
    at_ms: i64,
) -> impl Fn(&EncodingJobRow, JobEvent, &[EncodingJobRow]) -> Option<NewWebhookEvent> + Send + Sync + '_
{
    move |job, event, children| {
        if job.is_variant() && event != JobEvent::Complete {
            return None;
        }
        Some(match event {
            JobEvent::Started => events::step_event(state, job, EncodingStep::Started, at_ms),
            JobEvent::Sharding => events::step_event(state, job, EncodingStep::Sharding, at_ms),
            JobEvent::Complete => {
                events::job_event(state, job, EncodingStep::Complete, at_ms, children)
            }
            JobEvent::Failed => events::step_event(state, job, EncodingStep::Failed, at_ms),
            JobEvent::Progress { percent, sharding } => {
                let stage = if sharding {
                    ProgressStage::Sharding
                } else {
                    ProgressStage::Encoding
                };
                events::progress_event(job, percent, stage, at_ms)
            }
        })
    }
}

fn gone(job_id: &str) -> ApiError {
    ApiError::Gone(format!(
        "the lease on encoding job {job_id} is no longer held (it lapsed, or the job was \
         cancelled or handed to another node): stop working on it"
    ))
}

/// The job `token` holds the lease of, for calls that carry no body of their own
/// (the source read, an artefact upload); `410 Gone` otherwise.
pub async fn leased_job(state: &Inner, job_id: &str, token: &str) -> ApiResult<EncodingJobRow> {
    state
        .store
        .leased_encoding_job(job_id, None, &lease_token_hash(token), now_ms())
        .await?
        .ok_or_else(|| gone(job_id))
}

/// Hands the oldest claimable job to `req.node_id` (which must advertise `encode`),
/// with the keys and the source it needs. `None`: nothing to do.
pub async fn claim(state: &Inner, req: &ClaimRequest) -> ApiResult<Option<ClaimedJob>> {
    let Some(node) = state.store.node(&req.node_id).await? else {
        return Err(ApiError::NotFound(format!(
            "node {} is not registered; register first",
            req.node_id
        )));
    };
    if !node.capabilities.iter().any(|c| c == ENCODE_CAPABILITY) {
        return Err(ApiError::Forbidden(format!(
            "node {} does not advertise the `{ENCODE_CAPABILITY}` capability",
            req.node_id
        )));
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = hex::encode(raw);
    let now = now_ms();
    let events = event_builder(state, now);
    let Some(job) = state
        .store
        .claim_encoding_job(
            &req.node_id,
            &lease_token_hash(&token),
            now.saturating_add(lease_ms(state)),
            now,
            &events,
        )
        .await?
    else {
        return Ok(None);
    };
    let hash = lease_token_hash(&token);
    match claimed_job(state, &job, token).await {
        Ok(claimed) => {
            tracing::info!(job = %job.id, file = %job.file_id, node = %req.node_id, "encoding job claimed");
            Ok(Some(claimed))
        }
        Err(e) => {
            // Keys that do not unwrap or a file gone meanwhile never get better: the
            // job waits for the tenant rather than failing on node after node.
            tracing::error!(job = %job.id, error = %e, "a claimed job cannot be handed out");
            state
                .store
                .fail_encoding_job(
                    &job.id,
                    &hash,
                    "the video's keys or source are unreadable on this server",
                    true,
                    retry_policy(state),
                    now_ms(),
                    &events,
                )
                .await?;
            Err(e)
        }
    }
}

async fn claimed_job(state: &Inner, job: &EncodingJobRow, token: String) -> ApiResult<ClaimedJob> {
    // An aspect-variant job reads its parent's uploaded source.
    let source = job.source_file();
    let file = state.store.file(source).await?.ok_or_else(|| {
        InternalError::Other(format!("job {} names a missing file {source}", job.id))
    })?;
    let url = format!(
        "{}/v1/node/jobs/{}/source",
        state.config.public_url.trim_end_matches('/'),
        job.id
    );
    Ok(ClaimedJob {
        job_id: job.id.clone(),
        lease_token: token,
        lease_secs: state.config.encoding_lease.as_secs(),
        source: super::source::job_source(state, &file, url).await?,
        hls_key: hex::encode(super::hls_key::unwrap_hls_key(
            state,
            &job.id,
            &job.wrapped_hls_key,
        )?),
        options: job.options.clone(),
        thumbnails: zib_proto::encoding::thumbnail_plan(&job.options, job.is_variant()),
        aspect_ratio: job.aspect_ratio.clone(),
    })
}

/// Extends the lease and records progress (and the move to sharding).
pub async fn renew(state: &Inner, job_id: &str, req: &LeaseRenewal) -> ApiResult<LeaseStatus> {
    let now = now_ms();
    let events = event_builder(state, now);
    let update = LeaseUpdate {
        sharding: req.stage == JobStage::Sharding,
        progress: percent(req.progress),
        phase_progress: finite(req.phase_progress),
        detail: req.detail.clone(),
    };
    state
        .store
        .renew_encoding_lease(
            job_id,
            &req.node_id,
            &lease_token_hash(&req.lease_token),
            &update,
            now.saturating_add(lease_ms(state)),
            PROGRESS_THROTTLE,
            now,
            &events,
        )
        .await?
        .ok_or_else(|| gone(job_id))?;
    Ok(LeaseStatus {
        lease_secs: state.config.encoding_lease.as_secs(),
    })
}

pub(crate) fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v.clamp(0.0, 100.0)
    } else {
        0.0
    }
}

pub(crate) fn percent(v: f64) -> u8 {
    finite(v).round() as u8
}

/// The probe and the ladder the node will produce.
pub async fn probed(state: &Inner, job_id: &str, req: &JobProbed) -> ApiResult<()> {
    if req.renditions.is_empty() {
        return Err(ApiError::invalid(
            "renditions",
            "at least one rung is needed",
        ));
    }
    let probe = serde_json::to_value(&req.probe)
        .map_err(|e| InternalError::Other(format!("probe JSON: {e}")))?;
    let renditions: Vec<NewRendition> = req
        .renditions
        .iter()
        .map(|r| NewRendition {
            name: r.name.clone(),
            width: r.width,
            height: r.height,
            codecs: r.codecs.clone(),
            frame_rate: finite_rate(r.frame_rate),
        })
        .collect();
    if state
        .store
        .record_job_probe(
            job_id,
            &lease_token_hash(&req.lease_token),
            &probe,
            &renditions,
            now_ms(),
        )
        .await?
    {
        Ok(())
    } else {
        Err(gone(job_id))
    }
}

fn finite_rate(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 {
        v
    } else {
        0.0
    }
}

fn hex_bytes<const N: usize>(field: &'static str, text: &str) -> ApiResult<Vec<u8>> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| ApiError::invalid(field, format!("must be {} hex characters", N * 2)))?;
    Ok(out.to_vec())
}

/// Records a segment stored on the encoder; answers up to three online peers with
/// room (not the encoder), each with a `Segment` capability for the push. Fewer
/// online peers give fewer targets: the repairer completes the replicas later.
pub async fn segment_stored(
    state: &Inner,
    job_id: &str,
    req: &SegmentStored,
) -> ApiResult<SegmentTargets> {
    let segment = NewSegment {
        rendition: req.rendition.clone(),
        seq: req.seq,
        duration_ms: req.duration_ms,
        size: req.size,
        blake3: hex_bytes::<32>("blake3", &req.blake3)?,
        iv: hex_bytes::<16>("iv", &req.iv)?,
        blob_id: req.blob_id,
    };
    let now = now_ms();
    state
        .store
        .record_segment(
            job_id,
            &req.node_id,
            &lease_token_hash(&req.lease_token),
            &segment,
            now,
        )
        .await
        .map_err(meta_conflict)?
        .ok_or_else(|| gone(job_id))?;
    let directory = NodeDirectory::load(state).await?;
    let placeable = directory.placeable();
    let peers: Vec<_> = placement::eligible_originators(&placeable, req.size, &[])
        .into_iter()
        .filter(|n| n.node_id != req.node_id)
        .cloned()
        .collect();
    let expires_at = (now as u64 / 1000) + state.config.upload_expiry.as_secs();
    let targets = placement::zone_interleaved(&peers)
        .into_iter()
        .take(SEGMENT_REPLICAS)
        .map(|n| ReplicaTarget {
            token: state.config.capability_signer.sign(&CapabilityClaims {
                op: CapabilityOp::Segment,
                node_id: n.node_id.clone(),
                blob_id: req.blob_id,
                size: req.size,
                part: None,
                offset: None,
                parts: None,
                envelope: None,
                expires_at,
                jti: uuid::Uuid::new_v4().simple().to_string(),
            }),
            node_id: n.node_id,
            node_url: n.public_url,
        })
        .collect();
    Ok(SegmentTargets { targets })
}

/// A state rule of the store (an unplanned rung, a foreign blob, a count that does
/// not match) is the node's mistake: `409` naming it.
pub(crate) fn meta_conflict(e: zib_meta::MetaError) -> ApiError {
    match e {
        zib_meta::MetaError::Conflict(what) => ApiError::Conflict(what.to_string()),
        other => other.into(),
    }
}

/// Records the peers that stored a segment's replica.
pub async fn replicas_stored(state: &Inner, job_id: &str, req: &ReplicasStored) -> ApiResult<()> {
    if state
        .store
        .record_segment_replicas(
            job_id,
            &lease_token_hash(&req.lease_token),
            req.blob_id,
            &req.node_ids,
            now_ms(),
        )
        .await
        .map_err(meta_conflict)?
    {
        Ok(())
    } else {
        drop_late_replicas(state, job_id, req).await;
        Err(gone(job_id))
    }
}

/// Copies pushed after their job was cancelled (its segments already evicted) are
/// deleted now rather than left to the orphan collector's grace: the node learns of
/// the cancel at its next renewal, and pushes finishing before then land on their
/// targets. A copy is only deleted when nothing names its blob any more.
async fn drop_late_replicas(state: &Inner, job_id: &str, req: &ReplicasStored) {
    match state.store.blob_referenced(req.blob_id).await {
        Ok(false) => {}
        Ok(true) => return,
        Err(e) => {
            tracing::warn!(job = job_id, blob = %req.blob_id, error = %e, "could not check a late replica; the orphan collector will");
            return;
        }
    }
    let copies: Vec<(NodeId, BlobId)> = req
        .node_ids
        .iter()
        .map(|node| (node.clone(), req.blob_id))
        .collect();
    match delete_blobs_now(state, &copies, LATE_REPLICA_DELETE_TIMEOUT).await {
        Ok(cleanup) => tracing::info!(
            job = job_id,
            blob = %req.blob_id,
            deleted = cleanup.ok,
            left_to_heartbeat = cleanup.failed + cleanup.queued_for_offline,
            "replicas pushed after the job ended deleted"
        ),
        Err(e) => {
            tracing::warn!(job = job_id, blob = %req.blob_id, error = %e, "could not delete late replicas; the orphan collector will")
        }
    }
}

/// A rung has every segment: it joins the master playlist (and the first rung of a
/// file with no live encode makes this job the one the CDN serves).
pub async fn rendition_published(
    state: &Inner,
    job_id: &str,
    name: &str,
    req: &RenditionDone,
) -> ApiResult<()> {
    let published = state
        .store
        .publish_rendition(
            job_id,
            &lease_token_hash(&req.lease_token),
            name,
            req.segment_count,
            now_ms(),
        )
        .await
        .map_err(meta_conflict)?
        .ok_or_else(|| gone(job_id))?;
    tracing::info!(
        job = job_id,
        rendition = name,
        bandwidth = published.bandwidth,
        live = published.made_live,
        "rendition published"
    );
    Ok(())
}

/// Every rung is published: the job is `local_complete` and live; a job it replaces
/// is cancelled and evicted by the reaper after the grace.
pub async fn done(state: &Inner, job_id: &str, req: &JobDone) -> ApiResult<()> {
    let now = now_ms();
    let events = event_builder(state, now);
    let completion = state
        .store
        .complete_encoding_job(
            job_id,
            &lease_token_hash(&req.lease_token),
            &format!("replaced by encoding {job_id}"),
            now,
            &events,
        )
        .await
        .map_err(meta_conflict)?
        .ok_or_else(|| gone(job_id))?;
    tracing::info!(job = job_id, replaced = ?completion.replaced, "encoding job local_complete");
    Ok(())
}

/// The node gave up: a permanent failure waits for the tenant at once, a transient
/// one is retried after the backoff (until the budget is spent).
pub async fn failed(state: &Inner, job_id: &str, req: &JobFailure) -> ApiResult<()> {
    let now = now_ms();
    let events = event_builder(state, now);
    let error: String = req.error_message.chars().take(1000).collect();
    let outcome = state
        .store
        .fail_encoding_job(
            job_id,
            &lease_token_hash(&req.lease_token),
            &error,
            req.permanent,
            retry_policy(state),
            now,
            &events,
        )
        .await?
        .ok_or_else(|| gone(job_id))?;
    tracing::warn!(job = job_id, error = %error, outcome = ?outcome, "encoding job failed");
    Ok(())
}

/// The envelope bytes of the job's file the `Range` header asks for, if `token`
/// holds the job's lease (else `410 Gone`).
pub async fn source(
    state: &crate::state::AppState,
    job_id: &str,
    token: &str,
    range_header: Option<&str>,
) -> ApiResult<
    super::source::SourceRead<
        impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    >,
> {
    let job = leased_job(state, job_id, token).await?;
    // An aspect-variant job reads its parent's uploaded source, not its stream file.
    let source = job.source_file();
    let file = state.store.file(source).await?.ok_or_else(|| {
        InternalError::Other(format!("job {} names a missing file {source}", job.id))
    })?;
    super::source::file_source(
        state,
        &file,
        &format!("encoding job {job_id}"),
        range_header,
    )
    .await
}
