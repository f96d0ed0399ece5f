//! How compute jobs come to exist: a tenant's submission (`POST
//! /v1/api/compute/{transcription|vision}`, answered by the in-flight job of the same
//! file, kind and tier if there is one), the AI stages of an encoding request (created
//! with the encoding job, or attached to the one that answered), and an upload whose
//! pipeline declares AI without `encode` (standalone jobs once it is distributed).

use zib_meta::{ComputeJobRow, ComputeJobState, FileRow, NewComputeJob};
use zib_proto::compute::{ComputeKind, ComputeSubmitted, ComputeTier};
use zib_proto::pipeline::{Capability, Pipeline, TranscriptionTier, VisionTier};

use crate::domain::directory::NodeDirectory;
use crate::domain::uploaded::uploaded_file;
use crate::error::{ApiError, ApiResult, InternalError};
use crate::state::{now_ms, Inner};

/// `message` of a submission answered by an in-flight job.
pub const ALREADY_QUEUED: &str = "already_queued";

/// The AI runs a declaration asks for: its declared tiers, or the default tier of a
/// legacy `capabilities` entry.
pub fn asked(pipeline: &Pipeline) -> Vec<ComputeTier> {
    pipeline
        .requested()
        .into_iter()
        .filter_map(|c| match c {
            Capability::Transcription(t) => Some(ComputeTier::Transcription(t)),
            Capability::Vision(v) => Some(ComputeTier::Vision(v)),
            Capability::Encode => None,
        })
        .collect()
}

/// `503` naming the first of `capabilities` no online node advertises (the wording
/// of the upload's own check).
pub async fn check_online(state: &Inner, capabilities: &[String]) -> ApiResult<()> {
    if capabilities.is_empty() {
        return Ok(());
    }
    let online = NodeDirectory::load(state).await?.online();
    match capabilities
        .iter()
        .find(|c| !online.iter().any(|n| n.capabilities.contains(c)))
    {
        Some(missing) => Err(ApiError::Unavailable(format!(
            "no storage nodes available that can run pipeline stage {missing:?}"
        ))),
        None => Ok(()),
    }
}

/// The submitted `tier` of a `kind` (its default when absent); `400` naming `tier`
/// for an unknown one.
pub fn parse_tier(kind: ComputeKind, raw: Option<&str>) -> ApiResult<ComputeTier> {
    let Some(raw) = raw else {
        return Ok(match kind {
            ComputeKind::Transcription => ComputeTier::Transcription(TranscriptionTier::default()),
            ComputeKind::Vision => ComputeTier::Vision(VisionTier::default()),
        });
    };
    ComputeTier::parse(kind, raw).ok_or_else(|| {
        let expected = match kind {
            ComputeKind::Transcription => TranscriptionTier::ALL.map(|t| t.as_str()).join(", "),
            ComputeKind::Vision => VisionTier::ALL.map(|t| t.as_str()).join(", "),
        };
        ApiError::invalid(
            "tier",
            format!(
                "unknown {} tier {raw:?} (expected {expected})",
                kind.as_str()
            ),
        )
    })
}

/// The answer naming `job`.
pub fn submitted(job: &ComputeJobRow, message: Option<&str>) -> ComputeSubmitted {
    ComputeSubmitted {
        job_id: job.id.clone(),
        kind: job.kind,
        tier: job.tier.clone(),
        file_id: job.file_id,
        status: job.tenant_status(),
        message: message.map(str::to_string),
    }
}

/// A tenant's submission: `(true, answer)` for a new job, `(false, answer)` when the
/// in-flight job of the same file, kind and tier answered.
pub async fn submit(
    state: &Inner,
    tenant_id: &str,
    kind: ComputeKind,
    raw_file_id: &str,
    raw_tier: Option<&str>,
) -> ApiResult<(bool, ComputeSubmitted)> {
    let tier = parse_tier(kind, raw_tier)?;
    let file = uploaded_file(state, tenant_id, raw_file_id).await?;
    if let Some(job) = state
        .store
        .in_flight_compute_job(file.file_id, kind, tier.tier_str())
        .await?
    {
        return Ok((false, submitted(&job, Some(ALREADY_QUEUED))));
    }
    // An answer naming an existing job needs no node; a new one would wait for one.
    check_online(state, &[tier.capability()]).await?;
    let new = new_job(&file, tier, None);
    let job = state
        .store
        .create_compute_jobs(&[new], now_ms())
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            ApiError::Internal(InternalError::Other(
                "the store created no compute job".into(),
            ))
        })?;
    tracing::info!(job = %job.id, file = %job.file_id, capability = %tier.capability(), "compute job queued");
    Ok((true, submitted(&job, None)))
}

fn new_job(file: &FileRow, tier: ComputeTier, encoding_job_id: Option<String>) -> NewComputeJob {
    NewComputeJob {
        id: uuid::Uuid::new_v4().to_string(),
        file_id: file.file_id,
        tenant_id: file.tenant_id.clone(),
        kind: tier.kind(),
        tier: tier.tier_str().to_string(),
        encoding_job_id,
    }
}

/// The jobs to create for `asked` on `file`: each tier the file has no complete or
/// in-flight job of (every one with `force`), attached to `encoding_job_id`.
pub async fn new_jobs_for(
    state: &Inner,
    file: &FileRow,
    asked: &[ComputeTier],
    force: bool,
    encoding_job_id: Option<&str>,
) -> ApiResult<Vec<NewComputeJob>> {
    if asked.is_empty() {
        return Ok(vec![]);
    }
    let existing = if force {
        vec![]
    } else {
        state.store.compute_jobs_of_file(file.file_id).await?
    };
    Ok(asked
        .iter()
        .filter(|t| {
            !existing.iter().any(|j| {
                j.kind == t.kind()
                    && j.tier == t.tier_str()
                    && (j.is_in_flight() || j.status == ComputeJobState::Complete)
            })
        })
        .map(|t| new_job(file, *t, encoding_job_id.map(str::to_string)))
        .collect())
}

/// The capabilities `jobs` need, for [`check_online`].
pub fn capabilities_of(jobs: &[NewComputeJob]) -> Vec<String> {
    let mut caps: Vec<String> = jobs
        .iter()
        .map(|j| format!("{}:{}", j.kind.as_str(), j.tier))
        .collect();
    caps.dedup();
    caps
}

/// Attaches `jobs` to an existing encoding job (the one that answered an encoding
/// request instead of a new one): they run once it is encoded.
pub async fn attach(
    state: &Inner,
    encoding_job_id: &str,
    mut jobs: Vec<NewComputeJob>,
) -> ApiResult<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    for job in &mut jobs {
        job.encoding_job_id = Some(encoding_job_id.to_string());
    }
    let created = state.store.create_compute_jobs(&jobs, now_ms()).await?;
    tracing::info!(
        encoding_job = encoding_job_id,
        jobs = created.len(),
        "compute jobs attached to an existing encode"
    );
    Ok(())
}

/// The AI an upload declared without `encode`: standalone jobs, now that it is
/// distributed. (Declared with `encode`, they are created with the encoding job.)
pub async fn enqueue_declared(state: &Inner, file: &FileRow, pipeline: &Pipeline) -> ApiResult<()> {
    let jobs = new_jobs_for(state, file, &asked(pipeline), false, None).await?;
    if jobs.is_empty() {
        return Ok(());
    }
    let created = state.store.create_compute_jobs(&jobs, now_ms()).await?;
    tracing::info!(file = %file.file_id, jobs = created.len(), "declared compute jobs queued");
    Ok(())
}
