//! On-screen text with PP-OCRv4 (text detection + recognition ONNX models of
//! `rapidocr-onnxruntime` 1.4.4), run with tract-onnx, with rapidocr's settings.
//!
//! - Detection (DBNet): the frame, long side brought to at most 960 pixels and both
//!   sides to multiples of 32, BGR, `(x/255 − 0.5)/0.5`; the probability map is
//!   thresholded at 0.3 and dilated (2×2); each 8-connected region is a candidate box
//!   (axis-aligned: text in video is level), kept when its mean probability is ≥ 0.5,
//!   then grown by DB's unclip (distance = area × 1.6 / perimeter).
//! - Recognition (CRNN/SVTR): each box cropped from the full-size frame, BGR, height
//!   48, width kept in ratio (at least 320, padded), `(x/255 − 0.5)/0.5`; greedy CTC
//!   decoding over the character set stored in the model (`metadata_props`
//!   "character": index 0 is the CTC blank, a space is appended). A line whose mean
//!   character confidence is below 0.5 is dropped (rapidocr's `text_score`).
//! - The angle classifier (`cls.onnx`) is not used: it only tells upright text from
//!   text turned 180°, which video frames do not show.

use std::path::Path;

use crate::nudity::checked_size;
use crate::onnx::{to_planar, OnnxModel};
use crate::{AiError, RgbFrame};

/// Detection input: the long side at most this (rapidocr's limit for frames < 960).
const DET_MAX_SIDE: usize = 960;
const DET_THRESH: f32 = 0.3;
const BOX_THRESH: f32 = 0.5;
const UNCLIP_RATIO: f32 = 1.6;
/// A region's short side must be at least this (map pixels), and 2 more once grown.
const MIN_SIZE: usize = 3;
/// At most this many regions are looked at per frame (DB's `max_candidates`).
const MAX_CANDIDATES: usize = 1000;
/// At most this many lines are recognised per frame.
const MAX_LINES: usize = 100;

const REC_HEIGHT: usize = 48;
/// Recognition input widths: a crop is padded to the first that holds it (fewer plan
/// shapes); a longer line is squeezed into the last.
const REC_WIDTHS: [usize; 5] = [320, 480, 640, 960, 1280];
const TEXT_SCORE: f32 = 0.5;

/// One line of text found on a frame.
#[derive(Clone, Debug, PartialEq)]
pub struct TextLine {
    pub text: String,
    /// 0.0–1.0: the recogniser's mean character confidence.
    pub confidence: f32,
    /// `[x, y, w, h]` as fractions of the frame.
    pub bbox: [f32; 4],
}

pub struct Ocr {
    name: String,
    det: OnnxModel,
    rec: OnnxModel,
    /// CTC classes: index 0 the blank (never emitted), then the model's characters,
    /// then a space.
    characters: Vec<String>,
}

impl Ocr {
    /// Loads `det.onnx` and `rec.onnx` (its character set from the model's metadata)
    /// from `dir`.
    pub fn load(dir: &Path) -> Result<Self, AiError> {
        let (det, _) = OnnxModel::load(&dir.join("det.onnx"))?;
        let rec_path = dir.join("rec.onnx");
        let (rec, meta) = OnnxModel::load(&rec_path)?;
        let charset = meta.get("character").ok_or_else(|| AiError::BadModel {
            path: rec_path.clone(),
            reason: "no \"character\" entry in its metadata".into(),
        })?;
        let mut characters = vec![String::new()];
        // Python's `splitlines()`, as rapidocr reads it: no empty last entry.
        characters.extend(charset.lines().map(str::to_string));
        characters.push(" ".into());
        if characters.len() < 3 {
            return Err(AiError::BadModel {
                path: rec_path,
                reason: "an empty character set".into(),
            });
        }
        Ok(Ocr {
            name: "pp-ocrv4".into(),
            det,
            rec,
            characters,
        })
    }

    pub fn model_name(&self) -> &str {
        &self.name
    }

    /// The text lines on `frame`, top to bottom.
    pub fn read(&self, frame: &RgbFrame) -> Result<Vec<TextLine>, AiError> {
        let (w, h) = checked_size(frame)?;
        let mut lines = Vec::new();
        for rect in self.detect(frame, w, h)?.into_iter().take(MAX_LINES) {
            if let Some((text, confidence)) = self.recognise(frame, w, rect)? {
                let [x0, y0, x1, y1] = rect;
                lines.push(TextLine {
                    text,
                    confidence,
                    bbox: [
                        x0 as f32 / w as f32,
                        y0 as f32 / h as f32,
                        (x1 - x0) as f32 / w as f32,
                        (y1 - y0) as f32 / h as f32,
                    ],
                });
            }
        }
        Ok(lines)
    }

    /// Text boxes (`[x0, y0, x1, y1)` in frame pixels), top to bottom, left to right.
    fn detect(&self, frame: &RgbFrame, w: usize, h: usize) -> Result<Vec<[usize; 4]>, AiError> {
        let (mw, mh) = det_size(w, h);
        let input = to_planar(
            &frame.data,
            w,
            [0, 0, w, h],
            (mw, mh),
            (mw, mh),
            [2, 1, 0],
            0.0,
            |_, v| (v / 255.0 - 0.5) / 0.5,
        );
        let out = self.det.run(&[1, 3, mh, mw], &input)?;
        let [1, 1, oh, ow] = out.shape[..] else {
            return Err(AiError::Inference(format!(
                "text detection output of shape {:?}, not 1×1×H×W",
                out.shape
            )));
        };
        let mut boxes: Vec<[usize; 4]> = regions(&out.data, ow, oh)
            .into_iter()
            .filter_map(|r| grow(r, ow, oh))
            .map(|[x0, y0, x1, y1]| {
                // Map pixels to frame pixels.
                let sx = |x: f32| ((x * w as f32 / ow as f32).round() as usize).min(w);
                let sy = |y: f32| ((y * h as f32 / oh as f32).round() as usize).min(h);
                [sx(x0), sy(y0), sx(x1), sy(y1)]
            })
            .filter(|[x0, y0, x1, y1]| x1 - x0 > 3 && y1 - y0 > 3)
            .collect();
        boxes.sort_by_key(|b| (b[1], b[0]));
        Ok(boxes)
    }

    /// The text in `rect` and its confidence; `None` when nothing confident is there.
    fn recognise(
        &self,
        frame: &RgbFrame,
        w: usize,
        rect: [usize; 4],
    ) -> Result<Option<(String, f32)>, AiError> {
        let [x0, y0, x1, y1] = rect;
        let (cw, ch) = (x1 - x0, y1 - y0);
        let wanted = ((REC_HEIGHT as f32 * cw as f32 / ch as f32).ceil() as usize).max(1);
        let pad = REC_WIDTHS
            .iter()
            .copied()
            .find(|&pw| pw >= wanted)
            .unwrap_or(REC_WIDTHS[REC_WIDTHS.len() - 1]);
        let input = to_planar(
            &frame.data,
            w,
            [x0, y0, cw, ch],
            (wanted.min(pad), REC_HEIGHT),
            (pad, REC_HEIGHT),
            [2, 1, 0],
            0.0,
            |_, v| (v / 255.0 - 0.5) / 0.5,
        );
        let out = self.rec.run(&[1, 3, REC_HEIGHT, pad], &input)?;
        let [1, steps, classes] = out.shape[..] else {
            return Err(AiError::Inference(format!(
                "text recognition output of shape {:?}, not 1×T×C",
                out.shape
            )));
        };
        if classes != self.characters.len() {
            return Err(AiError::Inference(format!(
                "text recognition has {classes} classes for {} characters",
                self.characters.len()
            )));
        }
        let (text, confidence) = ctc_greedy(&out.data, steps, classes, &self.characters);
        let text = text.trim().to_string();
        Ok((!text.is_empty() && confidence >= TEXT_SCORE).then_some((text, confidence)))
    }
}

/// The detection input size for a `w`×`h` frame: the long side at most
/// [`DET_MAX_SIDE`], each side a multiple of 32 (at least 32).
fn det_size(w: usize, h: usize) -> (usize, usize) {
    let long = w.max(h) as f32;
    let ratio = if long > DET_MAX_SIDE as f32 {
        DET_MAX_SIDE as f32 / long
    } else {
        1.0
    };
    let side = |s: usize| (((s as f32 * ratio / 32.0).round() as usize) * 32).max(32);
    (side(w), side(h))
}

/// Candidate regions of a DB probability map (`w`×`h`): 8-connected regions of the
/// thresholded, dilated map whose bounding box (`[x0, y0, x1, y1]` inclusive) has a
/// short side of at least [`MIN_SIZE`] and a mean probability of at least
/// [`BOX_THRESH`].
fn regions(prob: &[f32], w: usize, h: usize) -> Vec<[usize; 4]> {
    if prob.len() != w * h {
        return Vec::new();
    }
    // Threshold, then a 2×2 dilation (a pixel is set when it or its left, upper or
    // upper-left neighbour is).
    let on: Vec<bool> = prob.iter().map(|&p| p > DET_THRESH).collect();
    let mut mask = on.clone();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            mask[i] = on[i]
                || (x > 0 && on[i - 1])
                || (y > 0 && on[i - w])
                || (x > 0 && y > 0 && on[i - w - 1]);
        }
    }
    let mut seen = vec![false; w * h];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    let mut found = 0;
    for start in 0..w * h {
        if !mask[start] || seen[start] {
            continue;
        }
        found += 1;
        if found > MAX_CANDIDATES {
            break;
        }
        seen[start] = true;
        stack.push(start);
        let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let j = ny * w + nx;
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        if (x1 - x0 + 1).min(y1 - y0 + 1) < MIN_SIZE {
            continue;
        }
        let mut sum = 0.0;
        for y in y0..=y1 {
            sum += prob[y * w + x0..=y * w + x1].iter().sum::<f32>();
        }
        let mean = sum / ((x1 - x0 + 1) * (y1 - y0 + 1)) as f32;
        if mean >= BOX_THRESH {
            out.push([x0, y0, x1, y1]);
        }
    }
    out
}

/// DB's unclip of a region (inclusive pixel box): grown on every side by
/// area × ratio / perimeter, clipped to the map (`[x0, y0, x1, y1)` as floats);
/// `None` when its short side is still under [`MIN_SIZE`] + 2.
fn grow(r: [usize; 4], w: usize, h: usize) -> Option<[f32; 4]> {
    let [x0, y0, x1, y1] = r.map(|v| v as f32);
    let (bw, bh) = (x1 - x0 + 1.0, y1 - y0 + 1.0);
    let d = bw * bh * UNCLIP_RATIO / (2.0 * (bw + bh));
    if (bw + 2.0 * d).min(bh + 2.0 * d) < (MIN_SIZE + 2) as f32 {
        return None;
    }
    Some([
        (x0 - d).max(0.0),
        (y0 - d).max(0.0),
        (x1 + 1.0 + d).min(w as f32),
        (y1 + 1.0 + d).min(h as f32),
    ])
}

/// Greedy CTC: the best class per step, repeats collapsed, blanks (0) dropped; the
/// confidence is the mean probability of the kept steps (0 when none).
fn ctc_greedy(probs: &[f32], steps: usize, classes: usize, chars: &[String]) -> (String, f32) {
    let mut text = String::new();
    let mut kept = Vec::new();
    let mut last = 0;
    for t in 0..steps {
        let Some(row) = probs.get(t * classes..(t + 1) * classes) else {
            break;
        };
        let (best, p) =
            row.iter()
                .copied()
                .enumerate()
                .fold((0, f32::MIN), |b, c| if c.1 > b.1 { c } else { b });
        if best != 0 && best != last {
            if let Some(c) = chars.get(best) {
                text.push_str(c);
                kept.push(p);
            }
        }
        last = best;
    }
    let confidence = if kept.is_empty() {
        0.0
    } else {
        kept.iter().sum::<f32>() / kept.len() as f32
    };
    (text, confidence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_sizes_are_multiples_of_32_within_the_limit() {
        assert_eq!(det_size(1920, 1080), (960, 544));
        assert_eq!(det_size(640, 360), (640, 352));
        assert_eq!(det_size(10, 10), (32, 32));
        assert_eq!(det_size(1080, 1920), (544, 960));
    }

    #[test]
    fn regions_are_found_scored_and_grown() {
        // A 20×10 map: a confident 8×4 block, a faint 6×4 block, a 1-pixel speck.
        let (w, h) = (20, 10);
        let mut p = vec![0.0; w * h];
        for y in 2..6 {
            for x in 1..9 {
                p[y * w + x] = 0.9;
            }
            for x in 12..18 {
                p[y * w + x] = 0.35;
            }
        }
        p[9 * w + 19] = 0.9;
        let found = regions(&p, w, h);
        // Dilation adds one pixel right and down.
        assert_eq!(found, vec![[1, 2, 9, 6]]);
        let g = grow(found[0], w, h).expect("big enough");
        // 9×5 box: d = 45 × 1.6 / 28 ≈ 2.57.
        assert!(
            (g[0] - 0.0).abs() < 1e-6 && (g[2] - 12.57).abs() < 0.01,
            "{g:?}"
        );
        assert!(grow([0, 0, 0, 0], w, h).is_none());
        assert!(regions(&p, w + 1, h).is_empty());
    }

    #[test]
    fn ctc_collapses_repeats_and_drops_blanks() {
        let chars: Vec<String> = ["", "a", "b", " "].iter().map(|s| s.to_string()).collect();
        // Steps: a a blank a b b → "aab".
        let onehot = |c: usize| {
            let mut v = vec![0.0; 4];
            v[c] = 0.8;
            v
        };
        let probs: Vec<f32> = [1, 1, 0, 1, 2, 2].iter().flat_map(|&c| onehot(c)).collect();
        let (text, conf) = ctc_greedy(&probs, 6, 4, &chars);
        assert_eq!(text, "aab");
        assert!((conf - 0.8).abs() < 1e-6);
        assert_eq!(ctc_greedy(&[], 0, 4, &chars), (String::new(), 0.0));
    }
}
