//! The compute worker on a real node with the real models and real ffmpeg, against
//! a fake server: a transcription of spoken words posts SRT then WebVTT, then
//! `done`; a vision run posts a ZibSidecar that reads the text on screen; a `410`
//! on renewal stops a job without another word; the node's disk holds nothing of
//! the source afterwards.

#![cfg(feature = "ai")]

mod compute_support;

use std::time::Duration;

use compute_support::*;
use zib_proto::compute::{ComputeKind, ComputeOutputKind};
use zib_proto::sidecar::ZibSidecar;

const LIMIT: Duration = Duration::from_secs(300);
const SPOKEN: &str = "The quick brown fox jumps over the lazy dog. \
    Please remember to subscribe to our channel for more videos about cooking.";

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

/// The words of an SRT or WebVTT file (cue text only).
fn cue_text(subtitles: &str) -> String {
    subtitles
        .lines()
        .filter(|l| {
            let l = l.trim();
            !l.is_empty()
                && l != "WEBVTT"
                && !l.contains("-->")
                && !l.chars().all(|c| c.is_ascii_digit())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcription_posts_srt_then_vtt_then_done_and_leaves_nothing_on_disk() {
    ensure_models();
    let marker = format!("ZIB-COMPUTE-MARKER-{}", uuid::Uuid::new_v4().simple());
    let clip = spoken_clip(SPOKEN, &marker);
    let (url, fake) = start_fake().await;
    let (data_key, _) = offer_job(&fake, &url, &clip, ComputeKind::Transcription, "fastest", 3);
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(node_config(&url, &dir)).await;
    let seen = wait_for_end(&fake).await;
    node.stop().await;

    // It advertised what it runs.
    let caps = &seen.registrations[0].capabilities;
    assert!(
        caps.iter().any(|c| c == "transcription:fastest"),
        "{caps:?}"
    );
    assert!(caps.iter().any(|c| c == "vision:standard"), "{caps:?}");

    assert_eq!(seen.order, ["output:srt", "output:vtt", "done"]);
    let done = seen.done.clone().unwrap();
    assert_eq!(done.lease_token, LEASE);
    assert_eq!(done.language.as_deref(), Some("en"));
    let srt = &seen.outputs[0];
    assert_eq!(srt.kind, ComputeOutputKind::Srt);
    assert_eq!(srt.content_type, "application/x-subrip");
    let srt_text = String::from_utf8(srt.bytes.clone()).unwrap();
    assert!(srt_text.starts_with("1\n"), "{srt_text}");
    assert!(srt_text.contains(" --> "), "{srt_text}");
    let vtt = &seen.outputs[1];
    assert_eq!(vtt.content_type, "text/vtt");
    let vtt_text = String::from_utf8(vtt.bytes.clone()).unwrap();
    assert!(vtt_text.starts_with("WEBVTT"), "{vtt_text}");

    // What was said is what the subtitles say (measured, not matched).
    let wer = zib_ai::wer::word_error_rate(SPOKEN, &cue_text(&vtt_text));
    println!("transcription WER (tiny.en, espeak): {wer:.3}");
    assert!(wer < 0.35, "WER {wer}: {vtt_text}");
    let srt_wer = zib_ai::wer::word_error_rate(SPOKEN, &cue_text(&srt_text));
    assert!(srt_wer < 0.35, "SRT WER {srt_wer}: {srt_text}");

    // Renewals carried the progress and a sentence.
    for r in &seen.renewals {
        assert!((0.0..=100.0).contains(&r.progress), "{r:?}");
        assert!(r.detail.is_some(), "{r:?}");
    }

    // Nothing of the source on the node's disk: only its own identity file.
    let files = files_under(dir.path());
    assert_eq!(files, ["node.json"], "files left: {files:?}");
    let identity = std::fs::read(dir.path().join("node.json")).unwrap();
    assert!(!identity
        .windows(marker.len())
        .any(|w| w == marker.as_bytes()));
    assert!(!String::from_utf8_lossy(&identity).contains(&hex::encode(data_key)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vision_run_posts_a_sidecar_that_reads_the_text_on_screen() {
    ensure_models();
    let clip = text_clip("FRESH PASTA RECIPE", 8);
    let (url, fake) = start_fake().await;
    let (_, file_id) = offer_job(&fake, &url, &clip, ComputeKind::Vision, "standard", 3);
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(node_config(&url, &dir)).await;
    let seen = wait_for_end(&fake).await;
    node.stop().await;

    assert_eq!(seen.order, ["output:sidecar", "done"]);
    let out = &seen.outputs[0];
    assert_eq!(out.content_type, "application/json");
    let sidecar: ZibSidecar =
        serde_json::from_slice(&out.bytes).expect("the sidecar parses as a ZibSidecar");
    assert_eq!(sidecar.tier, "standard");
    assert_eq!(sidecar.file_id, file_id.to_string());
    assert!(
        (sidecar.duration_secs - 8.0).abs() < 0.5,
        "{}",
        sidecar.duration_secs
    );
    // Frames every 2 s of 8 s.
    assert!(
        (3..=5).contains(&sidecar.models.frames_sampled),
        "{} frames",
        sidecar.models.frames_sampled
    );
    let texts: Vec<String> = sidecar
        .on_screen_text
        .iter()
        .map(|t| t.text.to_lowercase())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("pasta")),
        "on-screen text: {texts:?}"
    );
    // The text is on screen in the first half only.
    for t in &sidecar.on_screen_text {
        if t.text.to_lowercase().contains("pasta") {
            assert!(t.start_secs < 4.5, "{t:?}");
        }
    }
    // The hard cut at 4 s is a scene boundary.
    assert!(
        sidecar
            .scenes
            .iter()
            .any(|s| (s.start_secs - 4.0).abs() < 0.6),
        "scenes: {:?}",
        sidecar.scenes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_on_renewal_stops_the_job_without_another_word() {
    ensure_models();
    // Long enough that the first renewal (after 1 s) comes mid-job.
    let clip = text_clip("CANCELLED", 120);
    let (url, fake) = start_fake().await;
    *fake.cancel_at_first_renewal.lock().unwrap() = true;
    offer_job(&fake, &url, &clip, ComputeKind::Vision, "standard", 3);
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(node_config(&url, &dir)).await;
    wait_for("a renewal", LIMIT, || {
        !fake.seen.lock().unwrap().renewals.is_empty()
    })
    .await;
    // The job stops: no output, no done, no failed; source reads stop too (a read
    // already on its way when the 410 came may still arrive: it is refused).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late = fake.seen().stray_calls.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = fake.seen();
    node.stop().await;
    assert!(seen.outputs.is_empty(), "{:?}", seen.order);
    assert!(
        seen.done.is_none() && seen.failed.is_none(),
        "{:?}",
        seen.order
    );
    assert_eq!(seen.renewals.len(), 1, "one renewal, answered 410");
    assert!(
        seen.stray_calls.iter().all(|c| c == "source"),
        "calls after the 410: {:?}",
        seen.stray_calls
    );
    assert_eq!(seen.stray_calls.len(), late, "the source is no longer read");
    assert_eq!(files_under(dir.path()), ["node.json"]);
}
