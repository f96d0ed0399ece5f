//! On-screen text with PP-OCRv4 (text detection + recognition ONNX models of
//! `rapidocr-onnxruntime`), run with tract-onnx.

use std::path::Path;

use crate::{AiError, RgbFrame};

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
}

impl Ocr {
    /// Loads `det.onnx` and `rec.onnx` (its character set from the model's metadata)
    /// from `dir`.
    pub fn load(dir: &Path) -> Result<Self, AiError> {
        Err(AiError::BadModel {
            path: dir.to_path_buf(),
            reason: "not built yet".into(),
        })
    }

    pub fn model_name(&self) -> &str {
        &self.name
    }

    /// The text lines on `frame`, top to bottom.
    pub fn read(&self, frame: &RgbFrame) -> Result<Vec<TextLine>, AiError> {
        let _ = frame;
        Err(AiError::Inference("not built yet".into()))
    }
}
