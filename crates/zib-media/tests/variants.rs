//! The 9:16 aspect variant: its centre crop, its exact ladder, and one rung encoded
//! through real ffmpeg with square pixels and a 9:16 display aspect.

mod common;

use common::{
    clip, files, frame_gray, make_clip, make_sliding_clip, mean_abs_diff, rotate_clip, sink, tools,
    video_shape, wait_for_rung, FileOpts,
};
use tokio_util::sync::CancellationToken;
use zib_media::{
    encode_rung, parse_media_playlist, plan_ladder, plan_variant_ladder, probe, variant_crop, Crop,
    MediaError, Rung, RungJob, VideoProbe, SEGMENT_SECS,
};

fn source(width: u32, height: u32) -> VideoProbe {
    VideoProbe {
        duration_secs: 60.0,
        width,
        height,
        frame_rate: 30.0,
        video_codec: "h264".into(),
        audio_codec: Some("aac".into()),
    }
}

fn sizes(rungs: &[Rung]) -> Vec<(&str, u32, u32)> {
    rungs
        .iter()
        .map(|r| (r.plan.name.as_str(), r.plan.width, r.plan.height))
        .collect()
}

fn plan(width: u32, height: u32) -> Vec<Rung> {
    plan_variant_ladder(&source(width, height), "9:16").expect("9:16 is known")
}

#[test]
fn a_1080p_landscape_source_gets_the_9_16_rungs_up_to_its_height() {
    let rungs = plan(1920, 1080);
    assert_eq!(sizes(&rungs), vec![("360p", 360, 640), ("540p", 540, 960)]);
    let crop = Crop {
        width: 608,
        height: 1080,
    };
    assert_eq!(variant_crop(&source(1920, 1080), "9:16").ok(), Some(crop));
    for r in &rungs {
        assert_eq!(r.crop, Some(crop), "{}", r.plan.name);
        assert_eq!(r.plan.width * 16, r.plan.height * 9, "exact 9:16");
        assert!(r.plan.height <= 1080);
        assert!(r.plan.codecs.contains("mp4a.40.2"));
    }
    let rates: Vec<u32> = rungs.iter().map(|r| r.video_kbps).collect();
    assert!(rates[0] < rates[1], "{rates:?}");
    // The main ladder is not cropped.
    assert!(plan_ladder(&source(1920, 1080))
        .iter()
        .all(|r| r.crop.is_none()));
}

#[test]
fn portrait_square_4k_and_tiny_sources() {
    // Portrait 9:16 already: the whole picture, every rung up to its size.
    assert_eq!(
        variant_crop(&source(1080, 1920), "9:16").ok(),
        Some(Crop {
            width: 1080,
            height: 1920
        })
    );
    assert_eq!(
        sizes(&plan(1080, 1920)),
        vec![
            ("360p", 360, 640),
            ("540p", 540, 960),
            ("720p", 720, 1280),
            ("1080p", 1080, 1920)
        ]
    );
    // Taller than 9:16 (a 1:3 strip): the width is kept, the height cut.
    assert_eq!(
        variant_crop(&source(720, 2160), "9:16").ok(),
        Some(Crop {
            width: 720,
            height: 1280
        })
    );
    // Square: full height, the middle 9/16 of the width.
    assert_eq!(
        sizes(&plan(1080, 1080)),
        vec![("360p", 360, 640), ("540p", 540, 960)]
    );
    assert_eq!(
        sizes(&plan(3840, 2160)),
        vec![
            ("360p", 360, 640),
            ("540p", 540, 960),
            ("720p", 720, 1280),
            ("1080p", 1080, 1920)
        ]
    );
    // Below 640 tall after the crop: one rung, the largest even exact 9:16 that fits.
    let tiny = plan(640, 360);
    assert_eq!(sizes(&tiny), vec![("198p", 198, 352)]);
    assert_eq!(
        tiny[0].crop,
        Some(Crop {
            width: 202,
            height: 360
        })
    );
    assert!(tiny[0].video_kbps >= 150 && tiny[0].video_kbps < 800);
    assert_eq!(sizes(&plan(16, 16)), vec![("18p", 18, 32)]);
}

#[test]
fn other_ratios_are_refused() {
    for ratio in ["16:9", "1:1", "4:5", "", "9x16"] {
        match plan_variant_ladder(&source(1920, 1080), ratio) {
            Err(e @ MediaError::Invalid(_)) => {
                assert!(e.is_permanent());
                assert!(e.to_string().contains(&format!("{ratio:?}")), "{e}");
            }
            other => panic!("{ratio:?}: expected Invalid, got {other:?}"),
        }
    }
}

/// Encodes the lowest variant rung of `file` (served from `dir`) and returns the
/// first segment's path.
async fn encode_lowest(
    dir: &std::path::Path,
    file: &str,
) -> (VideoProbe, Rung, std::path::PathBuf) {
    let source = files(dir, FileOpts::default()).await;
    let (out, received) = sink().await;
    let tools = tools();
    let input = source.url(file);
    let p = probe(&tools, &input).await.expect("probe");
    let rungs = plan_variant_ladder(&p, "9:16").expect("plan");
    let job = RungJob {
        tools: &tools,
        input: &input,
        rung: &rungs[0],
        probe: &p,
        segment_secs: SEGMENT_SECS,
        output_base: &out.url("v"),
    };
    encode_rung(job, |_| {}, CancellationToken::new())
        .await
        .expect("encode");
    let name = &rungs[0].plan.name;
    let playlist = wait_for_rung(&received, "v", &format!("{name}.m3u8")).await;
    let segments = parse_media_playlist(&playlist);
    assert!(!segments.is_empty(), "{playlist}");
    let seg = dir.join(format!("{file}.seg0.ts"));
    std::fs::write(
        &seg,
        received
            .get(&format!("v/{}", segments[0].0))
            .expect("segment"),
    )
    .expect("write");
    (p, rungs[0].clone(), seg)
}

#[tokio::test]
async fn a_1080p_clip_encodes_to_square_pixel_9_16_video() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_clip(dir.path(), "src.mp4", clip(1920, 1080, 1.0, true), &[]);
    let (p, rung, seg) = encode_lowest(dir.path(), "src.mp4").await;
    assert_eq!((p.width, p.height), (1920, 1080));
    let (w, h, sar, dar) = video_shape(&seg);
    assert_eq!((w, h), (360, 640));
    assert!(h <= 1080);
    assert_eq!(sar, "1:1");
    assert_eq!(dar, "9:16");
    assert_eq!(rung.plan.name, "360p");
}

/// The variant shows the centre of the picture: its first frame is the source's
/// first frame, cropped to the middle 9:16 window and scaled.
#[tokio::test]
async fn the_variant_is_the_centre_of_the_picture() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = make_sliding_clip(dir.path(), "src.mp4", 1280, 720, 30, 1.0);
    let (_, rung, seg) = encode_lowest(dir.path(), "src.mp4").await;
    assert_eq!(
        rung.crop,
        Some(Crop {
            width: 406,
            height: 720
        })
    );
    let got = frame_gray(&seg, 0.0, "null");
    // (1280 − 406) / 2 = 437, taken down to 436 on 4:2:0 pictures.
    let centre = frame_gray(&src, 0.0, "crop=406:720:436:0,scale=360:640:flags=bicubic");
    let d = mean_abs_diff(&got, &centre);
    assert!(d < 6.0, "the centre window: {d}");
    let left = frame_gray(&src, 0.0, "crop=406:720:0:0,scale=360:640:flags=bicubic");
    let d = mean_abs_diff(&got, &left);
    assert!(d > 10.0, "not the left edge: {d}");
}

/// A phone clip held sideways (720×1280 pixels turned 90°, so 1280×720 upright): the
/// crop is taken in display space, so the variant is the middle of the upright
/// picture, not of the stored one.
#[tokio::test]
async fn a_rotated_clip_is_cropped_upright() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coded = make_sliding_clip(dir.path(), "coded.mp4", 720, 1280, 30, 1.0);
    let phone = dir.path().join("phone.mp4");
    rotate_clip(&coded, &phone, 90);
    let (p, rung, seg) = encode_lowest(dir.path(), "phone.mp4").await;
    assert_eq!((p.width, p.height), (1280, 720));
    assert_eq!(
        rung.crop,
        Some(Crop {
            width: 406,
            height: 720
        })
    );
    let (w, h, sar, dar) = video_shape(&seg);
    assert_eq!(
        (w, h, sar.as_str(), dar.as_str()),
        (360, 640, "1:1", "9:16")
    );
    // ffmpeg turns the reference frame upright itself before cropping it.
    let got = frame_gray(&seg, 0.0, "null");
    let upright = frame_gray(
        &phone,
        0.0,
        "crop=406:720:436:0,scale=360:640:flags=bicubic",
    );
    let d = mean_abs_diff(&got, &upright);
    assert!(d < 6.0, "the middle of the upright picture: {d}");
    let stored = frame_gray(
        &coded,
        0.0,
        "crop=406:720:157:280,scale=360:640:flags=bicubic",
    );
    let d = mean_abs_diff(&got, &stored);
    assert!(d > 10.0, "not a window of the stored picture: {d}");
}
