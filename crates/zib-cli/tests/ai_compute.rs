//! Standalone compute jobs on a real `zib dev` built with `ai` whose models directory
//! holds only Whisper tiny.en (`fastest`): a video already encoded is transcribed with
//! `zib transcribe --wait`; its stream gains the subtitle track; a tier no node runs
//! (`recommended`, and vision) is a 503 and the CLI says what to do; an unknown tier
//! a 400 naming the field; another tenant's job and file ids answer like missing ones;
//! and no node wrote the transcript (or the source's decoded sound) to its disk.

#[path = "common/ai.rs"]
mod ai;
mod common;
#[path = "common/video.rs"]
mod video;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use video::*;

const SENTENCES: &str = "My neighbour keeps a pineapple plant in her greenhouse. \
    Every autumn she harvests the strawberries and makes marmalade.";
const AI_RUN: Duration = Duration::from_secs(600);

fn submit(tenant: &Tenant, kind: &str, body: Value) -> (u16, Value) {
    tenant.call(
        reqwest::Method::POST,
        &format!("/v1/api/compute/{kind}"),
        Some(body),
    )
}

fn status(tenant: &Tenant, job_id: &str) -> (u16, Value) {
    tenant.call(
        reqwest::Method::GET,
        &format!("/v1/api/compute/jobs/{job_id}"),
        None,
    )
}

#[test]
fn standalone_jobs_on_an_encoded_file() {
    ai::require_models(&["fastest"]);
    let work = tempfile::tempdir().unwrap();
    let (wav, speech) = ai::speak(work.path(), "speech.wav", SENTENCES);
    let clip = ai::clip_with_speech(
        work.path(),
        "speech.mp4",
        "testsrc=size=320x240:rate=10[v]",
        &wav,
        (speech + 1.5).ceil(),
    );
    let duration = ai::duration_of(&clip);

    // Only tiny.en in this cluster's models directory; the nodes (and ffmpeg under
    // them) get their own $TMPDIR, scanned at the end.
    let models = ai::models_subset(work.path(), &["fastest"]);
    let node_tmp = tempfile::tempdir().unwrap();
    let cluster = ai::start_cluster(
        3,
        3,
        &[
            ("ZIB_MODELS_DIR", models.to_str().unwrap()),
            ("TMPDIR", node_tmp.path().to_str().unwrap()),
        ],
    );
    let tenant = ai::tenant(&cluster);
    let (file_id, _) = cluster.upload(&clip, "ai-clips", "speech.mp4");
    let out = cluster.cli(&["encode", &file_id, "--wait"]);
    assert!(
        out.status.success(),
        "zib encode: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Refusals before any job: no node runs the tier, an unknown tier, no such file.
    let (code, body) = submit(
        &tenant,
        "transcription",
        json!({"file_id": file_id, "tier": "recommended"}),
    );
    assert_eq!(code, 503, "no node has Whisper base: {body}");
    let (code, body) = submit(&tenant, "vision", json!({"file_id": file_id}));
    assert_eq!(code, 503, "no node has the vision models: {body}");
    let (code, body) = submit(
        &tenant,
        "transcription",
        json!({"file_id": file_id, "tier": "ultra"}),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.to_string().contains("tier"), "{body}");
    let out = cluster.cli(&["transcribe", &file_id, "--tier", "recommended"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a 503 is a failure");
    assert!(
        stderr.contains("install-models.sh") && stderr.contains("recommended"),
        "the CLI says what to do: {stderr}"
    );

    // The run, through the CLI as a person would.
    let out = cluster.cli(&["transcribe", &file_id, "--tier", "fastest", "--wait"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "zib transcribe --wait: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 2, "the submission, then the job: {stdout}");
    let job_id = lines[0]["job_id"].as_str().expect("job_id").to_string();
    assert_eq!(lines[1]["job_id"], job_id.as_str());
    let job = ai::wait_compute(&tenant, &job_id, AI_RUN);
    assert_eq!(job["kind"], "transcription", "{job}");
    assert_eq!(job["tier"], "fastest", "{job}");
    assert_eq!(job["language"], "en", "{job}");
    assert!(job["encoding_job_id"].is_null(), "{job}");
    let srt_id = job["srt_file_id"]
        .as_str()
        .expect("srt_file_id")
        .to_string();
    let vtt_id = job["vtt_file_id"]
        .as_str()
        .expect("vtt_file_id")
        .to_string();
    let srt = ai::object_text(&cluster, &srt_id);
    let cues = ai::cues(&srt);
    ai::assert_timings(&cues, duration, "srt");
    let heard = ai::cue_text(&cues);
    let wer = zib_ai::wer::word_error_rate(SENTENCES, &heard);
    eprintln!("WER {wer:.3}: {heard:?}");
    assert!(wer < 0.35, "WER {wer:.3}: {heard:?}");

    // The encoded stream gains the track.
    let (code, master) = fetch_text(&tenant.master_url(&file_id));
    assert_eq!(code, 200, "{master}");
    assert!(master.contains("TYPE=SUBTITLES"), "{master}");
    let subs_url = format!("{}/stream/{file_id}/subtitles.m3u8", cluster.creds.api_url);
    let (code, subs) = fetch_text(&subs_url);
    assert_eq!(code, 200, "{subs}");
    assert!(subs.contains(&format!("/objects/{vtt_id}")), "{subs}");

    // Another tenant: the job and the file are missing ones, not someone else's.
    let other = Tenant {
        api_url: cluster.creds.api_url.clone(),
        bearer: cluster.create_tenant("other"),
    };
    let missing_job = "00000000-0000-4000-8000-000000000000";
    let (theirs, theirs_body) = status(&other, &job_id);
    let (nothing, nothing_body) = status(&other, missing_job);
    assert_eq!(
        (theirs, nothing),
        (404, 404),
        "{theirs_body} / {nothing_body}"
    );
    // Alike but for the id and the request's own id.
    let without_request_id = |mut v: Value| {
        if let Some(map) = v.as_object_mut() {
            map.remove("request_id");
        }
        v
    };
    assert_eq!(
        without_request_id(theirs_body)
            .to_string()
            .replace(&job_id, "ID"),
        without_request_id(nothing_body)
            .to_string()
            .replace(missing_job, "ID"),
        "another tenant's job reads like a missing one"
    );
    let (code, body) = submit(
        &other,
        "transcription",
        json!({"file_id": file_id, "tier": "fastest"}),
    );
    assert_eq!(code, 404, "another tenant's file: {body}");

    // Nothing in the clear on any node's disk, its temp dir, or the log: the
    // transcript's cue lines and its longer words.
    let mut needles: Vec<Vec<u8>> = cues.iter().map(|c| c.text.clone().into_bytes()).collect();
    needles.extend(
        ai::long_words(&heard, 7)
            .into_iter()
            .map(String::into_bytes),
    );
    assert!(needles.len() >= 3, "too few needles: {heard:?}");
    let mut roots: Vec<PathBuf> = cluster.node_dirs();
    roots.push(node_tmp.path().to_path_buf());
    let needles: Vec<&[u8]> = needles.iter().map(Vec::as_slice).collect();
    let mut hits = files_containing(&roots, &needles);
    // The log (server and nodes) is a file beside the node directories.
    if let Ok(log) = std::fs::read(cluster.data_dir().join("dev.log")) {
        for (i, n) in needles.iter().enumerate() {
            if contains(&log, n) {
                hits.push((cluster.data_dir().join("dev.log"), i));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "the transcript in the clear on disk: {hits:?}"
    );
}
