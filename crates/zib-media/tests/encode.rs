//! One rung through real ffmpeg: the source read over ranged loopback HTTP, the HLS
//! output PUT to a loopback sink, as the node runs it.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    clip, eventually, files, make_clip, process_running, rotate_clip, sink, streams_of, tools,
    wait_for_rung, FileOpts,
};
use tokio_util::sync::CancellationToken;
use zib_media::{
    encode_rung, parse_media_playlist, plan_ladder, probe, segment_seq, MediaError, RungJob,
    SEGMENT_SECS,
};

/// ffprobe of the first video frame of a TS file: is it a keyframe?
fn starts_with_keyframe(path: &Path) -> bool {
    let out = std::process::Command::new(tools().ffprobe)
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-read_intervals",
            "%+#1",
            "-show_entries",
            "frame=key_frame",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("run ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::trim)
        == Some("1")
}

#[tokio::test]
async fn a_rung_arrives_as_4_second_segments_and_a_playlist() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_clip(dir.path(), "src.mp4", clip(640, 360, 9.0, true), &[]);
    let source = files(dir.path(), FileOpts::default()).await;
    let (out, received) = sink().await;
    let tools = tools();
    let input = source.url("src.mp4");
    let p = probe(&tools, &input).await.expect("probe");
    let rungs = plan_ladder(&p);
    assert_eq!(rungs.len(), 1);
    let progress = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&progress);
    let job = RungJob {
        tools: &tools,
        input: &input,
        rung: &rungs[0],
        probe: &p,
        segment_secs: SEGMENT_SECS,
        output_base: &out.url("out"),
    };
    encode_rung(
        job,
        move |f| seen.lock().expect("lock").push(f),
        CancellationToken::new(),
    )
    .await
    .expect("encode");

    let progress = progress.lock().expect("lock").clone();
    assert_eq!(progress.last(), Some(&1.0), "{progress:?}");
    assert!(
        progress.windows(2).all(|w| w[0] < w[1]),
        "progress only climbs: {progress:?}"
    );

    let text = wait_for_rung(&received, "out", "360p.m3u8").await;
    assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
    assert!(
        !text.contains("#EXT-X-KEY"),
        "ffmpeg must not encrypt: {text}"
    );
    let segments = parse_media_playlist(&text);
    let names: Vec<&str> = segments.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["360p_00000.ts", "360p_00001.ts", "360p_00002.ts"]);
    for (i, (name, secs)) in segments.iter().enumerate() {
        assert_eq!(segment_seq("360p", name), Some(i as u32));
        let expect = if i < 2 { 4.0 } else { 1.0 };
        assert!(
            (secs - expect).abs() < 0.15,
            "{name}: {secs} s, expected ≈{expect}"
        );
        let body = received
            .get(&format!("out/{name}"))
            .unwrap_or_else(|| panic!("{name} was PUT"));
        assert_eq!(body.first(), Some(&0x47), "{name} is MPEG-TS (sync byte)");
    }

    let seg = dir.path().join("seg1.ts");
    std::fs::write(&seg, received.get("out/360p_00001.ts").expect("segment 1")).expect("write");
    let streams = streams_of(&seg);
    assert!(
        streams.contains(&("video".into(), "h264".into(), 640, 360)),
        "{streams:?}"
    );
    assert!(
        streams.iter().any(|s| s.0 == "audio" && s.1 == "aac"),
        "{streams:?}"
    );
    assert!(
        starts_with_keyframe(&seg),
        "every segment starts with a keyframe"
    );
}

/// A phone clip (landscape pixels, 90° display matrix, no audio) comes out upright,
/// video only.
#[tokio::test]
async fn a_rotated_audio_less_clip_is_encoded_upright_without_audio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coded = make_clip(dir.path(), "coded.mp4", clip(320, 180, 2.0, false), &[]);
    rotate_clip(&coded, &dir.path().join("phone.mp4"), 90);
    let source = files(dir.path(), FileOpts::default()).await;
    let (out, received) = sink().await;
    let tools = tools();
    let input = source.url("phone.mp4");
    let p = probe(&tools, &input).await.expect("probe");
    let rungs = plan_ladder(&p);
    assert_eq!((rungs[0].plan.width, rungs[0].plan.height), (180, 320));
    let job = RungJob {
        tools: &tools,
        input: &input,
        rung: &rungs[0],
        probe: &p,
        segment_secs: SEGMENT_SECS,
        output_base: &out.url("x"),
    };
    encode_rung(job, |_| {}, CancellationToken::new())
        .await
        .expect("encode");
    let name = &rungs[0].plan.name;
    let playlist = wait_for_rung(&received, "x", &format!("{name}.m3u8")).await;
    let segments = parse_media_playlist(&playlist);
    assert_eq!(segments.len(), 1);
    let seg = dir.path().join("seg.ts");
    std::fs::write(
        &seg,
        received
            .get(&format!("x/{}", segments[0].0))
            .expect("segment"),
    )
    .expect("write");
    assert_eq!(
        streams_of(&seg),
        vec![("video".to_string(), "h264".to_string(), 180, 320)]
    );
}

/// Cancelling while ffmpeg waits on a source that stopped sending kills it at once.
#[tokio::test]
async fn cancelling_a_stuck_encode_kills_ffmpeg() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_clip(
        dir.path(),
        "src.mp4",
        clip(640, 360, 4.0, true),
        &["-movflags", "+faststart"],
    );
    let tools = tools();
    let p = probe(&tools, dir.path().join("src.mp4").to_str().expect("utf-8"))
        .await
        .expect("probe");
    let source = files(
        dir.path(),
        FileOpts {
            stall_after: Some(8192),
            ..FileOpts::default()
        },
    )
    .await;
    let (out, _received) = sink().await;
    let needle = out.addr.to_string();
    let rung = plan_ladder(&p).remove(0);
    let cancel = CancellationToken::new();
    let run = {
        let (cancel, input, base) = (cancel.clone(), source.url("src.mp4"), out.url("o"));
        let (p, tools) = (p.clone(), tools.clone());
        tokio::spawn(async move {
            let job = RungJob {
                tools: &tools,
                input: &input,
                rung: &rung,
                probe: &p,
                segment_secs: SEGMENT_SECS,
                output_base: &base,
            };
            encode_rung(job, |_| {}, cancel).await
        })
    };
    assert!(
        eventually(Duration::from_secs(10), || process_running(&needle)).await,
        "ffmpeg started"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("returns promptly")
        .expect("join");
    assert!(matches!(result, Err(MediaError::Cancelled)), "{result:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "took {:?}",
        asked.elapsed()
    );
    assert!(
        !process_running(&needle),
        "ffmpeg is gone once encode_rung returns"
    );
}

/// Cancelling mid-encode (progress flowing) stops it before the playlist is final.
#[tokio::test]
async fn cancelling_a_running_encode_stops_it_mid_way() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_clip(
        dir.path(),
        "src.mp4",
        clip(640, 360, 8.0, true),
        &["-movflags", "+faststart"],
    );
    let tools = tools();
    let p = probe(&tools, dir.path().join("src.mp4").to_str().expect("utf-8"))
        .await
        .expect("probe");
    let size = std::fs::metadata(dir.path().join("src.mp4"))
        .expect("stat")
        .len() as usize;
    // About four seconds to read the whole source.
    let pace = FileOpts {
        chunk_per_100ms: Some(size / 40 + 1),
        ..FileOpts::default()
    };
    let source = files(dir.path(), pace).await;
    let (out, received) = sink().await;
    let needle = out.addr.to_string();
    let rung = plan_ladder(&p).remove(0);
    let cancel = CancellationToken::new();
    let on_progress = {
        let cancel = cancel.clone();
        move |f: f64| {
            if f > 0.0 && f < 1.0 {
                cancel.cancel();
            }
        }
    };
    let job = RungJob {
        tools: &tools,
        input: &source.url("src.mp4"),
        rung: &rung,
        probe: &p,
        segment_secs: SEGMENT_SECS,
        output_base: &out.url("o"),
    };
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        encode_rung(job, on_progress, cancel),
    )
    .await
    .expect("returns");
    assert!(matches!(result, Err(MediaError::Cancelled)), "{result:?}");
    assert!(!process_running(&needle), "ffmpeg is gone");
    let finished = received
        .get("o/360p.m3u8")
        .is_some_and(|b| String::from_utf8_lossy(&b).contains("#EXT-X-ENDLIST"));
    assert!(!finished, "a cancelled rung never gets a final playlist");
}

/// ffmpeg failing (here: the source vanished after the probe) comes back with its
/// own words, and is not blamed on the source.
#[tokio::test]
async fn an_ffmpeg_failure_carries_its_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = make_clip(dir.path(), "src.mp4", clip(320, 180, 1.0, false), &[]);
    let tools = tools();
    let input = path.to_str().expect("utf-8");
    let p = probe(&tools, input).await.expect("probe");
    let rung = plan_ladder(&p).remove(0);
    std::fs::remove_file(&path).expect("remove the source");
    let (out, _received) = sink().await;
    let base = out.url("o");
    let job = RungJob {
        tools: &tools,
        input,
        rung: &rung,
        probe: &p,
        segment_secs: 4,
        output_base: &base,
    };
    match encode_rung(job, |_| {}, CancellationToken::new()).await {
        Err(e @ MediaError::Ffmpeg { .. }) => {
            assert!(!e.is_permanent());
            let text = e.to_string();
            assert!(text.contains("No such file or directory"), "{text}");
            assert!(text.len() < 5000, "stderr is bounded");
        }
        other => panic!("expected an ffmpeg failure, got {other:?}"),
    }
}

/// Why the node checks the playlist against what it received: ffmpeg's exit status
/// does not tell that its PUTs were refused.
#[tokio::test]
async fn ffmpeg_exits_cleanly_even_when_nothing_could_be_put() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = make_clip(dir.path(), "src.mp4", clip(320, 180, 1.0, false), &[]);
    let tools = tools();
    let input = path.to_str().expect("utf-8");
    let p = probe(&tools, input).await.expect("probe");
    let rung = plan_ladder(&p).remove(0);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}/o", closed.local_addr().expect("addr"));
    drop(closed);
    let job = RungJob {
        tools: &tools,
        input,
        rung: &rung,
        probe: &p,
        segment_secs: SEGMENT_SECS,
        output_base: &base,
    };
    let result = encode_rung(job, |_| {}, CancellationToken::new()).await;
    assert!(
        result.is_ok(),
        "ffmpeg 5.1 ignores refused PUTs: {result:?}"
    );
}
