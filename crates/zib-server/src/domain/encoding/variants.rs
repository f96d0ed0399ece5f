//! Aspect variants (reference "Aspect variants", docs/video.md): a 9:16 rendition is
//! a child job of the main encode with its own stream file, key and poster. This
//! module makes the children's ids and keys, runs the backfill
//! (`aspect_variants_only`), and builds the `aspect_variants` block tenants see in
//! the same shape on `encoding.complete`, the job status and the pipeline status.

use std::collections::BTreeMap;

use rand::RngCore;
use zib_crypto::DataKey;
use zib_meta::{EncodingJobRow, NewStreamFile, NewVariantJob, VariantCreation};
use zib_proto::encoding::{EncodingRequest, VariantsRequested};
use zib_proto::events::AspectVariant;
use zib_proto::pipeline::AspectRatio;
use zib_proto::FileId;

use super::events::hls_manifest_url;
use super::request::{check_encoder_online, request_webhook, resolve_file, QUEUED_DETAIL};
use super::thumbnails::poster_url;
use crate::error::{ApiError, ApiResult};
use crate::state::{now_ms, AppState, Inner};

/// `status` of a backfill answer.
pub const BACKFILL_STATUS: &str = "queued";
/// `mode` of a backfill answer.
pub const BACKFILL_MODE: &str = "aspect_variants_only";

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

/// One ratio's entry: the variant's stream and its poster (null when thumbnails are
/// off, or not registered yet).
fn entry(state: &Inner, child: &EncodingJobRow) -> AspectVariant {
    AspectVariant {
        hls_manifest_url: hls_manifest_url(state, child.file_id),
        poster_url: poster_url(state, child),
    }
}

/// Whether the main job asked for variants: it has children, or its options list
/// some (the children are created with it, so the two agree).
fn asked(job: &EncodingJobRow, children: &[EncodingJobRow]) -> bool {
    !children.is_empty()
        || job
            .options
            .get("aspect_variants")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|a| !a.is_empty())
}

/// The main job's `aspect_variants` block from its `children`: omitted (`None`)
/// when it asked for none; else keyed by ratio, holding each child that is encoded
/// (`local_complete` or later), `{}` while none is. A failed child is simply absent.
pub fn variants_block(
    state: &Inner,
    job: &EncodingJobRow,
    children: &[EncodingJobRow],
) -> Option<BTreeMap<String, AspectVariant>> {
    if job.is_variant() || !asked(job, children) {
        return None;
    }
    let mut block = BTreeMap::new();
    // Oldest first: a newer encoded child of a ratio (a backfill after a failure)
    // wins.
    for child in children.iter().filter(|c| c.phase.is_encoded()) {
        if let Some(ratio) = &child.aspect_ratio {
            block.insert(ratio.clone(), entry(state, child));
        }
    }
    Some(block)
}

/// An aspect-variant job's own block (`{ratio: {…}}`), for its `encoding.complete`
/// and its job status once encoded.
pub fn own_block(state: &Inner, child: &EncodingJobRow) -> Option<BTreeMap<String, AspectVariant>> {
    let ratio = child.aspect_ratio.clone()?;
    Some(BTreeMap::from([(ratio, entry(state, child))]))
}

/// The `aspect_variants` block of `job` as the polling endpoints show it: a main
/// job's from its children, a variant's own once encoded.
pub async fn block_of(
    state: &Inner,
    job: &EncodingJobRow,
) -> ApiResult<Option<BTreeMap<String, AspectVariant>>> {
    if job.is_variant() {
        return Ok(job
            .phase
            .is_encoded()
            .then(|| own_block(state, job))
            .flatten());
    }
    let children = state.store.variant_jobs(&job.id).await?;
    Ok(variants_block(state, job, &children))
}

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
