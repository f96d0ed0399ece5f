//! The sources a tenant really uploads: a portrait phone clip (stays portrait), a
//! clip without audio (a ladder without an audio track), an MP4 with its `moov` atom
//! at the end (not fast-start), and a file that is not a video at all (a clear
//! `failed_user_action`, not a retry loop). `zib encode --wait` drives two of them. The audio-less one is declared with
//! `pipeline: {encode: true}` at initiate and encodes without a request. One cluster.

mod common;
#[path = "common/video.rs"]
mod video;

use std::time::Duration;

use common::procs::ProcCluster;
use common::*;
use serde_json::{json, Value};
use video::*;

const ENCODE: Duration = Duration::from_secs(600);

fn upload(cluster: &ProcCluster, path: &std::path::Path, key: &str) -> String {
    rt().block_on(cluster.client().upload_path(
        path,
        "sources",
        key,
        Some("video/mp4"),
        &zib_client::UploadOptions::default(),
    ))
    .expect("upload")
    .file_id
    .to_string()
}

/// Initiates with a declared pipeline, then uploads the bytes as the SDK would.
fn upload_with_pipeline(
    cluster: &ProcCluster,
    path: &std::path::Path,
    key: &str,
    pipeline: Value,
) -> String {
    let size = std::fs::metadata(path).unwrap().len();
    let tenant = Tenant {
        api_url: cluster.api_url.clone(),
        bearer: cluster.bearer(),
    };
    let (status, reg) = tenant.call(
        reqwest::Method::POST,
        "/v1/api/upload/initiate",
        Some(json!({"bucket": "sources", "key": key, "file_size": size,
                    "content_type": "video/mp4", "pipeline": pipeline})),
    );
    assert_eq!(status, 200, "{reg}");
    let reg: zib_proto::api::Registration = serde_json::from_value(reg).unwrap();
    let client = cluster.client();
    rt().block_on(zib_client::upload_with_registration(
        client.http(),
        &reg,
        path,
        &zib_client::UploadOptions::default(),
    ))
    .unwrap();
    reg.file_id.to_string()
}

/// The rungs' (width, height) and whether each has an audio stream, read with
/// ffprobe through the CDN; every rung decodes to the source's frame count.
fn ladder(tenant: &Tenant, file_id: &str, frames: u64) -> Vec<(u32, u32, bool)> {
    let master_url = tenant.master_url(file_id);
    let (status, master) = fetch_text(&master_url);
    assert_eq!(status, 200, "{master}");
    let mut out = Vec::new();
    for v in variants(&master, &master_url) {
        let p = probe(&v.url);
        let video = &streams_of(&p, "video")[0];
        let (w, h) = (
            video["width"].as_u64().unwrap() as u32,
            video["height"].as_u64().unwrap() as u32,
        );
        assert_eq!((w, h), v.resolution(), "RESOLUTION of {}", v.url);
        assert_eq!(video["codec_name"], "h264");
        let audio = !streams_of(&p, "audio").is_empty();
        assert_eq!(
            audio,
            v.attr("CODECS").contains("mp4a"),
            "CODECS says what is there: {master}"
        );
        assert_eq!(count_frames(&v.url), Ok(frames), "{}", v.url);
        out.push((w, h, audio));
    }
    out.sort();
    out
}

/// `zib encode <args>` as the cluster's tenant.
fn zib_encode(cluster: &ProcCluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new(zib_bin())
        .arg("encode")
        .args(args)
        .env("ZIB_API_URL", &cluster.api_url)
        .env("ZIB_ACCESS_KEY", &cluster.access_key)
        .env("ZIB_SECRET_KEY", &cluster.secret_key)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run zib encode")
}

#[test]
fn portrait_audio_less_moov_at_end_and_not_a_video() {
    ensure_media();
    let work = tempfile::tempdir().unwrap();
    let portrait = Clip::new(540, 960, 4);
    let silent = Clip {
        audio: false,
        ..Clip::new(640, 360, 4)
    };
    let moov_last = Clip {
        faststart: false,
        ..Clip::new(854, 480, 4)
    };
    let portrait_path = make_clip(work.path(), "portrait.mp4", &portrait);
    let silent_path = make_clip(work.path(), "silent.mp4", &silent);
    let moov_path = make_clip(work.path(), "moov-last.mp4", &moov_last);
    assert!(
        moov_at_end(&moov_path),
        "the clip must have its moov last: {:?}",
        top_level_boxes(&moov_path)
    );
    assert!(!moov_at_end(&portrait_path));
    let junk_path = write_file(work.path(), "junk.mp4", &pattern(300_000, 7));

    let cluster = ProcCluster::start(6, &[]);
    let tenant = Tenant {
        api_url: cluster.api_url.clone(),
        bearer: cluster.bearer(),
    };
    let portrait_id = upload(&cluster, &portrait_path, "portrait.mp4");
    // Through S3 multipart, in three uneven parts: the encoder reads the source as
    // three envelopes, seeking across them (its moov is at the end).
    let moov_bytes = std::fs::read(&moov_path).unwrap();
    let third = moov_bytes.len() / 3;
    let moov_id = common::s3_raw::RawS3::new(&cluster.api_url, cluster.bearer(), "sources")
        .upload_in_parts("moov-last.mp4", &moov_bytes, &[third, 2 * third + 1001]);
    let moov_row = rt()
        .block_on(store(&cluster).file(moov_id.parse().unwrap()))
        .unwrap()
        .unwrap();
    assert!(moov_row.in_listed_parts() && moov_row.part_count == 3);
    let junk_id = upload(&cluster, &junk_path, "junk.mp4");
    let silent_id = upload_with_pipeline(
        &cluster,
        &silent_path,
        "silent.mp4",
        json!({"encode": true}),
    );

    let (status, answer) = tenant.request_encode(&portrait_id, json!({}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "queued", "{answer}");
    let portrait_job = answer["encoding_id"].as_str().unwrap().to_string();

    // `zib encode --wait` on the moov-at-end clip: read by seeking, not refused; the
    // CLI prints the request's answer, then the job once playable, and exits 0.
    let out = zib_encode(&cluster, &[&moov_id, "--wait"]);
    assert!(
        out.status.success(),
        "zib encode --wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["status"], "queued", "{lines:?}");
    assert_eq!(lines[1]["encoding_id"], lines[0]["encoding_id"]);
    assert!(
        playable_complete(lines[1]["phase"].as_str().unwrap_or("")),
        "{lines:?}"
    );
    assert_eq!(
        ladder(&tenant, &moov_id, moov_last.frames()),
        [(640, 360, true), (854, 480, true)]
    );

    // Not a video: failed_user_action at once, with a sentence, no retries; the
    // CLI exits 1 saying so.
    let out = zib_encode(&cluster, &[&junk_id, "--wait"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("failed_user_action"), "{stderr}");
    let junk_job = String::from_utf8(out.stdout).unwrap();
    let junk_job: Value = serde_json::from_str(junk_job.lines().next().unwrap()).unwrap();
    let junk = tenant.wait_job(junk_job["encoding_id"].as_str().unwrap(), ENCODE, |p| {
        p == "failed_user_action"
    });
    let why = junk["error_message"].as_str().unwrap_or("");
    assert!(
        why.to_lowercase().contains("video"),
        "error_message: {junk}"
    );
    assert_eq!(junk["retry_count"], 0, "{junk}");
    let row = tenant
        .my_jobs("active")
        .into_iter()
        .find(|j| j["file_id"] == junk_id.as_str())
        .expect("my-jobs lists the failed job");
    assert_eq!(row["phase"], "failed_user_action");
    assert_eq!(row["retriable"], true, "{row}");
    assert_eq!(row["last_error"], why, "{row}");
    assert_eq!(fetch_text(&tenant.master_url(&junk_id)).0, 404);

    // Another tenant: the job and file are exactly like missing ones everywhere.
    let other = Tenant {
        api_url: cluster.api_url.clone(),
        bearer: cluster.create_tenant("someone-else"),
    };
    let missing = "00000000-0000-4000-8000-000000000000";
    let junk_encoding = junk_job["encoding_id"].as_str().unwrap();
    assert_eq!(other.job(junk_encoding).0, 404);
    assert_eq!(other.job(missing).0, 404);
    let answers = |file: &str| {
        [
            other.request_encode(file, json!({})).0,
            other
                .call(
                    reqwest::Method::POST,
                    &format!("/v1/api/my-jobs/{file}/retry"),
                    None,
                )
                .0,
            other
                .call(
                    reqwest::Method::DELETE,
                    &format!("/v1/api/my-jobs/{file}"),
                    None,
                )
                .0,
        ]
    };
    let foreign = answers(&junk_id);
    assert_eq!(foreign, answers(missing), "request, retry, cancel");
    assert_eq!(foreign[0], 404);
    assert!(
        foreign.iter().all(|s| (400..500).contains(s)),
        "{foreign:?}"
    );
    assert!(other.my_jobs("all").is_empty());

    // Portrait stays portrait, capped at the source's short side (540: 360p, 480p).
    tenant.wait_job(&portrait_job, ENCODE, playable_complete);
    assert_eq!(
        ladder(&tenant, &portrait_id, portrait.frames()),
        [(360, 640, true), (480, 854, true)]
    );

    // Declared at initiate: encoded without a request, and the pipeline status says so.
    let mut encoding_id = String::new();
    wait_for("the declared encode to complete", ENCODE, || {
        let p = pipeline(&cluster, &silent_id);
        encoding_id = p["stages"]["encoding"]["encoding_id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let phase = p["stages"]["encoding"]["phase"].as_str().unwrap_or("");
        assert!(phase != "failed_user_action", "{p}");
        playable_complete(phase)
    });
    let p = pipeline(&cluster, &silent_id);
    assert_eq!(p["declared"]["encode"], true, "{p}");
    assert_eq!(
        p["stages"]["encoding"]["hls_manifest_url"],
        tenant.master_url(&silent_id).as_str(),
        "{p}"
    );
    assert_eq!(
        ladder(&tenant, &silent_id, silent.frames()),
        [(640, 360, false)]
    );
    let (status, again) = tenant.request_encode(&silent_id, json!({}));
    assert_eq!(status, 200);
    assert_eq!(again["encoding_id"], encoding_id.as_str(), "{again}");
    assert!(
        matches!(again["status"].as_str(), Some("already_encoded")),
        "{again}"
    );
}
