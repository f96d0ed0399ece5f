//! Webhook events on the wire: every event type name, and the JSON body of each in
//! the contract's per-event shape. Every body has a top-level `event` and
//! `timestamp` (ISO 8601 UTC, milliseconds). The metadata store emits the file
//! events inside the transaction of their state change; the encoding, transcription
//! and vision shapes are here, typed, for the stages that will emit them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use crate::FileId;

pub const FILE_READY: &str = "file.ready";
pub const FILE_REPLICATED: &str = "file.replicated";
pub const FILE_FAILED: &str = "file.failed";
pub const FILE_DELETED: &str = "file.deleted";
pub const ENCODING_QUEUED: &str = "encoding.queued";
pub const ENCODING_STARTED: &str = "encoding.started";
pub const ENCODING_PROGRESS: &str = "encoding.progress";
pub const ENCODING_SHARDING: &str = "encoding.sharding";
pub const ENCODING_COMPLETE: &str = "encoding.complete";
pub const ENCODING_FAILED: &str = "encoding.failed";
pub const TRANSCRIPTION_COMPLETE: &str = "transcription.complete";
pub const VISION_COMPLETE: &str = "vision.complete";
/// Sent only by the endpoint test call, to the endpoint tested.
pub const WEBHOOK_TEST: &str = "webhook.test";

/// Every event type an endpoint may subscribe to.
pub const EVENT_TYPES: &[&str] = &[
    FILE_READY,
    FILE_REPLICATED,
    FILE_FAILED,
    FILE_DELETED,
    ENCODING_QUEUED,
    ENCODING_STARTED,
    ENCODING_PROGRESS,
    ENCODING_SHARDING,
    ENCODING_COMPLETE,
    ENCODING_FAILED,
    TRANSCRIPTION_COMPLETE,
    VISION_COMPLETE,
    WEBHOOK_TEST,
];

/// `2026-04-08T17:30:00.000Z` for a unix-millisecond time.
pub fn iso_millis(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&format)
        .unwrap_or_default()
}

/// The file a `file.*` event reports, as its body shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventFile<'a> {
    pub file_id: FileId,
    /// The tenant id.
    pub customer_id: &'a str,
    pub bucket: &'a str,
    pub object_key: &'a str,
    /// Plaintext bytes.
    pub size_bytes: u64,
    pub content_type: &'a str,
    /// The file's lifecycle phase (`distributed`, `safe`, `failed`, ...).
    pub phase: &'a str,
    pub cancelled_reason: Option<&'a str>,
}

/// `file.ready`, `file.replicated`, `file.failed`, `file.deleted`: one shape, so one
/// handler routes them by `event`. The contract names the key `object_key` on
/// file.ready and `key` on file.deleted; both are always present. `cdn_url` is
/// added by the dispatcher, which knows the CDN's base URL.
pub fn file_event(event: &str, file: &EventFile<'_>, at_ms: i64) -> Value {
    let phase = if event == FILE_DELETED {
        "deleted"
    } else {
        file.phase
    };
    let mut body = json!({
        "event": event,
        "file_id": file.file_id.to_string(),
        "customer_id": file.customer_id,
        "bucket": file.bucket,
        "object_key": file.object_key,
        "key": file.object_key,
        "size_bytes": file.size_bytes,
        "content_type": file.content_type,
        "phase": phase,
        "timestamp": iso_millis(at_ms),
    });
    if let (Some(reason), Value::Object(map)) = (file.cancelled_reason, &mut body) {
        map.insert("cancelled_reason".into(), Value::String(reason.to_string()));
    }
    body
}

/// The five lifecycle steps of an encoding job that share one shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodingStep {
    Queued,
    Started,
    Sharding,
    Complete,
    Failed,
}

impl EncodingStep {
    pub fn event(self) -> &'static str {
        match self {
            EncodingStep::Queued => ENCODING_QUEUED,
            EncodingStep::Started => ENCODING_STARTED,
            EncodingStep::Sharding => ENCODING_SHARDING,
            EncodingStep::Complete => ENCODING_COMPLETE,
            EncodingStep::Failed => ENCODING_FAILED,
        }
    }
    /// The payload's `status`: `started` reports the job as `encoding`.
    pub fn status(self) -> &'static str {
        match self {
            EncodingStep::Queued => "queued",
            EncodingStep::Started => "encoding",
            EncodingStep::Sharding => "sharding",
            EncodingStep::Complete => "complete",
            EncodingStep::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Thumbnails {
    pub poster_url: String,
    pub sprite_url: String,
    pub sprite_vtt_url: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AspectVariant {
    pub hls_manifest_url: String,
    /// Null when the tenant opted out of thumbnails (no poster is made).
    pub poster_url: Option<String>,
}

/// `encoding.queued|started|sharding|complete|failed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodingEvent {
    pub step: EncodingStep,
    pub job_id: String,
    pub file_id: String,
    pub customer_id: String,
    /// Set once the step is `Complete`.
    pub hls_manifest_url: Option<String>,
    /// Set when the step is `Failed`.
    pub error_message: Option<String>,
    pub transcription_model: Option<String>,
    pub vision_model: Option<String>,
    pub thumbnails: Option<Thumbnails>,
    /// By ratio (`"9:16"`); omitted from the body when `None`.
    pub aspect_variants: Option<BTreeMap<String, AspectVariant>>,
    /// On an aspect-variant job's `encoding.complete`: the main job it belongs to
    /// (omitted from the body when `None`).
    pub parent_encoding_job_id: Option<String>,
    /// On an aspect-variant job's `encoding.complete`: its ratio (omitted when `None`).
    pub aspect_ratio: Option<String>,
}

impl EncodingEvent {
    pub fn payload(&self, at_ms: i64) -> Value {
        let mut body = json!({
            "event": self.step.event(),
            "job_id": self.job_id,
            "status": self.step.status(),
            "file_id": self.file_id,
            "customer_id": self.customer_id,
            "hls_manifest_url": self.hls_manifest_url,
            "error_message": self.error_message,
            "transcription_model": self.transcription_model,
            "vision_model": self.vision_model,
            "thumbnails": self.thumbnails,
            "timestamp": iso_millis(at_ms),
        });
        if let Value::Object(map) = &mut body {
            if let Some(variants) = &self.aspect_variants {
                map.insert("aspect_variants".into(), json!(variants));
            }
            if let Some(parent) = &self.parent_encoding_job_id {
                map.insert("parent_encoding_job_id".into(), json!(parent));
            }
            if let Some(ratio) = &self.aspect_ratio {
                map.insert("aspect_ratio".into(), json!(ratio));
            }
        }
        body
    }
}

/// Where a progress update stands: transcoding, or distributing segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressStage {
    Encoding,
    Sharding,
}

/// `encoding.progress`; `percent` is clamped to 0–100.
pub fn encoding_progress(
    job_id: &str,
    file_id: &str,
    percent: u8,
    stage: ProgressStage,
    at_ms: i64,
) -> Value {
    json!({
        "event": ENCODING_PROGRESS,
        "job_id": job_id,
        "file_id": file_id,
        "progress": percent.min(100),
        "stage": match stage {
            ProgressStage::Encoding => "encoding",
            ProgressStage::Sharding => "sharding",
        },
        "timestamp": iso_millis(at_ms),
    })
}

/// `transcription.complete`: the subtitles are stored, SubRip as `srt_file_id` and
/// WebVTT (the HLS subtitle track) as `vtt_file_id`. `job_id` is the encoding job's
/// when the run was asked with an encode, else the compute job's.
pub fn transcription_complete(
    job_id: &str,
    file_id: &str,
    tier: &str,
    srt_file_id: &str,
    vtt_file_id: &str,
    at_ms: i64,
) -> Value {
    json!({
        "event": TRANSCRIPTION_COMPLETE,
        "job_id": job_id,
        "file_id": file_id,
        "tier": tier,
        "srt_file_id": srt_file_id,
        "vtt_file_id": vtt_file_id,
        "timestamp": iso_millis(at_ms),
    })
}

/// `vision.complete`: the sidecar JSON is stored as `sidecar_file_id`; `job_id` as
/// for `transcription.complete`.
pub fn vision_complete(
    job_id: &str,
    file_id: &str,
    tier: &str,
    sidecar_file_id: &str,
    at_ms: i64,
) -> Value {
    json!({
        "event": VISION_COMPLETE,
        "job_id": job_id,
        "file_id": file_id,
        "tier": tier,
        "sidecar_file_id": sidecar_file_id,
        "timestamp": iso_millis(at_ms),
    })
}

/// `webhook.test`: what the endpoint test call sends.
pub fn webhook_test(endpoint_id: &str, at_ms: i64) -> Value {
    json!({
        "event": WEBHOOK_TEST,
        "endpoint_id": endpoint_id,
        "message": "This is a test event from ZiB.",
        "timestamp": iso_millis(at_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: i64 = 1_775_669_400_000; // 2026-04-08T17:30:00Z

    #[test]
    fn timestamps_are_iso_utc_with_milliseconds() {
        assert_eq!(iso_millis(AT), "2026-04-08T17:30:00.000Z");
        assert_eq!(iso_millis(AT + 7), "2026-04-08T17:30:00.007Z");
    }

    #[test]
    fn file_events_share_one_shape_and_deleted_says_so() {
        let file_id = FileId::new_random();
        let file = EventFile {
            file_id,
            customer_id: "ten_x",
            bucket: "media",
            object_key: "a/b.mp4",
            size_bytes: 42,
            content_type: "video/mp4",
            phase: "cancelled",
            cancelled_reason: Some("superseded"),
        };
        let failed = file_event(FILE_FAILED, &file, AT);
        assert_eq!(failed["event"], "file.failed");
        assert_eq!(failed["phase"], "cancelled");
        assert_eq!(failed["key"], "a/b.mp4");
        assert_eq!(failed["object_key"], "a/b.mp4");
        assert_eq!(failed["size_bytes"], 42);
        assert_eq!(failed["cancelled_reason"], "superseded");
        assert_eq!(failed["file_id"], file_id.to_string());
        let deleted = file_event(
            FILE_DELETED,
            &EventFile {
                cancelled_reason: None,
                ..file
            },
            AT,
        );
        assert_eq!(deleted["phase"], "deleted");
        assert!(deleted.get("cancelled_reason").is_none());
        assert_eq!(deleted["timestamp"], "2026-04-08T17:30:00.000Z");
    }

    #[test]
    fn encoding_complete_has_the_contract_shape() {
        let mut variants = BTreeMap::new();
        variants.insert(
            "9:16".to_string(),
            AspectVariant {
                hls_manifest_url: "https://cdn/stream/v/master.m3u8".into(),
                poster_url: Some("https://cdn/objects/p".into()),
            },
        );
        let ev = EncodingEvent {
            step: EncodingStep::Complete,
            job_id: "job1".into(),
            file_id: "f1".into(),
            customer_id: "ten_x".into(),
            hls_manifest_url: Some("https://cdn/f1/master.m3u8".into()),
            error_message: None,
            transcription_model: Some("recommended".into()),
            vision_model: None,
            thumbnails: Some(Thumbnails {
                poster_url: "p".into(),
                sprite_url: "s".into(),
                sprite_vtt_url: "v".into(),
            }),
            aspect_variants: Some(variants),
            parent_encoding_job_id: None,
            aspect_ratio: None,
        };
        let body = ev.payload(AT);
        assert!(body.get("parent_encoding_job_id").is_none());
        assert!(body.get("aspect_ratio").is_none());
        assert_eq!(body["event"], "encoding.complete");
        assert_eq!(body["status"], "complete");
        assert_eq!(body["job_id"], "job1");
        assert_eq!(body["hls_manifest_url"], "https://cdn/f1/master.m3u8");
        assert!(body["error_message"].is_null());
        assert!(body["vision_model"].is_null());
        assert_eq!(body["thumbnails"]["sprite_vtt_url"], "v");
        assert_eq!(
            body["aspect_variants"]["9:16"]["poster_url"],
            "https://cdn/objects/p"
        );
        assert_eq!(body["timestamp"], "2026-04-08T17:30:00.000Z");
    }

    #[test]
    fn a_variant_jobs_complete_names_its_parent_and_ratio() {
        let body = EncodingEvent {
            step: EncodingStep::Complete,
            job_id: "child".into(),
            file_id: "source".into(),
            customer_id: "c".into(),
            hls_manifest_url: Some("https://cdn/stream/v/master.m3u8".into()),
            error_message: None,
            transcription_model: None,
            vision_model: None,
            thumbnails: None,
            aspect_variants: Some(BTreeMap::new()),
            parent_encoding_job_id: Some("main".into()),
            aspect_ratio: Some("9:16".into()),
        }
        .payload(AT);
        assert_eq!(body["parent_encoding_job_id"], "main");
        assert_eq!(body["aspect_ratio"], "9:16");
        assert!(body["thumbnails"].is_null());
    }

    #[test]
    fn every_encoding_step_names_its_event_and_status() {
        let steps = [
            (EncodingStep::Queued, "encoding.queued", "queued"),
            (EncodingStep::Started, "encoding.started", "encoding"),
            (EncodingStep::Sharding, "encoding.sharding", "sharding"),
            (EncodingStep::Complete, "encoding.complete", "complete"),
            (EncodingStep::Failed, "encoding.failed", "failed"),
        ];
        for (step, event, status) in steps {
            let body = EncodingEvent {
                step,
                job_id: "j".into(),
                file_id: "f".into(),
                customer_id: "c".into(),
                hls_manifest_url: None,
                error_message: (step == EncodingStep::Failed).then(|| "boom".into()),
                transcription_model: None,
                vision_model: None,
                thumbnails: None,
                aspect_variants: None,
                parent_encoding_job_id: None,
                aspect_ratio: None,
            }
            .payload(AT);
            assert_eq!(body["event"], event);
            assert_eq!(body["status"], status);
            assert!(body.get("aspect_variants").is_none());
            assert!(body["thumbnails"].is_null());
        }
    }

    #[test]
    fn progress_transcription_and_vision_shapes() {
        let p = encoding_progress("j", "f", 147, ProgressStage::Sharding, AT);
        assert_eq!(p["event"], "encoding.progress");
        assert_eq!(p["progress"], 100);
        assert_eq!(p["stage"], "sharding");
        let t = transcription_complete("j", "f", "fastest", "srt", "vtt", AT);
        assert_eq!(t["event"], "transcription.complete");
        assert_eq!(t["srt_file_id"], "srt");
        let v = vision_complete("j", "f", "standard", "side", AT);
        assert_eq!(v["event"], "vision.complete");
        assert_eq!(v["sidecar_file_id"], "side");
        assert_eq!(v["timestamp"], "2026-04-08T17:30:00.000Z");
    }
}
