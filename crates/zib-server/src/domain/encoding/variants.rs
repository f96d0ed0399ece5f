//! Aspect variants (reference "Aspect variants", docs/video.md): a 9:16 rendition is
//! a child job of the main encode with its own stream file, key and poster. The
//! children of a new main job are made with it (`request`); this module runs the
//! backfill (`aspect_variants_only`) on top of a finished encode. The block tenants
//! see is built in `outputs`.

use zib_meta::VariantCreation;
use zib_proto::encoding::{EncodingRequest, VariantsRequested};
use zib_proto::FileId;

use super::request::{
    check_encoder_online, new_variant_jobs, request_webhook, resolve_file, QUEUED_DETAIL,
};
use crate::error::{ApiError, ApiResult};
use crate::state::{now_ms, AppState};

/// `status` of a backfill answer.
pub const BACKFILL_STATUS: &str = "queued";
/// `mode` of a backfill answer.
pub const BACKFILL_MODE: &str = "aspect_variants_only";

fn not_encoded(file_id: FileId) -> ApiError {
    ApiError::Conflict(format!(
        "file {file_id} has no finished encode to add aspect variants to: request the \
         encode first (POST /v1/api/encoding/request without aspect_variants_only, \
         optionally with aspect_variants) and backfill once it is complete"
    ))
}

/// A backfill (`aspect_variants_only`): children on top of the file's live encoded
/// job, without a main pass. A ratio already in flight or encoded for that job is
/// answered again; a failed one is queued anew. 409 when the file has no finished
/// encode; 503 when new work would wait for an encoder that is not online.
pub async fn backfill(
    state: &AppState,
    tenant_id: &str,
    req: &EncodingRequest,
) -> ApiResult<VariantsRequested> {
    let file = resolve_file(state, tenant_id, req).await?;
    let webhook = request_webhook(state, req).await?;
    // The 503 is for work that would wait for a node; an answer naming existing
    // children needs none (the transaction decides again below).
    let live = match state.store.live_encoding_job_id(file.file_id).await? {
        Some(id) => state.store.encoding_job(&id).await?,
        None => None,
    };
    let parent = live
        .filter(|j| j.phase.is_encoded() && !j.is_variant())
        .ok_or_else(|| not_encoded(file.file_id))?;
    let children = state.store.variant_jobs(&parent.id).await?;
    let answered = req.aspect_variants_only.iter().all(|ratio| {
        children.iter().any(|c| {
            c.aspect_ratio.as_deref() == Some(ratio.as_str())
                && (c.phase.is_in_flight() || c.phase.is_encoded())
        })
    });
    if !answered {
        check_encoder_online(state).await?;
    }
    let variants = new_variant_jobs(state, &req.aspect_variants_only);
    let created = state
        .store
        .create_variant_jobs(file.file_id, variants, webhook, QUEUED_DETAIL, now_ms())
        .await?;
    match created {
        VariantCreation::Queued { parent, children } => {
            tracing::info!(parent = %parent.id, file_id = %file.file_id, children = children.len(), "aspect variants requested");
            Ok(VariantsRequested {
                status: BACKFILL_STATUS.to_string(),
                mode: BACKFILL_MODE.to_string(),
                parent_encoding_job_id: parent.id,
                child_encoding_job_ids: children.into_iter().map(|c| c.id).collect(),
                file_id: file.file_id,
            })
        }
        VariantCreation::NotEncoded => Err(not_encoded(file.file_id)),
        VariantCreation::FileNotReady(_) => Err(ApiError::NotFound(format!(
            "file {} not found",
            file.file_id
        ))),
    }
}
