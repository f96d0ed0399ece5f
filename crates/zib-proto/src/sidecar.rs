//! The ZibSidecar: the JSON a vision run stores (API reference, "Reading the
//! ZibSidecar"; docs/sidecar.md says which signal fills which field). Times are
//! seconds from the start of the video; scores are 0.0–1.0, higher is more.

use serde::{Deserialize, Serialize};

/// The sidecar's `schema_version`.
pub const SIDECAR_SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZibSidecar {
    pub schema_version: u32,
    pub file_id: String,
    /// RFC 3339.
    pub generated_at: String,
    /// `standard` | `hq`.
    pub tier: String,
    pub models: SidecarModels,
    pub duration_secs: f64,
    /// Shots between hard cuts, in order, covering the whole video.
    pub scenes: Vec<Scene>,
    /// Text read off the frames, merged across consecutive frames showing it.
    pub on_screen_text: Vec<OnScreenText>,
    pub transcript: SidecarTranscript,
    pub chapters: Vec<Chapter>,
    /// `00:00 Title` lines, one per chapter, the first at `00:00`.
    pub chapters_youtube_format: String,
    pub content_classification: ContentClassification,
    /// Best first.
    pub clip_suggestions: Vec<ClipSuggestion>,
    /// Best first.
    pub thumbnail_candidates: Vec<ThumbnailCandidate>,
    pub scene_understanding: SceneUnderstanding,
}

/// The model behind each kind of field (file names as installed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SidecarModels {
    pub ocr: String,
    pub nudity: String,
    pub embeddings: String,
    /// `None` when no transcription model was loaded on the node.
    pub transcription: Option<String>,
    /// Frames looked at.
    pub frames_sampled: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    pub index: u32,
    pub start_secs: f64,
    pub end_secs: f64,
    /// The shot's representative frame (its best-scoring sampled frame).
    pub keyframe_secs: f64,
    /// The cut's ffmpeg scene score that opened it (0 for the first).
    pub cut_score: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OnScreenText {
    pub text: String,
    pub start_secs: f64,
    pub end_secs: f64,
    pub confidence: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SidecarTranscript {
    /// `en`; `None` without a transcript.
    pub language: Option<String>,
    pub full_text: String,
    pub segments: Vec<TranscriptSegment>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TranscriptSegment {
    pub start_secs: f64,
    pub end_secs: f64,
    pub text: String,
    /// `hook` | `setup` | `payoff` | `cta` | `body` (docs/sidecar.md: from position
    /// and cue phrases).
    pub intent: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chapter {
    pub start_secs: f64,
    pub end_secs: f64,
    pub title: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContentClassification {
    /// Best first.
    pub iab_categories: Vec<IabCategory>,
    pub garm: Garm,
}

/// An IAB Content Taxonomy 3.0 category.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IabCategory {
    /// The taxonomy's unique id.
    pub id: String,
    pub name: String,
    /// 1 or 2.
    pub tier: u8,
    /// Cosine similarity of the video's text to the category, mapped to 0.0–1.0.
    pub score: f64,
}

/// Brand safety (GARM) from the nudity detector over the sampled frames.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Garm {
    /// 1.0: nothing unsafe seen; lower as exposed-nudity confidence rises.
    pub brand_safety_score: f64,
    /// The highest exposed-nudity confidence of any frame.
    pub nudity_score: f64,
    /// `low` | `medium` | `high`.
    pub risk_level: String,
    /// The frames at which nudity was detected above the reporting threshold.
    pub flagged_secs: Vec<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipSuggestion {
    pub start_secs: f64,
    pub end_secs: f64,
    pub title: String,
    pub virality_score: f64,
    /// Why it was picked, in a sentence.
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThumbnailCandidate {
    pub time_secs: f64,
    pub score: f64,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SceneUnderstanding {
    /// Extractive: the transcript's (and on-screen text's) most central sentences,
    /// in order, up to ~200 words.
    pub executive_summary: String,
    pub keywords: Vec<String>,
}
