//! Webhook payload formats of other video platforms (docs/webhooks.md, "Formats"), so
//! a tenant moving to ZiB keeps its handlers. An endpoint picks one [`WebhookFormat`]:
//! `zib` gets the bodies of [`crate::events`]; `lifecycle` gets `video.*` envelopes
//! (`{id, type, created_at, organization_id, data: {video, progress?}}`); `media` gets
//! flat bodies (`{type, emitted_at, media_id, media_type, qualities, title, status,
//! user_id}`). The metadata store translates each zib transition into these when it
//! fans the event out; this module only names the types and shapes the bodies.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::events::{iso_millis, EVENT_TYPES};

/// The payload vocabulary of a webhook endpoint (`webhook_endpoints.format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The reference's events (`file.ready`, `encoding.complete`, ...).
    #[default]
    Zib,
    /// `video.*` envelopes.
    Lifecycle,
    /// Flat `file.received` / `encoding.*` / `partial.finished` bodies.
    Media,
}

impl WebhookFormat {
    pub const ALL: [WebhookFormat; 3] = [
        WebhookFormat::Zib,
        WebhookFormat::Lifecycle,
        WebhookFormat::Media,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Zib => "zib",
            WebhookFormat::Lifecycle => "lifecycle",
            WebhookFormat::Media => "media",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// The event types an endpoint of this format may subscribe to.
    pub fn event_types(self) -> &'static [&'static str] {
        match self {
            WebhookFormat::Zib => EVENT_TYPES,
            WebhookFormat::Lifecycle => LIFECYCLE_TYPES,
            WebhookFormat::Media => MEDIA_TYPES,
        }
    }

    /// Which format a stored body is in, from its shape: zib bodies carry `event`,
    /// lifecycle envelopes `organization_id`, media bodies `media_type`. The event
    /// log has no column for it, and the shapes never overlap.
    pub fn of_payload(payload: &Value) -> Self {
        if payload.get("organization_id").is_some() && payload.get("data").is_some() {
            WebhookFormat::Lifecycle
        } else if payload.get("media_type").is_some() && payload.get("event").is_none() {
            WebhookFormat::Media
        } else {
            WebhookFormat::Zib
        }
    }
}

pub const VIDEO_UPLOAD_STARTED: &str = "video.upload.started";
pub const VIDEO_UPLOAD_COMPLETED: &str = "video.upload.completed";
pub const VIDEO_UPLOAD_FAILED: &str = "video.upload.failed";
pub const VIDEO_ENCODING_STARTED: &str = "video.encoding.started";
pub const VIDEO_ENCODING_PROGRESS: &str = "video.encoding.progress";
pub const VIDEO_ENCODING_COMPLETED: &str = "video.encoding.completed";
pub const VIDEO_ENCODING_FAILED: &str = "video.encoding.failed";
pub const VIDEO_READY: &str = "video.ready";
pub const VIDEO_PUBLISHED: &str = "video.published";
pub const VIDEO_FAILED: &str = "video.failed";
pub const VIDEO_DELETED: &str = "video.deleted";

/// Every `lifecycle` event type.
pub const LIFECYCLE_TYPES: &[&str] = &[
    VIDEO_UPLOAD_STARTED,
    VIDEO_UPLOAD_COMPLETED,
    VIDEO_UPLOAD_FAILED,
    VIDEO_ENCODING_STARTED,
    VIDEO_ENCODING_PROGRESS,
    VIDEO_ENCODING_COMPLETED,
    VIDEO_ENCODING_FAILED,
    VIDEO_READY,
    VIDEO_PUBLISHED,
    VIDEO_FAILED,
    VIDEO_DELETED,
];

pub const MEDIA_FILE_RECEIVED: &str = "file.received";
pub const MEDIA_ENCODING_STARTED: &str = "encoding.started";
pub const MEDIA_PARTIAL_FINISHED: &str = "partial.finished";
pub const MEDIA_ENCODING_FINISHED: &str = "encoding.finished";
pub const MEDIA_ENCODING_FAILED: &str = "encoding.failed";

/// Every `media` event type.
pub const MEDIA_TYPES: &[&str] = &[
    MEDIA_FILE_RECEIVED,
    MEDIA_ENCODING_STARTED,
    MEDIA_PARTIAL_FINISHED,
    MEDIA_ENCODING_FINISHED,
    MEDIA_ENCODING_FAILED,
];

/// `data.video.status` of each lifecycle type.
pub fn lifecycle_status(event_type: &str) -> &'static str {
    match event_type {
        VIDEO_UPLOAD_STARTED => "pending_upload",
        VIDEO_UPLOAD_COMPLETED => "created",
        VIDEO_UPLOAD_FAILED => "upload_failed",
        VIDEO_ENCODING_STARTED | VIDEO_ENCODING_PROGRESS => "processing",
        VIDEO_ENCODING_COMPLETED => "resolution_finished",
        VIDEO_ENCODING_FAILED => "encoding_failed",
        VIDEO_READY | VIDEO_PUBLISHED => "complete",
        VIDEO_FAILED => "failed",
        _ => "unknown",
    }
}

/// `status` of each media type.
pub fn media_status(event_type: &str) -> &'static str {
    match event_type {
        MEDIA_ENCODING_FINISHED => "done",
        MEDIA_ENCODING_FAILED => "fail",
        _ => "transcoding",
    }
}

/// The video an event reports, as both peer formats describe it.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerVideo {
    /// The file id.
    pub id: String,
    /// The tenant id.
    pub tenant_id: String,
    pub bucket: String,
    pub object_key: String,
    /// From the encode's probe, once known.
    pub duration_ms: Option<u64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

impl PeerVideo {
    /// The object key's last path component (the key itself if it has no `/`).
    pub fn title(&self) -> &str {
        self.object_key
            .rsplit('/')
            .find(|part| !part.is_empty())
            .unwrap_or(&self.object_key)
    }
}

/// A lifecycle envelope. `event_id` is the event's own id (`evt_...`, the same as the
/// `webhook-id` header); `progress` is set on `video.encoding.progress` only.
/// `video.deleted` carries `data.video.id` alone.
pub fn lifecycle_event(
    event_id: &str,
    event_type: &str,
    video: &PeerVideo,
    progress: Option<u8>,
    at_ms: i64,
) -> Value {
    let mut v = Map::new();
    v.insert("id".into(), json!(video.id));
    if event_type != VIDEO_DELETED {
        v.insert("external_id".into(), json!(video.object_key));
        v.insert("status".into(), json!(lifecycle_status(event_type)));
        v.insert("title".into(), json!(video.title()));
        v.insert("collection_id".into(), json!(video.bucket));
        if let Some(d) = video.duration_ms {
            v.insert("duration_ms".into(), json!(d));
        }
        if let Some(w) = video.width {
            v.insert("width".into(), json!(w));
        }
        if let Some(h) = video.height {
            v.insert("height".into(), json!(h));
        }
    }
    let mut data = Map::new();
    data.insert("video".into(), Value::Object(v));
    if let Some(p) = progress {
        data.insert("progress".into(), json!(p.min(100)));
    }
    json!({
        "id": event_id,
        "type": event_type,
        "created_at": iso_millis(at_ms),
        "organization_id": video.tenant_id,
        "data": data,
    })
}

/// A media body. `qualities` is a rung name (`720p`) on `partial.finished`, every
/// rung comma-separated on `encoding.finished`, the rungs published so far otherwise.
pub fn media_event(event_type: &str, video: &PeerVideo, qualities: &str, at_ms: i64) -> Value {
    json!({
        "type": event_type,
        "emitted_at": iso_millis(at_ms),
        "media_id": video.id,
        "media_type": "video",
        "qualities": qualities,
        "title": video.title(),
        "status": media_status(event_type),
        "user_id": video.tenant_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{file_event, EventFile, FILE_READY};

    const AT: i64 = 1_775_669_400_000;

    fn video() -> PeerVideo {
        PeerVideo {
            id: "f1".into(),
            tenant_id: "ten_x".into(),
            bucket: "media".into(),
            object_key: "clips/2026/My video.mp4".into(),
            duration_ms: Some(125_400),
            width: Some(1920),
            height: Some(1080),
        }
    }

    #[test]
    fn lifecycle_envelope_has_the_peer_shape() {
        let body = lifecycle_event("evt_1", VIDEO_ENCODING_PROGRESS, &video(), Some(42), AT);
        assert_eq!(body["id"], "evt_1");
        assert_eq!(body["type"], "video.encoding.progress");
        assert_eq!(body["created_at"], "2026-04-08T17:30:00.000Z");
        assert_eq!(body["organization_id"], "ten_x");
        let v = &body["data"]["video"];
        assert_eq!(v["id"], "f1");
        assert_eq!(v["external_id"], "clips/2026/My video.mp4");
        assert_eq!(v["title"], "My video.mp4");
        assert_eq!(v["collection_id"], "media");
        assert_eq!(v["status"], "processing");
        assert_eq!(v["duration_ms"], 125_400);
        assert_eq!(v["width"], 1920);
        assert_eq!(body["data"]["progress"], 42);
        assert_eq!(WebhookFormat::of_payload(&body), WebhookFormat::Lifecycle);
    }

    #[test]
    fn unknown_dimensions_are_omitted_and_deleted_is_id_only() {
        let mut early = video();
        early.duration_ms = None;
        early.width = None;
        early.height = None;
        let started = lifecycle_event("evt_2", VIDEO_UPLOAD_STARTED, &early, None, AT);
        let v = started["data"]["video"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(!v.contains_key("duration_ms") && !v.contains_key("width"));
        assert_eq!(v["status"], "pending_upload");
        assert!(started["data"].get("progress").is_none());
        let deleted = lifecycle_event("evt_3", VIDEO_DELETED, &video(), None, AT);
        assert_eq!(deleted["data"]["video"], json!({"id": "f1"}));
    }

    #[test]
    fn media_body_is_flat_and_formats_tell_apart() {
        let body = media_event(MEDIA_ENCODING_FINISHED, &video(), "360p,720p", AT);
        assert_eq!(body["type"], "encoding.finished");
        assert_eq!(body["emitted_at"], "2026-04-08T17:30:00.000Z");
        assert_eq!(body["media_id"], "f1");
        assert_eq!(body["media_type"], "video");
        assert_eq!(body["qualities"], "360p,720p");
        assert_eq!(body["title"], "My video.mp4");
        assert_eq!(body["status"], "done");
        assert_eq!(body["user_id"], "ten_x");
        assert_eq!(WebhookFormat::of_payload(&body), WebhookFormat::Media);
        let zib = file_event(
            FILE_READY,
            &EventFile {
                file_id: crate::FileId::new_random(),
                customer_id: "ten_x",
                bucket: "b",
                object_key: "k",
                size_bytes: 1,
                content_type: "video/mp4",
                phase: "distributed",
                cancelled_reason: None,
            },
            AT,
        );
        assert_eq!(WebhookFormat::of_payload(&zib), WebhookFormat::Zib);
        assert_eq!(media_status(MEDIA_ENCODING_FAILED), "fail");
        assert_eq!(media_status(MEDIA_PARTIAL_FINISHED), "transcoding");
    }

    #[test]
    fn formats_parse_and_name_their_vocabularies() {
        for f in WebhookFormat::ALL {
            assert_eq!(WebhookFormat::parse(f.as_str()), Some(f));
        }
        assert_eq!(WebhookFormat::parse("mux"), None);
        assert!(WebhookFormat::Lifecycle
            .event_types()
            .contains(&"video.ready"));
        assert!(!WebhookFormat::Lifecycle
            .event_types()
            .contains(&"file.ready"));
        assert!(WebhookFormat::Media
            .event_types()
            .contains(&"partial.finished"));
    }
}
