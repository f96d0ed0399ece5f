//! Files the video pipeline derives from an upload (docs/video.md, "Thumbnails and
//! aspect variants"): a job's poster, sprite sheets and sprite VTT arrive as plaintext
//! from the encoding node and are stored here exactly like an S3 PutObject (a fresh
//! data key, the envelope sealed in memory and sent to the originator, which
//! distributes the shards) as a *derived* file: no object key of the tenant's, never
//! listed, never announced, gone with its job or its source. A compute job's outputs
//! (subtitles, the vision sidecar) are stored the same way (`store_derived`).

use std::time::Duration;

use bytes::Bytes;
use zib_meta::{DerivedKind, EncodingJobRow, FileRow, JobThumbnails};
use zib_proto::api::{Registration, UploadType};
use zib_proto::jobs::{ArtifactKind, ArtifactStored, ThumbnailsRegistered};
use zib_proto::FileId;

use super::blob_removal::delete_blobs_now;
use super::encoding::cancel::cancel_jobs_of_file;
use super::encoding::lifecycle::leased_job;
use super::encoding::outputs::object_url;
use super::registration::{register, Registered, Sender};
use crate::error::{ApiError, ApiResult, InternalError};
use crate::state::{now_ms, AppState, Inner};

/// How long the originator may take to take the envelope and distribute it.
const STORE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long dropping a replaced artefact's blobs may wait for a holder.
const DROP_TIMEOUT: Duration = Duration::from_secs(3);

/// The artefact's name under `{source key}/.zib/{job_id}/`.
fn artifact_name(kind: ArtifactKind, seq: u32) -> String {
    match kind {
        ArtifactKind::Poster => "poster.jpg".to_string(),
        ArtifactKind::SpriteSheet => format!("sprite-{seq}.jpg"),
        ArtifactKind::SpriteVtt => "sprites.vtt".to_string(),
    }
}

/// Stores `bytes` as the job's `(kind, seq)` artefact: a derived file of the job's
/// source (its tenant and bucket), readable through `/objects/{file_id}` once this
/// returns. A retry of the same `(kind, seq)` replaces the earlier file, which is
/// deleted.
pub async fn store_artifact(
    state: &AppState,
    job: &EncodingJobRow,
    kind: ArtifactKind,
    seq: u32,
    bytes: Bytes,
) -> ApiResult<ArtifactStored> {
    let source = state
        .store
        .file(job.source_file())
        .await?
        .filter(|f| f.phase.is_readable())
        .ok_or_else(|| {
            ApiError::Gone(format!(
                "the source file of encoding job {} no longer exists: stop working on it",
                job.id
            ))
        })?;
    let key = format!(
        "{}/.zib/{}/{}",
        source.object_key,
        job.id,
        artifact_name(kind, seq)
    );
    let file_id = store_derived(
        state,
        &source,
        key,
        kind.content_type(),
        DerivedKind::Artifact(kind),
        bytes,
    )
    .await?;

    match state
        .store
        .record_job_artifact(&job.id, kind, seq, file_id, now_ms())
        .await
    {
        Ok(Some(replaced)) => drop_file(state, replaced).await,
        Ok(None) => {}
        // The job was deleted with its source meanwhile: this file has nothing to
        // belong to.
        Err(zib_meta::MetaError::Conflict(why)) => {
            drop_file(state, file_id).await;
            return Err(ApiError::Gone(format!("{why}: stop working on it")));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(job = %job.id, %file_id, kind = kind.as_str(), seq, "encoding artefact stored");
    Ok(ArtifactStored {
        file_id,
        url: object_url(state, file_id),
    })
}

/// Stores `bytes` as a derived file of `source` (its tenant and bucket) under `key`
/// (`{source key}/.zib/{job_id}/{name}`), sealed under a fresh data key and
/// distributed like an S3 PutObject; readable through `/objects/{file_id}` once this
/// returns. A failure marks the half-stored file failed.
pub async fn store_derived(
    state: &AppState,
    source: &FileRow,
    key: String,
    content_type: &str,
    kind: DerivedKind,
    bytes: Bytes,
) -> ApiResult<FileId> {
    let Registered {
        registration,
        dek,
        header,
    } = register(
        state,
        &source.tenant_id,
        source.bucket.clone(),
        key,
        bytes.len() as u64,
        content_type.to_string(),
        Sender::Client { required: &[] },
    )
    .await?;
    let file_id = registration.file_id;
    let stored = async {
        if !state
            .store
            .mark_derived(file_id, source.file_id, kind)
            .await?
        {
            return Err(internal(format!(
                "derived file {file_id} left `pending` before it was marked derived"
            )));
        }
        let envelope = zib_crypto::envelope::try_encrypt(&dek, header, &bytes)
            .map_err(|e| internal(format!("sealing derived file {file_id}: {e}")))?;
        send_envelope(state, &registration, envelope).await?;
        // The originator answers once it distributed; make sure the CDN reads it.
        let readable = state
            .store
            .file(file_id)
            .await?
            .is_some_and(|f| f.phase.is_readable());
        if !readable {
            return Err(ApiError::Upstream(format!(
                "the originator took derived file {file_id} but it is not distributed; retry"
            )));
        }
        Ok(())
    }
    .await;
    if let Err(e) = stored {
        if let Err(mark) = state
            .store
            .mark_failed(file_id, "storing the derived file failed")
            .await
        {
            tracing::warn!(%file_id, error = %mark, "could not mark the failed derived file");
        }
        return Err(e);
    }
    Ok(file_id)
}

fn internal(what: String) -> ApiError {
    ApiError::Internal(InternalError::Other(what))
}

/// Sends the sealed envelope to the originator the registration names (one body, or
/// its parts and the completion), as the S3 gateway does for a PutObject.
async fn send_envelope(state: &Inner, reg: &Registration, envelope: Vec<u8>) -> ApiResult<()> {
    let envelope = Bytes::from(envelope);
    match reg.upload_type {
        UploadType::Single => {
            let url = reg
                .upload_url
                .as_deref()
                .ok_or_else(|| internal("registration without an upload URL".into()))?;
            let request = state.http.put(url).body(envelope);
            node_answer(request, "upload").await
        }
        UploadType::Multipart => {
            let mut parts = reg.parts.clone();
            parts.sort_by_key(|p| p.part_number);
            for part in &parts {
                let range = usize::try_from(part.ciphertext_offset)
                    .ok()
                    .zip(usize::try_from(part.ciphertext_offset + part.ciphertext_size).ok())
                    .filter(|(_, end)| *end <= envelope.len())
                    .ok_or_else(|| {
                        internal(format!("part {} is outside the envelope", part.part_number))
                    })?;
                let request = state
                    .http
                    .put(&part.upload_url)
                    .body(envelope.slice(range.0..range.1));
                node_answer(request, "part upload").await?;
            }
            let url = reg
                .complete_url
                .as_deref()
                .ok_or_else(|| internal("registration without a complete URL".into()))?;
            let request = state
                .http
                .post(url)
                .header(reqwest::header::CONTENT_LENGTH, 0);
            node_answer(request, "complete").await
        }
    }
}

async fn node_answer(request: reqwest::RequestBuilder, what: &str) -> ApiResult<()> {
    match request.timeout(STORE_TIMEOUT).send().await {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            tracing::warn!(%status, body = %text, "originator refused an artefact {what}");
            Err(ApiError::Upstream(format!(
                "the originator refused the artefact {what} ({status}); retry"
            )))
        }
        Err(e) => {
            tracing::warn!(error = %e, "artefact {what} to the originator failed");
            Err(ApiError::Upstream(format!(
                "the originator could not be reached for the artefact {what}; retry"
            )))
        }
    }
}

/// Deletes a derived file and its blobs; failures are left to the heartbeat queue
/// and the orphan collector.
pub async fn drop_file(state: &Inner, file_id: FileId) {
    match state.store.delete_derived_file(file_id, now_ms()).await {
        Ok(blobs) => {
            if let Err(e) = delete_blobs_now(state, &blobs, DROP_TIMEOUT).await {
                tracing::warn!(%file_id, error = %e, "dropping an artefact's blobs left to heartbeats");
            }
        }
        Err(e) => tracing::error!(%file_id, error = %e, "deleting a replaced artefact failed"),
    }
}

/// Records the job's poster, sprite sheets and sprite VTT (before `done`, so
/// `encoding.complete` names them). Every file must be this job's artefact of that
/// kind. Idempotent.
pub async fn register_thumbnails(
    state: &Inner,
    job_id: &str,
    req: &ThumbnailsRegistered,
) -> ApiResult<()> {
    let job = leased_job(state, job_id, &req.lease_token).await?;
    let artifacts = state.store.job_artifacts(&job.id).await?;
    let check = |field: &'static str, file: FileId, kind: ArtifactKind| -> ApiResult<()> {
        if artifacts
            .iter()
            .any(|a| a.file_id == file && a.kind == kind)
        {
            Ok(())
        } else {
            Err(ApiError::invalid(
                field,
                format!(
                    "{file} is not a {} this job stored (POST …/artifacts/{} first)",
                    kind.as_str(),
                    kind.as_str()
                ),
            ))
        }
    };
    check("poster_file_id", req.poster_file_id, ArtifactKind::Poster)?;
    for sheet in &req.sprite_sheet_file_ids {
        check("sprite_sheet_file_ids", *sheet, ArtifactKind::SpriteSheet)?;
    }
    if let Some(vtt) = req.sprite_vtt_file_id {
        check("sprite_vtt_file_id", vtt, ArtifactKind::SpriteVtt)?;
    }
    let thumbs = JobThumbnails {
        poster_file_id: req.poster_file_id,
        sprite_sheet_file_ids: req.sprite_sheet_file_ids.clone(),
        sprite_vtt_file_id: req.sprite_vtt_file_id,
    };
    state.store.set_job_thumbnails(&job.id, &thumbs).await?;
    tracing::info!(job = %job.id, sheets = thumbs.sprite_sheet_file_ids.len(), "thumbnails registered");
    Ok(())
}

/// Cancels the jobs of every aspect variant of `source` (their leases end, no more
/// events), before the source's deletion or eviction takes their rows.
pub async fn cancel_variant_jobs(state: &Inner, source: FileId, reason: &str) -> ApiResult<()> {
    for derived in state.store.derived_files(source).await? {
        if derived.kind == DerivedKind::AspectVariant {
            cancel_jobs_of_file(state, derived.file_id, reason).await?;
        }
    }
    Ok(())
}

/// `Some(message)` when `file` is an aspect variant's stream file, which has no
/// bytes of its own: the CDN's 404 points at the stream instead.
pub async fn stream_only(state: &Inner, file: &FileRow) -> ApiResult<Option<String>> {
    Ok(state
        .store
        .derived_file(file.file_id)
        .await?
        .filter(|d| d.kind == DerivedKind::AspectVariant)
        .map(|_| {
            format!(
                "{} is a video stream, not an object: play /stream/{}/master.m3u8",
                file.file_id, file.file_id
            )
        }))
}
