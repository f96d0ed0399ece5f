//! Nudity detection with NudeNet's 320n ONNX detector (tract-onnx), for brand safety.

use std::path::Path;

use crate::{AiError, RgbFrame};

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
}

impl NudityDetector {
    /// Loads `320n.onnx` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, AiError> {
        Err(AiError::BadModel {
            path: dir.to_path_buf(),
            reason: "not built yet".into(),
        })
    }

    pub fn model_name(&self) -> &str {
        &self.name
    }

    pub fn score(&self, frame: &RgbFrame) -> Result<NudityScore, AiError> {
        let _ = frame;
        Err(AiError::Inference("not built yet".into()))
    }
}
