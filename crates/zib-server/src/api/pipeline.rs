//! `GET /v1/api/pipeline/{file_id}`: the rolled-up status of every declared stage.
//! The upload stage reports the file's redundancy as it is now (its weakest
//! segment); the encoding stage is the file's latest encoding job. Undeclared
//! stages without a job are `null`. The transcription and vision stages are the
//! file's newest run of each (`queued` until a declared one exists). The top-level
//! `status` rolls up `queued → uploading → encoding → ai_processing → complete |
//! failed` (`ai_processing` while the rest is done and an AI stage is not; `failed`
//! when one failed); the top-level `phase` is the encoding job's phase when there is
//! a job, else the upload's.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};
use zib_meta::{EncodingJobRow, FilePhase, JobPhase};
use zib_proto::compute::ComputeKind;
use zib_proto::pipeline::{Capability, Pipeline, Stage};
use zib_proto::FileId;

use super::encoding::{live_manifest_url, video_info};
use crate::auth::AuthTenant;
use crate::domain::compute::views;
use crate::domain::encoding::outputs::{self, thumbnail_urls};
use crate::error::{ApiError, ApiResult};
use crate::state::{rfc3339, AppState};

/// The upload phase shown for a `safe` file below full redundancy (docs/architecture.md).
pub const DEGRADED: &str = "degraded";

pub async fn pipeline_status(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(raw_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let not_found = || ApiError::NotFound(format!("file {raw_id} not found"));
    let id: FileId = raw_id.parse().map_err(|_| not_found())?;
    let file = state
        .store
        .file_for_tenant(&tenant.id, id)
        .await?
        .ok_or_else(not_found)?;
    let safe_at = state.store.replication_safe_at(id).await?;
    let online_since = crate::domain::directory::online_since(&state);
    let redundancy = match file.phase {
        FilePhase::Distributed | FilePhase::Safe => {
            state.store.file_redundancy(id, online_since).await?
        }
        _ => None,
    };
    // A safe file that lost a shard (or a holder) says so until it is repaired: it
    // reads fine, but one more loss than usual could cost it.
    let degraded = file.phase == FilePhase::Safe && redundancy.is_some_and(|r| !r.is_full());
    let (upload_rollup, upload_status) = match file.phase {
        FilePhase::Pending => ("queued", "pending"),
        FilePhase::Uploading => ("uploading", "uploading"),
        FilePhase::Distributed | FilePhase::Safe => ("complete", "complete"),
        FilePhase::Cancelled | FilePhase::Failed => ("failed", "failed"),
    };
    let declared = state.store.file_pipeline(id).await?;
    let declared_pipeline = declared
        .as_ref()
        .and_then(|d| Pipeline::from_json(Some(d)).ok());
    let encode_declared = declared_pipeline
        .as_ref()
        .is_some_and(|p| p.stages().contains(&Stage::Encoding));
    let variants_declared = declared_pipeline
        .as_ref()
        .is_some_and(|p| !p.aspect_variants.is_empty());
    let job = state.store.latest_encoding_job(&tenant.id, id).await?;
    // A cancelled upload is terminal whatever its encode did (the reference).
    let status = match (&job, file.phase) {
        (_, FilePhase::Cancelled | FilePhase::Failed) => "failed",
        (Some(job), _) if file.phase.is_readable() => encoding_rollup(job.phase),
        (None, _) if file.phase.is_readable() && encode_declared => "encoding",
        _ => upload_rollup,
    };
    let encoding = match &job {
        Some(job) => encoding_stage(&state, job).await?,
        None if encode_declared => {
            let mut pending = json!({
                "status": "pending",
                "phase": null,
                "encoding_id": null,
                "progress": 0,
                "hls_manifest_url": null,
                "error_message": null,
                "thumbnails": null,
                "video": null,
            });
            // Asked for, none encoded yet (the same rule as once the job exists).
            if variants_declared {
                pending["aspect_variants"] = json!({});
            }
            pending
        }
        None => Value::Null,
    };
    let upload_phase = if degraded {
        DEGRADED
    } else {
        file.phase.as_str()
    };
    let mut upload = json!({
        "status": upload_status,
        "phase": upload_phase,
        "replication_safe_at": safe_at.map(rfc3339),
        "redundancy": redundancy.map(|r| json!({
            "live_shards": r.live_shards,
            "target": r.target,
            "weakest_segment": r.weakest_segment,
        })),
    });
    if matches!(file.phase, FilePhase::Cancelled | FilePhase::Failed) {
        upload["cancelled_reason"] = json!(file.cancelled_reason);
    }
    let error = match (file.phase, &job) {
        (FilePhase::Cancelled | FilePhase::Failed, _) => json!(file.cancelled_reason),
        (_, Some(job)) if job.phase == JobPhase::FailedUserAction => json!(job.error_message),
        _ => Value::Null,
    };
    let phase = job.as_ref().map_or(upload_phase, |j| j.phase.as_str());
    // The AI stages: each declared one (and any run asked later) from its newest job.
    let compute_jobs = state.store.compute_jobs_of_file(id).await?;
    let declared_tier = |kind: ComputeKind| {
        let p = declared_pipeline.as_ref()?;
        match kind {
            ComputeKind::Transcription => p.requested().into_iter().find_map(|c| match c {
                Capability::Transcription(t) => Some(t.as_str()),
                _ => None,
            }),
            ComputeKind::Vision => p.requested().into_iter().find_map(|c| match c {
                Capability::Vision(v) => Some(v.as_str()),
                _ => None,
            }),
        }
    };
    let transcription = views::pipeline_stage(
        &compute_jobs,
        ComputeKind::Transcription,
        declared_tier(ComputeKind::Transcription),
    );
    let vision = views::pipeline_stage(
        &compute_jobs,
        ComputeKind::Vision,
        declared_tier(ComputeKind::Vision),
    );
    let status = views::rollup(status, &[&transcription, &vision]);
    let error = match (
        &error,
        [&transcription, &vision]
            .iter()
            .find(|s| s["status"] == "failed"),
    ) {
        (Value::Null, Some(failed)) => failed["error_message"].clone(),
        _ => error,
    };
    Ok(Json(json!({
        "file_id": id,
        "status": status,
        "phase": phase,
        "cdn_url": state.cdn_url(id),
        "declared": declared.unwrap_or_else(|| json!({})),
        "stages": {
            "upload": upload,
            "encoding": encoding,
            "transcription": transcription,
            "vision": vision,
        },
        "error": error,
    })))
}

/// The top-level `status` of a distributed file while its encoding job is in `phase`.
fn encoding_rollup(phase: JobPhase) -> &'static str {
    match phase {
        JobPhase::Queued | JobPhase::Encoding | JobPhase::Sharding | JobPhase::Failed => "encoding",
        JobPhase::LocalComplete | JobPhase::Replicating | JobPhase::Safe => "complete",
        JobPhase::FailedUserAction | JobPhase::Cancelled => "failed",
    }
}

/// `stages.encoding` for the file's latest job. `status` is the stage's own word
/// (`queued`, `running` — a transient `failed` is a retry in progress —,
/// `completed`, `failed`, `cancelled`); `phase` is the job's lifecycle phase;
/// `thumbnails`, `aspect_variants` and `video` as on the job status.
async fn encoding_stage(state: &AppState, job: &EncodingJobRow) -> ApiResult<Value> {
    let status = match job.phase {
        JobPhase::Queued => "queued",
        JobPhase::Encoding | JobPhase::Sharding | JobPhase::Failed => "running",
        JobPhase::LocalComplete | JobPhase::Replicating | JobPhase::Safe => "completed",
        JobPhase::FailedUserAction => "failed",
        JobPhase::Cancelled => "cancelled",
    };
    let mut stage = json!({
        "status": status,
        "phase": job.phase.as_str(),
        "encoding_id": job.id,
        "progress": job.progress,
        "hls_manifest_url": live_manifest_url(state, job).await?,
        "error_message": job.error_message,
        "thumbnails": thumbnail_urls(state, job),
        "video": video_info(job),
    });
    // Omitted, as on the job status and `encoding.complete`, when none was asked.
    if let (Some(block), Value::Object(map)) = (outputs::block_of(state, job).await?, &mut stage) {
        map.insert("aspect_variants".into(), json!(block));
    }
    Ok(stage)
}
