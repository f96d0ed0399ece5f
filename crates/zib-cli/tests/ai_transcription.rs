//! Transcription with an encode, as a tenant and a player meet it, on a real `zib
//! dev` built with `ai` and the real Whisper base (`recommended`; tiny.en drops a second sentence after a pause on espeak speech): espeak-ng speaks two
//! known sentences into a generated clip; an encode asked with `transcription:
//! "recommended"` sends `encoding.complete` then `transcription.complete` (naming the
//! encoding job, the SRT and the VTT); the job and the pipeline name the same files;
//! the SRT and VTT read back through the CDN hold the sentences (word error rate
//! measured, below 0.35) with cues in order and inside the clip; the master playlist
//! carries the subtitle group on every variant and its playlist names the VTT; `zib
//! compute-status` reads the run.

#[path = "common/ai.rs"]
mod ai;
mod common;
#[path = "common/webhook_receiver.rs"]
mod receiver;
#[path = "common/video.rs"]
mod video;

use std::time::Duration;

use common::*;
use receiver::Receiver;
use serde_json::{json, Value};
use video::*;

const SENTENCES: [&str; 2] = [
    "The weather today is sunny with a light breeze from the west.",
    "Please remember to water the garden before the evening.",
];
const MAX_WER: f64 = 0.35;
const AI_RUN: Duration = Duration::from_secs(600);
const SECRET: &str = "e2e-transcription-webhook-secret-0123456789";

#[test]
fn an_encode_with_transcription_gets_subtitles_in_its_stream() {
    ai::require_models(&["recommended"]);
    let work = tempfile::tempdir().unwrap();
    let (wav, speech) = ai::speak(work.path(), "speech.wav", &SENTENCES.join(" "));
    let seconds = (speech + 1.5).ceil();
    let clip = ai::clip_with_speech(
        work.path(),
        "speech.mp4",
        "testsrc=size=320x240:rate=10[v]",
        &wav,
        seconds,
    );
    let duration = ai::duration_of(&clip);

    // Every node loads Whisper base (only): the AI runs on the node that encoded.
    let models = ai::models_subset(work.path(), &["recommended"]);
    let cluster = ai::start_cluster(3, 3, &[("ZIB_MODELS_DIR", models.to_str().unwrap())]);
    let tenant = ai::tenant(&cluster);
    let hook = Receiver::start();
    let (file_id, _) = cluster.upload(&clip, "ai-clips", "speech.mp4");

    // An unknown tier is refused, naming the field; no job is made.
    let (code, body) = tenant.request_encode(&file_id, json!({"transcription": "ultra"}));
    assert_eq!(code, 400, "{body}");
    assert!(body.to_string().contains("transcription"), "{body}");

    let (code, started) = tenant.request_encode(
        &file_id,
        json!({"transcription": "recommended", "webhook_url": hook.url("/hook"),
               "webhook_secret": SECRET}),
    );
    assert!(matches!(code, 200 | 202), "{code}: {started}");
    let encoding_id = started["encoding_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no encoding_id: {started}"))
        .to_string();

    let complete = hook.wait_event("encoding.complete", &file_id, AI_RUN);
    assert_eq!(complete.json()["transcription_model"], "recommended");
    let done = hook.wait_event("transcription.complete", &file_id, AI_RUN);
    assert!(
        receiver::zib_signature_ok(SECRET, &done),
        "transcription.complete is signed with the request's secret"
    );
    let event = done.json();
    assert_eq!(event["job_id"], encoding_id.as_str(), "{event}");
    assert_eq!(done.header("x-zib-job-id"), encoding_id, "{event}");
    let srt_id = event["srt_file_id"]
        .as_str()
        .expect("srt_file_id")
        .to_string();
    let vtt_id = event["vtt_file_id"]
        .as_str()
        .expect("vtt_file_id")
        .to_string();
    assert_ne!(srt_id, vtt_id);

    // The job names the same files, and its transcription stage is complete.
    let job = tenant.wait_job(&encoding_id, AI_RUN, playable_complete);
    assert_eq!(job["srt_file_id"], srt_id.as_str(), "{job}");
    assert_eq!(job["vtt_file_id"], vtt_id.as_str(), "{job}");
    assert_eq!(job["transcription"]["status"], "complete", "{job}");
    assert_eq!(job["transcription"]["tier"], "recommended", "{job}");
    assert!(job["vision"].is_null(), "no vision was asked: {job}");

    // What was said, read back through the CDN, in order and inside the clip.
    let reference = SENTENCES.join(" ");
    for (what, id) in [("srt", &srt_id), ("vtt", &vtt_id)] {
        let text = ai::object_text(&cluster, id);
        if what == "vtt" {
            assert!(text.starts_with("WEBVTT"), "not WebVTT: {text}");
        }
        let cues = ai::cues(&text);
        ai::assert_timings(&cues, duration, what);
        let heard = ai::cue_text(&cues);
        let wer = zib_ai::wer::word_error_rate(&reference, &heard);
        eprintln!("{what}: WER {wer:.3} for {heard:?}");
        assert!(wer < MAX_WER, "{what}: WER {wer:.3} ≥ {MAX_WER}: {heard:?}");
    }

    check_stream(&tenant, &file_id, &vtt_id, duration);

    // The pipeline view: the stage with its tier and files; the roll-up is done.
    let pipeline = tenant.pipeline(&file_id);
    let stage = &pipeline["stages"]["transcription"];
    assert_eq!(stage["status"], "complete", "{pipeline}");
    assert_eq!(stage["tier"], "recommended", "{pipeline}");
    assert_eq!(stage["progress"], 100, "{pipeline}");
    assert_eq!(stage["output_file_id"], srt_id.as_str(), "{pipeline}");
    assert_eq!(stage["vtt_file_id"], vtt_id.as_str(), "{pipeline}");
    let status = pipeline["status"].as_str().unwrap_or("");
    assert!(
        !matches!(status, "ai_processing" | "failed"),
        "rolled-up status {status}: {pipeline}"
    );

    // `zib compute-status` on the run the encode made.
    let run_id = stage["job_id"].as_str().expect("the stage's job_id");
    let out = cluster.cli(&["compute-status", run_id, "--wait"]);
    assert!(
        out.status.success(),
        "zib compute-status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("a JSON line on stdout");
    assert_eq!(last["status"], "complete", "{last}");
    assert_eq!(last["encoding_job_id"], encoding_id.as_str(), "{last}");
    assert_eq!(last["srt_file_id"], srt_id.as_str(), "{last}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("vtt: {}", last["vtt_url"].as_str().unwrap_or("?"))),
        "the VTT URL on stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The master playlist carries the subtitle group, every variant names it, and its
/// playlist is one VTT segment: the transcription's, as long as the video.
fn check_stream(tenant: &Tenant, file_id: &str, vtt_id: &str, duration: f64) {
    let master_url = tenant.master_url(file_id);
    let (code, master) = fetch_text(&master_url);
    assert_eq!(code, 200, "{master_url}: {master}");
    let renditions: Vec<&str> = master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-MEDIA:") && l.contains("TYPE=SUBTITLES"))
        .collect();
    assert_eq!(renditions.len(), 1, "one subtitle rendition: {master}");
    let attrs = parse_attrs(renditions[0].trim_start_matches("#EXT-X-MEDIA:"));
    assert_eq!(attrs["GROUP-ID"], "subs", "{master}");
    assert_eq!(attrs["LANGUAGE"], "en", "{master}");
    let streams: Vec<&str> = master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .collect();
    assert!(!streams.is_empty(), "{master}");
    for s in &streams {
        let a = parse_attrs(s.trim_start_matches("#EXT-X-STREAM-INF:"));
        assert_eq!(
            a.get("SUBTITLES").map(String::as_str),
            Some("subs"),
            "{s} in {master}"
        );
    }
    let subs_url = resolve(&master_url, &attrs["URI"]);
    let (code, subs) = fetch_text(&subs_url);
    assert_eq!(code, 200, "{subs_url}: {subs}");
    let playlist = media(&subs, &subs_url);
    assert!(playlist.ended, "a VOD playlist: {subs}");
    assert_eq!(playlist.segments.len(), 1, "{subs}");
    assert!(
        playlist.segments[0].ends_with(&format!("/objects/{vtt_id}")),
        "the segment is the VTT: {subs}"
    );
    let extinf = playlist.durations[0];
    assert!(
        (extinf - duration).abs() < 1.0,
        "EXTINF {extinf} vs the clip's {duration} s"
    );
}
