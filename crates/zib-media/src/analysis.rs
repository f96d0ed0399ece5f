//! What the vision and hearing models read, straight from ffmpeg's stdout: scene cuts,
//! raw RGB frames at an interval, 16 kHz mono PCM. Nothing is written to disk (the
//! input is the node's loopback URL of the plaintext, docs/video.md); a stream holds
//! one frame or one chunk in memory at a time, and ffmpeg waits on the pipe while the
//! caller works (back-pressure). Every run is killed when its cancellation token fires
//! or its stream is dropped.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::encode::keep_tail;
use crate::images::{display_filters, keep_all, run};
use crate::{probe, MediaError, Tools};

/// The sample rate of [`audio_pcm`] (what Whisper takes).
pub const PCM_SAMPLE_RATE: u32 = 16_000;

/// Samples per [`PcmStream`] chunk: one second.
pub const PCM_CHUNK_SAMPLES: usize = PCM_SAMPLE_RATE as usize;

/// The width scene detection runs at: cuts are whole-picture changes, and a small
/// picture makes the pass cheap.
const SCENE_WIDTH: u32 = 160;

/// The widest frame [`sample_frames`] makes (8K): bounds one frame's memory.
const MAX_FRAME_WIDTH: u32 = 7680;

/// At most this much `metadata=print` output is kept (some 60 bytes a cut).
const MAX_SCENE_OUTPUT: usize = 16 * 1024 * 1024;

/// What ffmpeg says when `-map 0:a:0?` found no audio: a silent source, not an error.
const NO_STREAM_MARKER: &str = "does not contain any stream";

/// A hard cut: the first frame of a new shot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SceneCut {
    /// Seconds from the start of the video.
    pub time_secs: f64,
    /// ffmpeg's scene score (0.0–1.0): how different the frame is from the one before.
    pub score: f64,
}

/// One decoded frame, RGB24 row-major (`width * height * 3` bytes).
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Seconds from the start of the video.
    pub time_secs: f64,
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// The frames where the picture changes by more than `threshold` (0.0–1.0; ffmpeg's
/// `scene` score, ~0.3 finds hard cuts), in time order. Runs over a 160-pixel-wide
/// copy of the video. A threshold outside 0–1 is [`MediaError::Invalid`].
pub async fn scene_cuts(
    tools: &Tools,
    input: &str,
    threshold: f64,
    cancel: CancellationToken,
) -> Result<Vec<SceneCut>, MediaError> {
    if !(0.0..=1.0).contains(&threshold) {
        return Err(MediaError::Invalid(format!(
            "a scene threshold must be between 0 and 1, not {threshold}"
        )));
    }
    // `pipe:1` escaped twice: once for the filter graph, once for the option value
    // (escaped once, ffmpeg writes a file named `pipe`).
    let filters = format!(
        "scale={SCENE_WIDTH}:-2,select=gt(scene\\,{threshold:.6}),metadata=mode=print:file=pipe\\\\:1"
    );
    let args: Vec<String> = [
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-v",
        "error",
        "-i",
        input,
        "-map",
        "0:v:0",
        "-an",
        "-sn",
        "-dn",
        "-vf",
        &filters,
        "-f",
        "null",
        "-",
    ]
    .map(String::from)
    .to_vec();
    let done = run(tools, &args, keep_all, MAX_SCENE_OUTPUT, cancel).await?;
    Ok(parse_scene_metadata(&String::from_utf8_lossy(&done.stdout)))
}

/// Reads `metadata=print` output: a `frame:N pts:P pts_time:T` line, then its
/// `lavfi.scene_score=S` line.
fn parse_scene_metadata(text: &str) -> Vec<SceneCut> {
    let mut cuts = Vec::new();
    let mut time = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("frame:") {
            time = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("pts_time:"))
                .and_then(|t| t.parse::<f64>().ok())
                .filter(|t| t.is_finite());
        } else if let Some(score) = line.strip_prefix("lavfi.scene_score=") {
            if let (Some(time_secs), Ok(score)) = (time.take(), score.parse::<f64>()) {
                cuts.push(SceneCut { time_secs, score });
            }
        }
    }
    cuts
}

/// A frame every `every_secs` seconds (the first at 0 s), scaled to `width` pixels
/// wide with the source's display aspect (height rounded to even), square pixels.
/// Frames come one at a time from [`FrameStream::next`]; ffmpeg starts on the first
/// call (after an ffprobe of `input`, which gives the height).
pub fn sample_frames(
    tools: &Tools,
    input: &str,
    every_secs: f64,
    width: u32,
    cancel: CancellationToken,
) -> FrameStream {
    FrameStream {
        tools: tools.clone(),
        input: input.to_string(),
        every_secs,
        width,
        cancel,
        state: State::NotStarted,
        size: (0, 0),
        index: 0,
    }
}

/// Frames from [`sample_frames`]. Dropping it kills ffmpeg.
pub struct FrameStream {
    tools: Tools,
    input: String,
    every_secs: f64,
    width: u32,
    cancel: CancellationToken,
    state: State,
    size: (u32, u32),
    index: u64,
}

impl FrameStream {
    /// The next frame; `None` after the last one, or after an error was returned.
    pub async fn next(&mut self) -> Option<Result<Frame, MediaError>> {
        let result = self.next_inner().await;
        match result {
            Ok(Some(frame)) => Some(Ok(frame)),
            Ok(None) => {
                self.state = State::Done;
                None
            }
            Err(e) => {
                self.state = State::Done;
                Some(Err(e))
            }
        }
    }

    async fn next_inner(&mut self) -> Result<Option<Frame>, MediaError> {
        if matches!(self.state, State::NotStarted) {
            self.start().await?;
        }
        let State::Running(pipe) = &mut self.state else {
            return Ok(None);
        };
        let (w, h) = self.size;
        let mut rgb = vec![0u8; w as usize * h as usize * 3];
        let n = pipe.fill(&mut rgb).await?;
        if n < rgb.len() {
            // The end (a cut-short last frame only if ffmpeg failed: finish says so).
            if let State::Running(pipe) = std::mem::replace(&mut self.state, State::Done) {
                pipe.finish(false).await?;
            }
            return Ok(None);
        }
        let time_secs = self.index as f64 * self.every_secs;
        self.index += 1;
        Ok(Some(Frame {
            time_secs,
            width: w,
            height: h,
            rgb,
        }))
    }

    async fn start(&mut self) -> Result<(), MediaError> {
        if !(self.every_secs.is_finite() && self.every_secs > 0.0) {
            return Err(MediaError::Invalid(format!(
                "frames must be sampled a positive number of seconds apart, not {}",
                self.every_secs
            )));
        }
        if self.width < 2 || self.width > MAX_FRAME_WIDTH {
            return Err(MediaError::Invalid(format!(
                "a sampled frame must be 2 to {MAX_FRAME_WIDTH} pixels wide, not {}",
                self.width
            )));
        }
        let probed = tokio::select! {
            _ = self.cancel.cancelled() => return Err(MediaError::Cancelled),
            p = probe(&self.tools, &self.input) => p?,
        };
        let size = frame_size(self.width, probed.width, probed.height);
        let filters = format!(
            "fps=fps=1/{:.6}:round=up,{}",
            self.every_secs,
            display_filters((probed.width, probed.height), None, size)
        );
        let args: Vec<String> = [
            "-hide_banner",
            "-nostdin",
            "-nostats",
            "-v",
            "error",
            "-i",
            &self.input,
            "-map",
            "0:v:0",
            "-an",
            "-sn",
            "-dn",
            "-vf",
            &filters,
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:1",
        ]
        .map(String::from)
        .to_vec();
        self.size = size;
        self.state = State::Running(Box::new(Pipe::spawn(
            &self.tools,
            &args,
            self.cancel.clone(),
        )?));
        Ok(())
    }
}

/// `width` × the height that keeps a `display_w`×`display_h` picture's aspect, even.
fn frame_size(width: u32, display_w: u32, display_h: u32) -> (u32, u32) {
    let (dw, dh) = (f64::from(display_w.max(1)), f64::from(display_h.max(1)));
    let h = (f64::from(width) * dh / dw / 2.0).round() * 2.0;
    (width, (h as u32).clamp(2, 2 * MAX_FRAME_WIDTH))
}

/// The audio of `input`, downmixed to mono and resampled to 16 kHz, as f32 samples in
/// chunks of one second (the last one shorter). A source without audio yields no
/// chunk and no error. ffmpeg starts on the first [`PcmStream::next`].
pub fn audio_pcm(tools: &Tools, input: &str, cancel: CancellationToken) -> PcmStream {
    PcmStream {
        tools: tools.clone(),
        input: input.to_string(),
        cancel,
        state: State::NotStarted,
        yielded: false,
    }
}

/// Chunks from [`audio_pcm`]. Dropping it kills ffmpeg.
pub struct PcmStream {
    tools: Tools,
    input: String,
    cancel: CancellationToken,
    state: State,
    yielded: bool,
}

impl PcmStream {
    /// The next chunk of samples; `None` at the end, or after an error was returned.
    pub async fn next(&mut self) -> Option<Result<Vec<f32>, MediaError>> {
        match self.next_inner().await {
            Ok(Some(chunk)) => Some(Ok(chunk)),
            Ok(None) => {
                self.state = State::Done;
                None
            }
            Err(e) => {
                self.state = State::Done;
                Some(Err(e))
            }
        }
    }

    async fn next_inner(&mut self) -> Result<Option<Vec<f32>>, MediaError> {
        if matches!(self.state, State::NotStarted) {
            let rate = PCM_SAMPLE_RATE.to_string();
            let args: Vec<String> = [
                "-hide_banner",
                "-nostdin",
                "-nostats",
                "-v",
                "error",
                "-i",
                &self.input,
                "-map",
                "0:a:0?",
                "-vn",
                "-sn",
                "-dn",
                "-ac",
                "1",
                "-ar",
                &rate,
                "-f",
                "f32le",
                "pipe:1",
            ]
            .map(String::from)
            .to_vec();
            self.state = State::Running(Box::new(Pipe::spawn(
                &self.tools,
                &args,
                self.cancel.clone(),
            )?));
        }
        let State::Running(pipe) = &mut self.state else {
            return Ok(None);
        };
        let mut bytes = vec![0u8; PCM_CHUNK_SAMPLES * 4];
        let n = pipe.fill(&mut bytes).await?;
        if n < bytes.len() {
            if let State::Running(pipe) = std::mem::replace(&mut self.state, State::Done) {
                // No output at all and "no stream": the source has no audio.
                pipe.finish(!self.yielded && n == 0).await?;
            }
        }
        if n / 4 == 0 {
            return Ok(None);
        }
        self.yielded = true;
        let samples = bytes[..n - n % 4]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(Some(samples))
    }
}

enum State {
    NotStarted,
    Running(Box<Pipe>),
    Done,
}

/// A running ffmpeg whose stdout is read in fixed-size records.
struct Pipe {
    child: Child,
    stdout: ChildStdout,
    tail: Arc<Mutex<VecDeque<String>>>,
    stderr_task: JoinHandle<()>,
    cancel: CancellationToken,
}

impl Pipe {
    fn spawn(
        tools: &Tools,
        args: &[String],
        cancel: CancellationToken,
    ) -> Result<Self, MediaError> {
        let mut child = Command::new(&tools.ffmpeg)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| MediaError::Spawn {
                tool: tools.ffmpeg.clone(),
                source,
            })?;
        let broken = || MediaError::io("ffmpeg's pipes", std::io::ErrorKind::BrokenPipe.into());
        let stdout = child.stdout.take().ok_or_else(broken)?;
        let stderr = child.stderr.take().ok_or_else(broken)?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_task = tokio::spawn(keep_tail(stderr, Arc::clone(&tail)));
        Ok(Pipe {
            child,
            stdout,
            tail,
            stderr_task,
            cancel,
        })
    }

    /// Reads until `buf` is full or stdout ends; how many bytes came. Kills ffmpeg on
    /// cancellation.
    async fn fill(&mut self, buf: &mut [u8]) -> Result<usize, MediaError> {
        let cancel = self.cancel.clone();
        let read = tokio::select! {
            _ = cancel.cancelled() => None,
            r = fill_from(&mut self.stdout, buf) => Some(r),
        };
        match read {
            Some(r) => r,
            None => {
                let _ = self.child.kill().await;
                self.stderr_task.abort();
                Err(MediaError::Cancelled)
            }
        }
    }

    /// Waits for ffmpeg to exit after its stdout ended: a non-zero exit is
    /// [`MediaError::Ffmpeg`], unless `no_stream_is_empty` and ffmpeg said it had no
    /// stream to write.
    async fn finish(mut self, no_stream_is_empty: bool) -> Result<(), MediaError> {
        let status = tokio::select! {
            _ = self.cancel.cancelled() => {
                let _ = self.child.kill().await;
                self.stderr_task.abort();
                return Err(MediaError::Cancelled);
            }
            s = self.child.wait() => s.map_err(|e| MediaError::io("waiting for ffmpeg", e))?,
        };
        let _ = (&mut self.stderr_task).await;
        if status.success() {
            return Ok(());
        }
        let lines: Vec<String> = self
            .tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        if no_stream_is_empty && lines.iter().any(|l| l.contains(NO_STREAM_MARKER)) {
            return Ok(());
        }
        Err(MediaError::Ffmpeg {
            status: status.to_string(),
            stderr: if lines.is_empty() {
                "(no error output)".to_string()
            } else {
                lines.join(" | ")
            },
        })
    }
}

/// Reads into `buf` until it is full or the stream ends.
async fn fill_from(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut [u8],
) -> Result<usize, MediaError> {
    let mut n = 0;
    while n < buf.len() {
        let got = stream
            .read(&mut buf[n..])
            .await
            .map_err(|e| MediaError::io("reading ffmpeg's stdout", e))?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scene_metadata_pairs_times_with_scores() {
        let text = "frame:0    pts:25600   pts_time:2\nlavfi.scene_score=0.400000\n\
                    frame:1    pts:64000   pts_time:5.04\nlavfi.scene_score=0.908167\n\
                    frame:2    pts:1   pts_time:nan\nlavfi.scene_score=0.5\n";
        assert_eq!(
            parse_scene_metadata(text),
            vec![
                SceneCut {
                    time_secs: 2.0,
                    score: 0.4
                },
                SceneCut {
                    time_secs: 5.04,
                    score: 0.908167
                },
            ]
        );
        assert!(parse_scene_metadata("").is_empty());
    }

    #[test]
    fn frame_heights_keep_the_aspect_and_are_even() {
        assert_eq!(frame_size(640, 1920, 1080), (640, 360));
        assert_eq!(frame_size(320, 1080, 1920), (320, 568));
        assert_eq!(frame_size(100, 1000, 1), (100, 2));
        assert_eq!(frame_size(64, 0, 0), (64, 64));
    }
}
