//! What a job shows tenants, built from its rows: the stream URL, the `thumbnails`
//! block and the `aspect_variants` block, in the same shape on `encoding.complete`,
//! `GET /v1/api/encoding/jobs/{id}` and the pipeline status (reference "Thumbnails",
//! "Aspect variants").

use std::collections::BTreeMap;

use zib_meta::EncodingJobRow;
use zib_proto::events::{AspectVariant, Thumbnails};
use zib_proto::FileId;

use crate::error::ApiResult;
use crate::state::Inner;

/// `{cdn}/stream/{file_id}/master.m3u8`: the stream URL, stable across re-encodes.
pub fn hls_manifest_url(state: &Inner, file_id: FileId) -> String {
    format!(
        "{}/stream/{}/master.m3u8",
        state.config.cdn_base_url.trim_end_matches('/'),
        file_id
    )
}

/// `{cdn}/objects/{file_id}`: where an artefact (or any file) is served.
pub fn object_url(state: &Inner, file_id: FileId) -> String {
    format!(
        "{}/objects/{}",
        state.config.cdn_base_url.trim_end_matches('/'),
        file_id
    )
}

/// The job's `thumbnails` block; `None` until the node registered them (and for ever
/// when the tenant opted out). A variant job has a poster only, so it has no block of
/// its own (its poster is the variant's `poster_url`: see [`poster_url`]).
pub fn thumbnail_urls(state: &Inner, job: &EncodingJobRow) -> Option<Thumbnails> {
    let t = job.thumbnails.as_ref()?;
    Some(Thumbnails {
        poster_url: object_url(state, t.poster_file_id),
        sprite_url: object_url(state, *t.sprite_sheet_file_ids.first()?),
        sprite_vtt_url: object_url(state, t.sprite_vtt_file_id?),
    })
}

/// The job's poster URL once registered.
pub fn poster_url(state: &Inner, job: &EncodingJobRow) -> Option<String> {
    job.thumbnails
        .as_ref()
        .map(|t| object_url(state, t.poster_file_id))
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
