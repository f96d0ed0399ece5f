//! ffprobe: what a source is, in display terms.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;
use zib_proto::jobs::VideoProbe;

use crate::encode::tail;
use crate::{MediaError, Tools};

/// ffprobe reads headers (and, for MP4 with `moov` at the end, seeks once); a minute
/// covers a slow loopback source by far.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// What ffprobe says when the bytes are not a container it knows: the source's fault.
const NOT_MEDIA_MARKERS: [&str; 3] = [
    "Invalid data found when processing input",
    "moov atom not found",
    "could not find codec parameters",
];

/// ffprobe on `input` (a file path, or an `http://127.0.0.1` URL served by the node,
/// seekable via Range). No video stream or unreadable content →
/// [`MediaError::NotAVideo`] with a sentence for the tenant (permanent); an input
/// ffprobe cannot reach → [`MediaError::Ffprobe`] (retryable).
pub async fn probe(tools: &Tools, input: &str) -> Result<VideoProbe, MediaError> {
    let child = Command::new(&tools.ffprobe)
        .args([
            "-hide_banner",
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            input,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| MediaError::Spawn {
            tool: tools.ffprobe.clone(),
            source,
        })?;
    let out = tokio::time::timeout(PROBE_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| MediaError::Timeout {
            what: "ffprobe",
            secs: PROBE_TIMEOUT.as_secs(),
        })?
        .map_err(|e| MediaError::io("reading ffprobe's output", e))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if NOT_MEDIA_MARKERS.iter().any(|m| stderr.contains(m)) {
            return Err(MediaError::NotAVideo(
                "The file is not a video ZiB can read: ffprobe found no media container in it."
                    .to_string(),
            ));
        }
        return Err(MediaError::Ffprobe(format!(
            "exited with {}: {}",
            out.status,
            tail(&stderr, 5)
        )));
    }
    let json: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| MediaError::Ffprobe(format!("unreadable ffprobe output: {e}")))?;
    from_ffprobe_json(&json)
}

/// Builds the probe from ffprobe's `-show_format -show_streams` JSON.
pub(crate) fn from_ffprobe_json(json: &Value) -> Result<VideoProbe, MediaError> {
    let streams = json["streams"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let format = &json["format"];
    let format_name = format["format_name"].as_str().unwrap_or("");
    // A still image probes as a one-frame "video" stream in an image demuxer.
    if format_name == "image2" || format_name.ends_with("_pipe") {
        return Err(MediaError::NotAVideo(
            "The file is a still image, not a video.".to_string(),
        ));
    }
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video" && s["disposition"]["attached_pic"] != 1)
        .ok_or_else(|| {
            let what = if streams.iter().any(|s| s["codec_type"] == "audio") {
                "The file has audio but no video stream."
            } else {
                "The file has no video stream."
            };
            MediaError::NotAVideo(what.to_string())
        })?;
    let coded_w = video["width"].as_u64().unwrap_or(0);
    let coded_h = video["height"].as_u64().unwrap_or(0);
    if coded_w == 0 || coded_h == 0 {
        return Err(MediaError::NotAVideo(
            "The file's video stream has no picture size.".to_string(),
        ));
    }
    // Non-square pixels: the display width is the stored width times the pixel aspect.
    let sar = ratio(video["sample_aspect_ratio"].as_str()).filter(|r| *r > 0.0);
    let display_w = match sar {
        Some(r) if (r - 1.0).abs() > 1e-3 => (coded_w as f64 * r).round() as u64,
        _ => coded_w,
    };
    let (width, height) = if quarter_turn(video) {
        (coded_h, display_w)
    } else {
        (display_w, coded_h)
    };
    let duration_secs = number(&format["duration"])
        .or_else(|| number(&video["duration"]))
        .filter(|d| d.is_finite() && *d > 0.0)
        .ok_or_else(|| {
            MediaError::NotAVideo("The file's video has no duration (a single picture?).".into())
        })?;
    let frame_rate = ratio(video["avg_frame_rate"].as_str())
        .filter(|r| r.is_finite() && *r > 0.0 && *r <= 1000.0)
        .or_else(|| ratio(video["r_frame_rate"].as_str()).filter(|r| *r > 0.0 && *r <= 1000.0))
        .unwrap_or(30.0);
    let audio_codec = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .map(|s| s["codec_name"].as_str().unwrap_or("unknown").to_string());
    Ok(VideoProbe {
        duration_secs,
        width: u32::try_from(width).unwrap_or(u32::MAX),
        height: u32::try_from(height).unwrap_or(u32::MAX),
        frame_rate: (frame_rate * 1000.0).round() / 1000.0,
        video_codec: video["codec_name"]
            .as_str()
            .unwrap_or("unknown")
            .to_string(),
        audio_codec,
    })
}

/// True when the stream is displayed turned by 90° or 270° (a phone held upright):
/// the display matrix's `rotation` (side data) or the older `rotate` tag.
fn quarter_turn(stream: &Value) -> bool {
    let from_side_data = stream["side_data_list"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|d| number(&d["rotation"]));
    let degrees = from_side_data.or_else(|| number(&stream["tags"]["rotate"]));
    match degrees {
        Some(d) => (d.round() as i64).rem_euclid(180) == 90,
        None => false,
    }
}

/// A JSON number or a numeric string.
fn number(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str()?.trim().parse().ok())
}

/// `"30000/1001"` or `"16:9"` → the quotient; `None` for `0/0` and garbage.
fn ratio(s: Option<&str>) -> Option<f64> {
    let s = s?;
    let (n, d) = s.split_once('/').or_else(|| s.split_once(':'))?;
    let (n, d): (f64, f64) = (n.trim().parse().ok()?, d.trim().parse().ok()?);
    (d != 0.0).then(|| n / d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stream(extra: Value) -> Value {
        let mut s = json!({
            "codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080,
            "sample_aspect_ratio": "1:1", "avg_frame_rate": "30000/1001",
            "disposition": {"attached_pic": 0}
        });
        if let (Some(s), Some(e)) = (s.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        s
    }

    #[test]
    fn rotation_from_side_data_or_tag_swaps_the_display_size() {
        for extra in [
            json!({"side_data_list": [{"side_data_type": "Display Matrix", "rotation": -90}]}),
            json!({"tags": {"rotate": "270"}}),
        ] {
            let j = json!({"streams": [stream(extra)], "format": {"format_name": "mov", "duration": "2.0"}});
            let p = from_ffprobe_json(&j).expect("probe");
            assert_eq!((p.width, p.height), (1080, 1920));
            assert_eq!(p.frame_rate, 29.97);
            assert_eq!(p.audio_codec, None);
        }
        let upside_down = stream(json!({"side_data_list": [{"rotation": 180}]}));
        let j = json!({"streams": [upside_down], "format": {"duration": "2.0"}});
        let p = from_ffprobe_json(&j).expect("probe");
        assert_eq!((p.width, p.height), (1920, 1080));
    }

    #[test]
    fn anamorphic_pixels_widen_the_display() {
        let s = stream(json!({"width": 720, "height": 576, "sample_aspect_ratio": "64:45"}));
        let j = json!({"streams": [s], "format": {"duration": "2.0"}});
        let p = from_ffprobe_json(&j).expect("probe");
        assert_eq!((p.width, p.height), (1024, 576));
    }

    #[test]
    fn cover_art_and_audio_only_are_not_videos() {
        let cover = stream(json!({"codec_name": "mjpeg", "disposition": {"attached_pic": 1}}));
        let audio = json!({"codec_type": "audio", "codec_name": "mp3"});
        let j =
            json!({"streams": [audio, cover], "format": {"format_name": "mp3", "duration": "200"}});
        match from_ffprobe_json(&j) {
            Err(MediaError::NotAVideo(s)) => assert!(s.contains("no video stream"), "{s}"),
            other => panic!("expected NotAVideo, got {other:?}"),
        }
        let j = json!({"streams": [stream(json!({}))], "format": {"format_name": "png_pipe"}});
        assert!(matches!(
            from_ffprobe_json(&j),
            Err(MediaError::NotAVideo(_))
        ));
    }
}
