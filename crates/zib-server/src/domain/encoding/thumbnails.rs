//! A job's thumbnails as tenants see them: the same `thumbnails` block on
//! `encoding.complete`, `GET /v1/api/encoding/jobs/{id}` and the pipeline status.

use zib_meta::EncodingJobRow;
use zib_proto::events::Thumbnails;
use zib_proto::FileId;

use crate::state::Inner;

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
