//! SubRip and WebVTT from transcript segments.
//!
//! Cues come out in order and never overlap: a segment that starts before the previous
//! cue ended starts at that end instead, and every cue lasts at least a millisecond.
//! Segments with no text are left out; negative or non-finite times count as 0.

use crate::whisper::Segment;

/// `1\n00:00:01,000 --> 00:00:02,500\ntext\n\n…`
pub fn to_srt(segments: &[Segment]) -> String {
    let mut out = String::new();
    for (i, (start, end, text)) in cues(segments).into_iter().enumerate() {
        out.push_str(&format!(
            "{}\n{} --> {}\n{}\n\n",
            i + 1,
            timestamp(start, ','),
            timestamp(end, ','),
            text
        ));
    }
    out
}

/// `WEBVTT\n\n00:00:01.000 --> 00:00:02.500\ntext\n\n…`
pub fn to_vtt(segments: &[Segment]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for (start, end, text) in cues(segments) {
        let text = text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        out.push_str(&format!(
            "{} --> {}\n{}\n\n",
            timestamp(start, '.'),
            timestamp(end, '.'),
            text
        ));
    }
    out
}

/// (start ms, end ms, text) per cue, monotonic and non-overlapping.
fn cues(segments: &[Segment]) -> Vec<(u64, u64, String)> {
    let mut out: Vec<(u64, u64, String)> = Vec::new();
    for seg in segments {
        let text = clean(&seg.text);
        if text.is_empty() {
            continue;
        }
        let prev_end = out.last().map_or(0, |c| c.1);
        let start = millis(seg.start_secs).max(prev_end);
        let end = millis(seg.end_secs).max(start + 1);
        out.push((start, end, text));
    }
    out
}

/// One cue's text: trimmed, no blank lines (a blank line would end the cue).
fn clean(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn millis(secs: f64) -> u64 {
    if secs.is_finite() && secs > 0.0 {
        (secs * 1000.0).round() as u64
    } else {
        0
    }
}

/// `HH:MM:SS<sep>mmm`.
fn timestamp(ms: u64, sep: char) -> String {
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{h:02}:{m:02}:{s:02}{sep}{ms:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start_secs: f64, end_secs: f64, text: &str) -> Segment {
        Segment {
            start_secs,
            end_secs,
            text: text.into(),
        }
    }

    #[test]
    fn srt_numbers_cues_with_comma_millis() {
        let srt = to_srt(&[
            seg(1.0, 2.5, " Hello there."),
            seg(3_725.042, 3_726.0, "Later."),
        ]);
        assert_eq!(
            srt,
            "1\n00:00:01,000 --> 00:00:02,500\nHello there.\n\n\
             2\n01:02:05,042 --> 01:02:06,000\nLater.\n\n"
        );
    }

    #[test]
    fn vtt_has_header_dot_millis_and_escapes() {
        let vtt = to_vtt(&[seg(0.0, 1.2344, "a <b> & c")]);
        assert_eq!(
            vtt,
            "WEBVTT\n\n00:00:00.000 --> 00:00:01.234\na &lt;b&gt; &amp; c\n\n"
        );
        assert_eq!(to_vtt(&[]), "WEBVTT\n\n");
        assert_eq!(to_srt(&[]), "");
    }

    #[test]
    fn cues_never_overlap_nor_go_backwards() {
        let cues = cues(&[
            seg(0.0, 2.0, "one"),
            seg(1.5, 3.0, "two"),
            seg(2.0, 2.5, "three"),
            seg(f64::NAN, -1.0, "four"),
            seg(4.0, 5.0, "  "),
            seg(6.0, 7.0, "five\n\nsix"),
        ]);
        let texts: Vec<&str> = cues.iter().map(|c| c.2.as_str()).collect();
        assert_eq!(texts, ["one", "two", "three", "four", "five\nsix"]);
        for pair in cues.windows(2) {
            assert!(pair[0].0 < pair[0].1, "{pair:?}");
            assert!(pair[0].1 <= pair[1].0, "{pair:?}");
        }
        assert_eq!(cues[1].0, 2000);
        assert_eq!(cues[2], (3000, 3001, "three".into()));
    }
}
