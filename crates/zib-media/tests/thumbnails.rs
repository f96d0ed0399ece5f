//! Posters through real ffmpeg, the source read over ranged loopback HTTP as the node
//! serves it: the JPEG is the frame ffmpeg itself shows at that time.

mod common;

use common::{
    files, frame_gray, jpeg_gray, make_sliding_clip, mean_abs_diff, rotate_clip, tools,
    video_shape, FileOpts,
};
use tokio_util::sync::CancellationToken;
use zib_media::{poster, poster_time, probe, variant_crop, MediaError};

/// Below this mean difference (of 255) two gray pictures are the same frame, JPEG
/// losses aside; neighbouring frames of a sliding clip differ by ~25.
const SAME: f64 = 4.0;
const DIFFERENT: f64 = 10.0;

#[tokio::test]
async fn the_default_poster_is_the_frame_at_one_second_of_a_short_clip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = make_sliding_clip(dir.path(), "src.mp4", 320, 180, 30, 5.0);
    let source = files(dir.path(), FileOpts::default()).await;
    let tools = tools();
    let input = source.url("src.mp4");
    let p = probe(&tools, &input).await.expect("probe");
    let at = poster_time(p.duration_secs, p.frame_rate, None).expect("default");
    assert_eq!(at, 1.0);

    let jpeg = poster(&tools, &input, &p, at, None, CancellationToken::new())
        .await
        .expect("poster");
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG");
    let path = dir.path().join("poster.jpg");
    std::fs::write(&path, &jpeg).expect("write");
    assert_eq!(video_shape(&path).0, 320);
    assert_eq!(video_shape(&path).1, 180);

    let got = jpeg_gray(dir.path(), &jpeg, "null");
    let same = mean_abs_diff(&got, &frame_gray(&clip, at, "null"));
    assert!(
        same < SAME,
        "the poster is ffmpeg's frame at {at} s: {same}"
    );
    let next = mean_abs_diff(&got, &frame_gray(&clip, at + 1.0 / 30.0, "null"));
    assert!(
        next > DIFFERENT,
        "the next frame is another picture: {next}"
    );
}

#[tokio::test]
async fn a_poster_past_the_end_is_the_last_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = make_sliding_clip(dir.path(), "src.mp4", 160, 90, 25, 2.0);
    let source = files(dir.path(), FileOpts::default()).await;
    let tools = tools();
    let input = source.url("src.mp4");
    let p = probe(&tools, &input).await.expect("probe");
    for at in ["100%", "60s"] {
        let t = poster_time(p.duration_secs, p.frame_rate, Some(at)).expect("valid");
        assert!((t - (2.0 - 0.04)).abs() < 1e-6, "{at}: {t}");
        let jpeg = poster(&tools, &input, &p, t, None, CancellationToken::new())
            .await
            .unwrap_or_else(|e| panic!("poster at {at}: {e}"));
        let got = jpeg_gray(dir.path(), &jpeg, "null");
        let last = mean_abs_diff(&got, &frame_gray(&clip, 1.96, "null"));
        assert!(last < SAME, "{at}: the last frame: {last}");
    }
    // Beyond the last frame there is no picture, and that is said, not an empty JPEG.
    match poster(&tools, &input, &p, 30.0, None, CancellationToken::new()).await {
        Err(MediaError::Ffmpeg { stderr, .. }) => assert!(stderr.contains("no frame"), "{stderr}"),
        other => panic!("expected no frame, got {:?}", other.map(|j| j.len())),
    }
}

/// A variant's poster: the centred 9:16 window of the frame, at the crop's size.
#[tokio::test]
async fn a_cropped_poster_is_the_centre_of_the_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = make_sliding_clip(dir.path(), "src.mp4", 320, 180, 30, 3.0);
    let source = files(dir.path(), FileOpts::default()).await;
    let tools = tools();
    let input = source.url("src.mp4");
    let p = probe(&tools, &input).await.expect("probe");
    let crop = variant_crop(&p, "9:16").expect("crop");
    assert_eq!((crop.width, crop.height), (102, 180));

    let jpeg = poster(
        &tools,
        &input,
        &p,
        2.0,
        Some(crop),
        CancellationToken::new(),
    )
    .await
    .expect("poster");
    let path = dir.path().join("poster.jpg");
    std::fs::write(&path, &jpeg).expect("write");
    let (w, h, ..) = video_shape(&path);
    assert_eq!((w, h), (102, 180));
    let got = jpeg_gray(dir.path(), &jpeg, "null");
    // (320 − 102) / 2 = 109, which ffmpeg's crop takes down to 108 on 4:2:0 pictures
    // (the chroma planes are half as wide).
    let centre = mean_abs_diff(&got, &frame_gray(&clip, 2.0, "crop=102:180:108:0"));
    assert!(centre < SAME, "the centre of the frame: {centre}");
    let left = mean_abs_diff(&got, &frame_gray(&clip, 2.0, "crop=102:180:0:0"));
    assert!(left > DIFFERENT, "not its left edge: {left}");
}

/// A phone clip (landscape pixels, 90° display matrix): the poster is upright, at the
/// display size.
#[tokio::test]
async fn a_rotated_clip_gets_an_upright_poster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coded = make_sliding_clip(dir.path(), "coded.mp4", 320, 180, 30, 2.0);
    let phone = dir.path().join("phone.mp4");
    rotate_clip(&coded, &phone, 90);
    let source = files(dir.path(), FileOpts::default()).await;
    let tools = tools();
    let input = source.url("phone.mp4");
    let p = probe(&tools, &input).await.expect("probe");
    assert_eq!((p.width, p.height), (180, 320));

    let jpeg = poster(&tools, &input, &p, 1.0, None, CancellationToken::new())
        .await
        .expect("poster");
    let path = dir.path().join("poster.jpg");
    std::fs::write(&path, &jpeg).expect("write");
    let (w, h, ..) = video_shape(&path);
    assert_eq!((w, h), (180, 320));
    // ffmpeg turns the frame upright itself when it decodes the rotated file.
    let got = jpeg_gray(dir.path(), &jpeg, "null");
    let upright = mean_abs_diff(&got, &frame_gray(&phone, 1.0, "null"));
    assert!(upright < SAME, "upright: {upright}");
    let turned = mean_abs_diff(&got, &frame_gray(&phone, 1.0, "transpose=1,transpose=1"));
    assert!(turned > DIFFERENT, "not upside down: {turned}");
}

/// Non-square pixels (320×180 stored, each pixel twice as wide as tall): the poster
/// is at the display size, 640×180, with square pixels.
#[tokio::test]
async fn an_anamorphic_clip_gets_a_poster_at_its_display_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stored = make_sliding_clip(dir.path(), "stored.mp4", 320, 180, 30, 2.0);
    let wide = dir.path().join("wide.mp4");
    let status = std::process::Command::new(tools().ffmpeg)
        .args(["-hide_banner", "-nostdin", "-v", "error", "-y", "-i"])
        .arg(&stored)
        .args([
            "-c",
            "copy",
            "-bsf:v",
            "h264_metadata=sample_aspect_ratio=2/1",
            // The bitstream filter marks the stream; the container needs its own mark.
            "-aspect",
            "32:9",
        ])
        .arg(&wide)
        .status()
        .expect("run ffmpeg");
    assert!(status.success());
    let source = files(dir.path(), FileOpts::default()).await;
    let tools = tools();
    let input = source.url("wide.mp4");
    let p = probe(&tools, &input).await.expect("probe");
    assert_eq!((p.width, p.height), (640, 180));

    let jpeg = poster(&tools, &input, &p, 1.0, None, CancellationToken::new())
        .await
        .expect("poster");
    let path = dir.path().join("poster.jpg");
    std::fs::write(&path, &jpeg).expect("write");
    let (w, h, ..) = video_shape(&path);
    assert_eq!((w, h), (640, 180));
    let got = jpeg_gray(dir.path(), &jpeg, "null");
    let d = mean_abs_diff(
        &got,
        &frame_gray(&stored, 1.0, "scale=640:180:flags=bicubic"),
    );
    assert!(d < SAME, "the frame, widened: {d}");
}
