//! `POST /v1/api/encoding/request` (and `POST /v1/api/encoding/jobs`, the same
//! request as the reference's Python example sends it) and `GET
//! /v1/api/encoding/jobs/{encoding_id}`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use zib_meta::{EncodingJobRow, JobPhase};
use zib_proto::encoding::{EncodingJobStatus, EncodingRequest, EncodingRequested, VideoInfo};
use zib_proto::jobs::VideoProbe;

use crate::auth::AuthTenant;
use crate::body::parse_json;
use crate::domain::compute::views;
use crate::domain::encoding::outputs::{self, hls_manifest_url, thumbnail_urls};
use crate::domain::encoding::{request, variants};
use crate::error::{ApiError, ApiResult};
use crate::state::{rfc3339, AppState, Inner};

/// An encode request, or with `aspect_variants_only` a backfill of variants on top
/// of the file's finished encode (answered `VariantsRequested`).
pub async fn request_encoding(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    body: Bytes,
) -> ApiResult<Response> {
    let value: Value = parse_json(&body)?;
    let req =
        EncodingRequest::from_json(&value).map_err(|e| ApiError::invalid(e.field, e.reason))?;
    if !req.aspect_variants_only.is_empty() {
        let answer = variants::backfill(&state, &tenant.id, &req).await?;
        return Ok(Json(answer).into_response());
    }
    let answer: EncodingRequested = request::request(&state, &tenant.id, req).await?;
    Ok(Json(answer).into_response())
}

pub async fn job_status(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(encoding_id): Path<String>,
) -> ApiResult<Json<EncodingJobStatus>> {
    let job = state
        .store
        .encoding_job_for_tenant(&tenant.id, &encoding_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("encoding job {encoding_id} not found")))?;
    Ok(Json(status_of(&state, &job).await?))
}

/// The back-compat `status` the reference derives from `phase` (the `status` of the
/// `encoding.*` events, plus `cancelled`).
pub fn legacy_status(phase: JobPhase) -> &'static str {
    match phase {
        JobPhase::Queued => "queued",
        JobPhase::Encoding => "encoding",
        JobPhase::Sharding => "sharding",
        JobPhase::LocalComplete | JobPhase::Replicating | JobPhase::Safe => "complete",
        JobPhase::Failed | JobPhase::FailedUserAction => "failed",
        JobPhase::Cancelled => "cancelled",
    }
}

/// The stream URL once a rung of this job is live (published, or the whole ladder
/// done); `None` before, and for a cancelled job.
pub async fn live_manifest_url(state: &Inner, job: &EncodingJobRow) -> ApiResult<Option<String>> {
    let live = match job.phase {
        JobPhase::Cancelled => false,
        p if p.is_encoded() => true,
        _ => state.store.job_has_published_rung(&job.id).await?,
    };
    Ok(live.then(|| hls_manifest_url(state, job.file_id)))
}

/// The `video` block: what ffprobe found in the source (the video
/// metadata), `None` until probed.
pub fn video_info(job: &EncodingJobRow) -> Option<VideoInfo> {
    job.probe
        .clone()
        .and_then(|p| serde_json::from_value::<VideoProbe>(p).ok())
        .map(|p| VideoInfo {
            duration: p.duration_secs,
            width: p.width,
            height: p.height,
            frame_rate: p.frame_rate,
            video_codec: p.video_codec.clone(),
            has_audio: p.has_audio(),
            audio_codec: p.audio_codec,
        })
}

/// The job status; a variant job's `hls_manifest_url` is its own stream's. The AI
/// asked with the job shows as its `transcription` / `vision` stages.
pub async fn status_of(state: &Inner, job: &EncodingJobRow) -> ApiResult<EncodingJobStatus> {
    let video = video_info(job);
    let ai = views::of_encoding(state, &job.id).await?;
    Ok(EncodingJobStatus {
        encoding_id: job.id.clone(),
        file_id: job.file_id,
        status: legacy_status(job.phase).to_string(),
        phase: job.phase.as_str().to_string(),
        progress: job.progress,
        hls_manifest_url: live_manifest_url(state, job).await?,
        error_message: job.error_message.clone(),
        retry_count: job.retry_count,
        retry_after: job
            .retry_after
            .filter(|_| job.phase == JobPhase::Failed)
            .map(rfc3339),
        video,
        created_at: rfc3339(job.created_at),
        started_at: job.started_at.map(rfc3339),
        completed_at: job.completed_at.map(rfc3339),
        replication_safe_at: job.replication_safe_at.map(rfc3339),
        thumbnails: thumbnail_urls(state, job),
        aspect_variants: outputs::block_of(state, job).await?,
        parent_encoding_job_id: job.parent_job_id.clone(),
        aspect_ratio: job.aspect_ratio.clone(),
        srt_file_id: ai.srt_file_id,
        vtt_file_id: ai.vtt_file_id,
        sidecar_file_id: ai.sidecar_file_id,
        transcription: ai.transcription,
        vision: ai.vision,
    })
}
