//! SubRip and WebVTT from transcript segments.

use crate::whisper::Segment;

/// `1\n00:00:01,000 --> 00:00:02,500\ntext\n\n…`
pub fn to_srt(segments: &[Segment]) -> String {
    let _ = segments;
    String::new()
}

/// `WEBVTT\n\n00:00:01.000 --> 00:00:02.500\ntext\n\n…`
pub fn to_vtt(segments: &[Segment]) -> String {
    let _ = segments;
    String::from("WEBVTT\n")
}
