//! Interrupted uploads on real clusters: `zib upload` killed mid-way resumes with
//! only the parts the node lacks, a tenant's DELETE of a pending upload frees the
//! node's bytes at once, "outcome unknown" when the bytes were committed but the
//! server was gone, and a restarted `zib dev` calls its nodes at their new ports.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::procs::ProcCluster;
use common::*;
use serde_json::Value;

/// Small parts so that a file of a few dozen MiB has many of them.
const PART_ENV: [(&str, &str); 2] = [
    ("ZIB_PART_SIZE", "262144"),
    ("ZIB_MULTIPART_THRESHOLD", "262144"),
];

fn read_logs(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| plain(&std::fs::read_to_string(p).unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Node request lines `PUT /v1/upload/{blob?}/parts/{n}` with their status.
fn part_puts(log: &str, blob: Option<&str>) -> Vec<(u32, u16)> {
    log.lines()
        .filter(|l| l.contains("method=PUT") && l.contains("path=/v1/upload/"))
        .filter_map(|l| {
            let path = l.split("path=").nth(1)?.split_whitespace().next()?;
            let rest = path.strip_prefix("/v1/upload/")?;
            let (b, part) = rest.split_once("/parts/")?;
            if blob.is_some_and(|want| want != b) {
                return None;
            }
            let status = l.split("status=").nth(1)?.split_whitespace().next()?;
            Some((part.parse().ok()?, status.parse().ok()?))
        })
        .collect()
}

struct Env {
    api_url: String,
    access_key: String,
    secret_key: String,
    state_dir: PathBuf,
}

impl Env {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(zib_bin());
        cmd.args(args)
            .env("ZIB_API_URL", &self.api_url)
            .env("ZIB_ACCESS_KEY", &self.access_key)
            .env("ZIB_SECRET_KEY", &self.secret_key)
            .env("ZIB_UPLOAD_STATE_DIR", &self.state_dir)
            .env("RUST_LOG", "warn");
        cmd
    }

    fn upload_args<'a>(&self, file: &'a Path, key: &'a str) -> Vec<&'a str> {
        vec![
            "upload",
            "--bucket",
            "resume",
            "--key",
            key,
            "--concurrency",
            "1",
            file.to_str().unwrap(),
        ]
    }

    /// The registration `zib upload` saved (exactly one).
    fn saved_registration(&self) -> (PathBuf, Value) {
        let files: Vec<PathBuf> = std::fs::read_dir(&self.state_dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        let json: Vec<&PathBuf> = files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        assert_eq!(json.len(), 1, "one saved upload: {files:?}");
        let saved: Value = serde_json::from_slice(&std::fs::read(json[0]).unwrap()).unwrap();
        (json[0].clone(), saved["registration"].clone())
    }
}

/// Starts `zib upload` and SIGKILLs it once the nodes logged `min_parts` stored
/// parts (and before it finished).
fn upload_and_kill(env: &Env, logs: &[PathBuf], file: &Path, key: &str, min_parts: usize) {
    let before = part_puts(&read_logs(logs), None).len();
    let mut child: Child = env
        .command(&env.upload_args(file, key))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stored = part_puts(&read_logs(logs), None)
            .iter()
            .filter(|(_, s)| *s == 200)
            .count();
        if stored >= before + min_parts {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "zib upload ended before it could be interrupted"
        );
        assert!(Instant::now() < deadline, "no part stored in 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed mid-upload, not finished");
    // A part whose body the node had already received is still being recorded.
    std::thread::sleep(Duration::from_millis(500));
}

fn blob_of(reg: &Value) -> String {
    let url = reg["complete_url"]
        .as_str()
        .expect("multipart registration");
    url.split("/v1/upload/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// What the node says it holds, asked the way a resuming client asks.
fn held_parts(reg: &Value) -> Value {
    let url = reg["complete_url"]
        .as_str()
        .unwrap()
        .replace("/complete?", "/parts?");
    let resp = reqwest::blocking::get(url).unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().unwrap()
}

fn dev_env(cluster: &Cluster, state_dir: &Path) -> Env {
    Env {
        api_url: cluster.creds.api_url.clone(),
        access_key: cluster.creds.access_key.clone(),
        secret_key: cluster.creds.secret_key.clone(),
        state_dir: state_dir.to_path_buf(),
    }
}

#[test]
fn a_killed_upload_resumes_sending_only_the_missing_parts() {
    let cluster = Cluster::start_with_env(6, &PART_ENV);
    let work = tempfile::tempdir().unwrap();
    let env = dev_env(&cluster, &work.path().join("state"));
    let logs = [cluster.data_dir().join("dev.log")];
    let data = pattern(48 * MIB + 1234, 7);
    let file = write_file(work.path(), "big.bin", &data);

    upload_and_kill(&env, &logs, &file, "big.bin", 3);
    let (saved_path, reg) = env.saved_registration();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&saved_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the saved registration holds the key");
    let blob = blob_of(&reg);
    let total = reg["parts"].as_array().unwrap().len();
    let held = held_parts(&reg);
    assert_eq!(held["state"], "receiving");
    let held: Vec<u64> = held["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["part_number"].as_u64().unwrap())
        .collect();
    assert!(
        !held.is_empty() && held.len() < total,
        "{} of {total} parts held",
        held.len()
    );
    let log_before = read_logs(&logs).len();

    let out = env
        .command(&env.upload_args(&file, "big.bin"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "resume failed: {stderr}");
    assert!(stderr.contains("resuming"), "{stderr}");
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["file_id"], reg["file_id"], "the same file, resumed");
    assert!(
        !saved_path.exists(),
        "the saved registration is removed on success"
    );

    // The node's own record of the second run: every missing part once, no held
    // part sent again (a resend would show as 409 part_already_uploaded).
    let after = read_logs(&logs)[log_before..].to_string();
    let puts = part_puts(&after, Some(&blob));
    assert!(
        puts.iter().all(|(n, _)| !held.contains(&u64::from(*n))),
        "held parts sent again: {puts:?} (held {held:?})"
    );
    let ok: Vec<u32> = puts
        .iter()
        .filter(|(_, s)| *s == 200)
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(ok.len(), total - held.len(), "{puts:?}");
    assert_eq!(puts.len(), ok.len(), "no failed part request: {puts:?}");

    let (status, body) = get(&cluster.http(), result["cdn_url"].as_str().unwrap(), None);
    assert_eq!(status, 200);
    assert!(body == data, "the resumed file reads back identical");
}

#[test]
fn deleting_a_pending_upload_frees_the_node_bytes_at_once() {
    let cluster = Cluster::start_with_env(6, &PART_ENV);
    let work = tempfile::tempdir().unwrap();
    let env = dev_env(&cluster, &work.path().join("state"));
    let logs = [cluster.data_dir().join("dev.log")];
    let file = write_file(work.path(), "abandon.bin", &pattern(40 * MIB, 9));

    upload_and_kill(&env, &logs, &file, "abandon.bin", 3);
    let (_, reg) = env.saved_registration();
    let blob = blob_of(&reg);
    let holding = |name: &str| -> Vec<PathBuf> {
        files_under(&cluster.data_dir().join("nodes"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(name))
            .collect()
    };
    // The parts stored so far were coded as they arrived: their shards are on the
    // nodes, recorded while the file is still uploading.
    let file_id = reg["file_id"].as_str().unwrap();
    let store = cluster.store();
    let id: zib_proto::FileId = file_id.parse().unwrap();
    let shards = rt().block_on(store.shards_for_file(id)).unwrap();
    assert!(!shards.is_empty(), "the stored parts' shards are recorded");
    for shard in &shards {
        assert_eq!(
            holding(&shard.blob_id.to_string()).len(),
            1,
            "shard on disk"
        );
    }

    let resp = cluster
        .http()
        .delete(format!("{}/v1/api/file/{file_id}", cluster.creds.api_url))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let report: Value = resp.json().unwrap();
    assert_eq!(report["success"], true, "{report}");
    // Right after the answer, not after expiry + grace.
    assert!(
        holding(&blob.to_string()).is_empty(),
        "bytes of the abandoned upload left on the node: {:?}",
        holding(&blob)
    );
    for shard in &shards {
        assert!(
            holding(&shard.blob_id.to_string()).is_empty(),
            "a shard of the abandoned upload left on its node"
        );
    }
    let pipeline = cluster
        .http()
        .get(format!(
            "{}/v1/api/pipeline/{file_id}",
            cluster.creds.api_url
        ))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap();
    assert_eq!(pipeline.status(), 404, "the file is gone");
}

#[test]
fn bytes_committed_while_the_server_is_down_are_outcome_unknown_not_failed() {
    let mut cluster = ProcCluster::storage(6, &PART_ENV);
    let work = tempfile::tempdir().unwrap();
    let env = Env {
        api_url: cluster.api_url.clone(),
        access_key: cluster.access_key.clone(),
        secret_key: cluster.secret_key.clone(),
        state_dir: work.path().join("state"),
    };
    let logs: Vec<PathBuf> = (0..6)
        .map(|i| cluster.dir.path().join(format!("node{i}.log")))
        .collect();
    let data = pattern(24 * MIB + 99, 13);
    let file = write_file(work.path(), "late.bin", &data);

    upload_and_kill(&env, &logs, &file, "late.bin", 2);
    let (saved_path, reg) = env.saved_registration();
    let file_id = reg["file_id"].as_str().unwrap().to_string();

    // The server goes away; the node still takes the remaining parts and the
    // completion (the bytes are committed), then cannot distribute.
    cluster.kill_server();
    let out = env
        .command(&env.upload_args(&file, "late.bin"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "outcome unknown, not failed: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "file {file_id}: outcome unknown — check `zib pipeline {file_id}`"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("error:"),
        "not reported as an error: {stderr}"
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["file_id"], file_id.as_str());
    assert_eq!(printed["outcome"], "unknown");
    assert!(
        saved_path.exists(),
        "kept, so that running again settles it"
    );

    // The server returns; the node finishes on its own, and the same command
    // confirms it without sending anything again.
    cluster.start_server();
    let client = cluster.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let id: zib_proto::FileId = file_id.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(info) = rt.block_on(client.file_info(id)) {
            if matches!(info.phase.as_str(), "distributed" | "safe") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the committed upload never completed"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // The parts taken while the server was away were kept whole and coded by the
    // node's own resume, next to the parts coded as they arrived before.
    // The node logs it after the server's answer, which the loop above may beat.
    wait_for(
        "the node finishing the upload part by part",
        Duration::from_secs(10),
        || read_logs(&logs).contains("multipart upload distributed on resume"),
    );
    assert!(
        read_logs(&logs).contains("no plan for the part yet"),
        "no part was kept whole while the server was away"
    );
    let out = env
        .command(&env.upload_args(&file, "late.bin"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["file_id"], file_id.as_str());
    assert!(!saved_path.exists());
    let resp = reqwest::blocking::get(result["cdn_url"].as_str().unwrap()).unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().unwrap().as_ref() == data.as_slice());
}

#[test]
fn a_restarted_dev_cluster_calls_its_nodes_at_their_new_ports() {
    let mut cluster = Cluster::start(6);
    let work = tempfile::tempdir().unwrap();
    let data = pattern(3 * MIB + 5, 3);
    let path = write_file(work.path(), "before", &data);
    let (_, url_before) = cluster.upload(&path, "restart", "before");
    let log_path = cluster.data_dir().join("dev.log");
    let first_run = plain(&std::fs::read_to_string(&log_path).unwrap());
    let old_ports: Vec<String> = first_run
        .lines()
        .filter(|l| l.contains("node started"))
        .filter_map(|l| l.split("public_url=").nth(1))
        .filter_map(|u| u.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert_eq!(old_ports.len(), 6, "{first_run}");
    let offset = std::fs::metadata(&log_path).unwrap().len() as usize;

    cluster.restart();
    // At once: no waiting for heartbeats or node_offline_after.
    let again = write_file(work.path(), "after", &pattern(2 * MIB, 4));
    let (_, url_after) = cluster.upload(&again, "restart", "after");
    let http = cluster.http();
    assert_eq!(get(&http, &url_after, None).0, 200);
    let old_id = url_before.rsplit('/').next().unwrap();
    let (status, body) = get(
        &http,
        &format!("{}/objects/{old_id}", cluster.creds.api_url),
        None,
    );
    assert_eq!(status, 200);
    assert!(body == data);

    let second_run = plain(&std::fs::read_to_string(&log_path).unwrap()[offset..]);
    for old in &old_ports {
        let mentions: Vec<&str> = second_run
            .lines()
            .filter(|l| l.contains(old.as_str()) && !l.contains("node address refreshed"))
            .collect();
        assert!(
            mentions.is_empty(),
            "old address {old} used after restart: {mentions:?}"
        );
    }
    assert_eq!(
        second_run.matches("node address refreshed").count(),
        6,
        "{second_run}"
    );
}
