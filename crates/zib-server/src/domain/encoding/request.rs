//! How an encoding job comes to exist: a tenant's request (`POST
//! /v1/api/encoding/request`, idempotent: `queued` / `already_queued` /
//! `already_encoded`), the auto-enqueue of an upload that declared `encode`, and the
//! tenant's retry of a job that needs it. Every new job gets a fresh HLS key; a job
//! asked for aspect variants is created with its children (`variants`), and one asked
//! for transcription or vision with those runs (`domain::compute::request`).

use rand::RngCore;
use zib_crypto::DataKey;
use zib_meta::{
    EncodingJobRow, FileRow, JobCreation, NewComputeJob, NewEncodingJob, NewStreamFile,
    NewVariantJob,
};
use zib_proto::encoding::{
    job_options, EncodingRequest, EncodingRequested, RequestStatus, ALREADY_ENCODED_MESSAGE,
    ALREADY_QUEUED_MESSAGE,
};
use zib_proto::events::EncodingStep;
use zib_proto::pipeline::{AspectRatio, Capability, Pipeline, Stage};
use zib_proto::FileId;

use super::events::step_event;
use super::outputs::hls_manifest_url;
use crate::domain::webhook_targets;
use crate::domain::{compute, uploaded};
use crate::error::{ApiError, ApiResult};
use crate::state::{now_ms, AppState, Inner};

/// `phase_detail` of a job waiting for a node.
pub const QUEUED_DETAIL: &str = "waiting for an encoding node";

/// The tenant's file a request names: a file id, or with `bucket` the object key's
/// live file. Another tenant's file is missing, like one that never existed.
pub(super) async fn resolve_file(
    state: &Inner,
    tenant_id: &str,
    req: &EncodingRequest,
) -> ApiResult<FileRow> {
    let file = match &req.bucket {
        Some(bucket) => state
            .store
            .object(tenant_id, bucket, &req.object_key)
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "object {:?} not found in bucket {bucket:?}",
                    req.object_key
                ))
            })?,
        None => return uploaded::uploaded_file(state, tenant_id, &req.object_key).await,
    };
    uploaded::ready(&file)?;
    Ok(file)
}

/// 503 when no online node can encode.
pub(super) async fn check_encoder_online(state: &Inner) -> ApiResult<()> {
    compute::request::check_online(state, &[Capability::Encode.to_string()]).await
}

/// The answer for `job` with `status`.
pub fn requested(state: &Inner, job: &EncodingJobRow, status: RequestStatus) -> EncodingRequested {
    let url = hls_manifest_url(state, job.file_id);
    EncodingRequested {
        encoding_id: job.id.clone(),
        status,
        file_id: job.file_id,
        cdn_url: url.clone(),
        hls_manifest_url: url,
        phase: job.phase.as_str().to_string(),
        progress: job.progress,
        message: match status {
            RequestStatus::Queued => None,
            RequestStatus::AlreadyQueued => Some(ALREADY_QUEUED_MESSAGE.to_string()),
            RequestStatus::AlreadyEncoded => Some(ALREADY_ENCODED_MESSAGE.to_string()),
        },
    }
}

/// The request's own webhook target (pattern 1), checked.
pub(super) async fn request_webhook(
    state: &AppState,
    req: &EncodingRequest,
) -> ApiResult<Option<(String, Option<String>)>> {
    let Some(url) = &req.webhook_url else {
        return Ok(None);
    };
    let url = webhook_targets::check_target(state, "webhook_url", url).await?;
    if let Some(secret) = &req.webhook_secret {
        webhook_targets::check_secret("webhook_secret", secret)?;
    }
    Ok(Some((url, req.webhook_secret.clone())))
}

/// Creates (or, idempotently, finds) the job of an encoding request, with a child
/// per asked aspect variant when it creates one. (A backfill, `aspect_variants_only`,
/// is `variants::backfill`.)
pub async fn request(
    state: &AppState,
    tenant_id: &str,
    req: EncodingRequest,
) -> ApiResult<EncodingRequested> {
    let file = resolve_file(state, tenant_id, &req).await?;
    let webhook = request_webhook(state, &req).await?;
    let pipeline = req.pipeline();
    // The 503 is for work that would wait for a node that does not exist; an answer
    // naming an existing job needs no node (the transaction decides again below).
    let existing = state
        .store
        .latest_encoding_job(tenant_id, file.file_id)
        .await?;
    let answered_by_existing = existing
        .as_ref()
        .is_some_and(|j| j.phase.is_in_flight() || (j.phase.is_encoded() && !req.force));
    // Each AI tier asked that the file has no run of yet needs an online node
    // advertising it, whichever encoding job they end up attached to.
    let ai = compute::request::asked(&pipeline);
    let ai_jobs = compute::request::new_jobs_for(state, &file, &ai, req.force, None).await?;
    compute::request::check_online(state, &compute::request::capabilities_of(&ai_jobs)).await?;
    if !answered_by_existing {
        check_encoder_online(state).await?;
    }
    let variants = new_variant_jobs(state, &pipeline.aspect_variants);
    let created = create(
        state,
        &file,
        job_options(&pipeline),
        webhook,
        variants,
        ai_jobs.clone(),
        req.force,
    )
    .await?;
    // Answered by an existing job: the new AI runs wait for that one instead.
    if let JobCreation::InFlight(job) | JobCreation::Encoded(job) = &created {
        compute::request::attach(state, &job.id, ai_jobs).await?;
    }
    Ok(match created {
        JobCreation::Created(job) => requested(state, &job, RequestStatus::Queued),
        JobCreation::InFlight(job) => requested(state, &job, RequestStatus::AlreadyQueued),
        JobCreation::Encoded(job) => requested(state, &job, RequestStatus::AlreadyEncoded),
        JobCreation::FileNotReady(_) => {
            // Cancelled or deleted between the read above and the transaction.
            return Err(ApiError::NotFound(format!(
                "file {} not found",
                file.file_id
            )));
        }
    })
}

/// One job creation through the store, with a fresh wrapped key and its
/// `encoding.queued` event, its aspect-variant children (no event of theirs) and the
/// AI runs that wait for it (`compute`).
async fn create(
    state: &Inner,
    file: &FileRow,
    options: serde_json::Value,
    webhook: Option<(String, Option<String>)>,
    variants: Vec<NewVariantJob>,
    compute: Vec<NewComputeJob>,
    force: bool,
) -> ApiResult<JobCreation> {
    let new_count = variants.len();
    let id = uuid::Uuid::new_v4().to_string();
    let wrapped_hls_key = super::hls_key::new_wrapped_hls_key(state, &id);
    let now = now_ms();
    let new = NewEncodingJob {
        id,
        file_id: file.file_id,
        tenant_id: file.tenant_id.clone(),
        options,
        wrapped_hls_key,
        webhook,
        detail: QUEUED_DETAIL.to_string(),
        variants,
        compute,
    };
    let created = state
        .store
        .create_encoding_job(new, force, now, |job| {
            step_event(state, job, EncodingStep::Queued, now)
        })
        .await?;
    if let JobCreation::Created(job) = &created {
        tracing::info!(job_id = %job.id, file_id = %job.file_id, force, variants = new_count, "encoding job queued");
    }
    Ok(created)
}

/// Enqueues the encode an upload declared (`pipeline.encode`), with the AI runs it
/// declared, once it is distributed; AI declared without an encode runs at once on
/// its own. Never fails the distribution: a problem is logged, and the tenant can
/// still request the encode or the runs.
pub async fn enqueue_declared(state: &Inner, file_id: FileId) {
    if let Err(e) = try_enqueue_declared(state, file_id).await {
        tracing::error!(%file_id, error = %e, "enqueueing the declared encode failed");
    }
}

async fn try_enqueue_declared(state: &Inner, file_id: FileId) -> ApiResult<()> {
    let Some(declared) = state.store.file_pipeline(file_id).await? else {
        return Ok(());
    };
    let pipeline = match Pipeline::from_json(Some(&declared)) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(%file_id, error = %e, "stored pipeline does not parse");
            return Ok(());
        }
    };
    let Some(file) = state.store.file(file_id).await? else {
        return Ok(());
    };
    // `encode`, aspect variants (renditions of the encode) or a legacy `encode`
    // capability all declare the encode; AI without it runs on its own at once.
    if !pipeline.stages().contains(&Stage::Encoding) {
        return compute::request::enqueue_declared(state, &file, &pipeline).await;
    }
    // The upload's own webhook target (file_webhooks) already applies to its jobs.
    let variants = new_variant_jobs(state, &pipeline.aspect_variants);
    let ai = compute::request::asked(&pipeline);
    let ai_jobs = compute::request::new_jobs_for(state, &file, &ai, false, None).await?;
    create(
        state,
        &file,
        job_options(&pipeline),
        None,
        variants,
        ai_jobs,
        false,
    )
    .await?;
    Ok(())
}

/// The tenant's retry of the file's latest job, which must be
/// `failed_user_action`: back to `queued` with a fresh retry budget. Its
/// aspect-variant children are left as they are.
pub async fn retry(state: &Inner, tenant_id: &str, file_id: FileId) -> ApiResult<EncodingJobRow> {
    // A variant's stream file is not an upload: its jobs follow their main job's.
    let job = state
        .store
        .latest_encoding_job(tenant_id, file_id)
        .await?
        .filter(|j| !j.is_variant())
        .ok_or_else(|| ApiError::NotFound(format!("no encoding job for file {file_id}")))?;
    let now = now_ms();
    state
        .store
        .retry_encoding_job(tenant_id, &job.id, QUEUED_DETAIL, now, |j| {
            step_event(state, j, EncodingStep::Queued, now)
        })
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "encoding job {} is {}; only a failed_user_action job can be retried",
                job.id,
                job.phase.as_str()
            ))
        })
}

/// A child job per ratio, each with a fresh id and HLS key, and a stream file to use
/// if the source has none for the ratio yet.
pub fn new_variant_jobs(state: &Inner, ratios: &[AspectRatio]) -> Vec<NewVariantJob> {
    ratios
        .iter()
        .map(|ratio| {
            let id = uuid::Uuid::new_v4().to_string();
            let stream_id = FileId::new_random();
            let mut nonce_prefix = vec![0u8; 7];
            rand::rngs::OsRng.fill_bytes(&mut nonce_prefix);
            NewVariantJob {
                wrapped_hls_key: super::hls_key::new_wrapped_hls_key(state, &id),
                id,
                aspect_ratio: ratio.as_str().to_string(),
                stream_file: NewStreamFile {
                    file_id: stream_id,
                    wrapped_dek: state
                        .config
                        .master_key
                        .wrap(&DataKey::generate(), stream_id.0.as_bytes()),
                    nonce_prefix,
                },
            }
        })
        .collect()
}
