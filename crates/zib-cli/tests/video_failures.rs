//! When encodes go wrong: ffmpeg failing on every node (a wrapper script that passes
//! the capability check but fails encodes while a flag file exists) is retried, ends
//! in `failed_user_action`, and the retry endpoint recovers it once ffmpeg works;
//! cancelling mid-encode stops ffmpeg, evicts what was stored and sends nothing after.
//!
//! Every node of this file runs ffmpeg through the wrapper (`ZIB_FFMPEG`), which is
//! why these stories live in their own test binary.

mod common;
#[path = "common/webhook_receiver.rs"]
mod receiver;
#[path = "common/video.rs"]
mod video;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::procs::ProcCluster;
use common::*;
use receiver::Receiver;
use serde_json::json;
use video::*;

const ENCODE: Duration = Duration::from_secs(600);

/// Writes the wrapper: with `flag` present, any ffmpeg run that reads from or writes
/// to HTTP (an encode; the capability check does neither) fails like a broken
/// encoder. Every run appends its pid to `pids`, so the test can see ffmpeg stopped.
fn ffmpeg_wrapper(dir: &Path, flag: &Path, pids: &Path) -> PathBuf {
    let real = which("ffmpeg");
    let path = dir.join("ffmpeg-wrapper.sh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n\
             echo $$ >> '{pids}'\n\
             if [ -e '{flag}' ]; then\n\
               case \"$*\" in *http://*) echo 'injected encoder failure' >&2; exit 1;; esac\n\
             fi\n\
             exec '{real}' \"$@\"\n",
            pids = pids.display(),
            flag = flag.display(),
            real = real.display(),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn which(tool: &str) -> PathBuf {
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn alive(pid: &str) -> bool {
    // A zombie is not running ffmpeg.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2).is_some_and(|st| st != "Z"))
}

fn blob_files(cluster: &ProcCluster) -> HashSet<String> {
    cluster.blob_locations().into_keys().collect()
}

#[test]
fn a_failing_encoder_is_retried_then_waits_for_the_user_and_cancel_stops_an_encode() {
    ensure_media();
    let work = tempfile::tempdir().unwrap();
    let flag = work.path().join("fail-encodes");
    let pids = work.path().join("ffmpeg-pids");
    let wrapper = ffmpeg_wrapper(work.path(), &flag, &pids);
    std::env::set_var("ZIB_FFMPEG", &wrapper);
    let short = Clip::new(640, 360, 4);
    let short_path = make_clip(work.path(), "short.mp4", &short);
    let long = Clip::new(1280, 720, 20);
    let long_path = make_clip(work.path(), "long.mp4", &long);

    let cluster = ProcCluster::start(
        6,
        &[
            ("ZIB_ALLOW_PRIVATE_WEBHOOK_TARGETS", "true"),
            ("ZIB_WEBHOOK_POLL_INTERVAL_MS", "100"),
            ("ZIB_ENCODING_LEASE_SECS", "6"),
            ("ZIB_ENCODING_RETRY_BACKOFF_SECS", "1"),
            ("ZIB_ENCODING_RETRY_BACKOFF_MAX_SECS", "2"),
            ("ZIB_ENCODING_RETRY_BUDGET", "3"),
        ],
    );
    let tenant = Tenant {
        api_url: cluster.api_url.clone(),
        bearer: cluster.bearer(),
    };
    let hook = Receiver::start();
    let (status, v) = tenant.call(
        reqwest::Method::PATCH,
        "/v1/api/customers/me/webhook",
        Some(json!({"webhook_url": hook.url("/hook")})),
    );
    assert_eq!(status, 200, "{v}");
    let upload = |path: &Path, key: &str| -> String {
        rt().block_on(cluster.client().upload_path(
            path,
            "failures",
            key,
            Some("video/mp4"),
            &zib_client::UploadOptions::default(),
        ))
        .expect("upload")
        .file_id
        .to_string()
    };

    // 1. ffmpeg fails every encode: retried, then failed_user_action.
    std::fs::write(&flag, b"on").unwrap();
    let short_id = upload(&short_path, "short.mp4");
    let (status, answer) = tenant.request_encode(&short_id, json!({}));
    assert_eq!(status, 200, "{answer}");
    let job_id = answer["encoding_id"].as_str().unwrap().to_string();
    let mut saw_retrying = false;
    let deadline = Instant::now() + ENCODE;
    let failed = loop {
        let (_, job) = tenant.job(&job_id);
        match job["phase"].as_str().unwrap_or("") {
            "failed" => {
                saw_retrying = true;
                assert!(
                    !job["retry_after"].is_null(),
                    "failed shows retry_after: {job}"
                );
                assert!(job["error_message"].as_str().is_some(), "{job}");
            }
            "failed_user_action" => break job,
            "local_complete" | "replicating" | "safe" => {
                panic!("an injected failure encoded: {job}")
            }
            _ => {}
        }
        assert!(Instant::now() < deadline, "never gave up: {job}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        saw_retrying,
        "the job went to failed_user_action without retrying"
    );
    assert_eq!(failed["retry_count"], 3, "{failed}");
    let row = tenant
        .my_jobs("active")
        .into_iter()
        .find(|j| j["file_id"] == short_id.as_str())
        .expect("my-jobs lists it");
    assert_eq!(row["retriable"], true, "{row}");
    assert!(!row["last_error"].is_null(), "{row}");
    let failed_events = hook.wait_until("encoding.failed", Duration::from_secs(30), |all| {
        all.iter()
            .any(|r| r.event() == "encoding.failed" && r.json()["job_id"] == job_id.as_str())
    });
    let ev = failed_events
        .iter()
        .find(|r| r.event() == "encoding.failed")
        .unwrap()
        .json();
    assert!(
        ev["error_message"].as_str().is_some_and(|m| !m.is_empty()),
        "{ev}"
    );

    // 2. ffmpeg works again: the retry endpoint recovers the job.
    std::fs::remove_file(&flag).unwrap();
    let (status, v) = tenant.call(
        reqwest::Method::POST,
        &format!("/v1/api/my-jobs/{short_id}/retry"),
        None,
    );
    assert_eq!(status, 200, "{v}");
    let done = tenant.wait_job(&job_id, ENCODE, playable_complete);
    assert!(
        done["error_message"].is_null() || done["phase"] != "failed",
        "{done}"
    );
    assert_eq!(
        count_frames(&tenant.master_url(&short_id)),
        Ok(short.frames())
    );
    // Settled (every copy pushed), so only the next job's segments come and go below.
    tenant.wait_job(&job_id, ENCODE, |p| p == "safe");
    // Another retry of a job that is not failed is refused.
    let (status, _) = tenant.call(
        reqwest::Method::POST,
        &format!("/v1/api/my-jobs/{short_id}/retry"),
        None,
    );
    assert!(
        (400..500).contains(&status),
        "retry of a healthy job: {status}"
    );

    // 3. Cancel mid-encode: ffmpeg stops, stored segments go, no later events.
    let long_id = upload(&long_path, "long.mp4");
    wait_for("the long clip to be safe", Duration::from_secs(120), || {
        pipeline(&cluster, &long_id)["stages"]["upload"]["phase"] == "safe"
    });
    let before = blob_files(&cluster);
    let pids_before = std::fs::read_to_string(&pids).unwrap_or_default();
    let (status, answer) = tenant.request_encode(&long_id, json!({}));
    assert_eq!(status, 200, "{answer}");
    let long_job = answer["encoding_id"].as_str().unwrap().to_string();
    tenant.wait_job(&long_job, ENCODE, |p| matches!(p, "encoding" | "sharding"));
    // Let ffmpeg get going (some segments stored).
    wait_for("encode progress", ENCODE, || {
        tenant.job(&long_job).1["progress"].as_f64().unwrap_or(0.0) > 5.0
    });
    let (status, v) = tenant.call(
        reqwest::Method::DELETE,
        &format!("/v1/api/my-jobs/{long_id}"),
        Some(json!({"reason": "user_abandoned_upload"})),
    );
    assert_eq!(status, 200, "{v}");
    let cancelled_at = time_now_iso();
    let (_, job) = tenant.job(&long_job);
    assert_eq!(job["phase"], "cancelled", "{job}");
    let new_pids: Vec<String> = std::fs::read_to_string(&pids)
        .unwrap_or_default()
        .strip_prefix(pids_before.as_str())
        .unwrap_or("")
        .lines()
        .map(str::to_string)
        .collect();
    assert!(!new_pids.is_empty(), "ffmpeg never ran for the long clip");
    wait_for("ffmpeg to stop", Duration::from_secs(30), || {
        new_pids.iter().all(|p| !alive(p))
    });
    let evicted = Instant::now() + Duration::from_secs(60);
    loop {
        let left: Vec<(String, usize)> = cluster
            .blob_locations()
            .into_iter()
            .filter(|(blob, _)| !before.contains(blob))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < evicted,
            "the cancelled job's blobs still stored (blob, node): {left:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(fetch_text(&tenant.master_url(&long_id)).0, 404);
    std::thread::sleep(Duration::from_secs(5));
    let late: Vec<String> = hook
        .received()
        .iter()
        .filter(|r| r.json()["job_id"] == long_job.as_str())
        .filter(|r| r.json()["timestamp"].as_str().unwrap_or("") > cancelled_at.as_str())
        .map(|r| r.event())
        .collect();
    assert!(late.is_empty(), "events after the cancel: {late:?}");
    let row = tenant
        .my_jobs("all")
        .into_iter()
        .find(|j| j["file_id"] == long_id.as_str())
        .unwrap();
    assert_eq!(row["phase"], "cancelled");
    assert_eq!(row["cancellable"], false, "{row}");
    std::env::remove_var("ZIB_FFMPEG");
}

/// Now as the events' `timestamp` writes it (ISO 8601 UTC, milliseconds).
fn time_now_iso() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    zib_proto::events::iso_millis(ms)
}
