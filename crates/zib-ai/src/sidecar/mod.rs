//! Assembles the ZibSidecar (`zib_proto::sidecar`) from what the node measured: scene
//! cuts, per-frame findings, the transcript; see docs/sidecar.md (which signal fills
//! which field). Pure arithmetic over those signals plus MiniLM embeddings of the
//! transcript's sentences: no panic and no NaN whatever the inputs (serde_json refuses
//! NaN), and empty inputs give a valid, mostly empty sidecar.

mod picks;
mod text;
mod timeline;

use zib_proto::pipeline::VisionTier;
use zib_proto::sidecar::{
    ContentClassification, SceneUnderstanding, SidecarModels, SidecarTranscript, TranscriptSegment,
    ZibSidecar, SIDECAR_SCHEMA_VERSION,
};

use crate::embed::{cosine, Embedder};
use crate::iab::mean_direction;
use crate::ocr::TextLine;
use crate::whisper::{Segment, Transcript};
use crate::{AiError, RgbFrame};

/// IAB categories kept in the sidecar (best first, scoring above 0).
const MAX_IAB: usize = 5;
/// Keywords kept in `scene_understanding`.
const MAX_KEYWORDS: usize = 10;
/// Cuts closer than this to the previous one are the same transition.
const MIN_CUT_GAP_SECS: f64 = 0.1;

/// Everything a vision run measured, in video time.
#[derive(Clone, Debug, PartialEq)]
pub struct VisionInputs {
    pub file_id: String,
    pub tier: VisionTier,
    pub duration_secs: f64,
    /// Hard cuts: (time in seconds, ffmpeg scene score 0.0–1.0), any order.
    pub cuts: Vec<(f64, f64)>,
    /// One per sampled frame, any order.
    pub frames: Vec<FrameFindings>,
    /// `None` when no transcription model was loaded.
    pub transcript: Option<Transcript>,
    pub models: SidecarModels,
}

/// What the vision models found on one sampled frame.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameFindings {
    pub time_secs: f64,
    pub text: Vec<TextLine>,
    /// NudeNet's highest exposed-class confidence (0.0–1.0).
    pub nudity: f32,
    /// [`frame_quality`] of the frame (0.0–1.0).
    pub quality: f32,
}

/// How good a frame looks as a keyframe or thumbnail, 0.0–1.0: sharpness (variance of
/// the Laplacian of luma, `v / (v + 150)` on the 0–255 scale) weighs one half,
/// exposure (mean luma near mid-grey) and contrast (luma spread) a quarter each, and
/// a nearly flat frame (luma deviation under 16) is scaled down. An empty or
/// truncated frame is 0.
pub fn frame_quality(frame: &RgbFrame) -> f32 {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let Some(pixels) = w.checked_mul(h) else {
        return 0.0;
    };
    if w < 3 || h < 3 || frame.data.len() < pixels.saturating_mul(3) {
        return 0.0;
    }
    let luma: Vec<f32> = frame.data[..pixels * 3]
        .chunks_exact(3)
        .map(|p| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]))
        .collect();
    let n = luma.len() as f64;
    let mean = luma.iter().map(|&y| f64::from(y)).sum::<f64>() / n;
    let var = luma
        .iter()
        .map(|&y| (f64::from(y) - mean).powi(2))
        .sum::<f64>()
        / n;
    let std = var.sqrt();
    let (mut sum, mut sum_sq, mut count) = (0f64, 0f64, 0f64);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let at = |yy: usize, xx: usize| f64::from(luma[yy * w + xx]);
            let lap = 4.0 * at(y, x) - at(y - 1, x) - at(y + 1, x) - at(y, x - 1) - at(y, x + 1);
            sum += lap;
            sum_sq += lap * lap;
            count += 1.0;
        }
    }
    let lap_var = if count > 0.0 {
        (sum_sq / count - (sum / count).powi(2)).max(0.0)
    } else {
        0.0
    };
    let sharpness = lap_var / (lap_var + 150.0);
    let exposure = 1.0 - ((mean - 118.0).abs() / 118.0).min(1.0);
    let contrast = (std / 64.0).min(1.0);
    let flatness = (std / 16.0).min(1.0);
    unit((0.5 * sharpness + 0.25 * exposure + 0.25 * contrast) * flatness) as f32
}

/// The sidecar for `inputs`; `generated_at` is RFC 3339. Empty inputs (no speech, no
/// text, no cuts) still give a valid sidecar. Embeds the transcript's sentences (and
/// ranks IAB categories) with `embedder`: seconds of CPU for an hour of speech.
pub fn build(
    inputs: &VisionInputs,
    embedder: &Embedder,
    generated_at: String,
) -> Result<ZibSidecar, AiError> {
    let p = Prepared::new(inputs);
    let sentences = text::sentences(&p.segments);
    let sentence_texts: Vec<&str> = sentences.iter().map(|s| s.text.as_str()).collect();
    let vectors = if sentence_texts.is_empty() {
        Vec::new()
    } else {
        embedder.embed(&sentence_texts)?
    };
    let centrality: Vec<f32> = match mean_direction(&vectors) {
        Some(doc) => vectors.iter().map(|v| finite32(cosine(v, &doc))).collect(),
        None => vec![0.0; sentences.len()],
    };

    let scenes = timeline::scenes(p.duration, &p.cuts, &p.frames);
    let on_screen = timeline::on_screen_text(&p.frames, p.duration);
    let chapters = timeline::chapters(p.duration, &p.cuts, &sentences, &vectors, &on_screen);
    let chapters_youtube_format = timeline::youtube(&chapters, p.duration);

    let full_text = p
        .segments
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let intents = text::intents(&p.segments);
    let segments = p
        .segments
        .iter()
        .zip(intents)
        .map(|(s, intent)| TranscriptSegment {
            start_secs: r3(s.start_secs),
            end_secs: r3(s.end_secs),
            text: s.text.clone(),
            intent: intent.into(),
        })
        .collect();
    let language = inputs
        .transcript
        .as_ref()
        .map(|t| t.language.clone())
        .filter(|l| !l.is_empty());

    let mut everything = full_text.clone();
    for o in &on_screen {
        everything.push_str(". ");
        everything.push_str(&o.text);
    }
    let iab_categories = crate::iab::rank(embedder, &everything)?
        .into_iter()
        .filter(|c| c.score > 0.0)
        .take(MAX_IAB)
        .map(|mut c| {
            c.score = r3(unit(c.score));
            c
        })
        .collect();

    let executive_summary = if sentence_texts.is_empty() {
        // No speech: the on-screen text, read once each, in order.
        let mut seen = Vec::new();
        for o in &on_screen {
            let key = text::normalise(&o.text);
            if !seen.iter().any(|(k, _): &(String, String)| *k == key) {
                seen.push((key, o.text.clone()));
            }
        }
        let lines: Vec<&str> = seen.iter().map(|(_, t)| t.as_str()).collect();
        text::summary(&lines, &[])
    } else {
        text::summary(&sentence_texts, &centrality)
    };
    let watermarks: Vec<String> = on_screen
        .iter()
        .filter(|o| o.end_secs - o.start_secs >= p.duration * timeline::WATERMARK_SHARE)
        .map(|o| text::normalise(&o.text))
        .collect();
    let keywords = text::keywords(
        std::iter::once(full_text.as_str()).chain(on_screen.iter().map(|o| o.text.as_str())),
        MAX_KEYWORDS,
    );

    Ok(ZibSidecar {
        schema_version: SIDECAR_SCHEMA_VERSION,
        file_id: inputs.file_id.clone(),
        generated_at,
        tier: inputs.tier.as_str().into(),
        models: inputs.models.clone(),
        duration_secs: r3(p.duration),
        clip_suggestions: picks::clips(p.duration, &sentences, &centrality, &p.cuts, &on_screen),
        thumbnail_candidates: picks::thumbnails(&p.frames, &p.cuts, &scenes, &watermarks),
        scenes,
        on_screen_text: on_screen,
        transcript: SidecarTranscript {
            language,
            full_text,
            segments,
        },
        chapters,
        chapters_youtube_format,
        content_classification: ContentClassification {
            iab_categories,
            garm: picks::garm(&p.frames),
        },
        scene_understanding: SceneUnderstanding {
            executive_summary,
            keywords,
        },
    })
}

/// The inputs made safe to compute with: finite, inside the video, in order.
struct Prepared {
    duration: f64,
    /// Sorted, inside `(0, duration)`, at least [`MIN_CUT_GAP_SECS`] apart; scores 0–1.
    cuts: Vec<(f64, f64)>,
    /// Sorted by time, times inside `[0, duration]`, scores 0–1.
    frames: Vec<FrameFindings>,
    /// Sorted, trimmed, non-empty, times inside `[0, duration]`.
    segments: Vec<Segment>,
}

impl Prepared {
    fn new(inputs: &VisionInputs) -> Self {
        let mut segments: Vec<Segment> = inputs
            .transcript
            .iter()
            .flat_map(|t| &t.segments)
            .filter(|s| s.start_secs.is_finite() && s.end_secs.is_finite())
            .map(|s| Segment {
                start_secs: s.start_secs.max(0.0),
                end_secs: s.end_secs.max(s.start_secs).max(0.0),
                text: s.text.split_whitespace().collect::<Vec<_>>().join(" "),
            })
            .filter(|s| s.text.chars().any(char::is_alphanumeric))
            .collect();
        // A duration we cannot trust is the end of the last thing we know of.
        let duration = if inputs.duration_secs.is_finite() && inputs.duration_secs > 0.0 {
            inputs.duration_secs
        } else {
            let ends = segments.iter().map(|s| s.end_secs);
            let frames = inputs.frames.iter().map(|f| f.time_secs);
            let cuts = inputs.cuts.iter().map(|c| c.0);
            ends.chain(frames)
                .chain(cuts)
                .filter(|t| t.is_finite())
                .fold(0.0, f64::max)
        };
        for s in &mut segments {
            s.start_secs = s.start_secs.min(duration);
            s.end_secs = s.end_secs.min(duration);
        }
        segments.sort_by(|a, b| a.start_secs.total_cmp(&b.start_secs));

        let mut cuts: Vec<(f64, f64)> = inputs
            .cuts
            .iter()
            .filter(|(t, _)| {
                t.is_finite() && *t > MIN_CUT_GAP_SECS && *t < duration - MIN_CUT_GAP_SECS
            })
            .map(|&(t, s)| (t, unit(s)))
            .collect();
        cuts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut kept: Vec<(f64, f64)> = Vec::with_capacity(cuts.len());
        for c in cuts {
            match kept.last_mut() {
                Some(last) if c.0 - last.0 < MIN_CUT_GAP_SECS => last.1 = last.1.max(c.1),
                _ => kept.push(c),
            }
        }

        let mut frames: Vec<FrameFindings> = inputs
            .frames
            .iter()
            .filter(|f| f.time_secs.is_finite())
            .map(|f| FrameFindings {
                time_secs: f.time_secs.clamp(0.0, duration),
                text: f.text.clone(),
                nudity: unit(f64::from(f.nudity)) as f32,
                quality: unit(f64::from(f.quality)) as f32,
            })
            .collect();
        frames.sort_by(|a, b| a.time_secs.total_cmp(&b.time_secs));
        Self {
            duration,
            cuts: kept,
            frames,
            segments,
        }
    }
}

/// `x` clamped to 0.0–1.0; NaN is 0.
fn unit(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

fn finite32(x: f32) -> f32 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

/// Rounded to the millisecond (and 0 if not finite): times and scores read better.
fn r3(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(w: u32, h: u32, seed: u32) -> RgbFrame {
        let mut s = seed;
        let data = (0..w * h * 3)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 24) as u8
            })
            .collect();
        RgbFrame {
            width: w,
            height: h,
            data,
        }
    }

    fn box_blur(f: &RgbFrame, r: i64) -> RgbFrame {
        let (w, h) = (i64::from(f.width), i64::from(f.height));
        let mut data = vec![0u8; f.data.len()];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let (mut sum, mut n) = (0u32, 0u32);
                    for dy in -r..=r {
                        for dx in -r..=r {
                            let (yy, xx) = (y + dy, x + dx);
                            if yy >= 0 && yy < h && xx >= 0 && xx < w {
                                sum += u32::from(f.data[((yy * w + xx) * 3 + c) as usize]);
                                n += 1;
                            }
                        }
                    }
                    data[((y * w + x) * 3 + c) as usize] = (sum / n) as u8;
                }
            }
        }
        RgbFrame {
            width: f.width,
            height: f.height,
            data,
        }
    }

    #[test]
    fn sharp_frames_score_above_blurred_and_flat_ones() {
        let sharp = noise(64, 48, 7);
        let blurred = box_blur(&sharp, 3);
        let (qs, qb) = (frame_quality(&sharp), frame_quality(&blurred));
        assert!(qs > qb + 0.2, "sharp {qs} blurred {qb}");
        assert!((0.0..=1.0).contains(&qs));
        let black = RgbFrame {
            width: 64,
            height: 48,
            data: vec![0; 64 * 48 * 3],
        };
        assert_eq!(frame_quality(&black), 0.0);
        let grey = RgbFrame {
            width: 64,
            height: 48,
            data: vec![128; 64 * 48 * 3],
        };
        assert!(frame_quality(&grey) < 0.05);
        let short = RgbFrame {
            width: 64,
            height: 48,
            data: vec![0; 10],
        };
        assert_eq!(frame_quality(&short), 0.0);
        let huge = RgbFrame {
            width: u32::MAX,
            height: u32::MAX,
            data: Vec::new(),
        };
        assert_eq!(frame_quality(&huge), 0.0);
    }

    #[test]
    fn inputs_are_made_safe() {
        let inputs = VisionInputs {
            file_id: "f".into(),
            tier: VisionTier::Standard,
            duration_secs: f64::NAN,
            cuts: vec![
                (f64::INFINITY, 1.0),
                (4.0, 2.0),
                (4.05, 0.5),
                (-1.0, 0.5),
                (2.0, f64::NAN),
            ],
            frames: vec![FrameFindings {
                time_secs: 9.0,
                text: vec![],
                nudity: f32::NAN,
                quality: 7.0,
            }],
            transcript: Some(Transcript {
                language: "en".into(),
                segments: vec![
                    Segment {
                        start_secs: 5.0,
                        end_secs: 3.0,
                        text: "  late  ".into(),
                    },
                    Segment {
                        start_secs: 0.0,
                        end_secs: 2.0,
                        text: " ... ".into(),
                    },
                    Segment {
                        start_secs: f64::NAN,
                        end_secs: 2.0,
                        text: "nan".into(),
                    },
                ],
            }),
            models: SidecarModels {
                ocr: String::new(),
                nudity: String::new(),
                embeddings: String::new(),
                transcription: None,
                frames_sampled: 1,
            },
        };
        let p = Prepared::new(&inputs);
        assert_eq!(p.duration, 9.0);
        assert_eq!(p.cuts, [(2.0, 0.0), (4.0, 1.0)]);
        assert_eq!((p.frames[0].nudity, p.frames[0].quality), (0.0, 1.0));
        assert_eq!(p.segments.len(), 1);
        assert_eq!(
            (
                p.segments[0].start_secs,
                p.segments[0].end_secs,
                p.segments[0].text.as_str()
            ),
            (5.0, 5.0, "late")
        );
    }
}
