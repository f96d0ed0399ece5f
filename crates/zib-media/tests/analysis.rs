//! What the AI stages read from ffmpeg, through real ffmpeg over a loopback HTTP
//! source (as the node serves it): hard cuts found at their times and no others,
//! frames at the asked interval and size showing the picture of their time, 16 kHz
//! mono PCM as long as the audio, nothing (and no error) from a silent source, and
//! ffmpeg killed on cancellation.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{clip, eventually, files, make_clip, process_running, tools, FileOpts};
use tokio_util::sync::CancellationToken;
use zib_media::{audio_pcm, sample_frames, scene_cuts, Frame, MediaError, PCM_CHUNK_SAMPLES};

/// 2 s black, 3 s `testsrc`, 2 s white (320x180, 25 fps): hard cuts at 2 s and 5 s.
fn make_cut_clip(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new(tools().ffmpeg)
        .args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "color=black:size=320x180:rate=25:duration=2",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x180:rate=25:duration=3",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "color=white:size=320x180:rate=25:duration=2",
        ])
        .args(["-filter_complex", "[0][1][2]concat=n=3:v=1:a=0"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&out)
        .status()
        .expect("run ffmpeg to make a clip");
    assert!(status.success(), "making {name} failed");
    out
}

fn mean(frame: &Frame) -> f64 {
    frame.rgb.iter().map(|&b| f64::from(b)).sum::<f64>() / frame.rgb.len() as f64
}

#[tokio::test]
async fn hard_cuts_are_found_at_their_times_and_nowhere_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_cut_clip(dir.path(), "cuts.mp4");
    let server = files(dir.path(), FileOpts::default()).await;
    let cuts = scene_cuts(
        &tools(),
        &server.url("cuts.mp4"),
        0.3,
        CancellationToken::new(),
    )
    .await
    .expect("scene cuts");
    assert_eq!(cuts.len(), 2, "{cuts:?}");
    // The metadata went to the pipe, not to a file in the working directory.
    assert!(
        !Path::new("pipe").exists(),
        "ffmpeg wrote a file named pipe"
    );
    for (cut, want) in cuts.iter().zip([2.0, 5.0]) {
        assert!((cut.time_secs - want).abs() <= 0.5, "{cuts:?}");
        assert!(cut.score > 0.3 && cut.score <= 1.0, "{cuts:?}");
    }

    // A clip without cuts (testsrc2 moves a little each frame): none.
    make_clip(dir.path(), "calm.mp4", clip(320, 180, 4.0, false), &[]);
    let calm = scene_cuts(
        &tools(),
        &server.url("calm.mp4"),
        0.3,
        CancellationToken::new(),
    )
    .await
    .expect("scene cuts");
    assert!(calm.is_empty(), "{calm:?}");

    let bad = scene_cuts(
        &tools(),
        &server.url("cuts.mp4"),
        1.5,
        CancellationToken::new(),
    )
    .await;
    assert!(matches!(bad, Err(MediaError::Invalid(_))), "{bad:?}");
}

#[tokio::test]
async fn frames_come_at_the_interval_with_the_right_size_and_picture() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_cut_clip(dir.path(), "cuts.mp4");
    let server = files(dir.path(), FileOpts::default()).await;
    let mut stream = sample_frames(
        &tools(),
        &server.url("cuts.mp4"),
        2.5,
        160,
        CancellationToken::new(),
    );
    let mut frames = Vec::new();
    while let Some(frame) = stream.next().await {
        frames.push(frame.expect("a frame"));
    }
    assert!(stream.next().await.is_none(), "the stream stays ended");
    let times: Vec<f64> = frames.iter().map(|f| f.time_secs).collect();
    assert_eq!(times, vec![0.0, 2.5, 5.0]);
    for f in &frames {
        assert_eq!((f.width, f.height), (160, 90));
        assert_eq!(f.rgb.len(), 160 * 90 * 3);
    }
    // Black at 0 s, the test pattern at 2.5 s, white at 5 s.
    assert!(mean(&frames[0]) < 30.0, "{}", mean(&frames[0]));
    let pattern = mean(&frames[1]);
    assert!(pattern > 40.0 && pattern < 215.0, "{pattern}");
    assert!(mean(&frames[2]) > 225.0, "{}", mean(&frames[2]));

    // A portrait source keeps its aspect.
    make_clip(dir.path(), "tall.mp4", clip(180, 320, 1.0, false), &[]);
    let mut tall = sample_frames(
        &tools(),
        &server.url("tall.mp4"),
        1.0,
        90,
        CancellationToken::new(),
    );
    let first = tall.next().await.expect("a frame").expect("a frame");
    assert_eq!((first.width, first.height), (90, 160));
}

#[tokio::test]
async fn bad_inputs_and_intervals_are_errors_not_frames() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), b"not a video at all").expect("write");
    make_clip(dir.path(), "a.mp4", clip(160, 90, 1.0, false), &[]);
    let server = files(dir.path(), FileOpts::default()).await;
    let mut text = sample_frames(
        &tools(),
        &server.url("notes.txt"),
        1.0,
        64,
        CancellationToken::new(),
    );
    let got = text.next().await;
    assert!(
        matches!(got, Some(Err(MediaError::NotAVideo(_)))),
        "{got:?}"
    );
    assert!(text.next().await.is_none());
    for (every, width) in [(0.0, 64), (f64::NAN, 64), (1.0, 0), (1.0, 100_000)] {
        let mut s = sample_frames(
            &tools(),
            &server.url("a.mp4"),
            every,
            width,
            CancellationToken::new(),
        );
        let got = s.next().await;
        assert!(matches!(got, Some(Err(MediaError::Invalid(_)))), "{got:?}");
    }
}

#[tokio::test]
async fn audio_comes_as_16k_mono_chunks_and_a_silent_source_yields_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_clip(dir.path(), "tone.mp4", clip(160, 90, 3.0, true), &[]);
    make_clip(dir.path(), "mute.mp4", clip(160, 90, 2.0, false), &[]);
    let server = files(dir.path(), FileOpts::default()).await;

    let mut pcm = audio_pcm(&tools(), &server.url("tone.mp4"), CancellationToken::new());
    let mut chunks = Vec::new();
    while let Some(chunk) = pcm.next().await {
        chunks.push(chunk.expect("a chunk"));
    }
    let total: usize = chunks.iter().map(Vec::len).sum();
    assert!(
        (total as f64 - 3.0 * 16_000.0).abs() <= 1_600.0,
        "{total} samples for 3 s"
    );
    let (last, whole) = chunks.split_last().expect("chunks");
    assert!(whole.iter().all(|c| c.len() == PCM_CHUNK_SAMPLES));
    assert!(!last.is_empty() && last.len() <= PCM_CHUNK_SAMPLES);
    // A 440 Hz sine: loud, and within [-1, 1].
    let all: Vec<f32> = chunks.concat();
    let rms = (all.iter().map(|s| s * s).sum::<f32>() / all.len() as f32).sqrt();
    assert!(rms > 0.05, "rms {rms}");
    assert!(all.iter().all(|s| s.abs() <= 1.0));

    let mut mute = audio_pcm(&tools(), &server.url("mute.mp4"), CancellationToken::new());
    let got = mute.next().await;
    assert!(got.is_none(), "{got:?}");

    let mut missing = audio_pcm(&tools(), &server.url("gone.mp4"), CancellationToken::new());
    let got = missing.next().await;
    assert!(
        matches!(got, Some(Err(MediaError::Ffmpeg { .. }))),
        "{got:?}"
    );
}

#[tokio::test]
async fn cancelling_kills_ffmpeg() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_clip(dir.path(), "slowframes.mp4", clip(320, 180, 6.0, true), &[]);
    // A slow source: ffmpeg is still reading when the token fires.
    let server = files(
        dir.path(),
        FileOpts {
            chunk_per_100ms: Some(4096),
            ..FileOpts::default()
        },
    )
    .await;
    let cancel = CancellationToken::new();
    let mut frames = sample_frames(
        &tools(),
        &server.url("slowframes.mp4"),
        0.5,
        64,
        cancel.clone(),
    );
    let mut pcm = audio_pcm(&tools(), &server.url("slowframes.mp4"), cancel.clone());
    let canceller = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            cancel.cancel();
        })
    };
    let got = loop {
        match frames.next().await {
            Some(Ok(_)) => continue,
            other => break other,
        }
    };
    assert!(matches!(got, Some(Err(MediaError::Cancelled))), "{got:?}");
    let got = loop {
        match pcm.next().await {
            Some(Ok(_)) => continue,
            other => break other,
        }
    };
    assert!(matches!(got, Some(Err(MediaError::Cancelled))), "{got:?}");
    canceller.await.expect("canceller");
    assert!(
        eventually(Duration::from_secs(5), || !process_running(
            "slowframes.mp4"
        ))
        .await,
        "ffmpeg still running after cancellation"
    );
}
