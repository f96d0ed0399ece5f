//! A compute job driven by the node holding its lease (docs/ai.md): claim (only jobs
//! whose `kind:tier` the node registered; a job asked with an encode only once that
//! encode is done, and for a grace only by the node that encoded it), renewals with
//! progress, the source read, each output stored as a derived file of the source,
//! done (which sends `transcription.complete` / `vision.complete` in its transaction)
//! or failed. Every call after the claim proves the lease; one that cannot is `410
//! Gone`, like an encoding job's.

use bytes::Bytes;
use futures::Stream;
use rand::RngCore;
use zib_meta::{ComputeJobRow, DerivedKind, NewWebhookEvent};
use zib_proto::compute::{
    ClaimedComputeJob, ComputeClaimRequest, ComputeDone, ComputeKind, ComputeLeaseRenewal,
    ComputeOutputKind,
};
use zib_proto::events::{
    transcription_complete, vision_complete, TRANSCRIPTION_COMPLETE, VISION_COMPLETE,
};
use zib_proto::jobs::{ArtifactStored, JobFailure, LeaseStatus};

use crate::domain::derived::{drop_file, store_derived};
use crate::domain::encoding::lifecycle::{lease_ms, lease_token_hash, meta_conflict, percent};
use crate::domain::encoding::outputs::object_url;
use crate::domain::encoding::source::{file_source, job_source, SourceRead};
use crate::error::{ApiError, ApiResult, InternalError};
use crate::state::{now_ms, AppState, Inner};

/// How long after its encode is done a job waits for the node that encoded it (which
/// already holds the source) before any capable node may claim it.
pub const ENCODER_AFFINITY_MS: i64 = 30_000;

fn gone(job_id: &str) -> ApiError {
    ApiError::Gone(format!(
        "the lease on compute job {job_id} is no longer held (it lapsed, or the job was \
         cancelled or handed to another node): stop working on it"
    ))
}

/// The webhook event of a completed job: `transcription.complete` or
/// `vision.complete`, to the targets of the file's encoding events (its `job_id`
/// is the encoding job's when the run was asked with one, which finds that
/// request's webhook; the file's pipeline webhook otherwise).
pub fn complete_event(job: &ComputeJobRow, at_ms: i64) -> Option<NewWebhookEvent> {
    let id = |f: Option<zib_proto::FileId>| f.map(|f| f.to_string()).unwrap_or_default();
    let file_id = job.file_id.to_string();
    let (event_type, payload) = match job.kind {
        ComputeKind::Transcription => (
            TRANSCRIPTION_COMPLETE,
            transcription_complete(
                job.event_job_id(),
                &file_id,
                &job.tier,
                &id(job.srt_file_id),
                &id(job.vtt_file_id),
                at_ms,
            ),
        ),
        ComputeKind::Vision => (
            VISION_COMPLETE,
            vision_complete(
                job.event_job_id(),
                &file_id,
                &job.tier,
                &id(job.sidecar_file_id),
                at_ms,
            ),
        ),
    };
    Some(NewWebhookEvent {
        tenant_id: job.tenant_id.clone(),
        event_type: event_type.to_string(),
        file_id: Some(job.file_id),
        job_id: Some(job.event_job_id().to_string()),
        payload,
    })
}

/// The job `token` holds the lease of (calls without a JSON body); `410` otherwise.
pub async fn leased_job(state: &Inner, job_id: &str, token: &str) -> ApiResult<ComputeJobRow> {
    state
        .store
        .leased_compute_job(job_id, None, &lease_token_hash(token), now_ms())
        .await?
        .ok_or_else(|| gone(job_id))
}

/// Hands the oldest job the node may run to it, with the source it reads. `None`:
/// nothing to do (or the node registered no AI capability).
pub async fn claim(
    state: &Inner,
    req: &ComputeClaimRequest,
) -> ApiResult<Option<ClaimedComputeJob>> {
    let Some(node) = state.store.node(&req.node_id).await? else {
        return Err(ApiError::NotFound(format!(
            "node {} is not registered; register first",
            req.node_id
        )));
    };
    let capabilities: Vec<String> = node
        .capabilities
        .iter()
        .filter(|c| {
            c.split_once(':')
                .is_some_and(|(kind, _)| ComputeKind::parse(kind).is_some())
        })
        .cloned()
        .collect();
    if capabilities.is_empty() {
        return Ok(None);
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = hex::encode(raw);
    let hash = lease_token_hash(&token);
    let now = now_ms();
    let Some(job) = state
        .store
        .claim_compute_job(
            &req.node_id,
            &capabilities,
            req.after_encoding_job.as_deref(),
            &hash,
            now.saturating_add(lease_ms(state)),
            now,
            ENCODER_AFFINITY_MS,
        )
        .await?
    else {
        return Ok(None);
    };
    match claimed(state, &job, token).await {
        Ok(claimed) => {
            tracing::info!(job = %job.id, file = %job.file_id, node = %req.node_id, kind = job.kind.as_str(), tier = %job.tier, "compute job claimed");
            Ok(Some(claimed))
        }
        Err(e) => {
            // Keys that do not unwrap or a file gone meanwhile never get better.
            tracing::error!(job = %job.id, error = %e, "a claimed compute job cannot be handed out");
            state
                .store
                .fail_compute_job(
                    &job.id,
                    &hash,
                    "the video's keys or source are unreadable on this server",
                    true,
                    now_ms(),
                )
                .await?;
            Err(e)
        }
    }
}

async fn claimed(
    state: &Inner,
    job: &ComputeJobRow,
    token: String,
) -> ApiResult<ClaimedComputeJob> {
    let file = state.store.file(job.file_id).await?.ok_or_else(|| {
        InternalError::Other(format!(
            "compute job {} names a missing file {}",
            job.id, job.file_id
        ))
    })?;
    let url = format!(
        "{}/v1/node/compute/{}/source",
        state.config.public_url.trim_end_matches('/'),
        job.id
    );
    Ok(ClaimedComputeJob {
        job_id: job.id.clone(),
        lease_token: token,
        lease_secs: state.config.encoding_lease.as_secs(),
        kind: job.kind,
        tier: job.tier.clone(),
        file_id: job.file_id,
        source: job_source(state, &file, url).await?,
        encoding_job_id: job.encoding_job_id.clone(),
    })
}

/// Extends the lease and records progress.
pub async fn renew(
    state: &Inner,
    job_id: &str,
    req: &ComputeLeaseRenewal,
) -> ApiResult<LeaseStatus> {
    let now = now_ms();
    let detail: Option<String> = req.detail.as_ref().map(|d| d.chars().take(200).collect());
    state
        .store
        .renew_compute_lease(
            job_id,
            &req.node_id,
            &lease_token_hash(&req.lease_token),
            i64::from(percent(req.progress)),
            detail.as_deref(),
            now.saturating_add(lease_ms(state)),
            now,
        )
        .await?
        .ok_or_else(|| gone(job_id))?;
    Ok(LeaseStatus {
        lease_secs: state.config.encoding_lease.as_secs(),
    })
}

/// The source video's envelope bytes for the node holding the lease.
pub async fn source(
    state: &AppState,
    job_id: &str,
    token: &str,
    range_header: Option<&str>,
) -> ApiResult<SourceRead<impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static>> {
    let job = leased_job(state, job_id, token).await?;
    let file = state.store.file(job.file_id).await?.ok_or_else(|| {
        InternalError::Other(format!(
            "compute job {} names a missing file {}",
            job.id, job.file_id
        ))
    })?;
    file_source(state, &file, &format!("compute job {job_id}"), range_header).await
}

/// The output's name under `{source key}/.zib/{job_id}/`.
fn output_name(kind: ComputeOutputKind) -> &'static str {
    match kind {
        ComputeOutputKind::Srt => "subtitles.srt",
        ComputeOutputKind::Vtt => "subtitles.vtt",
        ComputeOutputKind::Sidecar => "sidecar.json",
    }
}

/// Stores `bytes` as the job's `kind` output (a derived file of its source) and
/// records it on the job at once. A second upload of the same kind replaces the
/// first, which is deleted.
pub async fn store_output(
    state: &AppState,
    job_id: &str,
    token: &str,
    raw_kind: &str,
    bytes: Bytes,
) -> ApiResult<ArtifactStored> {
    let job = leased_job(state, job_id, token).await?;
    let kind = ComputeOutputKind::parse(raw_kind).ok_or_else(|| {
        ApiError::invalid(
            "kind",
            format!("{raw_kind:?} is not a compute output kind (srt, vtt, sidecar)"),
        )
    })?;
    if kind.job_kind() != job.kind {
        return Err(ApiError::invalid(
            "kind",
            format!(
                "a {} job stores no {} output",
                job.kind.as_str(),
                kind.as_str()
            ),
        ));
    }
    // A transcript of silence is a SubRip file without cues: empty.
    if bytes.is_empty() && kind != ComputeOutputKind::Srt {
        return Err(ApiError::invalid("body", "this output cannot be empty"));
    }
    let source = state
        .store
        .file(job.file_id)
        .await?
        .filter(|f| f.phase.is_readable())
        .ok_or_else(|| {
            ApiError::Gone(format!(
                "the source file of compute job {job_id} no longer exists: stop working on it"
            ))
        })?;
    let key = format!(
        "{}/.zib/{}/{}",
        source.object_key,
        job.id,
        output_name(kind)
    );
    let file_id = store_derived(
        state,
        &source,
        key,
        kind.content_type(),
        DerivedKind::ComputeOutput(kind),
        bytes,
    )
    .await?;
    let previous = match kind {
        ComputeOutputKind::Srt => job.srt_file_id,
        ComputeOutputKind::Vtt => job.vtt_file_id,
        ComputeOutputKind::Sidecar => job.sidecar_file_id,
    };
    let recorded = state
        .store
        .set_compute_output(job_id, &lease_token_hash(token), kind, file_id, now_ms())
        .await;
    match recorded {
        Ok(Some(_)) => {}
        // The lease ended meanwhile: this file has nothing to belong to.
        Ok(None) => {
            drop_file(state, file_id).await;
            return Err(gone(job_id));
        }
        Err(e) => {
            drop_file(state, file_id).await;
            return Err(meta_conflict(e));
        }
    }
    if let Some(previous) = previous.filter(|p| *p != file_id) {
        drop_file(state, previous).await;
    }
    tracing::info!(job = job_id, %file_id, kind = kind.as_str(), "compute output stored");
    Ok(ArtifactStored {
        file_id,
        url: object_url(state, file_id),
    })
}

/// Every output is stored: the job completes and its event is written with it.
/// `409` while an output is missing.
pub async fn done(state: &Inner, job_id: &str, req: &ComputeDone) -> ApiResult<()> {
    let now = now_ms();
    let language: Option<String> = req.language.as_ref().map(|l| l.chars().take(16).collect());
    let events = move |job: &ComputeJobRow| complete_event(job, now);
    let job = state
        .store
        .complete_compute_job(
            job_id,
            &lease_token_hash(&req.lease_token),
            language.as_deref(),
            now,
            &events,
        )
        .await
        .map_err(meta_conflict)?
        .ok_or_else(|| gone(job_id))?;
    tracing::info!(job = job_id, file = %job.file_id, kind = job.kind.as_str(), "compute job complete");
    Ok(())
}

/// The node gave up: retried after the backoff (up to the budget), or failed at once
/// when permanent.
pub async fn failed(state: &Inner, job_id: &str, req: &JobFailure) -> ApiResult<()> {
    let error: String = req.error_message.chars().take(1000).collect();
    let job = state
        .store
        .fail_compute_job(
            job_id,
            &lease_token_hash(&req.lease_token),
            &error,
            req.permanent,
            now_ms(),
        )
        .await?
        .ok_or_else(|| gone(job_id))?;
    tracing::warn!(job = job_id, error = %error, status = job.status.as_str(), retries = job.retry_count, "compute job failed");
    Ok(())
}
