//! ffmpeg producing JPEGs on its stdout (`-f image2pipe`), read into memory: posters
//! and sprite sheets never touch the disk.

use std::collections::VecDeque;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::{MediaError, Tools};

/// How much of ffmpeg's stderr an error keeps.
const STDERR_LINES: usize = 12;
const STDERR_LINE_CHARS: usize = 300;

/// What one image run produced.
pub(crate) struct ImageRun {
    /// ffmpeg's stdout: the JPEGs, back to back.
    pub stdout: Vec<u8>,
    /// How many stderr lines the classifier counted (e.g. `showinfo`'s frame lines).
    pub counted: u64,
}

/// What to do with one line of ffmpeg's stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// Keep it for the error message (the default).
    Keep,
    /// Count it, and do not keep it.
    Count,
    /// Neither (chatter of a filter the caller reads).
    Skip,
}

/// The video filters that bring a frame to its display size, or to the centred `crop`
/// of it (display pixels of a `display_w`×`display_h` source), then to `out_w`×`out_h`
/// with square pixels.
///
/// ffmpeg rotates a frame upright before the filters run, so `iw`/`ih` are in display
/// orientation; the crop is a fraction of them, which also holds for anamorphic
/// sources (stored width ≠ display width).
pub(crate) fn display_filters(
    display: (u32, u32),
    crop: Option<crate::Crop>,
    out: (u32, u32),
) -> String {
    let (dw, dh) = (display.0.max(1), display.1.max(1));
    let mut f = String::new();
    if let Some(c) = crop {
        f.push_str(&format!(
            "crop=w=iw*{}/{dw}:h=ih*{}/{dh},",
            c.width.min(dw),
            c.height.min(dh)
        ));
    }
    f.push_str(&format!(
        "scale={}:{}:flags=bicubic,setsar=1",
        out.0.max(1),
        out.1.max(1)
    ));
    f
}

/// Runs ffmpeg with `args` (which must write to `pipe:1`), collecting stdout (at most
/// `max_bytes`) and counting the stderr lines `classify` says to count (only lines it
/// says to keep end up in an error). Kills ffmpeg and returns [`MediaError::Cancelled`] when `cancel`
/// fires; a non-zero exit is [`MediaError::Ffmpeg`] with the last stderr lines.
pub(crate) async fn run(
    tools: &Tools,
    args: &[String],
    classify: fn(&str) -> Line,
    max_bytes: usize,
    cancel: CancellationToken,
) -> Result<ImageRun, MediaError> {
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
    let out_task = tokio::spawn(read_bounded(stdout, max_bytes));
    let err_task = tokio::spawn(read_stderr(stderr, classify));

    let status = tokio::select! {
        _ = cancel.cancelled() => {
            let _ = child.kill().await;
            out_task.abort();
            err_task.abort();
            return Err(MediaError::Cancelled);
        }
        status = child.wait() => status.map_err(|e| MediaError::io("waiting for ffmpeg", e))?,
    };
    let joined = |e: tokio::task::JoinError| MediaError::io("reading ffmpeg's output", e.into());
    let (tail, counted) = err_task.await.map_err(joined)?;
    let stdout = out_task.await.map_err(joined)?;
    if !status.success() {
        return Err(MediaError::Ffmpeg {
            status: status.to_string(),
            stderr: if tail.is_empty() {
                "(no error output)".to_string()
            } else {
                Vec::from(tail).join(" | ")
            },
        });
    }
    let stdout = stdout?.ok_or_else(|| MediaError::Ffmpeg {
        status: status.to_string(),
        stderr: format!("its images came to more than {max_bytes} bytes"),
    })?;
    Ok(ImageRun { stdout, counted })
}

/// Reads `stream` to its end; `Ok(None)` once it passes `max` bytes (the rest is
/// drained, so ffmpeg is not blocked on a full pipe).
async fn read_bounded(
    mut stream: impl AsyncRead + Unpin,
    max: usize,
) -> Result<Option<Vec<u8>>, MediaError> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut over = false;
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| MediaError::io("reading ffmpeg's stdout", e))?;
        if n == 0 {
            return Ok((!over).then_some(out));
        }
        if !over && out.len() + n > max {
            over = true;
            out = Vec::new();
        }
        if !over {
            out.extend_from_slice(&buf[..n]);
        }
    }
}

/// The last lines to keep (bounded), and how many lines were counted.
async fn read_stderr(
    stream: impl AsyncRead + Unpin,
    classify: fn(&str) -> Line,
) -> (VecDeque<String>, u64) {
    let mut lines = BufReader::new(stream).lines();
    let mut tail = VecDeque::new();
    let mut counted = 0;
    while let Ok(Some(line)) = lines.next_line().await {
        match classify(&line) {
            Line::Keep => {}
            Line::Count => {
                counted += 1;
                continue;
            }
            Line::Skip => continue,
        }
        let line: String = line.trim().chars().take(STDERR_LINE_CHARS).collect();
        if line.is_empty() {
            continue;
        }
        if tail.len() == STDERR_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    (tail, counted)
}

/// Splits back-to-back JPEGs (what `image2pipe` + `mjpeg` writes) by walking their
/// markers: SOI, segments with lengths, entropy-coded data up to EOI (in which a 0xFF
/// byte is always followed by 0x00 or a restart marker). `Err` names where the bytes
/// stop being JPEG.
pub(crate) fn split_jpegs(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut images = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let end = jpeg_end(data, start)?;
        images.push(data[start..end].to_vec());
        start = end;
    }
    Ok(images)
}

/// The offset just past the EOI of the JPEG starting at `start`.
fn jpeg_end(data: &[u8], start: usize) -> Result<usize, String> {
    let truncated = || format!("a JPEG starting at byte {start} is cut short");
    if data.get(start..start + 2) != Some(&[0xFF, 0xD8]) {
        return Err(format!("no JPEG start marker at byte {start}"));
    }
    let mut i = start + 2;
    loop {
        let (&ff, &marker) = data.get(i).zip(data.get(i + 1)).ok_or_else(truncated)?;
        if ff != 0xFF {
            return Err(format!("no JPEG marker at byte {i}"));
        }
        match marker {
            // Fill byte before a marker.
            0xFF => i += 1,
            0xD9 => return Ok(i + 2),
            0x01 | 0xD0..=0xD7 => i += 2,
            _ => {
                let len = data
                    .get(i + 2..i + 4)
                    .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                    .ok_or_else(truncated)?;
                if len < 2 {
                    return Err(format!("a JPEG segment at byte {i} has length {len}"));
                }
                i += 2 + len;
                if marker == 0xDA {
                    // Entropy-coded data: runs to the next marker that is neither a
                    // stuffed 0xFF00 nor a restart marker.
                    loop {
                        let (&a, &b) = data.get(i).zip(data.get(i + 1)).ok_or_else(truncated)?;
                        if a == 0xFF && b != 0x00 && !(0xD0..=0xD7).contains(&b) {
                            break;
                        }
                        i += 1;
                    }
                }
            }
        }
    }
}

/// Keeps every line: runs that count nothing.
pub(crate) fn keep_all(_: &str) -> Line {
    Line::Keep
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal well-formed marker sequence: SOI, an APP0 segment, SOS with entropy
    /// bytes holding a stuffed 0xFF00 and a restart marker, EOI.
    fn fake_jpeg(payload: u8) -> Vec<u8> {
        vec![
            0xFF, 0xD8, // SOI
            0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB, // APP0, length 4
            0xFF, 0xDA, 0x00, 0x03, 0x01, // SOS, length 3
            payload, 0xFF, 0x00, 0x12, 0xFF, 0xD0, 0x34, // entropy data
            0xFF, 0xD9, // EOI
        ]
    }

    #[test]
    fn back_to_back_jpegs_split_at_their_end_markers() {
        let (a, b) = (fake_jpeg(1), fake_jpeg(2));
        let joined = [a.clone(), b.clone()].concat();
        assert_eq!(split_jpegs(&joined), Ok(vec![a.clone(), b]));
        assert_eq!(split_jpegs(&[]), Ok(vec![]));
        let cut = &a[..a.len() - 1];
        assert!(split_jpegs(cut).is_err());
        assert!(split_jpegs(&[0x00, 0x01]).is_err());
    }
}
