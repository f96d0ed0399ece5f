//! ffprobe through `zib_media::probe`: what the node learns of a source before it
//! plans the ladder, over a file path and over ranged loopback HTTP (how the node
//! serves the decrypted source).

mod common;

use common::{clip, files, make_clip, rotate_clip, tools, Clip, FileOpts};
use zib_media::{probe, MediaError};

#[tokio::test]
async fn landscape_1080p_with_audio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = make_clip(dir.path(), "land.mp4", clip(1920, 1080, 2.0, true), &[]);
    let p = probe(&tools(), path.to_str().expect("utf-8 path"))
        .await
        .expect("probe");
    assert_eq!((p.width, p.height), (1920, 1080));
    assert!(
        (p.duration_secs - 2.0).abs() < 0.2,
        "duration {}",
        p.duration_secs
    );
    assert_eq!(p.frame_rate, 30.0);
    assert_eq!(p.video_codec, "h264");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"));
}

#[tokio::test]
async fn portrait_stored_upright_and_rotated_phone_clip_both_probe_portrait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upright = make_clip(dir.path(), "upright.mp4", clip(1080, 1920, 1.0, false), &[]);
    let p = probe(&tools(), upright.to_str().expect("utf-8"))
        .await
        .expect("probe upright");
    assert_eq!((p.width, p.height), (1080, 1920));

    // A phone stores landscape pixels plus a 90° display matrix.
    let coded = make_clip(dir.path(), "coded.mp4", clip(320, 180, 1.0, false), &[]);
    let phone = dir.path().join("phone.mp4");
    rotate_clip(&coded, &phone, 90);
    let p = probe(&tools(), phone.to_str().expect("utf-8"))
        .await
        .expect("probe phone");
    assert_eq!(
        (p.width, p.height),
        (180, 320),
        "display size, rotation applied"
    );
}

#[tokio::test]
async fn a_clip_without_audio_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = make_clip(
        dir.path(),
        "silent.mp4",
        Clip {
            fps: 25,
            ..clip(640, 360, 1.0, false)
        },
        &[],
    );
    let p = probe(&tools(), path.to_str().expect("utf-8"))
        .await
        .expect("probe");
    assert_eq!(p.audio_codec, None);
    assert!(!p.has_audio());
    assert_eq!(p.frame_rate, 25.0);
}

/// An MP4 written without faststart keeps its index (`moov`) after the media: ffprobe
/// must seek to the end, which works only because the server answers ranges.
#[tokio::test]
async fn moov_at_end_mp4_over_ranged_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = make_clip(dir.path(), "late.mp4", clip(640, 360, 3.0, true), &[]);
    let bytes = std::fs::read(&path).expect("read clip");
    let moov = bytes
        .windows(4)
        .position(|w| w == b"moov")
        .expect("a moov box");
    let mdat = bytes
        .windows(4)
        .position(|w| w == b"mdat")
        .expect("an mdat box");
    assert!(
        moov > mdat,
        "the clip must keep moov after mdat for this test"
    );

    let server = files(dir.path(), FileOpts::default()).await;
    let p = probe(&tools(), &server.url("late.mp4"))
        .await
        .expect("probe over http");
    assert_eq!((p.width, p.height), (640, 360));
    assert!(
        (p.duration_secs - 3.0).abs() < 0.2,
        "duration {}",
        p.duration_secs
    );
    assert_eq!(p.audio_codec.as_deref(), Some("aac"));
}

#[tokio::test]
async fn a_text_file_is_not_a_video_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notes.mp4");
    std::fs::write(&path, "these are meeting notes, not a movie\n".repeat(200)).expect("write");
    let err = probe(&tools(), path.to_str().expect("utf-8"))
        .await
        .expect_err("not a video");
    assert!(err.is_permanent(), "{err:?}");
    match err {
        MediaError::NotAVideo(sentence) => assert!(sentence.contains("not a video"), "{sentence}"),
        other => panic!("expected NotAVideo, got {other:?}"),
    }
}

#[tokio::test]
async fn an_audio_file_is_not_a_video() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tone.m4a");
    let status = std::process::Command::new(tools().ffmpeg)
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=duration=1",
            "-c:a",
            "aac",
        ])
        .arg(&path)
        .status()
        .expect("run ffmpeg");
    assert!(status.success());
    match probe(&tools(), path.to_str().expect("utf-8")).await {
        Err(MediaError::NotAVideo(s)) => assert!(s.contains("no video stream"), "{s}"),
        other => panic!("expected NotAVideo, got {other:?}"),
    }
}

/// An unreachable source is the node's problem, not the tenant's: retryable.
#[tokio::test]
async fn an_unreachable_source_is_not_blamed_on_the_file() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let err = probe(&tools(), &format!("http://{addr}/source"))
        .await
        .expect_err("refused");
    assert!(!err.is_permanent(), "{err:?}");
    assert!(matches!(err, MediaError::Ffprobe(_)), "{err:?}");
}
