//! Whisper from the installed CTranslate2 models on speech espeak-ng says: what it
//! hears (WER against what was said), when (segment times against where each sentence
//! was placed), across 30 s windows, and the subtitles made from it.
//!
//! Needs the models of `scripts/install-models.sh fastest` (and `recommended` for the
//! base test), espeak-ng and ffmpeg; a missing one fails the test, never skips it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use zib_ai::subtitles::{to_srt, to_vtt};
use zib_ai::wer::word_error_rate;
use zib_ai::whisper::SAMPLE_RATE;
use zib_ai::{AiError, ModelsDir, Segment, Transcriber};
use zib_proto::pipeline::TranscriptionTier;

const RATE: f64 = SAMPLE_RATE as f64;

const FIRST: &str = "The quick brown fox jumps over the lazy dog.";
const SECOND: &str = "Please remember to bring your umbrella tomorrow, because it will rain.";
const THIRD: &str = "We will meet at the train station after lunch.";
const FOURTH: &str = "The children are playing football in the park.";

fn model_dir(tier: TranscriptionTier, install: &str) -> PathBuf {
    let dir = ModelsDir::from_env().whisper(tier);
    assert!(
        dir.join("model.bin").exists(),
        "no Whisper model at {}: run scripts/install-models.sh {install}",
        dir.display()
    );
    dir
}

/// tiny.en, loaded once and shared by the tests (it is `Send + Sync`).
fn tiny() -> Arc<Transcriber> {
    static MODEL: OnceLock<Arc<Transcriber>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = model_dir(TranscriptionTier::Fastest, "fastest");
            let started = Instant::now();
            let model = Transcriber::load(&dir).unwrap_or_else(|e| panic!("{e}"));
            eprintln!("loaded {} in {:?}", model.model_name(), started.elapsed());
            Arc::new(model)
        })
        .clone()
}

/// base, loaded once and shared by the tests.
fn base() -> Arc<Transcriber> {
    static MODEL: OnceLock<Arc<Transcriber>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = model_dir(TranscriptionTier::Recommended, "recommended");
            let started = Instant::now();
            let model = Transcriber::load(&dir).unwrap_or_else(|e| panic!("{e}"));
            eprintln!("loaded {} in {:?}", model.model_name(), started.elapsed());
            Arc::new(model)
        })
        .clone()
}

/// `text` spoken by espeak-ng, as 16 kHz mono f32 samples (ffmpeg converts in memory).
fn speak(text: &str) -> Vec<f32> {
    let wav = Command::new("espeak-ng")
        .args(["-s", "150", "--stdout", text])
        .output()
        .unwrap_or_else(|e| panic!("espeak-ng (apt-get install espeak-ng): {e}"));
    assert!(wav.status.success(), "espeak-ng failed");
    let mut ffmpeg = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            "pipe:0",
            "-f",
            "f32le",
            "-ac",
            "1",
            "-ar",
            "16000",
            "pipe:1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("ffmpeg: {e}"));
    let mut stdin = ffmpeg.stdin.take().expect("ffmpeg stdin");
    let feeder = std::thread::spawn(move || stdin.write_all(&wav.stdout));
    let out = ffmpeg.wait_with_output().expect("ffmpeg output");
    feeder.join().expect("feeder").expect("write to ffmpeg");
    assert!(out.status.success(), "ffmpeg failed");
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Audio with each sentence placed at its start time (seconds), silence elsewhere,
/// `total` seconds long; returns the samples and each sentence's (start, end).
fn script(lines: &[(f64, &str)], total: f64) -> (Vec<f32>, Vec<(f64, f64)>) {
    let mut audio = vec![0f32; (total * RATE) as usize];
    let mut spans = Vec::new();
    for (at, text) in lines {
        let speech = speak(text);
        let from = (at * RATE) as usize;
        assert!(from + speech.len() <= audio.len(), "{text:?} does not fit");
        audio[from..from + speech.len()].copy_from_slice(&speech);
        spans.push((*at, at + speech.len() as f64 / RATE));
    }
    (audio, spans)
}

fn check_segments(segments: &[Segment], duration: f64) {
    assert!(!segments.is_empty(), "no segments");
    for s in segments {
        assert!(s.start_secs >= 0.0 && s.start_secs <= s.end_secs, "{s:?}");
        assert!(s.end_secs <= duration + 1e-6, "{s:?} past {duration}");
        assert!(!s.text.trim().is_empty(), "{s:?}");
    }
    for pair in segments.windows(2) {
        assert!(
            pair[1].start_secs >= pair[0].start_secs - 0.05,
            "segments go back: {pair:?}"
        );
    }
}

/// (start ms, end ms) of every cue in an SRT or VTT document.
fn cue_times(doc: &str, decimal: char) -> Vec<(u64, u64)> {
    let ms = |t: &str| -> u64 {
        let (hms, milli) = t.trim().split_once(decimal).expect("millis");
        let parts: Vec<u64> = hms.split(':').map(|p| p.parse().expect("number")).collect();
        assert_eq!(parts.len(), 3, "{t}");
        ((parts[0] * 60 + parts[1]) * 60 + parts[2]) * 1000 + milli.parse::<u64>().expect("ms")
    };
    doc.lines()
        .filter_map(|l| l.split_once(" --> "))
        .map(|(a, b)| (ms(a), ms(b)))
        .collect()
}

fn check_subtitles(segments: &[Segment], duration: f64) {
    let srt = to_srt(segments);
    let vtt = to_vtt(segments);
    assert!(vtt.starts_with("WEBVTT\n\n"), "{vtt}");
    let srt_cues = cue_times(&srt, ',');
    let vtt_cues = cue_times(&vtt, '.');
    assert!(!srt_cues.is_empty(), "{srt}");
    assert_eq!(srt_cues, vtt_cues);
    let mut prev_end = 0;
    for (start, end) in srt_cues {
        assert!(start >= prev_end && end > start, "{srt}");
        assert!(end as f64 <= duration * 1000.0 + 1.0, "{srt}");
        prev_end = end;
    }
    // SRT numbers its cues from 1.
    assert!(srt.starts_with("1\n"), "{srt}");
}

/// The segments whose text holds most of `sentence`'s words.
fn first_segment_of(segments: &[Segment], sentence: &str) -> Option<Segment> {
    segments
        .iter()
        .find(|s| word_error_rate(sentence, &s.text) < 0.8)
        .cloned()
}

#[test]
fn two_sentences_with_a_pause_are_heard_and_timed() {
    // base (`recommended`): tiny.en drops the second sentence after the pause on
    // espeak's voice (its first segment runs on to 10 s; docs/ai.md, "Tiers").
    let model = base();
    let (audio, spans) = script(&[(0.5, FIRST), (6.0, SECOND)], 11.5);
    let duration = audio.len() as f64 / RATE;
    let started = Instant::now();
    let mut last_progress = 0.0;
    let transcript = model
        .transcribe(&audio, |p| {
            assert!(p >= last_progress && p <= 1.0 + 1e-9, "progress {p}");
            last_progress = p;
        })
        .expect("transcribes");
    let elapsed = started.elapsed().as_secs_f64();
    let text = transcript.full_text();
    let wer = word_error_rate(&format!("{FIRST} {SECOND}"), &text);
    eprintln!(
        "base, {duration:.1} s: WER {wer:.3}, {elapsed:.2} s (RTF {:.3})\n{:#?}",
        elapsed / duration,
        transcript.segments
    );
    assert!(wer < 0.35, "WER {wer}: {text:?}");
    assert_eq!(last_progress, 1.0);
    assert_eq!(transcript.language, "en");
    check_segments(&transcript.segments, duration);
    check_subtitles(&transcript.segments, duration);
    // The second sentence is placed after a pause: its segment starts near there,
    // not in the first sentence.
    let second = first_segment_of(&transcript.segments, SECOND)
        .unwrap_or_else(|| panic!("no segment of {SECOND:?}"));
    let distance = (second.start_secs - spans[1].0).abs();
    eprintln!(
        "second sentence at {:.2} s, heard at {:.2} s",
        spans[1].0, second.start_secs
    );
    assert!(distance < 1.5, "second sentence starts {distance:.2} s off");
    let first = first_segment_of(&transcript.segments, FIRST)
        .unwrap_or_else(|| panic!("no segment of {FIRST:?}"));
    assert!(
        first.end_secs <= spans[1].0 + 0.5,
        "{first:?} runs into the pause"
    );
}

#[test]
fn audio_past_30_seconds_is_heard_across_windows() {
    let model = base();
    let lines = [(1.0, FIRST), (12.0, SECOND), (27.0, THIRD), (38.0, FOURTH)];
    let (audio, spans) = script(&lines, 45.0);
    let duration = audio.len() as f64 / RATE;
    let started = Instant::now();
    let transcript = model.transcribe(&audio, |_| {}).expect("transcribes");
    let elapsed = started.elapsed().as_secs_f64();
    let reference: Vec<&str> = lines.iter().map(|(_, t)| *t).collect();
    let text = transcript.full_text();
    let wer = word_error_rate(&reference.join(" "), &text);
    eprintln!(
        "base, {duration:.1} s: WER {wer:.3}, {elapsed:.2} s (RTF {:.3})\n{:#?}",
        elapsed / duration,
        transcript.segments
    );
    assert!(wer < 0.35, "WER {wer}: {text:?}");
    check_segments(&transcript.segments, duration);
    check_subtitles(&transcript.segments, duration);
    assert!(
        transcript.segments.iter().any(|s| s.start_secs > 30.0),
        "nothing heard past 30 s"
    );
    // The sentence of the second window is placed where it was said.
    let fourth = first_segment_of(&transcript.segments, FOURTH)
        .unwrap_or_else(|| panic!("no segment of {FOURTH:?}"));
    let distance = (fourth.start_secs - spans[3].0).abs();
    assert!(
        distance < 1.5,
        "fourth sentence starts {distance:.2} s off: {fourth:?}"
    );
}

#[test]
fn silence_gives_no_segments() {
    let model = tiny();
    let silence = vec![0f32; 10 * SAMPLE_RATE as usize];
    let transcript = model.transcribe(&silence, |_| {}).expect("transcribes");
    assert!(transcript.segments.is_empty(), "{:?}", transcript.segments);
}

#[test]
fn bad_windows_are_input_errors() {
    let model = tiny();
    assert!(matches!(
        model.transcribe_window(&[], 0.0),
        Err(AiError::Input(_))
    ));
    let too_long = vec![0f32; zib_ai::whisper::WINDOW_SAMPLES + 1];
    assert!(matches!(
        model.transcribe_window(&too_long, 0.0),
        Err(AiError::Input(_))
    ));
}

#[test]
fn a_truncated_model_is_a_clear_error() {
    let source = model_dir(TranscriptionTier::Fastest, "fastest");
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["config.json", "vocabulary.txt"] {
        std::fs::copy(source.join(name), dir.path().join(name)).expect("copy");
    }
    let model = std::fs::read(source.join("model.bin")).expect("model.bin");
    std::fs::write(dir.path().join("model.bin"), &model[..1 << 20]).expect("write");
    match Transcriber::load(dir.path()) {
        Err(AiError::BadModel { path, reason }) => {
            assert!(path.ends_with("model.bin"), "{}", path.display());
            assert!(reason.contains("truncated"), "{reason}");
        }
        Err(other) => panic!("not a BadModel error: {other}"),
        Ok(_) => panic!("a truncated model loaded"),
    }
    // No model.bin at all: an I/O error naming the file.
    std::fs::remove_file(dir.path().join("model.bin")).expect("rm");
    assert!(matches!(
        Transcriber::load(dir.path()),
        Err(AiError::Io { .. })
    ));
}

#[test]
fn tiny_hears_one_sentence() {
    let model = tiny();
    let (audio, _) = script(&[(0.5, SECOND)], 6.5);
    let duration = audio.len() as f64 / RATE;
    let started = Instant::now();
    let transcript = model.transcribe(&audio, |_| {}).expect("transcribes");
    let elapsed = started.elapsed().as_secs_f64();
    let text = transcript.full_text();
    let wer = word_error_rate(SECOND, &text);
    eprintln!(
        "tiny.en, {duration:.1} s: WER {wer:.3}, {elapsed:.2} s (RTF {:.3}): {text:?}",
        elapsed / duration
    );
    assert!(wer < 0.35, "WER {wer}: {text:?}");
    check_segments(&transcript.segments, duration);
}
