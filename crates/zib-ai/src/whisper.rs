//! Whisper (candle-transformers) loaded from a CTranslate2 model directory
//! (`model.bin`, `config.json`, `vocabulary.txt`/`tokenizer.json`).

use std::path::Path;

use crate::AiError;

/// Whisper's input rate.
pub const SAMPLE_RATE: u32 = 16_000;
/// One window: 30 s of 16 kHz samples.
pub const WINDOW_SAMPLES: usize = 30 * SAMPLE_RATE as usize;

/// A timed piece of transcript; times are seconds from the start of the audio.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub start_secs: f64,
    pub end_secs: f64,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Transcript {
    /// `en`.
    pub language: String,
    pub segments: Vec<Segment>,
}

impl Transcript {
    /// The segments' text joined by spaces.
    pub fn full_text(&self) -> String {
        let parts: Vec<&str> = self.segments.iter().map(|s| s.text.trim()).collect();
        parts.join(" ")
    }
}

/// What one window gave: its segments (absolute times) and how many of its samples
/// they account for. The caller drops `consumed` samples and fills the window up
/// again, so a word cut at the window's end is heard whole in the next one.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowResult {
    pub segments: Vec<Segment>,
    /// `1..=samples.len()`: always progresses.
    pub consumed: usize,
}

/// A loaded Whisper model; `Send + Sync`, one window at a time per call.
pub struct Transcriber {
    name: String,
}

impl Transcriber {
    /// Loads the model in `dir`; fails if a file is missing or not a Whisper model.
    pub fn load(dir: &Path) -> Result<Self, AiError> {
        Err(AiError::BadModel {
            path: dir.to_path_buf(),
            reason: "not built yet".into(),
        })
    }

    /// `whisper-tiny.en` and the like (the directory's name).
    pub fn model_name(&self) -> &str {
        &self.name
    }

    /// Transcribes one window (at most [`WINDOW_SAMPLES`] samples, 16 kHz mono in
    /// -1.0..1.0) that starts `offset_secs` into the audio.
    pub fn transcribe_window(
        &self,
        samples: &[f32],
        offset_secs: f64,
    ) -> Result<WindowResult, AiError> {
        let _ = (samples, offset_secs);
        Err(AiError::Inference("not built yet".into()))
    }

    /// Transcribes a whole buffer window by window; `progress` gets 0.0–1.0.
    pub fn transcribe(
        &self,
        samples: &[f32],
        mut progress: impl FnMut(f64),
    ) -> Result<Transcript, AiError> {
        let mut segments = Vec::new();
        let mut at = 0usize;
        while at < samples.len() {
            let end = (at + WINDOW_SAMPLES).min(samples.len());
            let window =
                self.transcribe_window(&samples[at..end], at as f64 / f64::from(SAMPLE_RATE))?;
            segments.extend(window.segments);
            at += window.consumed.max(1);
            progress(at as f64 / samples.len() as f64);
        }
        Ok(Transcript {
            language: "en".into(),
            segments,
        })
    }
}
