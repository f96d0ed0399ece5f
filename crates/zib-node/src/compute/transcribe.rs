//! A transcription: ffmpeg decodes the audio to 16 kHz mono PCM on a pipe; Whisper
//! hears it one 30 s window at a time (the window is filled up again after the
//! samples its segments account for are dropped), so memory holds one window
//! whatever the length; then SRT and WebVTT go to the server, SRT first.

use std::sync::Arc;

use zib_ai::whisper::{SAMPLE_RATE, WINDOW_SAMPLES};
use zib_ai::{Segment, Transcriber, Transcript};
use zib_proto::compute::ComputeOutputKind;
use zib_proto::pipeline::TranscriptionTier;

use super::run::{clock, ComputeError, Input, Running};

/// Runs a transcription job; `Ok` is the transcript's language.
pub async fn run(
    input: &Input<'_>,
    job: &Running,
    tier: TranscriptionTier,
) -> Result<String, ComputeError> {
    let transcriber = input.compute.models.transcriber(tier).ok_or_else(|| {
        ComputeError::Failed(format!(
            "this node has no {} transcription model loaded",
            tier.as_str()
        ))
    })?;
    let model = transcriber.model_name().to_string();
    let tools = &input.compute.tools;
    let probe = zib_media::probe(tools, &input.url)
        .await
        .map_err(ComputeError::media)?;
    let duration = probe.duration_secs;
    let total = clock(duration);
    job.set(0.0, format!("transcribing 00:00 of {total}"));
    let transcript = if probe.has_audio() {
        transcribe(input, transcriber, |done| {
            let f = if duration > 0.0 { done / duration } else { 1.0 };
            job.set(
                95.0 * f.min(1.0),
                format!("transcribing {} of {total}", clock(done.min(duration))),
            );
        })
        .await?
    } else {
        Transcript {
            language: "en".into(),
            segments: Vec::new(),
        }
    };
    job.set(95.0, "storing the subtitles".into());
    let srt = zib_ai::subtitles::to_srt(&transcript.segments);
    let vtt = zib_ai::subtitles::to_vtt(&transcript.segments);
    job.output(ComputeOutputKind::Srt, srt.into_bytes()).await?;
    job.output(ComputeOutputKind::Vtt, vtt.into_bytes()).await?;
    job.set(100.0, "subtitles stored".into());
    tracing::info!(job = %job.id, segments = transcript.segments.len(), %model, "transcription done");
    Ok(transcript.language)
}

/// The whole audio of the input, transcribed window by window; `progress` gets the
/// seconds heard so far.
pub async fn transcribe(
    input: &Input<'_>,
    transcriber: Arc<Transcriber>,
    progress: impl Fn(f64),
) -> Result<Transcript, ComputeError> {
    let mut pcm =
        zib_media::audio_pcm(&input.compute.tools, &input.url, input.cancel.child_token());
    let mut window: Vec<f32> = Vec::with_capacity(WINDOW_SAMPLES);
    let mut segments: Vec<Segment> = Vec::new();
    let mut heard: u64 = 0;
    let mut ended = false;
    loop {
        while !ended && window.len() < WINDOW_SAMPLES {
            match pcm.next().await {
                Some(chunk) => window.extend(chunk.map_err(ComputeError::media)?),
                None => ended = true,
            }
        }
        if window.is_empty() {
            break;
        }
        let n = window.len().min(WINDOW_SAMPLES);
        let offset = heard as f64 / f64::from(SAMPLE_RATE);
        let model = transcriber.clone();
        // The window moves to the blocking thread and back: no copy of it is made.
        let (back, result) = tokio::task::spawn_blocking(move || {
            let result = model.transcribe_window(&window[..n], offset);
            (window, result)
        })
        .await
        .map_err(ComputeError::task)?;
        window = back;
        let heard_window = result.map_err(ComputeError::model)?;
        let consumed = heard_window.consumed.clamp(1, n);
        segments.extend(heard_window.segments);
        window.drain(..consumed);
        heard += consumed as u64;
        progress(heard as f64 / f64::from(SAMPLE_RATE));
        if ended && window.is_empty() {
            break;
        }
    }
    Ok(Transcript {
        language: "en".into(),
        segments,
    })
}
