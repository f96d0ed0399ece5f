//! Whisper (candle-transformers) loaded from a CTranslate2 model directory
//! (`model.bin`, `config.json`, `vocabulary.txt`).
//!
//! The CTranslate2 weights are renamed onto candle's (Hugging Face) names in
//! [`weights`]; decoding is greedy with timestamps, with OpenAI's rules (timestamps in
//! pairs and never going back, the first one within a second, timestamps forced when
//! their total probability beats any text token) in [`decode`]. English only: tiny.en
//! takes no language token, a multilingual model is told `<|en|>`.

mod decode;
mod decoder;
mod weights;

use std::path::Path;

use candle_core::{Device, IndexOp, Tensor};
use candle_transformers::models::whisper::model::{AudioEncoder, Whisper};

use crate::audio::LogMel;
use crate::ct2::Ct2Model;
use crate::AiError;

use decode::{Decoded, Vocabulary};
use decoder::CachedDecoder;

pub use crate::audio::{SAMPLE_RATE, WINDOW_SAMPLES};

/// Most tokens decoded for one window (OpenAI's `sample_len`: half the text context).
const MAX_NEW_TOKENS: usize = 224;
/// A window whose loudest sample is below this (-60 dBFS) is silence: no inference.
const SILENCE_PEAK: f32 = 1e-3;
/// OpenAI's no-speech gate: skip a window the model thinks is silent, unless what it
/// decoded there is confident anyway.
const NO_SPEECH_THRESHOLD: f32 = 0.6;
const LOGPROB_THRESHOLD: f32 = -1.0;

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
    /// candle's encoder; each call runs its own clone (the tensors are shared).
    encoder: AudioEncoder,
    /// Our decoder, whose per-window caches live in the call.
    decoder: CachedDecoder,
    mel: LogMel,
    vocab: Vocabulary,
}

impl Transcriber {
    /// Loads the model in `dir`; fails if a file is missing or not a Whisper model.
    pub fn load(dir: &Path) -> Result<Self, AiError> {
        let ct2 = Ct2Model::load(&dir.join("model.bin"))?;
        if ct2.spec != "WhisperSpec" {
            return Err(ct2.bad(format!("a {} model, not Whisper", ct2.spec)));
        }
        let (tensors, config) = weights::from_ct2(&ct2)?;
        let vocab = Vocabulary::load(dir, config.vocab_size)?;
        let n_mels = config.num_mel_bins;
        let vb =
            candle_nn::VarBuilder::from_tensors(tensors, candle_core::DType::F32, &Device::Cpu);
        let bad = |e: candle_core::Error| AiError::BadModel {
            path: dir.join("model.bin"),
            reason: e.to_string(),
        };
        let decoder = CachedDecoder::load(vb.pp("model.decoder"), &config).map_err(bad)?;
        let encoder = Whisper::load(&vb, config).map_err(bad)?.encoder;
        let name = dir
            .file_name()
            .map(|n| format!("whisper-{}", n.to_string_lossy()))
            .unwrap_or_else(|| "whisper".into());
        Ok(Self {
            name,
            encoder,
            decoder,
            mel: LogMel::new(n_mels),
            vocab,
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
        if samples.is_empty() || samples.len() > WINDOW_SAMPLES {
            return Err(AiError::Input(format!(
                "a window of {} samples (1..={WINDOW_SAMPLES})",
                samples.len()
            )));
        }
        let whole = WindowResult {
            segments: Vec::new(),
            consumed: samples.len(),
        };
        let samples: Vec<f32> = samples
            .iter()
            .map(|s| {
                if s.is_finite() {
                    s.clamp(-1.0, 1.0)
                } else {
                    0.0
                }
            })
            .collect();
        if samples.iter().all(|s| s.abs() < SILENCE_PEAK) {
            return Ok(whole);
        }
        // Whisper puts a window's first timestamp within its first second, so speech
        // after a long silence would be timed at the silence's start: skip the silence
        // and let the caller's next window start just before the speech.
        let lead = leading_silence(&samples);
        if lead > SKIP_SILENCE_OVER {
            return Ok(WindowResult {
                segments: Vec::new(),
                consumed: lead - SILENCE_MARGIN,
            });
        }
        let decoded = self.decode(&samples)?;
        if decoded.no_speech_prob > NO_SPEECH_THRESHOLD && decoded.avg_logprob < LOGPROB_THRESHOLD {
            return Ok(whole);
        }
        let window_secs = samples.len() as f64 / f64::from(SAMPLE_RATE);
        let parsed = decode::segments(&decoded.tokens, &self.vocab);
        let full = samples.len() == WINDOW_SAMPLES;
        let mut segments = parsed.complete;
        let mut consumed = samples.len();
        match (parsed.unfinished, parsed.last_end) {
            // A full window cut mid-segment: stop at the last complete one, the rest
            // is heard again at the start of the next window.
            (Some(_), Some(end)) if full && end > 0.0 => {
                consumed = ((end * f64::from(SAMPLE_RATE)).round() as usize).max(1);
            }
            (Some((start, text)), _) => segments.push((start, window_secs, text)),
            // A full window whose last segment ended well before its end: whatever was
            // said after it (often cut by the window's edge) is heard in the next one.
            (None, Some(end)) if full && end >= 1.0 && end < window_secs - 1.0 => {
                consumed = (end * f64::from(SAMPLE_RATE)).round() as usize;
            }
            (None, _) => {}
        }
        let segments = segments
            .into_iter()
            .filter(|(_, _, text)| is_speech(text))
            .map(|(start, end, text)| {
                let start = start.clamp(0.0, window_secs);
                Segment {
                    start_secs: offset_secs + start,
                    end_secs: offset_secs + end.clamp(start, window_secs),
                    text: text.trim().to_string(),
                }
            })
            .collect();
        Ok(WindowResult {
            segments,
            consumed: consumed.min(samples.len()),
        })
    }

    /// Runs the encoder on the window and decodes greedily.
    fn decode(&self, samples: &[f32]) -> Result<Decoded, AiError> {
        let n_mels = self.mel.n_mels();
        let mel = self.mel.compute(samples);
        let mel = Tensor::from_vec(mel, (1, n_mels, crate::audio::N_FRAMES), &Device::Cpu)?;
        let audio = self.encoder.clone().forward(&mel, true)?;
        let mut state = self.decoder.start(&audio)?;
        let prompt = self.vocab.prompt();
        let mut tokens = prompt.clone();
        let mut sum_logprob = 0f32;
        let mut no_speech_prob = 0f32;
        for step in 0..MAX_NEW_TOKENS {
            // The prompt goes in whole; after it, only the token just chosen.
            let fresh = if step == 0 {
                &tokens[..]
            } else {
                &tokens[tokens.len() - 1..]
            };
            let hidden = self.decoder.forward(&mut state, fresh)?;
            if step == 0 {
                if let Some(id) = self.vocab.no_speech {
                    let at_sot = self.decoder.logits(&hidden.i((..1, ..1))?)?;
                    let probs = candle_nn::ops::softmax_last_dim(&at_sot.flatten_all()?)?;
                    no_speech_prob = probs.i(id as usize)?.to_scalar::<f32>()?;
                }
            }
            let n = fresh.len();
            let logits = self.decoder.logits(&hidden.i((..1, n - 1..))?)?;
            let mut logits: Vec<f32> = logits.flatten_all()?.to_vec1()?;
            self.vocab.filter(&mut logits, &tokens[prompt.len()..]);
            let Some((next, logprob)) = decode::greedy(&logits) else {
                break;
            };
            if next == self.vocab.eot {
                break;
            }
            sum_logprob += logprob;
            tokens.push(next);
        }
        let sampled = tokens.split_off(prompt.len());
        let avg_logprob = sum_logprob / (sampled.len() + 1) as f32;
        Ok(Decoded {
            tokens: sampled,
            avg_logprob,
            no_speech_prob,
        })
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

/// Whether a segment's text is speech: not empty, not only punctuation, not a
/// bracketed sound description such as `[BLANK_AUDIO]` or `(music)`.
fn is_speech(text: &str) -> bool {
    let t = text.trim();
    let bracketed = (t.starts_with('[') && t.ends_with(']'))
        || (t.starts_with('(') && t.ends_with(')'))
        || (t.starts_with('*') && t.ends_with('*') && t.len() > 1);
    !bracketed && t.chars().any(char::is_alphanumeric)
}

/// 20 ms frames.
const FRAME: usize = SAMPLE_RATE as usize / 50;
/// A frame whose RMS is under this (about -46 dBFS) is silence.
const FRAME_SILENCE_RMS: f32 = 0.005;
/// Leading silence longer than this (1 s) is skipped before decoding.
const SKIP_SILENCE_OVER: usize = SAMPLE_RATE as usize;
/// What is kept before the first loud frame (0.3 s).
const SILENCE_MARGIN: usize = SAMPLE_RATE as usize * 3 / 10;

/// Samples before the first 20 ms frame louder than silence.
fn leading_silence(samples: &[f32]) -> usize {
    samples
        .chunks(FRAME)
        .position(|frame| {
            let energy: f32 = frame.iter().map(|s| s * s).sum();
            (energy / frame.len() as f32).sqrt() >= FRAME_SILENCE_RMS
        })
        .map_or(samples.len(), |i| i * FRAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcriber_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Transcriber>();
    }

    #[test]
    fn non_speech_segments_are_dropped() {
        assert!(is_speech(" Hello."));
        assert!(!is_speech(" [BLANK_AUDIO]"));
        assert!(!is_speech("(music)"));
        assert!(!is_speech(" ..."));
        assert!(!is_speech("*sigh*"));
        assert!(!is_speech(""));
    }
}
