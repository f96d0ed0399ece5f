//! The `encoding.*` webhook bodies of a job, in the reference's shape. Every step
//! builds its body here so the fields agree whichever code path sends it.

use serde_json::Value;
use zib_meta::{EncodingJobRow, NewWebhookEvent};
use zib_proto::events::{encoding_progress, EncodingEvent, EncodingStep, ProgressStage};

use super::outputs;
use crate::state::Inner;

/// The body of `step` for `job`. `hls_manifest_url` is set from `complete` on (the
/// reference: null until complete); `error_message` on `failed`; `thumbnails` once
/// registered. A main job's `complete` carries `aspect_variants` (from `children`,
/// its variant jobs) when it asked for any. An aspect-variant job's body names the
/// uploaded file (the one the tenant knows), its own stream, its parent and ratio.
pub fn step_payload(
    state: &Inner,
    job: &EncodingJobRow,
    step: EncodingStep,
    at_ms: i64,
    children: &[EncodingJobRow],
) -> Value {
    let option = |name: &str| {
        job.options
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let complete = step == EncodingStep::Complete;
    let aspect_variants = if job.is_variant() {
        complete.then(|| outputs::own_block(state, job)).flatten()
    } else if complete {
        outputs::variants_block(state, job, children)
    } else {
        None
    };
    EncodingEvent {
        step,
        job_id: job.id.clone(),
        file_id: job.source_file().to_string(),
        customer_id: job.tenant_id.clone(),
        hls_manifest_url: complete.then(|| outputs::hls_manifest_url(state, job.file_id)),
        error_message: (step == EncodingStep::Failed)
            .then(|| job.error_message.clone())
            .flatten(),
        transcription_model: option("transcription"),
        vision_model: option("vision"),
        // A variant has a poster only: it is its `aspect_variants` entry's.
        thumbnails: outputs::thumbnail_urls(state, job),
        aspect_variants,
        parent_encoding_job_id: job.parent_job_id.clone(),
        aspect_ratio: job.aspect_ratio.clone(),
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
    job_event(state, job, step, at_ms, &[])
}

/// The outbox row of `step` for `job` whose variant jobs are `children` (read by the
/// store in the step's transaction; only a main job's `complete` uses them).
pub fn job_event(
    state: &Inner,
    job: &EncodingJobRow,
    step: EncodingStep,
    at_ms: i64,
    children: &[EncodingJobRow],
) -> NewWebhookEvent {
    NewWebhookEvent {
        tenant_id: job.tenant_id.clone(),
        event_type: step.event().to_string(),
        file_id: Some(job.source_file()),
        job_id: Some(job.id.clone()),
        payload: step_payload(state, job, step, at_ms, children),
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
