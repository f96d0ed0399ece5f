//! Scrub-bar sprites through real ffmpeg: each tile is the frame at its cue's start,
//! the sheets hold the tiles row-major, and the WebVTT track covers the whole video.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    eventually, files, frame_gray, jpeg_gray, make_sliding_clip, mean_abs_diff, process_running,
    tools, video_shape, FileOpts,
};
use tokio_util::sync::CancellationToken;
use zib_media::{probe, sprite_sheets, sprite_vtt, MediaError, SpriteSheets};

/// Below this mean difference two gray pictures are the same frame; neighbouring
/// frames of a sliding clip differ by ~25.
const SAME: f64 = 5.0;
const DIFFERENT: f64 = 10.0;

/// One cue of a sprite track.
#[derive(Debug)]
struct Cue {
    start_ms: u64,
    end_ms: u64,
    url: String,
    xywh: [u32; 4],
}

fn ms(t: &str) -> u64 {
    let (hms, frac) = t.split_once('.').expect("HH:MM:SS.mmm");
    let parts: Vec<u64> = hms.split(':').map(|p| p.parse().expect("number")).collect();
    assert_eq!(parts.len(), 3, "{t}");
    assert_eq!(frac.len(), 3, "{t}");
    ((parts[0] * 60 + parts[1]) * 60 + parts[2]) * 1000 + frac.parse::<u64>().expect("ms")
}

fn parse_vtt(vtt: &str) -> Vec<Cue> {
    let rest = vtt.strip_prefix("WEBVTT\n").expect("starts with WEBVTT");
    rest.split("\n\n")
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|block| {
            let (times, body) = block.split_once('\n').expect("two lines");
            let (a, b) = times.split_once(" --> ").expect("a --> b");
            let (url, xywh) = body.split_once("#xywh=").expect("#xywh=");
            let n: Vec<u32> = xywh.split(',').map(|v| v.parse().expect("int")).collect();
            Cue {
                start_ms: ms(a),
                end_ms: ms(b),
                url: url.to_string(),
                xywh: [n[0], n[1], n[2], n[3]],
            }
        })
        .collect()
}

/// Checks the track against the sheets: cues back to back from 0 to the duration,
/// each pointing inside its sheet's decoded size.
fn check_vtt(dir: &Path, s: &SpriteSheets, duration_secs: f64) -> Vec<Cue> {
    let urls: Vec<String> = (0..s.sheets.len())
        .map(|i| format!("https://cdn.example/objects/sheet{i}"))
        .collect();
    let cues = parse_vtt(&sprite_vtt(s, &urls, duration_secs));
    assert_eq!(cues.len() as u32, s.tile_count);
    assert_eq!(cues[0].start_ms, 0);
    for w in cues.windows(2) {
        assert_eq!(w[0].end_ms, w[1].start_ms, "no gap: {w:?}");
    }
    let last = cues.last().expect("a cue");
    assert_eq!(last.end_ms, (duration_secs * 1000.0).round() as u64);
    let sizes: Vec<(u64, u64)> = s
        .sheets
        .iter()
        .enumerate()
        .map(|(i, jpeg)| {
            let path = dir.join(format!("sheet{i}.jpg"));
            std::fs::write(&path, jpeg).expect("write");
            let (w, h, ..) = video_shape(&path);
            (w, h)
        })
        .collect();
    for (k, cue) in cues.iter().enumerate() {
        assert!(cue.start_ms < cue.end_ms, "{cue:?}");
        let sheet = urls
            .iter()
            .position(|u| *u == cue.url)
            .expect("a sheet url");
        assert_eq!(sheet, k / 100, "cue {k} is on sheet {}", k / 100);
        let [x, y, w, h] = cue.xywh;
        assert_eq!((w, h), (s.tile_width, s.tile_height));
        let (sw, sh) = sizes[sheet];
        assert!(
            u64::from(x + w) <= sw && u64::from(y + h) <= sh,
            "{cue:?} inside {sw}×{sh}"
        );
    }
    cues
}

/// The tile of `cue` cut out of its sheet with ffmpeg's crop filter, as gray.
fn tile_gray(dir: &Path, s: &SpriteSheets, k: usize, cue: &Cue) -> Vec<u8> {
    let [x, y, w, h] = cue.xywh;
    jpeg_gray(dir, &s.sheets[k / 100], &format!("crop={w}:{h}:{x}:{y}"))
}

#[tokio::test]
async fn a_23_second_clip_at_5_seconds_is_five_tiles_each_the_frame_at_its_cue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = make_sliding_clip(dir.path(), "src.mp4", 320, 180, 10, 23.0);
    let source = files(dir.path(), FileOpts::default()).await;
    let tools = tools();
    let input = source.url("src.mp4");
    let p = probe(&tools, &input).await.expect("probe");

    let s = sprite_sheets(&tools, &input, &p, 5, 160, CancellationToken::new())
        .await
        .expect("sprites");
    assert_eq!(s.tile_count, 5);
    assert_eq!(s.sheets.len(), 1);
    assert_eq!((s.tile_width, s.tile_height), (160, 90));
    assert_eq!((s.columns, s.rows, s.interval_secs), (10, 10, 5));

    let cues = check_vtt(dir.path(), &s, p.duration_secs);
    let scale = "scale=160:90:flags=bicubic";
    for (k, cue) in cues.iter().enumerate() {
        let t = cue.start_ms as f64 / 1000.0;
        let tile = tile_gray(dir.path(), &s, k, cue);
        let same = mean_abs_diff(&tile, &frame_gray(&clip, t, scale));
        assert!(same < SAME, "tile {k} is the frame at {t} s: {same}");
        let later = mean_abs_diff(&tile, &frame_gray(&clip, t + 0.1, scale));
        assert!(later > DIFFERENT, "tile {k} is not the next frame: {later}");
    }
}

#[tokio::test]
async fn two_minutes_at_one_second_fill_a_sheet_and_start_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = make_sliding_clip(dir.path(), "src.mp4", 160, 90, 10, 120.0);
    let source = files(dir.path(), FileOpts::default()).await;
    let tools = tools();
    let input = source.url("src.mp4");
    let p = probe(&tools, &input).await.expect("probe");

    let s = sprite_sheets(&tools, &input, &p, 1, 160, CancellationToken::new())
        .await
        .expect("sprites");
    assert_eq!(s.tile_count, 120);
    assert_eq!(s.sheets.len(), 2, "100 tiles, then a partial sheet of 20");
    let cues = check_vtt(dir.path(), &s, p.duration_secs);
    // The corners of the full sheet, the first and last tile of the partial one.
    for k in [0, 9, 90, 99, 100, 119] {
        let cue = &cues[k];
        let t = cue.start_ms as f64 / 1000.0;
        assert_eq!(t, k as f64);
        let tile = tile_gray(dir.path(), &s, k, cue);
        let same = mean_abs_diff(&tile, &frame_gray(&clip, t, "null"));
        assert!(same < SAME, "tile {k} is the frame at {t} s: {same}");
        let later = mean_abs_diff(&tile, &frame_gray(&clip, t + 0.1, "null"));
        assert!(later > DIFFERENT, "tile {k} is not the next frame: {later}");
    }
}

/// A file whose sound outlasts its picture (7 s of video, 20 s of audio): tiles stop
/// with the picture (the frames at 0 s and 5 s) and the last cue stretches to the
/// file's end; no blank tile is promised.
#[tokio::test]
async fn a_picture_shorter_than_the_file_gives_fewer_tiles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let video = make_sliding_clip(dir.path(), "video.mp4", 160, 90, 10, 7.0);
    let status = std::process::Command::new(tools().ffmpeg)
        .args(["-hide_banner", "-nostdin", "-v", "error", "-y", "-i"])
        .arg(&video)
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=20"])
        .args(["-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac"])
        .arg(dir.path().join("src.mp4"))
        .status()
        .expect("run ffmpeg");
    assert!(status.success());
    let source = files(dir.path(), FileOpts::default()).await;
    let tools = tools();
    let input = source.url("src.mp4");
    let p = probe(&tools, &input).await.expect("probe");
    assert!(p.duration_secs > 19.9, "{p:?}");

    let s = sprite_sheets(&tools, &input, &p, 5, 160, CancellationToken::new())
        .await
        .expect("sprites");
    assert_eq!(s.tile_count, 2);
    let cues = check_vtt(dir.path(), &s, p.duration_secs);
    assert_eq!(
        (cues[1].start_ms, cues[1].end_ms),
        (5_000, (p.duration_secs * 1000.0).round() as u64)
    );
    let last = tile_gray(dir.path(), &s, 1, &cues[1]);
    let d = mean_abs_diff(&last, &frame_gray(&video, 5.0, "null"));
    assert!(d < SAME, "the last tile is the frame at 5 s: {d}");
}

#[tokio::test]
async fn cancelling_kills_ffmpeg() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_sliding_clip(dir.path(), "src.mp4", 160, 90, 10, 20.0);
    let tools = tools();
    let full = files(dir.path(), FileOpts::default()).await;
    let p = probe(&tools, &full.url("src.mp4")).await.expect("probe");
    // A source that stops sending: ffmpeg waits on it until it is killed.
    let stalled = files(
        dir.path(),
        FileOpts {
            stall_after: Some(4096),
            ..FileOpts::default()
        },
    )
    .await;
    let input = stalled.url("src.mp4");
    let port = stalled.addr.port().to_string();
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let (tools, input, p, cancel) = (tools.clone(), input.clone(), p.clone(), cancel.clone());
        async move { sprite_sheets(&tools, &input, &p, 1, 160, cancel).await }
    });
    assert!(
        eventually(Duration::from_secs(10), || process_running(&port)).await,
        "ffmpeg started"
    );
    let started = Instant::now();
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("returns promptly")
        .expect("task");
    assert!(matches!(result, Err(MediaError::Cancelled)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        eventually(Duration::from_secs(5), || !process_running(&port)).await,
        "ffmpeg is gone"
    );
}
