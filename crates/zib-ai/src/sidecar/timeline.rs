//! Where things happen in the video: scenes from cuts, on-screen text runs, chapters
//! and their YouTube lines.

use std::collections::HashMap;

use zib_proto::sidecar::{Chapter, OnScreenText, Scene};

use super::text::{self, Sentence};
use super::{r3, FrameFindings};
use crate::embed::cosine;
use crate::iab::mean_direction;

/// A frame this close to a cut may show both shots blended: never a keyframe or a
/// thumbnail when another frame will do.
pub(super) const NEAR_CUT_SECS: f64 = 0.3;
/// OCR lines below this confidence are noise more often than text.
const MIN_TEXT_CONFIDENCE: f32 = 0.5;
/// Chapters are at least this long (YouTube asks for 10 s; 20 s reads better).
pub(super) const MIN_CHAPTER_SECS: f64 = 20.0;
/// At most one chapter per this many seconds of video (and never more than 20).
const SECS_PER_CHAPTER: f64 = 30.0;
const MAX_CHAPTERS: usize = 20;
/// The transcript on either side of a sentence compared for a topic change.
const TOPIC_WINDOW_SECS: f64 = 30.0;
/// `1 - cosine` between the two windows at or above which the topic changed
/// (MiniLM: one topic's windows sit near 0.2–0.4 apart, two topics' 0.6 and up).
const TOPIC_SHIFT: f32 = 0.5;
/// A topic change this close to a cut is moved onto the cut.
const SNAP_TO_CUT_SECS: f64 = 3.0;
/// On-screen text shown longer than this share of the video is a watermark or a
/// logo: never a chapter title or a clip.
pub(super) const WATERMARK_SHARE: f64 = 0.5;

/// The shots between `cuts` (sorted, inside `(0, duration)`), covering `[0,
/// duration]`, each with its best sampled frame as keyframe (its middle when no
/// frame fell in it).
pub(super) fn scenes(duration: f64, cuts: &[(f64, f64)], frames: &[FrameFindings]) -> Vec<Scene> {
    if duration <= 0.0 {
        return Vec::new();
    }
    let mut bounds = vec![(0.0, 0.0)];
    bounds.extend_from_slice(cuts);
    bounds.push((duration, 0.0));
    bounds
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let (start, cut_score) = w[0];
            let end = w[1].0;
            let last = i + 2 == bounds.len();
            let inside = frames.iter().filter(|f| {
                f.time_secs >= start && (f.time_secs < end || (last && f.time_secs <= end))
            });
            let best =
                inside.max_by(|a, b| keyframe_rank(a, cuts).total_cmp(&keyframe_rank(b, cuts)));
            Scene {
                index: i as u32,
                start_secs: r3(start),
                end_secs: r3(end),
                keyframe_secs: r3(best.map_or((start + end) / 2.0, |f| f.time_secs)),
                cut_score: r3(cut_score),
            }
        })
        .collect()
}

fn keyframe_rank(f: &FrameFindings, cuts: &[(f64, f64)]) -> f64 {
    let near = if near_cut(f.time_secs, cuts) {
        1.0
    } else {
        0.0
    };
    f64::from(f.quality) - near
}

pub(super) fn near_cut(t: f64, cuts: &[(f64, f64)]) -> bool {
    cuts.iter().any(|(c, _)| (t - c).abs() < NEAR_CUT_SECS)
}

/// Text lines read off the frames, one entry per run of consecutive sampled frames
/// showing the same normalised text; a run ends one sampling interval after the last
/// frame showing it.
pub(super) fn on_screen_text(frames: &[FrameFindings], duration: f64) -> Vec<OnScreenText> {
    struct Run {
        text: String,
        best: f32,
        start: f64,
        last: f64,
        last_frame: usize,
        sum: f64,
        n: u32,
    }
    let interval = sampling_interval(frames);
    let close = |r: Run| OnScreenText {
        text: r.text,
        start_secs: r3(r.start),
        end_secs: r3((r.last + interval).min(duration).max(r.start)),
        confidence: r3(r.sum / f64::from(r.n.max(1))),
    };
    let mut open: HashMap<String, Run> = HashMap::new();
    let mut done = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        for line in &f.text {
            let key = text::normalise(&line.text);
            let conf = if line.confidence.is_finite() {
                line.confidence.clamp(0.0, 1.0)
            } else {
                0.0
            };
            if conf < MIN_TEXT_CONFIDENCE || key.chars().filter(|c| c.is_alphanumeric()).count() < 2
            {
                continue;
            }
            let shown = line.text.split_whitespace().collect::<Vec<_>>().join(" ");
            match open.get_mut(&key) {
                Some(r) if r.last_frame == i => {
                    // The same text twice on one frame: keep the clearer reading.
                    if conf > r.best {
                        r.best = conf;
                        r.text = shown;
                    }
                }
                Some(r) if r.last_frame + 1 == i => {
                    r.last = f.time_secs;
                    r.last_frame = i;
                    r.sum += f64::from(conf);
                    r.n += 1;
                    if conf > r.best {
                        r.best = conf;
                        r.text = shown;
                    }
                }
                _ => {
                    let run = Run {
                        text: shown,
                        best: conf,
                        start: f.time_secs,
                        last: f.time_secs,
                        last_frame: i,
                        sum: f64::from(conf),
                        n: 1,
                    };
                    if let Some(old) = open.insert(key, run) {
                        done.push(close(old));
                    }
                }
            }
        }
        let gone: Vec<String> = open
            .iter()
            .filter(|(_, r)| r.last_frame < i)
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some(r) = open.remove(&k) {
                done.push(close(r));
            }
        }
    }
    done.extend(open.into_values().map(close));
    done.sort_by(|a, b| {
        a.start_secs
            .total_cmp(&b.start_secs)
            .then_with(|| a.text.cmp(&b.text))
    });
    done
}

/// The usual gap between sampled frames (their median gap; 1 s with one frame).
fn sampling_interval(frames: &[FrameFindings]) -> f64 {
    let mut gaps: Vec<f64> = frames
        .windows(2)
        .map(|w| w[1].time_secs - w[0].time_secs)
        .filter(|g| *g > 0.0)
        .collect();
    if gaps.is_empty() {
        return 1.0;
    }
    gaps.sort_by(f64::total_cmp);
    gaps[gaps.len() / 2]
}

/// Chapters covering `[0, duration]`: boundaries where the transcript's topic shifts
/// (moved onto a nearby cut) and, failing those, at the strongest cuts; every
/// chapter at least [`MIN_CHAPTER_SECS`]. Titled by an on-screen title shown in it,
/// else its top keywords.
pub(super) fn chapters(
    duration: f64,
    cuts: &[(f64, f64)],
    sentences: &[Sentence],
    vectors: &[Vec<f32>],
    on_screen: &[OnScreenText],
) -> Vec<Chapter> {
    if duration <= 0.0 {
        return Vec::new();
    }
    let mut candidates: Vec<(f64, f32)> = topic_shifts(sentences, vectors)
        .into_iter()
        .map(|(t, shift)| {
            let snapped = cuts
                .iter()
                .map(|(c, _)| *c)
                .filter(|c| (c - t).abs() <= SNAP_TO_CUT_SECS)
                .min_by(|a, b| (a - t).abs().total_cmp(&(b - t).abs()));
            (snapped.unwrap_or(t), shift)
        })
        .collect();
    // Cuts rank below every topic shift: their strength stays under TOPIC_SHIFT.
    candidates.extend(
        cuts.iter()
            .map(|(c, s)| (*c, (*s as f32).clamp(0.0, 1.0) * (TOPIC_SHIFT * 0.9))),
    );
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.total_cmp(&b.0)));
    let most = ((duration / SECS_PER_CHAPTER).floor() as usize).clamp(1, MAX_CHAPTERS);
    let mut bounds: Vec<f64> = Vec::new();
    for (t, _) in candidates {
        if bounds.len() + 1 >= most {
            break;
        }
        let clear = t >= MIN_CHAPTER_SECS
            && duration - t >= MIN_CHAPTER_SECS
            && bounds.iter().all(|b| (b - t).abs() >= MIN_CHAPTER_SECS);
        if clear {
            bounds.push(t);
        }
    }
    bounds.push(0.0);
    bounds.push(duration);
    bounds.sort_by(f64::total_cmp);
    bounds
        .windows(2)
        .enumerate()
        .map(|(i, w)| Chapter {
            start_secs: r3(w[0]),
            end_secs: r3(w[1]),
            title: chapter_title(i, w[0], w[1], duration, sentences, on_screen),
        })
        .collect()
}

/// `(time, 1 - cosine)` at each sentence start whose surrounding windows differ by at
/// least [`TOPIC_SHIFT`].
fn topic_shifts(sentences: &[Sentence], vectors: &[Vec<f32>]) -> Vec<(f64, f32)> {
    if vectors.len() != sentences.len() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, s) in sentences.iter().enumerate().skip(1) {
        let t = s.start;
        let before: Vec<Vec<f32>> = (0..i)
            .filter(|&j| sentences[j].start >= t - TOPIC_WINDOW_SECS)
            .map(|j| vectors[j].clone())
            .collect();
        let after: Vec<Vec<f32>> = (i..sentences.len())
            .filter(|&j| sentences[j].start < t + TOPIC_WINDOW_SECS)
            .map(|j| vectors[j].clone())
            .collect();
        let (Some(a), Some(b)) = (mean_direction(&before), mean_direction(&after)) else {
            continue;
        };
        let shift = 1.0 - cosine(&a, &b);
        if shift.is_finite() && shift >= TOPIC_SHIFT {
            out.push((t, shift));
        }
    }
    out
}

fn chapter_title(
    i: usize,
    start: f64,
    end: f64,
    duration: f64,
    sentences: &[Sentence],
    on_screen: &[OnScreenText],
) -> String {
    let shown = on_screen
        .iter()
        .filter(|o| {
            let words = o.text.split_whitespace().count();
            o.start_secs >= start - 0.5
                && o.start_secs < end
                && (1..=8).contains(&words)
                && o.confidence >= 0.7
                && o.end_secs - o.start_secs < duration * WATERMARK_SHARE
        })
        .max_by(|a, b| (a.end_secs - a.start_secs).total_cmp(&(b.end_secs - b.start_secs)));
    if let Some(o) = shown {
        return text::shorten(&o.text, 60);
    }
    let said = sentences
        .iter()
        .filter(|s| s.start >= start && s.start < end)
        .map(|s| s.text.as_str());
    let words = text::keywords(said, 3);
    if words.is_empty() {
        return format!("Chapter {}", i + 1);
    }
    text::capitalise(&words.join(", "))
}

/// `MM:SS Title` lines (`H:MM:SS` from an hour), or an empty string when YouTube would
/// not show them: fewer than 3 chapters, one shorter than 10 s, or none at 0:00.
pub(super) fn youtube(chapters: &[Chapter], duration: f64) -> String {
    let ok = chapters.len() >= 3
        && chapters.first().is_some_and(|c| c.start_secs == 0.0)
        && chapters.iter().all(|c| c.end_secs - c.start_secs >= 10.0);
    if !ok {
        return String::new();
    }
    chapters
        .iter()
        .map(|c| {
            let s = c.start_secs.max(0.0).floor() as u64;
            let stamp = if duration >= 3600.0 {
                format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
            } else {
                format!("{:02}:{:02}", s / 60, s % 60)
            };
            let title = c.title.split_whitespace().collect::<Vec<_>>().join(" ");
            format!("{stamp} {title}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocr::TextLine;

    fn frame(t: f64, q: f32, text: &[&str]) -> FrameFindings {
        FrameFindings {
            time_secs: t,
            text: text
                .iter()
                .map(|s| TextLine {
                    text: s.to_string(),
                    confidence: 0.9,
                    bbox: [0.1, 0.1, 0.5, 0.1],
                })
                .collect(),
            nudity: 0.0,
            quality: q,
        }
    }

    #[test]
    fn scenes_cover_the_video_with_their_best_frames() {
        let frames = [
            frame(1.0, 0.2, &[]),
            frame(3.0, 0.9, &[]),
            frame(5.1, 0.99, &[]),
            frame(8.0, 0.5, &[]),
        ];
        let s = scenes(10.0, &[(5.0, 0.8)], &frames);
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].start_secs, s[0].end_secs, s[1].end_secs),
            (0.0, 5.0, 10.0)
        );
        assert_eq!(s[0].keyframe_secs, 3.0);
        // 5.1 is sharper but too close to the cut.
        assert_eq!(s[1].keyframe_secs, 8.0);
        assert_eq!(s[1].cut_score, 0.8);
        assert!(scenes(0.0, &[], &frames).is_empty());
        assert_eq!(scenes(4.0, &[], &[])[0].keyframe_secs, 2.0);
    }

    #[test]
    fn text_runs_merge_consecutive_frames() {
        let frames = [
            frame(0.0, 0.5, &["Fresh Pasta"]),
            frame(1.0, 0.5, &["fresh  pasta!", "x"]),
            frame(2.0, 0.5, &[]),
            frame(3.0, 0.5, &["FRESH PASTA"]),
        ];
        let t = on_screen_text(&frames, 3.5);
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!((t[0].start_secs, t[0].end_secs), (0.0, 2.0));
        assert_eq!((t[1].start_secs, t[1].end_secs), (3.0, 3.5));
        assert!(on_screen_text(&[], 10.0).is_empty());
    }

    #[test]
    fn chapters_follow_cuts_and_keep_their_length() {
        let cuts = [
            (5.0, 0.9),
            (25.0, 0.4),
            (45.0, 0.9),
            (70.0, 0.9),
            (95.0, 0.5),
        ];
        let c = chapters(100.0, &cuts, &[], &[], &[]);
        assert_eq!(c[0].start_secs, 0.0);
        assert_eq!(c.last().map(|c| c.end_secs), Some(100.0));
        for w in c.windows(2) {
            assert_eq!(w[0].end_secs, w[1].start_secs);
        }
        assert!(c
            .iter()
            .all(|c| c.end_secs - c.start_secs >= MIN_CHAPTER_SECS));
        assert_eq!(c.len(), 3, "{c:?}");
        let yt = youtube(&c, 100.0);
        assert_eq!(yt.lines().count(), 3);
        assert!(yt.starts_with("00:00 Chapter 1"));
        // A short video cannot have YouTube chapters.
        let one = chapters(15.0, &cuts, &[], &[], &[]);
        assert_eq!(one.len(), 1);
        assert_eq!(youtube(&one, 15.0), "");
    }
}
