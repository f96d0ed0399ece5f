//! The ladder a source gets: which rungs, at what size, and how they are encoded.

use zib_media::{plan_ladder, Rung, VideoProbe};

fn source(width: u32, height: u32, fps: f64, audio: bool) -> VideoProbe {
    VideoProbe {
        duration_secs: 60.0,
        width,
        height,
        frame_rate: fps,
        video_codec: "h264".into(),
        audio_codec: audio.then(|| "aac".into()),
    }
}

fn sizes(rungs: &[Rung]) -> Vec<(&str, u32, u32)> {
    rungs
        .iter()
        .map(|r| (r.plan.name.as_str(), r.plan.width, r.plan.height))
        .collect()
}

#[test]
fn a_1080p_source_gets_every_rung_up_to_1080p_lowest_first() {
    let rungs = plan_ladder(&source(1920, 1080, 30.0, true));
    assert_eq!(
        sizes(&rungs),
        vec![
            ("360p", 640, 360),
            ("480p", 854, 480),
            ("720p", 1280, 720),
            ("1080p", 1920, 1080)
        ]
    );
    let rates: Vec<u32> = rungs.iter().map(|r| r.video_kbps).collect();
    assert!(
        rates.windows(2).all(|w| w[0] < w[1]),
        "bitrates climb: {rates:?}"
    );
    for r in &rungs {
        assert!(r.maxrate_kbps > r.video_kbps && r.bufsize_kbps >= r.maxrate_kbps);
        assert!(r.plan.codecs.ends_with(",mp4a.40.2"), "{}", r.plan.codecs);
        assert_eq!(r.plan.frame_rate, 30.0);
    }
    assert_eq!((rungs[0].profile, rungs[0].level), ("main", "3.0"));
    assert_eq!(rungs[0].plan.codecs, "avc1.4d401e,mp4a.40.2");
    assert_eq!((rungs[3].profile, rungs[3].level), ("high", "4.0"));
    assert_eq!(rungs[3].plan.codecs, "avc1.640028,mp4a.40.2");
}

#[test]
fn the_ladder_stops_at_the_source_never_above() {
    assert_eq!(
        sizes(&plan_ladder(&source(1280, 720, 30.0, true))),
        vec![("360p", 640, 360), ("480p", 854, 480), ("720p", 1280, 720)]
    );
    // 1000 lines: 720p is the top rung, nothing is upscaled to 1080p.
    let names: Vec<String> = plan_ladder(&source(1778, 1000, 30.0, true))
        .into_iter()
        .map(|r| r.plan.name)
        .collect();
    assert_eq!(names, ["360p", "480p", "720p"]);
    // One pixel short of 1080p wide: the rung is not wider than the source.
    let top = plan_ladder(&source(1919, 1080, 30.0, true))
        .pop()
        .expect("a rung");
    assert_eq!((top.plan.width, top.plan.height), (1918, 1080));
    let uhd = plan_ladder(&source(3840, 2160, 30.0, true));
    assert_eq!(uhd.len(), 5);
    assert_eq!(sizes(&uhd[4..]), vec![("2160p", 3840, 2160)]);
    assert_eq!(uhd[4].level, "5.1");
}

#[test]
fn portrait_sources_stay_portrait_named_by_the_short_side() {
    assert_eq!(
        sizes(&plan_ladder(&source(1080, 1920, 30.0, true))),
        vec![
            ("360p", 360, 640),
            ("480p", 480, 854),
            ("720p", 720, 1280),
            ("1080p", 1080, 1920)
        ]
    );
}

#[test]
fn a_source_below_360p_gets_one_rung_at_its_own_even_size() {
    let rungs = plan_ladder(&source(321, 179, 30.0, false));
    assert_eq!(sizes(&rungs), vec![("178p", 320, 178)]);
    assert!(rungs[0].video_kbps < 800, "smaller than the 360p rate");
    assert_eq!(
        rungs[0].plan.codecs, "avc1.4d401e",
        "no audio codec without audio"
    );
    let portrait = plan_ladder(&source(240, 320, 30.0, false));
    assert_eq!(sizes(&portrait), vec![("240p", 240, 320)]);
}

#[test]
fn high_frame_rates_get_more_bits_and_a_higher_level_capped_at_60() {
    let at30 = plan_ladder(&source(1920, 1080, 30.0, true));
    let at60 = plan_ladder(&source(1920, 1080, 59.94, true));
    assert_eq!(at60[3].video_kbps, at30[3].video_kbps * 3 / 2);
    assert_eq!(at60[3].level, "4.2");
    assert_eq!(at60[3].plan.frame_rate, 59.94);
    let at120 = plan_ladder(&source(1280, 720, 120.0, false));
    assert!(at120.iter().all(|r| r.plan.frame_rate == 60.0));
}

/// One row of the documented table: name, width, video, maxrate, bufsize, audio,
/// profile, level.
type Row = (String, u32, u32, u32, u32, u32, &'static str, &'static str);

/// The table in docs/video.md ("The encoder: ffmpeg"), row for row.
#[test]
fn the_documented_ladder_table() {
    let rows: Vec<Row> = plan_ladder(&source(3840, 2160, 30.0, true))
        .into_iter()
        .map(|r| {
            (
                r.plan.name,
                r.plan.width,
                r.video_kbps,
                r.maxrate_kbps,
                r.bufsize_kbps,
                r.audio_kbps,
                r.profile,
                r.level,
            )
        })
        .collect();
    let want = [
        ("360p", 640, 800, 856, 1600, 96, "main", "3.0"),
        ("480p", 854, 1400, 1498, 2800, 96, "high", "3.1"),
        ("720p", 1280, 2800, 2996, 5600, 128, "high", "3.1"),
        ("1080p", 1920, 5000, 5350, 10000, 128, "high", "4.0"),
        ("2160p", 3840, 16000, 17120, 32000, 128, "high", "5.1"),
    ];
    let want: Vec<Row> = want
        .iter()
        .map(|&(n, w, v, m, b, a, p, l)| (n.to_string(), w, v, m, b, a, p, l))
        .collect();
    assert_eq!(rows, want);
}
