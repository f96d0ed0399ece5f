//! The poster frame: where it is taken, and one JPEG of it.

use tokio_util::sync::CancellationToken;
use zib_proto::jobs::{VideoProbe, MAX_ARTIFACT_BYTES};

use crate::images::{display_filters, keep_all, run, split_jpegs};
use crate::{Crop, MediaError, Tools};

/// The default poster: 10 % into the video, so a fade-in or a cold open is not the
/// cover, but between 1 s and 10 s (API reference, "Thumbnails").
const DEFAULT_FRACTION: f64 = 0.10;
const DEFAULT_MIN_SECS: f64 = 1.0;
const DEFAULT_MAX_SECS: f64 = 10.0;

/// JPEG quality of a poster (`-q:v`, 2 best … 31): a cover image is looked at.
const POSTER_QUALITY: &str = "2";

/// Seconds into the video for `poster.at` (`"10%"`, `"5s"`; `None`: 10 % of the
/// duration clamped to 1–10 s), never past the last frame (at most the duration minus
/// one frame, and ≥ 0). A malformed value is [`MediaError::Invalid`] naming it.
pub fn poster_time(
    duration_secs: f64,
    frame_rate: f64,
    at: Option<&str>,
) -> Result<f64, MediaError> {
    let duration = if duration_secs.is_finite() {
        duration_secs.max(0.0)
    } else {
        0.0
    };
    let wanted = match at.map(str::trim) {
        None => (duration * DEFAULT_FRACTION).clamp(DEFAULT_MIN_SECS, DEFAULT_MAX_SECS),
        Some(text) => {
            let invalid = || {
                MediaError::Invalid(format!(
                    "poster.at {text:?} is neither a percentage (\"10%\") nor seconds (\"5s\")"
                ))
            };
            let (number, percent) = match (text.strip_suffix('%'), text.strip_suffix('s')) {
                (Some(n), _) => (n, true),
                (None, Some(n)) => (n, false),
                (None, None) => return Err(invalid()),
            };
            let value: f64 = number.trim().parse().map_err(|_| invalid())?;
            if !value.is_finite() || value < 0.0 || (percent && value > 100.0) {
                return Err(invalid());
            }
            if percent {
                duration * value / 100.0
            } else {
                value
            }
        }
    };
    let frame = if frame_rate.is_finite() && frame_rate > 0.0 {
        1.0 / frame_rate
    } else {
        1.0 / 30.0
    };
    let last_frame = (duration - frame).max(0.0);
    Ok(wanted.clamp(0.0, last_frame))
}

/// One JPEG of the frame shown at `at_secs`, at the source's display size with square
/// pixels, or at the size of the centred `crop` (display pixels) when given.
///
/// ffmpeg's accurate seek (`-ss` before the input: decode from the keyframe before,
/// drop what comes before `-ss`) yields the first frame at or *after* the time; the
/// time is first taken back to the start of the frame shown then. Kills
/// ffmpeg when `cancel` fires ([`MediaError::Cancelled`]). No frame at that time (the
/// video track ends before the container) is [`MediaError::Ffmpeg`] saying so.
pub async fn poster(
    tools: &Tools,
    input: &str,
    probe: &VideoProbe,
    at_secs: f64,
    crop: Option<Crop>,
    cancel: CancellationToken,
) -> Result<Vec<u8>, MediaError> {
    let at = frame_start(at_secs, probe.frame_rate);
    let display = (probe.width, probe.height);
    let out = crop.map_or(display, |c| (c.width, c.height));
    let args: Vec<String> = [
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-v",
        "error",
        "-ss",
        &format!("{at:.6}"),
        "-i",
        input,
        "-map",
        "0:v:0",
        "-an",
        "-sn",
        "-dn",
        "-frames:v",
        "1",
        "-vf",
        &display_filters(display, crop, out),
        "-pix_fmt",
        "yuvj420p",
        "-c:v",
        "mjpeg",
        "-q:v",
        POSTER_QUALITY,
        "-f",
        "image2pipe",
        "pipe:1",
    ]
    .map(String::from)
    .to_vec();
    let done = run(tools, &args, keep_all, MAX_ARTIFACT_BYTES, cancel).await?;
    let mut images = split_jpegs(&done.stdout).map_err(|e| MediaError::Ffmpeg {
        status: "exit status: 0".into(),
        stderr: format!("its poster is not a JPEG: {e}"),
    })?;
    if images.is_empty() {
        return Err(MediaError::Ffmpeg {
            status: "exit status: 0".into(),
            stderr: format!("the video has no frame at {at:.3} s"),
        });
    }
    Ok(images.swap_remove(0))
}

/// A time just before the start of the frame shown at `at` (of a constant frame rate
/// `fps`): between that frame and the one before, so a seek keeps exactly it.
fn frame_start(at: f64, fps: f64) -> f64 {
    let at = if at.is_finite() { at.max(0.0) } else { 0.0 };
    if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) {
        return at;
    }
    // 1e-6 absorbs float error in `at · fps`; 1e-4 s is far less than a frame.
    let frame = (at * fps + 1e-6).floor();
    (frame / fps - 1e-4).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(duration: f64, value: Option<&str>) -> f64 {
        poster_time(duration, 25.0, value).expect("valid poster.at")
    }

    #[test]
    fn the_default_is_ten_percent_between_one_and_ten_seconds() {
        assert_eq!(at(5.0, None), 1.0);
        assert_eq!(at(200.0, None), 10.0);
        assert!((at(42.0, None) - 4.2).abs() < 1e-9);
        // A clip shorter than 1 s: its last frame.
        assert!((at(0.5, None) - 0.46).abs() < 1e-9);
    }

    #[test]
    fn percentages_and_seconds_stop_at_the_last_frame() {
        assert_eq!(at(20.0, Some("50%")), 10.0);
        assert_eq!(at(20.0, Some("3s")), 3.0);
        assert_eq!(at(20.0, Some("2.5s")), 2.5);
        assert_eq!(at(20.0, Some("0%")), 0.0);
        assert!((at(20.0, Some("100%")) - 19.96).abs() < 1e-9);
        assert!((at(20.0, Some("999s")) - 19.96).abs() < 1e-9);
        assert_eq!(at(0.0, Some("5s")), 0.0);
        assert_eq!(
            poster_time(20.0, 0.0, Some("999s")).ok(),
            Some(20.0 - 1.0 / 30.0)
        );
    }

    #[test]
    fn a_time_goes_back_to_the_start_of_its_frame() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(frame_start(1.01, 30.0), 1.0 - 1e-4));
        assert!(close(frame_start(1.0, 30.0), 1.0 - 1e-4));
        assert!(close(frame_start(2.0 / 3.0, 30.0), 20.0 / 30.0 - 1e-4));
        assert_eq!(frame_start(0.01, 30.0), 0.0);
        assert_eq!(frame_start(-3.0, 30.0), 0.0);
        assert_eq!(frame_start(1.01, 0.0), 1.01);
    }

    #[test]
    fn malformed_values_are_named() {
        for bad in ["", "10", "ten%", "-1s", "101%", "5m", "%", "NaNs", "infs"] {
            match poster_time(20.0, 25.0, Some(bad)) {
                Err(MediaError::Invalid(s)) => assert!(s.contains(&format!("{bad:?}")), "{s}"),
                other => panic!("{bad:?}: expected Invalid, got {other:?}"),
            }
        }
    }
}
