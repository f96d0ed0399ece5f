//! The `encoding.*` webhook bodies of a job, in the reference's shape. Every step
//! builds its body here so the fields agree whichever code path sends it.

use serde_json::Value;
use zib_meta::{EncodingJobRow, NewWebhookEvent};
use zib_proto::events::{encoding_progress, EncodingEvent, EncodingStep, ProgressStage};
use zib_proto::FileId;

use crate::state::Inner;

/// `{cdn}/stream/{file_id}/master.m3u8`: the stream URL, stable across re-encodes.
pub fn hls_manifest_url(state: &Inner, file_id: FileId) -> String {
    format!(
        "{}/stream/{}/master.m3u8",
        state.config.cdn_base_url.trim_end_matches('/'),
        file_id
    )
}

/// The body of `step` for `job`. `hls_manifest_url` is set from `complete` on (the
/// reference: null until complete); `error_message` on `failed`.
pub fn step_payload(state: &Inner, job: &EncodingJobRow, step: EncodingStep, at_ms: i64) -> Value {
    let option = |name: &str| {
        job.options
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    EncodingEvent {
        step,
        job_id: job.id.clone(),
        file_id: job.file_id.to_string(),
        customer_id: job.tenant_id.clone(),
        hls_manifest_url: (step == EncodingStep::Complete)
            .then(|| hls_manifest_url(state, job.file_id)),
        error_message: (step == EncodingStep::Failed)
            .then(|| job.error_message.clone())
            .flatten(),
        transcription_model: option("transcription"),
        vision_model: option("vision"),
        // Thumbnails and aspect variants are produced by a later issue's stages;
        // until they exist the block is null / omitted, as for an opted-out tenant.
        thumbnails: None,
        aspect_variants: None,
    }
    .payload(at_ms)
}

/// The outbox row of `step` for `job` (`X-ZiB-Job-ID` comes from `job_id`).
pub fn step_event(
    state: &Inner,
    job: &EncodingJobRow,
    step: EncodingStep,
    at_ms: i64,
) -> NewWebhookEvent {
    NewWebhookEvent {
        tenant_id: job.tenant_id.clone(),
        event_type: step.event().to_string(),
        file_id: Some(job.file_id),
        job_id: Some(job.id.clone()),
        payload: step_payload(state, job, step, at_ms),
    }
}

/// The outbox row of an `encoding.progress` update.
pub fn progress_event(
    job: &EncodingJobRow,
    percent: u8,
    stage: ProgressStage,
    at_ms: i64,
) -> NewWebhookEvent {
    NewWebhookEvent {
        tenant_id: job.tenant_id.clone(),
        event_type: zib_proto::events::ENCODING_PROGRESS.to_string(),
        file_id: Some(job.file_id),
        job_id: Some(job.id.clone()),
        payload: encoding_progress(&job.id, &job.file_id.to_string(), percent, stage, at_ms),
    }
}
