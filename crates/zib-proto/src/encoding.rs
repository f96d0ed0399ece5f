//! The tenant-facing encoding API (API reference: "Video Encoding", "Job Status
//! API"): the body of `POST /v1/api/encoding/request` (and `/v1/api/encoding/jobs`),
//! and the answers of the request, job status and my-jobs endpoints.
//!
//! The request is read by hand from a [`serde_json::Value`], like [`crate::pipeline`],
//! so every refusal names its field (`transcription`, `thumbnails.sprite.width`,
//! `aspect_variants`): the stage fields share the pipeline's parsers, and their
//! errors drop the `pipeline.` prefix because here they sit at the top level.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::compute::ComputeStage;
use crate::events::{AspectVariant, Thumbnails as ThumbnailUrls};
use crate::jobs::{SpritePlan, ThumbnailPlan};
use crate::pipeline::{
    AspectRatio, Pipeline, PipelineError, Thumbnails, TranscriptionTier, VisionTier,
};
use crate::FileId;
use std::collections::BTreeMap;

/// Every key a request body may have, for the "unknown field" sentence.
const FIELDS: &[&str] = &[
    "object_key",
    "bucket",
    "force",
    "webhook_url",
    "webhook_secret",
    "transcription",
    "vision",
    "thumbnails",
    "aspect_variants",
    "aspect_variants_only",
];

/// The fields shared with the upload `pipeline` declaration, parsed by its code.
const STAGE_FIELDS: &[&str] = &[
    "webhook_url",
    "webhook_secret",
    "transcription",
    "vision",
    "thumbnails",
    "aspect_variants",
];

/// A parsed `POST /v1/api/encoding/request` body.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodingRequest {
    /// A file id, or with `bucket` the object's key (resolved to its live file). Not
    /// blank.
    pub object_key: String,
    pub bucket: Option<String>,
    /// Re-encode even when a finished encode is live.
    pub force: bool,
    /// Pattern 1: this job's own webhook target (blank counts as absent).
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub transcription: Option<TranscriptionTier>,
    pub vision: Option<VisionTier>,
    pub thumbnails: Thumbnails,
    pub aspect_variants: Vec<AspectRatio>,
    /// Backfill: only these variants, on top of the file's finished encode (no main
    /// pass). Never together with `force` or `aspect_variants`.
    pub aspect_variants_only: Vec<AspectRatio>,
}

impl EncodingRequest {
    /// Reads a request body; every error names the field it is about.
    pub fn from_json(value: &Value) -> Result<Self, PipelineError> {
        let Value::Object(map) = value else {
            return Err(error("body", "must be a JSON object"));
        };
        if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(error(
                "body",
                format!("unknown field {unknown:?} (expected {})", FIELDS.join(", ")),
            ));
        }
        // Blank is empty or ASCII whitespace only, as for the webhook fields, so the
        // OpenAPI document can state it exactly.
        let blank = |s: &str| s.bytes().all(|b| b.is_ascii_whitespace());
        let object_key = match map.get("object_key") {
            Some(Value::String(s)) if !blank(s) => s.clone(),
            None | Some(Value::Null) => {
                return Err(error(
                    "object_key",
                    "is required (the file_id, or the object key with bucket)",
                ))
            }
            Some(Value::String(_)) => return Err(error("object_key", "must not be blank")),
            Some(_) => return Err(error("object_key", "must be a string")),
        };
        // A blank bucket is absent: `object_key` is then a file id.
        let bucket = match map.get("bucket") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if blank(s) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(error("bucket", "must be a string")),
        };
        let force = match map.get("force") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(error("force", "must be true or false")),
        };
        let stages: Map<String, Value> = map
            .iter()
            .filter(|(k, _)| STAGE_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let p = Pipeline::from_json(Some(&Value::Object(stages))).map_err(|e| PipelineError {
            field: e.field.strip_prefix("pipeline.").unwrap_or(e.field),
            reason: e.reason.replace("pipeline.", ""),
        })?;
        // The same parser as `aspect_variants`, its errors renamed to this field.
        let aspect_variants_only = match map.get("aspect_variants_only") {
            None | Some(Value::Null) => vec![],
            Some(v) => {
                let only = Map::from_iter([("aspect_variants".to_string(), v.clone())]);
                let ratios = Pipeline::from_json(Some(&Value::Object(only)))
                    .map_err(|e| {
                        error(
                            "aspect_variants_only",
                            e.reason
                                .replace("pipeline.aspect_variants", "aspect_variants_only"),
                        )
                    })?
                    .aspect_variants;
                if ratios.is_empty() {
                    return Err(error(
                        "aspect_variants_only",
                        "must name at least one ratio",
                    ));
                }
                ratios
            }
        };
        if !aspect_variants_only.is_empty() {
            if force {
                return Err(error(
                    "aspect_variants_only",
                    "cannot be combined with force: true (a backfill never re-runs the main encode)",
                ));
            }
            if !p.aspect_variants.is_empty() {
                return Err(error(
                    "aspect_variants_only",
                    "cannot be combined with aspect_variants on the same call",
                ));
            }
        }
        Ok(Self {
            object_key,
            bucket,
            force,
            webhook_url: p.webhook_url,
            webhook_secret: p.webhook_secret,
            transcription: p.transcription,
            vision: p.vision,
            thumbnails: p.thumbnails,
            aspect_variants: p.aspect_variants,
            aspect_variants_only,
        })
    }

    /// The declaration this request amounts to: an encode and its stages (for the
    /// capability check and the job's options).
    pub fn pipeline(&self) -> Pipeline {
        Pipeline {
            encode: true,
            transcription: self.transcription,
            vision: self.vision,
            thumbnails: self.thumbnails,
            aspect_variants: self.aspect_variants.clone(),
            webhook_url: None,
            webhook_secret: None,
            capabilities: vec![],
        }
    }
}

/// What a job was asked for besides the encode itself (`encoding_jobs.options`): the
/// declaration's transcription, vision, thumbnails and aspect variants in their
/// canonical JSON (`{}` for a plain encode), read back by the later stages and by
/// the `encoding.*` events (`transcription_model`, `vision_model`).
pub fn job_options(pipeline: &Pipeline) -> Value {
    let mut v = pipeline.to_json();
    if let Value::Object(m) = &mut v {
        for key in ["encode", "webhook_url", "webhook_secret", "capabilities"] {
            m.remove(key);
        }
    }
    v
}

/// The thumbnails a job makes, from its options (`job_options`): `None` when the
/// tenant opted out; a poster only for an aspect-variant job.
pub fn thumbnail_plan(options: &Value, variant: bool) -> Option<ThumbnailPlan> {
    let thumbnails = match options.get("thumbnails") {
        None => Thumbnails::default(),
        Some(v) => {
            let only = Map::from_iter([("thumbnails".to_string(), v.clone())]);
            Pipeline::from_json(Some(&Value::Object(only)))
                .map(|p| p.thumbnails)
                .unwrap_or_default()
        }
    };
    match thumbnails {
        Thumbnails::Off => None,
        Thumbnails::On(s) => Some(ThumbnailPlan {
            poster_at: s.poster_at.map(|at| at.to_string()),
            sprite: (!variant).then(|| SpritePlan {
                interval_secs: s.sprite_interval_secs(),
                width_px: s.sprite_width_px(),
            }),
        }),
    }
}

fn error(field: &'static str, reason: impl Into<String>) -> PipelineError {
    PipelineError {
        field,
        reason: reason.into(),
    }
}

/// How a request was answered (the reference's idempotency statuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// A new job was created.
    Queued,
    /// A job of this file is in flight (queued, encoding, sharding, or failed and
    /// retrying); it is the one answered, even with `force`.
    AlreadyQueued,
    /// A finished encode is live and `force` was not given.
    AlreadyEncoded,
}

/// The reference's sentence for `already_encoded`.
pub const ALREADY_ENCODED_MESSAGE: &str = "File is already encoded by an existing job. Pass { \"force\": true } in the request body to deliberately re-encode.";
/// The sentence for `already_queued`.
pub const ALREADY_QUEUED_MESSAGE: &str = "An encoding job for this file is already in flight; its encoding_id is returned. A forced re-encode can be requested once it finishes.";

/// The answer of `POST /v1/api/encoding/request` and `/v1/api/encoding/jobs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncodingRequested {
    pub encoding_id: String,
    pub status: RequestStatus,
    pub file_id: FileId,
    /// The stream URL (`/stream/{file_id}/master.m3u8`), stable across re-encodes.
    pub cdn_url: String,
    /// The same stream URL (what the SDK's `startEncoding` reads).
    pub hls_manifest_url: String,
    /// The answered job's lifecycle phase and progress (0–100).
    pub phase: String,
    pub progress: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The answer of a backfill (`aspect_variants_only`): the variant jobs queued on top
/// of the file's finished encode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariantsRequested {
    /// Always `queued`.
    pub status: String,
    /// Always `aspect_variants_only`.
    pub mode: String,
    pub parent_encoding_job_id: String,
    /// One per requested ratio, in request order (an existing job of a ratio is
    /// answered again rather than duplicated).
    pub child_encoding_job_ids: Vec<String>,
    pub file_id: FileId,
}

/// The `video` block of a job: what ffprobe found in the source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoInfo {
    /// Seconds.
    pub duration: f64,
    pub width: u32,
    pub height: u32,
    pub frame_rate: f64,
    pub video_codec: String,
    pub audio_codec: Option<String>,
    pub has_audio: bool,
}

/// `GET /v1/api/encoding/jobs/{encoding_id}`. Times are RFC 3339 UTC.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncodingJobStatus {
    pub encoding_id: String,
    pub file_id: FileId,
    /// The back-compat string derived from `phase` (`queued`, `encoding`,
    /// `sharding`, `complete`, `failed`, `cancelled`).
    pub status: String,
    /// The canonical lifecycle phase.
    pub phase: String,
    /// 0–100, continuous across encoding and sharding.
    pub progress: u8,
    /// Null until a rung of this job is live.
    pub hls_manifest_url: Option<String>,
    pub error_message: Option<String>,
    pub retry_count: u32,
    /// While `failed`: not retried before this time.
    pub retry_after: Option<String>,
    /// Null until the source is probed.
    pub video: Option<VideoInfo>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub replication_safe_at: Option<String>,
    /// Null until the encoder registered them; null for ever when opted out.
    pub thumbnails: Option<ThumbnailUrls>,
    /// Keyed by ratio; a ratio appears once its variant is encoded. Omitted when no
    /// variant was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_variants: Option<BTreeMap<String, AspectVariant>>,
    /// On an aspect-variant job: the main job it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_encoding_job_id: Option<String>,
    /// On an aspect-variant job: its ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
    /// The SubRip and WebVTT files of the transcription asked with this job, once
    /// stored.
    #[serde(default)]
    pub srt_file_id: Option<FileId>,
    #[serde(default)]
    pub vtt_file_id: Option<FileId>,
    /// The vision sidecar asked with this job, once stored.
    #[serde(default)]
    pub sidecar_file_id: Option<FileId>,
    /// The transcription asked with this job; null when none was.
    #[serde(default)]
    pub transcription: Option<ComputeStage>,
    /// The vision run asked with this job; null when none was.
    #[serde(default)]
    pub vision: Option<ComputeStage>,
}

/// One row of `GET /v1/api/my-jobs`: a file's latest encoding job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MyJob {
    pub file_id: FileId,
    pub encoding_id: String,
    /// The last path segment of the object key.
    pub title: String,
    pub phase: String,
    /// 0–100 within the current phase.
    pub phase_progress_pct: f64,
    pub phase_detail: Option<String>,
    pub phase_updated_at: String,
    /// The fewest verified non-originator copies any segment of the job has.
    pub replication_peer_count: u32,
    pub replication_target_count: u32,
    pub replication_safe_at: Option<String>,
    pub retry_count: u32,
    pub last_error: Option<String>,
    /// `DELETE /v1/api/my-jobs/{file_id}` is accepted (the phase is not terminal).
    pub cancellable: bool,
    /// `POST /v1/api/my-jobs/{file_id}/retry` is accepted (`failed_user_action`).
    pub retriable: bool,
    pub created_at: String,
    /// The node encoding (or that encoded) the job.
    pub node_id: Option<String>,
}

/// `GET /v1/api/my-jobs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MyJobs {
    pub jobs: Vec<MyJob>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn refused(v: Value) -> PipelineError {
        match EncodingRequest::from_json(&v) {
            Ok(r) => panic!("{v} was accepted as {r:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_plain_request_is_a_file_id_and_defaults() {
        let r = EncodingRequest::from_json(&json!({"object_key": "abc"})).unwrap();
        assert_eq!(r.object_key, "abc");
        assert_eq!(r.bucket, None);
        assert!(!r.force);
        assert_eq!(r.thumbnails, Thumbnails::default());
        assert_eq!(job_options(&r.pipeline()), json!({}));
        assert_eq!(r.pipeline().required_capabilities(), ["encode"]);
    }

    #[test]
    fn every_field_is_read() {
        let r = EncodingRequest::from_json(&json!({
            "object_key": "videos/a.mp4",
            "bucket": "video",
            "force": true,
            "webhook_url": "https://example.com/hook",
            "webhook_secret": "0123456789abcdef",
            "transcription": "accurate",
            "vision": "hq",
            "thumbnails": false,
            "aspect_variants": ["9:16"],
        }))
        .unwrap();
        assert_eq!(r.bucket.as_deref(), Some("video"));
        assert!(r.force);
        assert_eq!(r.webhook_url.as_deref(), Some("https://example.com/hook"));
        assert_eq!(r.webhook_secret.as_deref(), Some("0123456789abcdef"));
        assert_eq!(
            job_options(&r.pipeline()),
            json!({"transcription": "accurate", "vision": "hq", "thumbnails": false,
                   "aspect_variants": ["9:16"]})
        );
        assert_eq!(
            r.pipeline().required_capabilities(),
            ["encode", "transcription:accurate", "vision:hq"]
        );
    }

    #[test]
    fn refusals_name_the_top_level_field() {
        let e = refused(json!({"object_key": "a", "transcription": "ultra"}));
        assert_eq!(e.field, "transcription");
        assert!(e.reason.contains("\"ultra\""), "{e}");
        assert_eq!(
            refused(json!({"object_key": "a", "vision": "4k"})).field,
            "vision"
        );
        let e = refused(json!({"object_key": "a", "thumbnails": {"sprite": {"width": 4}}}));
        assert_eq!(e.field, "thumbnails.sprite.width");
        assert_eq!(
            refused(json!({"object_key": "a", "aspect_variants": ["4:3"]})).field,
            "aspect_variants"
        );
        let e = refused(json!({"object_key": "a", "webhook_secret": "0123456789abcdef"}));
        assert_eq!(e.field, "webhook_secret");
        assert!(!e.reason.contains("pipeline."), "{e}");
        assert_eq!(refused(json!({})).field, "object_key");
        assert_eq!(refused(json!({"object_key": " "})).field, "object_key");
        assert_eq!(refused(json!({"object_key": 7})).field, "object_key");
        assert_eq!(
            refused(json!({"object_key": "a", "force": "yes"})).field,
            "force"
        );
        assert_eq!(
            refused(json!({"object_key": "a", "bucket": 1})).field,
            "bucket"
        );
        let e = refused(json!({"object_key": "a", "encode": true}));
        assert_eq!(e.field, "body");
        assert!(e.reason.contains("\"encode\""), "{e}");
    }

    #[test]
    fn a_backfill_is_alone_on_its_call() {
        let r = EncodingRequest::from_json(
            &json!({"object_key": "a", "aspect_variants_only": ["9:16"]}),
        )
        .unwrap();
        assert_eq!(r.aspect_variants_only, vec![AspectRatio::Vertical9x16]);
        assert!(r.aspect_variants.is_empty());
        for bad in [
            json!({"object_key": "a", "aspect_variants_only": ["9:16"], "force": true}),
            json!({"object_key": "a", "aspect_variants_only": ["9:16"], "aspect_variants": ["9:16"]}),
            json!({"object_key": "a", "aspect_variants_only": ["4:3"]}),
            json!({"object_key": "a", "aspect_variants_only": []}),
            json!({"object_key": "a", "aspect_variants_only": "9:16"}),
        ] {
            let e = refused(bad.clone());
            assert_eq!(e.field, "aspect_variants_only", "{bad}: {e}");
            assert!(!e.reason.contains("pipeline."), "{e}");
        }
    }

    #[test]
    fn the_thumbnail_plan_resolves_defaults_and_opt_out() {
        let plan = thumbnail_plan(&json!({}), false).unwrap();
        assert_eq!(plan.poster_at, None);
        assert_eq!(
            plan.sprite,
            Some(SpritePlan {
                interval_secs: 5,
                width_px: 160
            })
        );
        assert_eq!(thumbnail_plan(&json!({"thumbnails": false}), false), None);
        let custom = json!({"thumbnails": {"poster": {"at": "3s"}, "sprite": {"width": 320}}});
        let plan = thumbnail_plan(&custom, false).unwrap();
        assert_eq!(plan.poster_at.as_deref(), Some("3s"));
        assert_eq!(
            plan.sprite.map(|s| (s.interval_secs, s.width_px)),
            Some((5, 320))
        );
        // A variant job makes its own poster, no sprites.
        let plan = thumbnail_plan(&custom, true).unwrap();
        assert_eq!((plan.poster_at.as_deref(), plan.sprite), (Some("3s"), None));
    }

    #[test]
    fn statuses_render_as_the_reference_spells_them() {
        assert_eq!(
            serde_json::to_value(RequestStatus::AlreadyEncoded).unwrap(),
            json!("already_encoded")
        );
        assert_eq!(
            serde_json::to_value(RequestStatus::AlreadyQueued).unwrap(),
            json!("already_queued")
        );
    }
}
