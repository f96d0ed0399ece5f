//! What the sidecar recommends: brand safety, clips to cut, thumbnails to use.

use zib_proto::sidecar::{ClipSuggestion, Garm, OnScreenText, Scene, ThumbnailCandidate};

use super::text::{self, Sentence};
use super::timeline::{near_cut, WATERMARK_SHARE};
use super::{r3, unit, FrameFindings};

/// A frame whose exposed-nudity confidence reaches this is flagged (and never a
/// thumbnail).
pub(super) const NUDITY_FLAG: f32 = 0.5;
/// Risk levels by the highest nudity confidence seen.
const RISK_MEDIUM: f64 = 0.3;
const RISK_HIGH: f64 = 0.6;
/// Clip lengths: at least, aimed at, at most (clipped to the video).
const CLIP_MIN_SECS: f64 = 15.0;
const CLIP_TARGET_SECS: f64 = 30.0;
const CLIP_MAX_SECS: f64 = 60.0;
/// A clip starts this long before the sentence that anchors it.
const CLIP_LEAD_SECS: f64 = 2.0;
/// One cut per this many seconds counts as the busiest editing.
const DENSE_CUT_SECS: f64 = 5.0;
const MAX_CLIPS: usize = 5;
const MAX_THUMBNAILS: usize = 5;
/// Words and marks that make a sentence open well (questions, promises, superlatives).
const HOOK_CUES: &[&str] = &[
    "how to",
    "secret",
    "trick",
    "why",
    "never",
    "always",
    "best",
    "worst",
    "mistake",
    "you won't believe",
    "here's",
    "the key",
    "watch",
    "wait",
    "amazing",
    "incredible",
    "crazy",
    "perfect",
    "easiest",
    "fastest",
    "biggest",
    "surprising",
];

/// GARM from the frames' nudity confidences.
pub(super) fn garm(frames: &[FrameFindings]) -> Garm {
    let nudity = frames
        .iter()
        .map(|f| f64::from(f.nudity))
        .fold(0.0, f64::max);
    let risk = if nudity >= RISK_HIGH {
        "high"
    } else if nudity >= RISK_MEDIUM {
        "medium"
    } else {
        "low"
    };
    Garm {
        brand_safety_score: r3(1.0 - nudity),
        nudity_score: r3(nudity),
        risk_level: risk.into(),
        flagged_secs: frames
            .iter()
            .filter(|f| f.nudity >= NUDITY_FLAG)
            .map(|f| r3(f.time_secs))
            .collect(),
    }
}

struct Candidate {
    start: f64,
    end: f64,
    score: f64,
    title: String,
    reason: String,
}

/// Clip suggestions, best first: windows opening on the transcript's most central
/// sentences and on on-screen text, scored by centrality, hook cues and cut density;
/// the busiest stretch of cuts when there is neither.
pub(super) fn clips(
    duration: f64,
    sentences: &[Sentence],
    centrality: &[f32],
    cuts: &[(f64, f64)],
    on_screen: &[OnScreenText],
) -> Vec<ClipSuggestion> {
    if duration <= 0.0 {
        return Vec::new();
    }
    let mut cands = Vec::new();
    let (lo, hi) = centrality
        .iter()
        .filter(|c| c.is_finite())
        .fold((f32::MAX, f32::MIN), |(lo, hi), c| (lo.min(*c), hi.max(*c)));
    for (i, s) in sentences.iter().enumerate() {
        let c = centrality
            .get(i)
            .copied()
            .filter(|c| c.is_finite())
            .unwrap_or(lo);
        let central = if hi - lo > 1e-6 {
            f64::from((c - lo) / (hi - lo))
        } else {
            0.5
        };
        let hook = hook_cue(&s.text);
        let (start, end) = window(duration, s.start, sentences);
        let dense = density(start, end, cuts);
        let hook_weight = if hook { 1.0 } else { 0.0 };
        let score = 0.6 * central + 0.2 * hook_weight + 0.2 * dense;
        let mut reason =
            format!("opens on one of the most central sentences (centrality {central:.2})");
        if hook {
            reason.push_str(", a hook cue");
        }
        reason.push_str(&format!(", {:.0}% of the busiest cut rate", dense * 100.0));
        cands.push(Candidate {
            start,
            end,
            score,
            title: text::shorten(&s.text, 70),
            reason,
        });
    }
    for o in on_screen
        .iter()
        .filter(|o| o.end_secs - o.start_secs < duration * WATERMARK_SHARE)
    {
        let (start, end) = window(duration, o.start_secs, sentences);
        let dense = density(start, end, cuts);
        cands.push(Candidate {
            start,
            end,
            score: 0.3 + 0.3 * o.confidence + 0.2 * dense,
            title: text::shorten(&o.text, 70),
            reason: format!(
                "on-screen text appears, {:.0}% of the busiest cut rate",
                dense * 100.0
            ),
        });
    }
    if cands.is_empty() {
        if let Some((start, end, dense)) = cuts
            .iter()
            .map(|(c, _)| {
                let (a, b) = window(duration, *c, sentences);
                (a, b, density(a, b, cuts))
            })
            .max_by(|a, b| a.2.total_cmp(&b.2))
        {
            cands.push(Candidate {
                start,
                end,
                score: 0.5 * dense,
                title: "Busiest stretch".into(),
                reason: "no speech or text: the stretch with the most cuts".into(),
            });
        }
    }
    cands.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.start.total_cmp(&b.start))
    });
    let mut picked: Vec<Candidate> = Vec::new();
    for c in cands {
        if picked.len() >= MAX_CLIPS {
            break;
        }
        let overlaps = picked.iter().any(|p| {
            let shared = c.end.min(p.end) - c.start.max(p.start);
            shared > 0.5 * (c.end - c.start).min(p.end - p.start)
        });
        if !overlaps {
            picked.push(c);
        }
    }
    picked
        .into_iter()
        .map(|c| ClipSuggestion {
            start_secs: r3(c.start),
            end_secs: r3(c.end),
            title: c.title,
            virality_score: r3(unit(c.score)),
            reason: c.reason,
        })
        .collect()
}

fn hook_cue(sentence: &str) -> bool {
    let t = text::normalise(sentence);
    sentence.contains('?')
        || HOOK_CUES.iter().any(|c| t.contains(c))
        || t.split(' ')
            .any(|w| w.chars().all(|c| c.is_ascii_digit()) && !w.is_empty())
}

/// A clip starting a little before `anchor`: [`CLIP_TARGET_SECS`] long, stretched to
/// finish the sentence then being said (up to [`CLIP_MAX_SECS`]), kept inside the video;
/// the whole video when it is shorter than [`CLIP_MIN_SECS`].
fn window(duration: f64, anchor: f64, sentences: &[Sentence]) -> (f64, f64) {
    if duration <= CLIP_MIN_SECS {
        return (0.0, duration);
    }
    let start = (anchor - CLIP_LEAD_SECS).max(0.0);
    let mut end = start + CLIP_TARGET_SECS;
    if let Some(s) = sentences.iter().find(|s| s.start < end && s.end > end) {
        if s.end - start <= CLIP_MAX_SECS {
            end = s.end;
        }
    }
    if end > duration {
        let len = (end - start).max(CLIP_MIN_SECS);
        return ((duration - len).max(0.0), duration);
    }
    (start, end)
}

/// The window's cut rate as a share of one cut per [`DENSE_CUT_SECS`] (0.0–1.0).
fn density(start: f64, end: f64, cuts: &[(f64, f64)]) -> f64 {
    let len = end - start;
    if len <= 0.0 {
        return 0.0;
    }
    let n = cuts.iter().filter(|(c, _)| *c > start && *c < end).count();
    unit(n as f64 * DENSE_CUT_SECS / len)
}

/// Thumbnail candidates, best first: sampled frames away from cuts and free of
/// nudity, by quality with a bonus for legible text (not a watermark: `watermarks`
/// holds their normalised texts), one per scene before a second from any.
pub(super) fn thumbnails(
    frames: &[FrameFindings],
    cuts: &[(f64, f64)],
    scenes: &[Scene],
    watermarks: &[String],
) -> Vec<ThumbnailCandidate> {
    let safe: Vec<&FrameFindings> = frames.iter().filter(|f| f.nudity < NUDITY_FLAG).collect();
    let away: Vec<&FrameFindings> = safe
        .iter()
        .copied()
        .filter(|f| !near_cut(f.time_secs, cuts))
        .collect();
    let pool = if away.is_empty() { safe } else { away };
    let scored = |f: &FrameFindings| {
        let has_text = f.text.iter().any(|l| {
            l.confidence >= 0.6
                && l.text.chars().filter(|c| c.is_alphanumeric()).count() >= 2
                && !watermarks.contains(&text::normalise(&l.text))
        });
        let bonus = if has_text { 1.0 } else { 0.0 };
        let score = (0.8 * f64::from(f.quality) + 0.2 * bonus) * (1.0 - f64::from(f.nudity));
        (unit(score), has_text)
    };
    let mut ranked: Vec<(&FrameFindings, f64, bool)> = pool
        .into_iter()
        .map(|f| {
            let (s, t) = scored(f);
            (f, s, t)
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(a.0.time_secs.total_cmp(&b.0.time_secs))
    });
    let scene_of = |t: f64| {
        scenes
            .iter()
            .position(|s| t >= s.start_secs && t < s.end_secs)
    };
    let mut picked: Vec<(&FrameFindings, f64, bool)> = Vec::new();
    for pass in 0..2 {
        for &(f, s, t) in &ranked {
            if picked.len() >= MAX_THUMBNAILS {
                break;
            }
            let taken = picked.iter().any(|p| p.0.time_secs == f.time_secs);
            let same_scene = picked
                .iter()
                .any(|p| scene_of(p.0.time_secs) == scene_of(f.time_secs));
            let too_close = picked
                .iter()
                .any(|p| (p.0.time_secs - f.time_secs).abs() < 2.0);
            if !taken && !too_close && (pass == 1 || !same_scene) {
                picked.push((f, s, t));
            }
        }
    }
    picked.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(a.0.time_secs.total_cmp(&b.0.time_secs))
    });
    picked
        .into_iter()
        .map(|(f, score, has_text)| ThumbnailCandidate {
            time_secs: r3(f.time_secs),
            score: r3(score),
            reason: format!(
                "frame quality {:.2} (sharpness, exposure, contrast){}",
                f.quality,
                if has_text {
                    ", legible on-screen text"
                } else {
                    ""
                }
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(t: f64, q: f32, nudity: f32) -> FrameFindings {
        FrameFindings {
            time_secs: t,
            text: Vec::new(),
            nudity,
            quality: q,
        }
    }

    #[test]
    fn garm_follows_the_worst_frame() {
        let g = garm(&[frame(1.0, 0.5, 0.1), frame(2.0, 0.5, 0.7)]);
        assert_eq!(
            (g.nudity_score, g.brand_safety_score, g.risk_level.as_str()),
            (0.7, 0.3, "high")
        );
        assert_eq!(g.flagged_secs, [2.0]);
        let g = garm(&[]);
        assert_eq!((g.brand_safety_score, g.risk_level.as_str()), (1.0, "low"));
    }

    #[test]
    fn clip_windows_stay_inside_the_video() {
        assert_eq!(window(10.0, 3.0, &[]), (0.0, 10.0));
        assert_eq!(window(100.0, 10.0, &[]), (8.0, 38.0));
        assert_eq!(window(100.0, 90.0, &[]), (70.0, 100.0));
        let s = [Sentence {
            start: 35.0,
            end: 45.0,
            text: "x".into(),
        }];
        assert_eq!(window(100.0, 10.0, &s), (8.0, 45.0));
        assert_eq!(
            density(0.0, 10.0, &[(2.0, 1.0), (7.0, 1.0), (12.0, 1.0)]),
            1.0
        );
        assert_eq!(density(0.0, 0.0, &[]), 0.0);
    }

    #[test]
    fn thumbnails_avoid_cuts_and_nudity_and_spread_over_scenes() {
        let scenes = [
            Scene {
                index: 0,
                start_secs: 0.0,
                end_secs: 10.0,
                keyframe_secs: 5.0,
                cut_score: 0.0,
            },
            Scene {
                index: 1,
                start_secs: 10.0,
                end_secs: 20.0,
                keyframe_secs: 15.0,
                cut_score: 0.9,
            },
        ];
        let frames = [
            frame(2.0, 0.9, 0.0),
            frame(5.0, 0.8, 0.0),
            frame(10.1, 1.0, 0.0),
            frame(12.0, 0.3, 0.0),
            frame(15.0, 1.0, 0.9),
        ];
        let t = thumbnails(&frames, &[(10.0, 0.9)], &scenes, &[]);
        let times: Vec<f64> = t.iter().map(|t| t.time_secs).collect();
        assert_eq!(times, [2.0, 5.0, 12.0]);
        assert!(thumbnails(&[], &[], &[], &[]).is_empty());
    }
}
