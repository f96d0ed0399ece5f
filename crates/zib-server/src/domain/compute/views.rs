//! What tenants see of compute jobs: `GET /v1/api/compute/jobs/{id}`, the
//! `transcription` / `vision` stages of the pipeline status and of an encoding job's
//! status, and the output ids an encoding job shows.

use serde_json::{json, Value};
use zib_meta::{ComputeJobRow, ComputeJobState};
use zib_proto::compute::{ComputeJobStatus, ComputeKind, ComputeStage};
use zib_proto::FileId;

use crate::domain::encoding::outputs::object_url;
use crate::error::ApiResult;
use crate::state::{rfc3339, Inner};

fn progress(job: &ComputeJobRow) -> u8 {
    job.progress.clamp(0, 100) as u8
}

/// `GET /v1/api/compute/jobs/{job_id}`.
pub fn status_of(state: &Inner, job: &ComputeJobRow) -> ComputeJobStatus {
    let url = |f: Option<FileId>| f.map(|f| object_url(state, f));
    ComputeJobStatus {
        job_id: job.id.clone(),
        kind: job.kind,
        tier: job.tier.clone(),
        file_id: job.file_id,
        status: job.tenant_status(),
        progress: progress(job),
        detail: job
            .phase_detail
            .clone()
            .filter(|_| job.status == ComputeJobState::Processing),
        encoding_job_id: job.encoding_job_id.clone(),
        srt_file_id: job.srt_file_id,
        vtt_file_id: job.vtt_file_id,
        sidecar_file_id: job.sidecar_file_id,
        srt_url: url(job.srt_file_id),
        vtt_url: url(job.vtt_file_id),
        sidecar_url: url(job.sidecar_file_id),
        language: job.language.clone(),
        error_message: job.error_message.clone(),
        retry_count: u32::try_from(job.retry_count).unwrap_or(0),
        created_at: rfc3339(job.created_at),
        started_at: job.started_at.map(rfc3339),
        completed_at: job.completed_at.map(rfc3339),
    }
}

/// The pipeline's word for a job's state: `queued` (also while a retry waits),
/// `running`, `complete`, `failed` (a cancelled run too).
pub fn stage_status(state: ComputeJobState) -> &'static str {
    match state {
        ComputeJobState::Queued => "queued",
        ComputeJobState::Processing => "running",
        ComputeJobState::Complete => "complete",
        ComputeJobState::Failed | ComputeJobState::Cancelled => "failed",
    }
}

/// One job as a stage: its main output is the SRT (transcription) or the sidecar.
pub fn stage_of(job: &ComputeJobRow) -> ComputeStage {
    let (output, vtt) = match job.kind {
        ComputeKind::Transcription => (job.srt_file_id, job.vtt_file_id),
        ComputeKind::Vision => (job.sidecar_file_id, None),
    };
    ComputeStage {
        job_id: job.id.clone(),
        status: stage_status(job.status).to_string(),
        tier: job.tier.clone(),
        progress: progress(job),
        output_file_id: output,
        vtt_file_id: vtt,
        error_message: job.error_message.clone(),
    }
}

/// The newest job of `kind` among `jobs`.
pub fn newest(jobs: &[ComputeJobRow], kind: ComputeKind) -> Option<&ComputeJobRow> {
    jobs.iter()
        .filter(|j| j.kind == kind)
        .max_by_key(|j| (j.created_at, j.id.clone()))
}

/// The AI an encoding job shows: its newest run of each kind and their outputs.
#[derive(Default)]
pub struct EncodingAi {
    pub transcription: Option<ComputeStage>,
    pub vision: Option<ComputeStage>,
    pub srt_file_id: Option<FileId>,
    pub vtt_file_id: Option<FileId>,
    pub sidecar_file_id: Option<FileId>,
}

/// [`EncodingAi`] of encoding job `encoding_job_id`.
pub async fn of_encoding(state: &Inner, encoding_job_id: &str) -> ApiResult<EncodingAi> {
    let jobs = state
        .store
        .compute_jobs_of_encoding(encoding_job_id)
        .await?;
    let t = newest(&jobs, ComputeKind::Transcription);
    let v = newest(&jobs, ComputeKind::Vision);
    Ok(EncodingAi {
        transcription: t.map(stage_of),
        vision: v.map(stage_of),
        srt_file_id: t.and_then(|j| j.srt_file_id),
        vtt_file_id: t.and_then(|j| j.vtt_file_id),
        sidecar_file_id: v.and_then(|j| j.sidecar_file_id),
    })
}

/// `stages.transcription` / `stages.vision` of the pipeline status: `null` when not
/// declared (and never run); the newest run of the kind; `queued` at progress 0 with
/// the declared tier until the run exists.
pub fn pipeline_stage(jobs: &[ComputeJobRow], kind: ComputeKind, declared: Option<&str>) -> Value {
    match (newest(jobs, kind), declared) {
        (Some(job), _) => json!(stage_of(job)),
        (None, Some(tier)) => json!({
            "job_id": null,
            "status": "queued",
            "tier": tier,
            "progress": 0,
            "output_file_id": null,
            "error_message": null,
        }),
        (None, None) => Value::Null,
    }
}

/// The top-level pipeline `status` with the AI stages rolled in: `failed` when one
/// failed; `ai_processing` while the rest is `complete` and one is not.
pub fn rollup(base: &'static str, stages: &[&Value]) -> &'static str {
    let status = |s: &&Value| s.get("status").and_then(Value::as_str).map(str::to_string);
    let states: Vec<String> = stages.iter().filter_map(status).collect();
    if base == "failed" || states.iter().any(|s| s == "failed") {
        "failed"
    } else if base == "complete" && states.iter().any(|s| s != "complete") {
        "ai_processing"
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_states_read_as_the_pipeline_words() {
        assert_eq!(stage_status(ComputeJobState::Queued), "queued");
        assert_eq!(stage_status(ComputeJobState::Processing), "running");
        assert_eq!(stage_status(ComputeJobState::Complete), "complete");
        assert_eq!(stage_status(ComputeJobState::Failed), "failed");
        assert_eq!(stage_status(ComputeJobState::Cancelled), "failed");
    }

    #[test]
    fn a_declared_stage_without_a_job_is_queued_and_an_undeclared_one_null() {
        let queued = pipeline_stage(&[], ComputeKind::Transcription, Some("fastest"));
        assert_eq!(queued["status"], "queued");
        assert_eq!(queued["tier"], "fastest");
        assert_eq!(queued["progress"], 0);
        assert!(pipeline_stage(&[], ComputeKind::Vision, None).is_null());
    }

    #[test]
    fn ai_stages_roll_up_into_the_pipeline_status() {
        let done = json!({"status": "complete"});
        let running = json!({"status": "running"});
        let failed = json!({"status": "failed"});
        let null = Value::Null;
        assert_eq!(rollup("complete", &[&done, &null]), "complete");
        assert_eq!(rollup("complete", &[&running, &done]), "ai_processing");
        assert_eq!(rollup("encoding", &[&running]), "encoding");
        assert_eq!(rollup("complete", &[&failed]), "failed");
        assert_eq!(rollup("encoding", &[&failed]), "failed");
        assert_eq!(rollup("failed", &[&done]), "failed");
    }
}
