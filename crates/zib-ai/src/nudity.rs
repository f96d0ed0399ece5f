//! Nudity detection with NudeNet's 320n ONNX detector (tract-onnx), for brand safety.
//!
//! NudeNet 3.4 (`nudenet.py`): the frame is padded to a square with black on the right
//! or bottom, resized to 320×320, RGB scaled to 0–1; the YOLOv8n output is 1×22×2100
//! (per anchor: box centre x, y, width, height, then the 18 class scores). Each anchor
//! counts as its best class when that scores at least 0.2; overlapping detections are
//! merged by class-agnostic non-maximum suppression (IoU 0.45).

use std::path::Path;

use crate::onnx::{to_planar, OnnxModel};
use crate::{AiError, RgbFrame};

/// NudeNet's labels, in the order of the model's class scores.
pub const LABELS: [&str; 18] = [
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
];

/// The classes that make a frame unsafe for brands: exposed genitalia, female breasts,
/// buttocks, anus (not feet, armpits, belly or a male chest).
const EXPOSED: [usize; 5] = [2, 3, 4, 6, 14];

const SIZE: usize = 320;
/// An anchor is a candidate when its best class scores at least this (NudeNet's).
const CANDIDATE: f32 = 0.2;
/// A detection is reported from this score (NudeNet's NMS score threshold).
const REPORT: f32 = 0.25;
const NMS_IOU: f32 = 0.45;

/// What the detector saw on one frame.
#[derive(Clone, Debug, PartialEq)]
pub struct NudityScore {
    /// The highest confidence of any *exposed* class (0.0–1.0).
    pub exposed: f32,
    /// Every detection above 0.25: (NudeNet label, confidence).
    pub detections: Vec<(String, f32)>,
}

pub struct NudityDetector {
    name: String,
    model: OnnxModel,
}

impl NudityDetector {
    /// Loads `320n.onnx` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, AiError> {
        let (model, _) = OnnxModel::load(&dir.join("320n.onnx"))?;
        Ok(NudityDetector {
            name: "nudenet-320n".into(),
            model,
        })
    }

    pub fn model_name(&self) -> &str {
        &self.name
    }

    pub fn score(&self, frame: &RgbFrame) -> Result<NudityScore, AiError> {
        let (w, h) = checked_size(frame)?;
        let side = w.max(h) as f32;
        let out_w = ((w as f32 * SIZE as f32 / side).round() as usize).clamp(1, SIZE);
        let out_h = ((h as f32 * SIZE as f32 / side).round() as usize).clamp(1, SIZE);
        let input = to_planar(
            &frame.data,
            w,
            [0, 0, w, h],
            (out_w, out_h),
            (SIZE, SIZE),
            [0, 1, 2],
            0.0,
            |_, v| v / 255.0,
        );
        let out = self.model.run(&[1, 3, SIZE, SIZE], &input)?;
        let rows = 4 + LABELS.len();
        let [1, r, anchors] = out.shape[..] else {
            return Err(AiError::Inference(format!(
                "NudeNet output of shape {:?}, not 1×{rows}×N",
                out.shape
            )));
        };
        if r != rows {
            return Err(AiError::Inference(format!(
                "NudeNet output of shape {:?}, not 1×{rows}×N",
                out.shape
            )));
        }
        Ok(decode(&out.data, anchors))
    }
}

/// A frame's size, when its buffer holds exactly that many RGB pixels.
pub(crate) fn checked_size(frame: &RgbFrame) -> Result<(usize, usize), AiError> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    if w == 0 || h == 0 || w.checked_mul(h).and_then(|p| p.checked_mul(3)) != Some(frame.data.len())
    {
        return Err(AiError::Input(format!(
            "a {}×{} frame of {} bytes (RGB24 needs width × height × 3)",
            frame.width,
            frame.height,
            frame.data.len()
        )));
    }
    Ok((w, h))
}

struct Candidate {
    class: usize,
    score: f32,
    /// x0, y0, x1, y1 in model pixels.
    rect: [f32; 4],
}

/// The score from the model's output (`data`: 22 rows of `anchors` values).
fn decode(data: &[f32], anchors: usize) -> NudityScore {
    let at = |row: usize, i: usize| data.get(row * anchors + i).copied().unwrap_or(0.0);
    let mut candidates = Vec::new();
    for i in 0..anchors {
        let (class, score) = (0..LABELS.len())
            .map(|c| (c, at(4 + c, i)))
            .fold((0, f32::MIN), |best, c| if c.1 > best.1 { c } else { best });
        // Never NaN: the fold only takes a score greater than the last.
        if score < CANDIDATE {
            continue;
        }
        let (cx, cy, bw, bh) = (at(0, i), at(1, i), at(2, i), at(3, i));
        candidates.push(Candidate {
            class,
            score: score.min(1.0),
            rect: [cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0],
        });
    }
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates {
        if c.score < REPORT {
            break;
        }
        if kept.iter().all(|k| iou(&k.rect, &c.rect) <= NMS_IOU) {
            kept.push(c);
        }
    }
    let exposed = kept
        .iter()
        .filter(|k| EXPOSED.contains(&k.class))
        .map(|k| k.score)
        .fold(0.0, f32::max);
    NudityScore {
        exposed,
        detections: kept
            .iter()
            .map(|k| (LABELS[k.class].to_string(), k.score))
            .collect(),
    }
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output of `anchors` anchors, each (class, score, centre x).
    fn output(anchors: &[(usize, f32, f32)]) -> Vec<f32> {
        let n = anchors.len();
        let mut data = vec![0.0; 22 * n];
        for (i, &(class, score, cx)) in anchors.iter().enumerate() {
            data[i] = cx;
            data[n + i] = 100.0;
            data[2 * n + i] = 40.0;
            data[3 * n + i] = 40.0;
            data[(4 + class) * n + i] = score;
        }
        data
    }

    #[test]
    fn exposed_counts_only_sexual_classes_and_overlaps_merge() {
        // A face and feet, far apart: nothing exposed.
        let s = decode(&output(&[(1, 0.9, 50.0), (7, 0.8, 200.0)]), 2);
        assert_eq!(s.exposed, 0.0);
        assert_eq!(s.detections.len(), 2);
        // An exposed breast overlapping a weaker covered one: one detection.
        let s = decode(
            &output(&[(3, 0.7, 100.0), (16, 0.5, 102.0), (2, 0.1, 250.0)]),
            3,
        );
        assert_eq!(s.exposed, 0.7);
        assert_eq!(
            s.detections,
            vec![("FEMALE_BREAST_EXPOSED".to_string(), 0.7)]
        );
        // NaN scores are no candidates.
        let s = decode(&output(&[(4, f32::NAN, 10.0)]), 1);
        assert_eq!(s.exposed, 0.0);
        assert!(s.detections.is_empty());
    }
}
