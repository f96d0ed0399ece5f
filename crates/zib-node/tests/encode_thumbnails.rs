//! The encoder's thumbnails and aspect variants on a real node with real ffmpeg,
//! against the fake server: what is uploaded, in which order, naming what, and
//! what a variant job encodes.

mod encode_support;

use std::time::Duration;

use encode_support::*;
use zib_proto::jobs::{ArtifactKind, JobStage, SpritePlan, ThumbnailPlan};

const LIMIT: Duration = Duration::from_secs(180);

/// `hh:mm:ss.mmm` or `mm:ss.mmm` in seconds.
fn vtt_time(t: &str) -> f64 {
    t.trim()
        .split(':')
        .fold(0.0, |acc, part| acc * 60.0 + part.parse::<f64>().unwrap())
}

/// The cues of a sprite track: (start, end, sheet URL, [x, y, w, h]).
fn vtt_cues(vtt: &str) -> Vec<(f64, f64, String, [u32; 4])> {
    let mut cues = Vec::new();
    let mut lines = vtt.lines();
    while let Some(line) = lines.next() {
        let Some((start, end)) = line.split_once("-->") else {
            continue;
        };
        let body = lines.next().unwrap_or("");
        let (url, xywh) = body
            .split_once("#xywh=")
            .unwrap_or_else(|| panic!("cue without #xywh: {body:?}"));
        let xywh: Vec<u32> = xywh.split(',').map(|n| n.trim().parse().unwrap()).collect();
        cues.push((
            vtt_time(start),
            vtt_time(end),
            url.to_string(),
            [xywh[0], xywh[1], xywh[2], xywh[3]],
        ));
    }
    cues
}

async fn wait_for_end(fake: &Fake) -> Seen {
    wait_for("the job to end", LIMIT, || {
        let seen = fake.seen.lock().unwrap();
        seen.done.is_some() || seen.failed.is_some()
    })
    .await;
    let seen = fake.seen();
    assert!(seen.failed.is_none(), "job failed: {:?}", seen.failed);
    assert!(seen.stray_calls.is_empty(), "{:?}", seen.stray_calls);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_makes_a_poster_sheets_and_a_track_naming_them_then_registers_before_done() {
    ensure_ffmpeg();
    let (url, fake) = start_fake().await;
    // 105 tiles at one a second: two sheets, the second partial.
    let clip = make_clip(160, 90, 105, "thumbnails-test");
    let plan = ThumbnailPlan {
        poster_at: Some("3s".into()),
        sprite: Some(SpritePlan {
            interval_secs: 1,
            width_px: 80,
        }),
    };
    offer_job_with(&fake, &url, &clip, 64 * 1024, Some(plan), None);
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(node_config(&url, &dir)).await;
    let seen = wait_for_end(&fake).await;
    node.stop().await;

    // Poster, the sheets in tile order, the track naming them, the registration, done.
    assert_eq!(
        seen.order,
        [
            "artifact:poster:0",
            "artifact:sprite_sheet:0",
            "artifact:sprite_sheet:1",
            "artifact:sprite_vtt:0",
            "thumbnails",
            "done"
        ]
    );
    let of =
        |kind| -> Vec<&Artifact> { seen.artifacts.iter().filter(|a| a.kind == kind).collect() };
    let poster = of(ArtifactKind::Poster)[0];
    assert_eq!(poster.content_type, "image/jpeg");
    assert!(is_jpeg(&poster.bytes), "the poster is a JPEG");
    assert_eq!(media_size(&poster.bytes), (160, 90), "the source's size");
    let sheets = of(ArtifactKind::SpriteSheet);
    let sheet_sizes: Vec<(u32, u32)> = sheets
        .iter()
        .map(|s| {
            assert_eq!(s.content_type, "image/jpeg");
            assert!(is_jpeg(&s.bytes), "sheet {} is a JPEG", s.seq);
            media_size(&s.bytes)
        })
        .collect();
    let vtt = of(ArtifactKind::SpriteVtt)[0];
    assert_eq!(vtt.content_type, "text/vtt");
    let text = String::from_utf8(vtt.bytes.clone()).unwrap();
    assert!(text.starts_with("WEBVTT"), "{text}");

    // Cues: one per tile, covering the video without gaps, each naming a region of
    // the sheet whose URL the fake answered.
    let cues = vtt_cues(&text);
    assert_eq!(cues.len(), 105, "{text}");
    let mut at = 0.0;
    for (start, end, url, [x, y, w, h]) in &cues {
        assert!((start - at).abs() < 0.002, "gap before {start}: {text}");
        assert!(end > start);
        at = *end;
        let sheet = sheets
            .iter()
            .position(|s| &s.stored.url == url)
            .unwrap_or_else(|| panic!("cue names {url}, not an answered sheet URL"));
        let (sw, sh) = sheet_sizes[sheet];
        assert!(
            x + w <= sw && y + h <= sh,
            "{url}#xywh={x},{y},{w},{h} outside {sw}x{sh}"
        );
        assert_eq!(*w, 80);
    }
    assert!((at - 105.0).abs() < 0.1, "the last cue ends at {at}");
    assert_eq!(cues[0].2, sheets[0].stored.url);
    assert_eq!(cues[100].2, sheets[1].stored.url, "tile 101 opens sheet 2");

    // The registration names exactly the files the fake answered.
    let registered = seen.thumbnails.clone().unwrap();
    assert_eq!(registered.lease_token, LEASE);
    assert_eq!(registered.poster_file_id, poster.stored.file_id);
    assert_eq!(
        registered.sprite_sheet_file_ids,
        sheets.iter().map(|s| s.stored.file_id).collect::<Vec<_>>()
    );
    assert_eq!(registered.sprite_vtt_file_id, Some(vtt.stored.file_id));
    // Thumbnails are reported, as a slice at the end of the encoding share.
    for r in &seen.renewals {
        if r.stage == JobStage::Encoding {
            assert!(r.progress <= 90.0, "{r:?}");
        }
    }
    let making = seen
        .renewals
        .iter()
        .find(|r| r.detail.as_deref() == Some("making thumbnails"))
        .expect("a renewal says the thumbnails are being made");
    assert_eq!(making.stage, JobStage::Encoding);
    assert!((80.0..=90.0).contains(&making.progress), "{making:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_thumbnails_uploads_nothing() {
    ensure_ffmpeg();
    let (url, fake) = start_fake().await;
    let clip = make_clip(160, 90, 2, "no-thumbnails-test");
    offer_job(&fake, &url, &clip, 64 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(node_config(&url, &dir)).await;
    let seen = wait_for_end(&fake).await;
    node.stop().await;
    assert_eq!(seen.order, ["done"]);
    assert!(seen.artifacts.is_empty() && seen.thumbnails.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variant_job_encodes_the_vertical_ladder_and_a_cropped_poster() {
    ensure_ffmpeg();
    let (url, fake) = start_fake().await;
    let clip = make_clip(1920, 1080, 2, "variant-test");
    let plan = ThumbnailPlan {
        poster_at: None,
        sprite: None,
    };
    let keys = offer_job_with(&fake, &url, &clip, 64 * 1024, Some(plan), Some("9:16"));
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(node_config(&url, &dir)).await;
    let seen = wait_for_end(&fake).await;

    let probed = seen.probed.clone().unwrap();
    assert_eq!((probed.probe.width, probed.probe.height), (1920, 1080));
    let sizes: Vec<(u32, u32)> = probed
        .renditions
        .iter()
        .map(|r| (r.width, r.height))
        .collect();
    assert_eq!(sizes, [(360, 640), (540, 960)], "9:16, none above 1080");
    let published: Vec<&str> = seen.published.iter().map(|(n, _)| n.as_str()).collect();
    let names: Vec<&str> = probed.renditions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(published, names);

    // The crop reached ffmpeg: the top rung's first segment is 540×960.
    let top = probed.renditions.last().unwrap();
    let first = seen
        .segments
        .iter()
        .find(|s| s.rendition == top.name && s.seq == 0)
        .unwrap();
    let got = reqwest::get(format!(
        "http://{}/v1/segments/{}",
        node.addr, first.blob_id
    ))
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    let iv = zib_crypto::hls::iv_for_sequence(0);
    let plain = zib_crypto::hls::decrypt_segment(&keys.hls_key, &iv, &got).unwrap();
    assert_eq!(media_size(&plain), (540, 960));
    node.stop().await;

    // A poster only, of the crop: portrait 9:16, no taller than the source.
    assert_eq!(seen.order, ["artifact:poster:0", "thumbnails", "done"]);
    let poster = &seen.artifacts[0];
    assert!(is_jpeg(&poster.bytes));
    let (w, h) = media_size(&poster.bytes);
    assert!(
        h <= 1080 && (f64::from(w) / f64::from(h) - 9.0 / 16.0).abs() < 0.01,
        "{w}x{h}"
    );
    let registered = seen.thumbnails.clone().unwrap();
    assert_eq!(registered.poster_file_id, poster.stored.file_id);
    assert!(registered.sprite_sheet_file_ids.is_empty());
    assert_eq!(registered.sprite_vtt_file_id, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_on_an_artefact_upload_stops_the_job_without_failed() {
    ensure_ffmpeg();
    let (url, fake) = start_fake().await;
    let clip = make_clip(160, 90, 2, "artefact-gone-test");
    let plan = ThumbnailPlan {
        poster_at: None,
        sprite: Some(SpritePlan {
            interval_secs: 1,
            width_px: 80,
        }),
    };
    offer_job_with(&fake, &url, &clip, 64 * 1024, Some(plan), None);
    *fake.artifacts_gone.lock().unwrap() = true;
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(node_config(&url, &dir)).await;
    wait_for("the poster upload", LIMIT, || {
        !fake.seen.lock().unwrap().order.is_empty()
    })
    .await;
    // Let any straggler show itself: after the 410 the node says nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = fake.seen();
    node.stop().await;
    assert_eq!(seen.order, ["artifact:poster:gone"]);
    assert!(seen.done.is_none() && seen.failed.is_none() && seen.thumbnails.is_none());
    assert!(seen.stray_calls.is_empty(), "{:?}", seen.stray_calls);
    assert_eq!(seen.published.len(), 1, "the ladder was published first");
}
