//! One ffmpeg process per rung: the source in, plain MPEG-TS HLS out by HTTP PUT.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use zib_proto::jobs::VideoProbe;

use crate::ladder::output_fps;
use crate::{MediaError, Rung, Tools};

/// The segment length every rung is cut at (a keyframe starts every segment).
pub const SEGMENT_SECS: u32 = 4;

/// How much of ffmpeg's stderr an error keeps: the last lines say why it stopped.
const STDERR_LINES: usize = 12;
const STDERR_LINE_CHARS: usize = 300;

/// One rung to encode.
#[derive(Clone, Copy, Debug)]
pub struct RungJob<'a> {
    pub tools: &'a Tools,
    /// A file path or URL ffmpeg reads the source from (the node's loopback server).
    pub input: &'a str,
    pub rung: &'a Rung,
    pub probe: &'a VideoProbe,
    /// Segment length in seconds ([`SEGMENT_SECS`]).
    pub segment_secs: u32,
    /// ffmpeg PUTs `{output_base}/{name}.m3u8` and `{output_base}/{name}_{seq:05}.ts`
    /// (hls muxer, `-method PUT`, plain MPEG-TS, no ffmpeg encryption).
    pub output_base: &'a str,
}

impl RungJob<'_> {
    /// ffmpeg's arguments for this rung (docs/video.md lists and explains them).
    pub fn ffmpeg_args(&self) -> Vec<String> {
        let rung = self.rung;
        let plan = &rung.plan;
        let secs = self.segment_secs.max(1);
        let fps = output_fps(self.probe.frame_rate);
        let gop = ((fps * f64::from(secs)).round() as u32).max(1);
        let base = self.output_base.trim_end_matches('/');
        let mut filters = crate::images::display_filters(
            (self.probe.width, self.probe.height),
            rung.crop,
            (plan.width, plan.height),
        );
        if self.probe.frame_rate > fps + 0.01 {
            filters.push_str(&format!(",fps={fps}"));
        }
        filters.push_str(",format=yuv420p");
        let mut a: Vec<String> = [
            "-hide_banner",
            "-nostdin",
            "-nostats",
            "-v",
            "error",
            "-progress",
            "pipe:1",
            "-i",
            self.input,
            "-map",
            "0:v:0",
        ]
        .map(String::from)
        .to_vec();
        if self.probe.has_audio() {
            a.extend(["-map", "0:a:0"].map(String::from));
        }
        let kbps = |k: u32| format!("{k}k");
        a.extend([
            "-map_metadata".into(),
            "-1".into(),
            "-sn".into(),
            "-dn".into(),
            "-vf".into(),
            filters,
            "-c:v".into(),
            "libx264".into(),
            "-preset".into(),
            "veryfast".into(),
            "-profile:v".into(),
            rung.profile.into(),
            "-level:v".into(),
            rung.level.into(),
            "-b:v".into(),
            kbps(rung.video_kbps),
            "-maxrate".into(),
            kbps(rung.maxrate_kbps),
            "-bufsize".into(),
            kbps(rung.bufsize_kbps),
            "-g".into(),
            gop.to_string(),
            "-keyint_min".into(),
            gop.to_string(),
            "-sc_threshold".into(),
            "0".into(),
            "-force_key_frames".into(),
            format!("expr:gte(t,n_forced*{secs})"),
        ]);
        if self.probe.has_audio() {
            a.extend([
                "-c:a".into(),
                "aac".into(),
                "-b:a".into(),
                kbps(rung.audio_kbps),
                "-ac".into(),
                "2".into(),
                "-ar".into(),
                "48000".into(),
            ]);
        } else {
            a.push("-an".into());
        }
        a.extend([
            "-f".into(),
            "hls".into(),
            "-hls_time".into(),
            secs.to_string(),
            "-hls_playlist_type".into(),
            "vod".into(),
            "-hls_segment_type".into(),
            "mpegts".into(),
            "-hls_flags".into(),
            "independent_segments".into(),
            "-hls_segment_filename".into(),
            format!("{base}/{}_%05d.ts", plan.name),
            "-method".into(),
            "PUT".into(),
            format!("{base}/{}.m3u8", plan.name),
        ]);
        a
    }
}

/// Runs ffmpeg for one rung. Calls `on_progress` with the fraction (0.0–1.0) of the
/// rung done, from `-progress pipe:1`'s `out_time` against the source's duration;
/// kills ffmpeg and returns [`MediaError::Cancelled`] when `cancel` fires. A non-zero
/// exit is [`MediaError::Ffmpeg`] with the last lines of stderr (bounded).
///
/// ffmpeg PUTs each segment when it is cut and the VOD playlist once, at the end.
/// `Ok` means ffmpeg exited cleanly, not that every PUT landed: ffmpeg's HLS muxer
/// carries on (and exits 0) when a segment PUT is refused, and it may exit before the
/// receiving server has finished reading its last requests. The caller must wait
/// until it holds the final playlist (`#EXT-X-ENDLIST`) and every segment that
/// playlist lists ([`crate::parse_media_playlist`]), and fail the rung otherwise.
pub async fn encode_rung(
    job: RungJob<'_>,
    mut on_progress: impl FnMut(f64) + Send,
    cancel: CancellationToken,
) -> Result<(), MediaError> {
    let mut child = Command::new(&job.tools.ffmpeg)
        .args(job.ffmpeg_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| MediaError::Spawn {
            tool: job.tools.ffmpeg.clone(),
            source,
        })?;
    let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
    let stderr_task = child
        .stderr
        .take()
        .map(|err| tokio::spawn(keep_tail(err, Arc::clone(&stderr_tail))));
    let stdout = child.stdout.take().ok_or_else(|| {
        MediaError::io(
            "ffmpeg's progress pipe",
            std::io::ErrorKind::BrokenPipe.into(),
        )
    })?;
    let duration_us = (job.probe.duration_secs * 1e6).max(1.0);
    let mut lines = BufReader::new(stdout).lines();
    let mut last = -1.0_f64;
    let mut progress_open = true;

    let status = loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                // kill() sends SIGKILL and reaps the process.
                let _ = child.kill().await;
                if let Some(t) = stderr_task { t.abort(); }
                return Err(MediaError::Cancelled);
            }
            line = lines.next_line(), if progress_open => match line {
                Ok(Some(line)) => {
                    if let Some(f) = progress_fraction(&line, duration_us) {
                        if f > last {
                            last = f;
                            on_progress(f);
                        }
                    }
                }
                // EOF or an unreadable pipe: wait for the exit instead.
                Ok(None) | Err(_) => progress_open = false,
            },
            status = child.wait() => {
                break status.map_err(|e| MediaError::io("waiting for ffmpeg", e))?;
            }
        }
    };
    if let Some(t) = stderr_task {
        let _ = t.await;
    }
    if !status.success() {
        let lines: Vec<String> = stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        return Err(MediaError::Ffmpeg {
            status: status.to_string(),
            stderr: if lines.is_empty() {
                "(no error output)".to_string()
            } else {
                lines.join(" | ")
            },
        });
    }
    if last < 1.0 {
        on_progress(1.0);
    }
    Ok(())
}

/// The fraction done from one `-progress` line: `out_time_us=…` (microseconds) or
/// `progress=end`. ffmpeg 5 also prints `out_time_ms`, which (despite its name) is
/// microseconds too; `out_time_us` is enough.
fn progress_fraction(line: &str, duration_us: f64) -> Option<f64> {
    let (key, value) = line.trim().split_once('=')?;
    match key {
        "out_time_us" => {
            let us: f64 = value.trim().parse().ok()?;
            (us >= 0.0).then(|| (us / duration_us).clamp(0.0, 1.0))
        }
        "progress" if value.trim() == "end" => Some(1.0),
        _ => None,
    }
}

/// Keeps the last [`STDERR_LINES`] lines of a stream, each cut to
/// [`STDERR_LINE_CHARS`], so a chatty ffmpeg cannot grow memory.
pub(crate) async fn keep_tail(stream: impl AsyncRead + Unpin, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line: String = line.trim().chars().take(STDERR_LINE_CHARS).collect();
        if line.is_empty() {
            continue;
        }
        if let Ok(mut t) = tail.lock() {
            if t.len() == STDERR_LINES {
                t.pop_front();
            }
            t.push_back(line);
        }
    }
}

/// The last `n` non-empty lines of `text`, joined with ` | `, each bounded.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.chars().take(STDERR_LINE_CHARS).collect())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_give_fractions() {
        assert_eq!(progress_fraction("out_time_us=2000000", 4e6), Some(0.5));
        assert_eq!(progress_fraction("out_time_us=9000000", 4e6), Some(1.0));
        assert_eq!(progress_fraction("out_time_us=N/A", 4e6), None);
        assert_eq!(progress_fraction("out_time_us=-3000", 4e6), None);
        assert_eq!(progress_fraction("progress=continue", 4e6), None);
        assert_eq!(progress_fraction("progress=end", 4e6), Some(1.0));
        assert_eq!(progress_fraction("frame=12", 4e6), None);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\n\nb\nc\n", 2), "b | c");
        assert_eq!(tail("", 3), "");
    }
}
