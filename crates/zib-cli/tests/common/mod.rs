//! A real `zib dev` cluster on loopback for integration tests: the built binary,
//! an ephemeral port, a temporary data directory, and helpers a user would use.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

pub mod procs;
pub mod s3_clients;
pub mod s3_raw;

pub const CHUNK: u64 = 256 * 1024;
pub const MIB: u64 = 1024 * 1024;

#[derive(Clone, Debug, Deserialize)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub api_url: String,
    pub cdn_url: String,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub creds: Credentials,
    pub nodes: usize,
    /// Extra environment of `zib dev` (`ZIB_*` settings).
    env: Vec<(String, String)>,
}

pub fn zib_bin() -> &'static str {
    env!("CARGO_BIN_EXE_zib")
}

impl Cluster {
    pub fn start(nodes: usize) -> Cluster {
        Cluster::start_with_env(nodes, &[])
    }

    pub fn start_with_env(nodes: usize, env: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, creds) = spawn_dev(dir.path(), nodes, None, &env);
        Cluster {
            dir,
            child: Some(child),
            creds,
            nodes,
            env,
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `zib dev` process, e.g. to pause it with SIGSTOP.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("zib dev is running").id()
    }

    /// Ctrl-C, then the same command on the same directory.
    pub fn restart(&mut self) {
        self.stop();
        let previous = self.creds.api_url.clone();
        let (child, creds) = spawn_dev(self.dir.path(), self.nodes, Some(&previous), &self.env);
        self.child = Some(child);
        self.creds = creds;
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        assert!(status.success(), "zib dev exited with {status} on Ctrl-C");
                        break;
                    }
                    _ if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!("zib dev did not stop within 20 s of Ctrl-C");
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }

    /// Bytes `zib dev` (server and nodes in one process) has handed to the disk.
    pub fn written_bytes(&self) -> u64 {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.pid())).unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("write_bytes: "))
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    }

    pub fn node_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("nodes"))
            .expect("nodes dir")
            .map(|e| e.expect("entry").path())
            .collect();
        dirs.sort();
        dirs
    }

    /// The cluster's metadata store, opened beside `zib dev` (SQLite, WAL).
    pub fn store(&self) -> zib_meta::Store {
        rt().block_on(zib_meta::Store::open_sqlite(
            &self.data_dir().join("meta.db"),
        ))
        .expect("the cluster's store")
    }

    pub fn client(&self) -> zib_client::Client {
        zib_client::Client::new(zib_client::ClientConfig {
            api_url: self.creds.api_url.clone(),
            access_key: self.creds.access_key.clone(),
            secret_key: self.creds.secret_key.clone(),
        })
        .expect("client")
    }

    /// `zib <args>` with this cluster's credentials in the environment.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(zib_bin())
            .args(args)
            .env("ZIB_API_URL", &self.creds.api_url)
            .env("ZIB_ACCESS_KEY", &self.creds.access_key)
            .env("ZIB_SECRET_KEY", &self.creds.secret_key)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run zib")
    }

    /// Uploads with `zib upload` and returns (file_id, cdn_url).
    pub fn upload(&self, path: &Path, bucket: &str, key: &str) -> (String, String) {
        let out = self.cli(&[
            "upload",
            "--bucket",
            bucket,
            "--key",
            key,
            path.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "zib upload failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            line.trim().lines().count(),
            1,
            "one JSON line on stdout: {line:?}"
        );
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        (
            v["file_id"].as_str().unwrap().to_string(),
            v["cdn_url"].as_str().unwrap().to_string(),
        )
    }

    pub fn http(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap()
    }

    pub fn bearer(&self) -> String {
        format!("Bearer {}:{}", self.creds.access_key, self.creds.secret_key)
    }

    /// Creates another tenant with `zib tenant create`; returns its Bearer header.
    pub fn create_tenant(&self, name: &str) -> String {
        let out = Command::new(zib_bin())
            .args(["tenant", "create", name, "--data-dir"])
            .arg(self.data_dir())
            .output()
            .expect("run zib tenant create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tenant: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("JSON from zib tenant create");
        format!(
            "Bearer {}:{}",
            tenant["access_key"].as_str().expect("access_key"),
            tenant["secret_key"].as_str().expect("secret_key")
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `zib dev` and waits for it to write credentials for its new address
/// (a restart keeps the file, with the same keys, and rewrites the URL).
fn spawn_dev(
    dir: &Path,
    nodes: usize,
    previous_url: Option<&str>,
    env: &[(String, String)],
) -> (Child, Credentials) {
    let creds_path = dir.join("credentials.json");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("dev.log"))
        .expect("log file");
    let mut child = Command::new(zib_bin())
        .args([
            "dev",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--nodes",
            &nodes.to_string(),
        ])
        .env("RUST_LOG", "info")
        // A binary built with `ai` loads models in its first node by default: only
        // the AI tests ask for that (`ai::start_cluster`), the others stay light.
        .env("ZIB_AI_NODES", "0")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn zib dev");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(&creds_path) {
            if let Some(creds) = serde_json::from_str::<Credentials>(&text)
                .ok()
                .filter(|c| Some(c.api_url.as_str()) != previous_url)
            {
                wait_healthy(&creds.api_url);
                return (child, creds);
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("dev.log")).unwrap_or_default();
            panic!("zib dev exited early with {status}:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "zib dev did not become ready in 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_healthy(api: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if reqwest::blocking::get(format!("{api}/healthz")).is_ok_and(|r| r.status().is_success()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server at {api} never became healthy");
}

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible.
pub fn pattern(len: u64, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len as usize);
    while (out.len() as u64) < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len as usize);
    out
}

pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// GET a CDN URL (optionally a range); returns status and body.
pub fn get(
    http: &reqwest::blocking::Client,
    url: &str,
    range: Option<(u64, u64)>,
) -> (u16, Vec<u8>) {
    let mut req = http.get(url);
    if let Some((a, b)) = range {
        req = req.header("Range", format!("bytes={a}-{b}"));
    }
    let resp = req.send().expect("GET");
    let status = resp.status().as_u16();
    (status, resp.bytes().map(|b| b.to_vec()).unwrap_or_default())
}

/// GETs each inclusive range `(first, last)` of `url` (`last` clipped to the end) and
/// checks it is a 206 with exactly those bytes of `data`.
pub fn assert_ranges(
    http: &reqwest::blocking::Client,
    url: &str,
    data: &[u8],
    ranges: &[(u64, u64)],
) {
    for &(a, b) in ranges {
        let b = b.min(data.len() as u64 - 1);
        let (status, body) = get(http, url, Some((a, b)));
        assert_eq!(status, 206, "range {a}-{b}");
        assert!(
            body == data[a as usize..=b as usize],
            "range {a}-{b} differs"
        );
    }
}

/// Every regular file under `root`.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A runtime for the async client and store calls of blocking tests.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// Polls `ok` every 200 ms until it holds, failing the test after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `GET /v1/api/pipeline/{file_id}` as the cluster's tenant.
pub fn pipeline(cluster: &procs::ProcCluster, file_id: &str) -> serde_json::Value {
    reqwest::blocking::Client::new()
        .get(format!("{}/v1/api/pipeline/{file_id}", cluster.api_url))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// Uploads `data` as `bucket`/`key` through the client library; the file id.
pub fn upload_to(
    cluster: &procs::ProcCluster,
    work: &Path,
    bucket: &str,
    key: &str,
    data: &[u8],
) -> String {
    let path = write_file(work, key, data);
    rt().block_on(cluster.client().upload_path(
        &path,
        bucket,
        key,
        None,
        &zib_client::UploadOptions::default(),
    ))
    .unwrap()
    .file_id
    .to_string()
}

/// Safe, with every segment's six shards on six distinct live holders.
pub fn fully_safe(cluster: &procs::ProcCluster, file_id: &str) -> bool {
    let p = pipeline(cluster, file_id);
    let upload = &p["stages"]["upload"];
    upload["phase"] == "safe"
        && upload["redundancy"]["live_shards"] == 6
        && upload["redundancy"]["target"] == 6
}

/// The cluster's metadata store, opened beside the running server.
pub fn store(cluster: &procs::ProcCluster) -> zib_meta::Store {
    rt().block_on(zib_meta::Store::open_sqlite(&cluster.database()))
        .unwrap()
}

/// Strips the ANSI colours the text log is written with.
pub fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
