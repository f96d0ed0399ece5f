//! Peer webhook formats (docs/webhooks.md, "Formats"): when a zib event is fanned out,
//! the transition it reports becomes 0..n `lifecycle` and `media` events, each its own
//! outbox row (own id, own deliveries) for the endpoints of that format that subscribe
//! to it, built once per format. Two transitions the zib vocabulary has no event for
//! come from hooks: an upload registered ([`upload_started`]) and a rendition
//! published ([`rendition_published`]).
//!
//! Only videos get peer events: a file whose content type is `video/*`, that declared
//! an encode, or that has an encoding job. Aspect-variant jobs and derived files
//! (thumbnails, variant streams) produce none. "Once per transition" is kept by
//! `webhook_format_marks`: a repeated callback finds its mark and emits nothing.

use sqlx::Row;
use zib_proto::events::{
    ENCODING_COMPLETE, ENCODING_FAILED, ENCODING_PROGRESS, ENCODING_STARTED, FILE_DELETED,
    FILE_FAILED, FILE_READY,
};
use zib_proto::jobs::VideoProbe;
use zib_proto::peer_events::{self as peer, PeerVideo, WebhookFormat};

use super::deliveries::insert_delivery;
use super::endpoints::endpoint_from_row;
use super::event_rows::{insert_event_with_id, WebhookEvent};
use super::{prefixed_id, DeliveryTarget};
use crate::encoding::{job_from_row, job_select, EncodingJobRow};
use crate::engine::{DbConn, FetchRows};
use crate::{FileRow, Result};

/// One peer event to emit.
struct PeerEvent {
    format: WebhookFormat,
    event_type: &'static str,
    /// `data.progress` (lifecycle progress only).
    progress: Option<u8>,
    /// `qualities` (media only).
    qualities: String,
}

fn lifecycle(event_type: &'static str) -> PeerEvent {
    PeerEvent {
        format: WebhookFormat::Lifecycle,
        event_type,
        progress: None,
        qualities: String::new(),
    }
}

fn media(event_type: &'static str, qualities: String) -> PeerEvent {
    PeerEvent {
        format: WebhookFormat::Media,
        event_type,
        progress: None,
        qualities,
    }
}

/// What the peer formats need of a file.
struct VideoFile {
    video: PeerVideo,
    content_type: String,
    /// The upload's declared pipeline asks for an encode.
    declares_encode: bool,
    /// A thumbnail or a variant stream, not an upload.
    derived: bool,
}

impl VideoFile {
    fn is_video(&self) -> bool {
        !self.derived && (self.content_type.starts_with("video/") || self.declares_encode)
    }
}

/// The file as peer events describe it; the latest probe is read only when it may
/// be sent (`for_job`, or the file is a video): most files never are.
async fn video_file(conn: &mut DbConn, file_id: &str, for_job: bool) -> Result<Option<VideoFile>> {
    let row = sqlx::query(
        "SELECT f.tenant_id, f.object_key, f.content_type, f.pipeline, f.derived_from, \
             b.name AS bucket \
         FROM files f JOIN buckets b ON b.id = f.bucket_id WHERE f.file_id = $1",
    )
    .bind(file_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let pipeline: Option<String> = row.try_get("pipeline")?;
    let declares_encode = pipeline
        .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
        .and_then(|p| p.get("encode").cloned())
        .is_some_and(|e| !e.is_null() && e != serde_json::Value::Bool(false));
    let derived: Option<String> = row.try_get("derived_from")?;
    let video = PeerVideo {
        id: file_id.to_string(),
        tenant_id: row.try_get("tenant_id")?,
        bucket: row.try_get("bucket")?,
        object_key: row.try_get("object_key")?,
        duration_ms: None,
        width: None,
        height: None,
    };
    let mut file = VideoFile {
        video,
        content_type: row.try_get("content_type")?,
        declares_encode,
        derived: derived.is_some(),
    };
    if !for_job && !file.is_video() {
        return Ok(Some(file));
    }
    // The latest main encode's probe, if one ran.
    let probe: Option<Option<String>> = sqlx::query_scalar(
        "SELECT probe FROM encoding_jobs WHERE file_id = $1 AND parent_job_id IS NULL \
           AND probe IS NOT NULL ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(file_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(p) = probe.flatten() {
        apply_probe(
            &mut file.video,
            &serde_json::from_str(&p).unwrap_or_default(),
        );
    }
    Ok(Some(file))
}

/// Duration and display size from a job's `VideoProbe` (left as they are when the
/// probe is missing or not one).
fn apply_probe(video: &mut PeerVideo, probe: &serde_json::Value) {
    if let Ok(p) = serde_json::from_value::<VideoProbe>(probe.clone()) {
        video.duration_ms = Some((p.duration_secs.max(0.0) * 1000.0).round() as u64);
        video.width = Some(p.width);
        video.height = Some(p.height);
    }
}

/// Records `mark` for the file; true the first time only.
async fn first(conn: &mut DbConn, file_id: &str, mark: &str, now: i64) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO webhook_format_marks (file_id, mark, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (file_id, mark) DO NOTHING",
    )
    .bind(file_id)
    .bind(mark)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

async fn has_mark(conn: &mut DbConn, file_id: &str, mark: &str) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM webhook_format_marks WHERE file_id = $1 AND ($2 = '' OR mark = $2) \
         LIMIT 1",
    )
    .bind(file_id)
    .bind(mark)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found.is_some())
}

/// The job's rungs, lowest first; `published_only` leaves out those not published.
async fn rungs(conn: &mut DbConn, job_id: &str, published_only: bool) -> Result<String> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM hls_renditions WHERE job_id = $1 \
           AND ($2 = 0 OR published_at IS NOT NULL) ORDER BY height, width, name",
    )
    .bind(job_id)
    .bind(i64::from(published_only))
    .fetch_all(&mut *conn)
    .await?;
    Ok(names.join(","))
}

/// Stores each event for the tenant's enabled endpoints of its format that subscribe
/// to it; an event nobody subscribes to is not stored.
async fn emit(
    conn: &mut DbConn,
    video: &PeerVideo,
    job_id: Option<&str>,
    events: Vec<PeerEvent>,
    now: i64,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let endpoints = sqlx::query(
        "SELECT * FROM webhook_endpoints WHERE tenant_id = $1 AND enabled = 1 \
           AND format <> 'zib' ORDER BY id",
    )
    .bind(&video.tenant_id)
    .fetch_rows(&mut *conn, endpoint_from_row)
    .await?;
    for ev in events {
        let targets: Vec<_> = endpoints
            .iter()
            .filter(|ep| ep.format == ev.format && ep.wants(ev.event_type))
            .collect();
        if targets.is_empty() {
            continue;
        }
        let id = prefixed_id("evt_");
        let payload = match ev.format {
            WebhookFormat::Lifecycle => {
                peer::lifecycle_event(&id, ev.event_type, video, ev.progress, now)
            }
            _ => peer::media_event(ev.event_type, video, &ev.qualities, now),
        };
        let event = WebhookEvent {
            id,
            tenant_id: video.tenant_id.clone(),
            event_type: ev.event_type.to_string(),
            file_id: Some(video.id.clone()),
            job_id: job_id.map(str::to_string),
            payload,
            created_at: now,
        };
        insert_event_with_id(conn, &event).await?;
        for ep in targets {
            insert_delivery(
                conn,
                &event,
                DeliveryTarget::Endpoint,
                Some(&ep.id),
                &ep.url,
                now,
            )
            .await?;
        }
    }
    Ok(())
}

/// The peer events of a zib event just put in the outbox, in the same transaction.
/// A file the events of one change already found is no video: its further file
/// events have no peer events, and it is not read again.
#[derive(Default)]
pub(super) struct NotVideo(Option<String>);

pub(super) async fn translate(
    conn: &mut DbConn,
    event: &WebhookEvent,
    now: i64,
    not_video: &mut NotVideo,
) -> Result<()> {
    let Some(file_id) = event.file_id.as_deref() else {
        return Ok(());
    };
    if event.event_type == FILE_DELETED {
        return deleted(conn, event, file_id, now).await;
    }
    if event.job_id.is_none() && not_video.0.as_deref() == Some(file_id) {
        return Ok(());
    }
    let job = match &event.job_id {
        Some(id) => {
            sqlx::query(concat!(job_select!(), " WHERE id = $1"))
                .bind(id)
                .fetch_row(&mut *conn, job_from_row)
                .await?
        }
        None => None,
    };
    let Some(mut file) = video_file(conn, file_id, job.is_some()).await? else {
        return Ok(());
    };
    let variant_event = event
        .payload
        .get("parent_encoding_job_id")
        .and_then(|p| p.as_str())
        .is_some();
    if file.derived || variant_event || job.as_ref().is_some_and(EncodingJobRow::is_variant) {
        return Ok(());
    }
    if !file.is_video() && job.is_none() {
        not_video.0 = Some(file_id.to_string());
        return Ok(());
    }
    if let Some(probe) = job.as_ref().and_then(|j| j.probe.as_ref()) {
        apply_probe(&mut file.video, probe);
    }
    let out = transitions(conn, event, file_id, job.as_ref(), now).await?;
    emit(conn, &file.video, event.job_id.as_deref(), out, now).await
}

/// The peer events of one zib event of a video, first-only transitions checked.
async fn transitions(
    conn: &mut DbConn,
    event: &WebhookEvent,
    file_id: &str,
    job: Option<&EncodingJobRow>,
    now: i64,
) -> Result<Vec<PeerEvent>> {
    let mut out = Vec::new();
    match (event.event_type.as_str(), job) {
        (FILE_READY, _) => {
            if !first(conn, file_id, "upload.completed", now).await? {
                return Ok(out);
            }
            // A non-video content type that declared an encode was not known to be a
            // video when it was registered: announce its start now, in order.
            if first(conn, file_id, "upload.started", now).await? {
                out.push(lifecycle(peer::VIDEO_UPLOAD_STARTED));
            }
            out.push(lifecycle(peer::VIDEO_UPLOAD_COMPLETED));
            out.push(media(peer::MEDIA_FILE_RECEIVED, String::new()));
        }
        (FILE_FAILED, _) => {
            // A file that was ready and then superseded did not fail to upload.
            if has_mark(conn, file_id, "upload.completed").await?
                || !first(conn, file_id, "upload.failed", now).await?
            {
                return Ok(out);
            }
            out.push(lifecycle(peer::VIDEO_UPLOAD_FAILED));
        }
        (ENCODING_STARTED, Some(job)) => {
            let mark = format!("encoding.started:{}", job.id);
            if !first(conn, file_id, &mark, now).await? {
                return Ok(out);
            }
            out.push(lifecycle(peer::VIDEO_ENCODING_STARTED));
            out.push(media(peer::MEDIA_ENCODING_STARTED, String::new()));
        }
        (ENCODING_PROGRESS, Some(_)) => {
            let pct = event.payload.get("progress").and_then(|p| p.as_u64());
            let mut ev = lifecycle(peer::VIDEO_ENCODING_PROGRESS);
            ev.progress = Some(pct.map_or(0, |p| p.min(100) as u8));
            out.push(ev);
        }
        (ENCODING_COMPLETE, Some(job)) => {
            if !first(conn, file_id, &format!("ready:{}", job.id), now).await? {
                return Ok(out);
            }
            out.push(lifecycle(peer::VIDEO_READY));
            if first(conn, file_id, "published", now).await? {
                out.push(lifecycle(peer::VIDEO_PUBLISHED));
            }
            let all = rungs(conn, &job.id, false).await?;
            out.push(media(peer::MEDIA_ENCODING_FINISHED, all));
        }
        (ENCODING_FAILED, Some(job)) => {
            out.push(lifecycle(peer::VIDEO_ENCODING_FAILED));
            out.push(lifecycle(peer::VIDEO_FAILED));
            let done = rungs(conn, &job.id, true).await?;
            out.push(media(peer::MEDIA_ENCODING_FAILED, done));
        }
        _ => {}
    }
    Ok(out)
}

/// `video.deleted` (id only) for a deleted video; its marks go with it (the file row
/// is gone, so no later transition can need them).
async fn deleted(conn: &mut DbConn, event: &WebhookEvent, file_id: &str, now: i64) -> Result<()> {
    let video_type = event
        .payload
        .get("content_type")
        .and_then(|c| c.as_str())
        .is_some_and(|c| c.starts_with("video/"));
    if !video_type && !has_mark(conn, file_id, "").await? {
        return Ok(());
    }
    sqlx::query("DELETE FROM webhook_format_marks WHERE file_id = $1")
        .bind(file_id)
        .execute(&mut *conn)
        .await?;
    let video = PeerVideo {
        id: file_id.to_string(),
        tenant_id: event.tenant_id.clone(),
        bucket: String::new(),
        object_key: String::new(),
        duration_ms: None,
        width: None,
        height: None,
    };
    emit(
        conn,
        &video,
        None,
        vec![lifecycle(peer::VIDEO_DELETED)],
        now,
    )
    .await
}

/// `video.upload.started`, when an upload of a `video/*` file is registered (inside
/// the transaction that inserts its row).
pub(crate) async fn upload_started(conn: &mut DbConn, file: &FileRow, now: i64) -> Result<()> {
    // Derived files never start one: artefacts are registered as `image/jpeg` or
    // `text/vtt` (`ArtifactKind::content_type`), and a variant's stream file is not
    // inserted through this path. A tenant's own key is never second-guessed.
    if !file.content_type.starts_with("video/") {
        return Ok(());
    }
    let file_id = file.file_id.to_string();
    if !first(conn, &file_id, "upload.started", now).await? {
        return Ok(());
    }
    let video = PeerVideo {
        id: file_id,
        tenant_id: file.tenant_id.clone(),
        bucket: file.bucket.clone(),
        object_key: file.object_key.clone(),
        duration_ms: None,
        width: None,
        height: None,
    };
    emit(
        conn,
        &video,
        None,
        vec![lifecycle(peer::VIDEO_UPLOAD_STARTED)],
        now,
    )
    .await
}

/// `video.encoding.completed` and `partial.finished` when a rung of a main job is
/// published, once per (job, rung) however often the node repeats the call.
pub(crate) async fn rendition_published(
    conn: &mut DbConn,
    job: &EncodingJobRow,
    rendition: &str,
    now: i64,
) -> Result<()> {
    if job.is_variant() {
        return Ok(());
    }
    let file_id = job.file_id.to_string();
    let Some(mut file) = video_file(conn, &file_id, true).await? else {
        return Ok(());
    };
    if file.derived {
        return Ok(());
    }
    let mark = format!("rendition:{}:{rendition}", job.id);
    if !first(conn, &file_id, &mark, now).await? {
        return Ok(());
    }
    if let Some(probe) = &job.probe {
        apply_probe(&mut file.video, probe);
    }
    let out = vec![
        lifecycle(peer::VIDEO_ENCODING_COMPLETED),
        media(peer::MEDIA_PARTIAL_FINISHED, rendition.to_string()),
    ];
    emit(conn, &file.video, Some(&job.id), out, now).await
}

#[cfg(test)]
#[path = "formats_tests.rs"]
mod tests;
