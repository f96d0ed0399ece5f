//! A cluster of separate processes — one `zib server`, N `zib node` — so single
//! nodes (or the server) can be killed with SIGKILL and restarted, as on real hosts.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::zib_bin;

pub struct ProcCluster {
    pub dir: tempfile::TempDir,
    pub api_url: String,
    server_port: u16,
    server: Option<Child>,
    pub nodes: Vec<NodeProc>,
    env: Vec<(String, String)>,
    /// Settings every node starts with, on top of the fixed ones.
    node_env: Vec<(String, String)>,
    pub access_key: String,
    pub secret_key: String,
}

pub struct NodeProc {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn hex32() -> String {
    (0..32).map(|_| format!("{:02x}", rand_byte())).collect()
}

fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish() as u8
}

impl ProcCluster {
    /// `extra` are server settings (`ZIB_*`) on top of fast test timings. Nodes
    /// encode video (each checks its ffmpeg as it starts, and polls for jobs).
    pub fn start(nodes: usize, extra: &[(&str, &str)]) -> ProcCluster {
        Self::start_with(nodes, extra, &[])
    }

    /// [`ProcCluster::start`] for tests of storage alone: the nodes do not encode,
    /// so thirty nodes of parallel tests do not all run ffmpeg as they start.
    pub fn storage(nodes: usize, extra: &[(&str, &str)]) -> ProcCluster {
        Self::start_with(nodes, extra, &[("ZIB_ENCODE", "false")])
    }

    fn start_with(nodes: usize, extra: &[(&str, &str)], node_env: &[(&str, &str)]) -> ProcCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let server_port = free_port();
        let api_url = format!("http://127.0.0.1:{server_port}");
        let mut env: Vec<(String, String)> = [
            ("ZIB_DATABASE", dir.path().join("meta.db").to_str().unwrap()),
            ("ZIB_MASTER_KEY", &hex32()),
            ("ZIB_CAPABILITY_KEY", &hex32()),
            ("ZIB_CLUSTER_TOKEN", &hex32()),
            ("ZIB_HEARTBEAT_INTERVAL_SECS", "1"),
            ("ZIB_NODE_OFFLINE_AFTER_SECS", "3"),
            ("ZIB_REPAIR_AFTER_SECS", "4"),
            ("ZIB_VERIFY_INTERVAL_SECS", "1"),
            ("ZIB_COLLECT_INTERVAL_SECS", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v.to_string()));
        }
        let out = Command::new(zib_bin())
            .args(["tenant", "create", "durability"])
            .envs(env.iter().cloned())
            .output()
            .expect("tenant create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut cluster = ProcCluster {
            dir,
            api_url,
            server_port,
            server: None,
            nodes: Vec::new(),
            env,
            node_env: node_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            access_key: t["access_key"].as_str().unwrap().into(),
            secret_key: t["secret_key"].as_str().unwrap().into(),
        };
        cluster.start_server();
        for i in 0..nodes {
            let dir = cluster.dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            cluster.nodes.push(NodeProc {
                dir,
                port: free_port(),
                child: None,
            });
            cluster.start_node(i);
        }
        cluster.wait_nodes_online(nodes);
        cluster
    }

    fn log(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .unwrap()
    }

    pub fn start_server(&mut self) {
        let child = Command::new(zib_bin())
            .arg("server")
            .envs(self.env.iter().cloned())
            .env("ZIB_LISTEN", format!("127.0.0.1:{}", self.server_port))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log("server"))
            .spawn()
            .expect("zib server");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::blocking::get(format!("{}/healthz", self.api_url)).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill_server(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn start_node(&mut self, i: usize) {
        let cluster_token = self.env_value("ZIB_CLUSTER_TOKEN");
        let node = &self.nodes[i];
        let child = Command::new(zib_bin())
            .arg("node")
            .env("ZIB_LISTEN", format!("127.0.0.1:{}", node.port))
            .env("ZIB_SERVER_URL", &self.api_url)
            .env("ZIB_CLUSTER_TOKEN", cluster_token)
            .env("ZIB_DATA_DIR", &node.dir)
            .env("ZIB_HEARTBEAT_INTERVAL_SECS", "1")
            // A binary built with `ai` loads the models by default; these tests
            // need none (the AI tests run `zib dev` with its own setting).
            .env("ZIB_AI", "false")
            .envs(self.node_env.iter().cloned())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log(&format!("node{i}")))
            .spawn()
            .expect("zib node");
        self.nodes[i].child = Some(child);
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn env_value(&self, key: &str) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap()
    }

    /// `zib <args>` as an operator of this cluster: its server and cluster token.
    pub fn admin(&self, args: &[&str]) -> std::process::Output {
        Command::new(zib_bin())
            .args(args)
            .env("ZIB_SERVER_URL", &self.api_url)
            .env("ZIB_CLUSTER_TOKEN", self.env_value("ZIB_CLUSTER_TOKEN"))
            .env("RUST_LOG", "warn")
            .output()
            .expect("run zib")
    }

    pub fn database(&self) -> PathBuf {
        PathBuf::from(self.env_value("ZIB_DATABASE"))
    }

    pub fn wait_nodes_online(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let online = self
                .nodes
                .iter()
                .filter(|n| {
                    reqwest::blocking::get(format!("http://127.0.0.1:{}/healthz", n.port))
                        .ok()
                        .and_then(|r| r.json::<serde_json::Value>().ok())
                        .is_some_and(|v| v["registered"] == true)
                })
                .count();
            if online >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {online} of {count} nodes registered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn client(&self) -> zib_client::Client {
        zib_client::Client::new(zib_client::ClientConfig {
            api_url: self.api_url.clone(),
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
        })
        .unwrap()
    }

    /// Another tenant on the same store (`zib tenant create`); its Bearer header.
    pub fn create_tenant(&self, name: &str) -> String {
        let out = Command::new(zib_bin())
            .args(["tenant", "create", name])
            .envs(self.env.iter().cloned())
            .output()
            .expect("tenant create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        format!(
            "Bearer {}:{}",
            t["access_key"].as_str().unwrap(),
            t["secret_key"].as_str().unwrap()
        )
    }

    pub fn bearer(&self) -> String {
        format!("Bearer {}:{}", self.access_key, self.secret_key)
    }

    /// Which node directory holds each blob file.
    pub fn blob_locations(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for f in super::files_under(&n.dir.join("blobs")) {
                if let Some(name) = f.file_name().and_then(|n| n.to_str()) {
                    out.insert(name.to_string(), i);
                }
            }
        }
        out
    }

    pub fn node_dir(&self, i: usize) -> &Path {
        &self.nodes[i].dir
    }
}

impl ProcCluster {
    /// What a failed test needs to say why: every worker's status line (server and
    /// nodes, asked while they still run) and each log's warnings and errors.
    fn report_failure(&self) {
        let workers = reqwest::blocking::Client::new()
            .get(format!("{}/v1/admin/workers", self.api_url))
            .header(
                "Authorization",
                format!("Bearer {}", self.env_value("ZIB_CLUSTER_TOKEN")),
            )
            .timeout(Duration::from_secs(5))
            .send()
            .and_then(|r| r.json::<serde_json::Value>());
        let line = |w: &serde_json::Value| {
            format!(
                "{} [{}] {} (errors: {}, last: {})",
                w["name"].as_str().unwrap_or("?"),
                w["state"].as_str().unwrap_or("?"),
                w["status"].as_str().unwrap_or(""),
                w["errors"],
                w["last_error"]
            )
        };
        match workers {
            Ok(all) => {
                eprintln!("server workers at failure:");
                for w in all["server"].as_array().into_iter().flatten() {
                    eprintln!("  {}", line(w));
                }
                for n in all["nodes"].as_array().into_iter().flatten() {
                    eprintln!(
                        "node {} online={} error={}:",
                        n["url"], n["online"], n["error"]
                    );
                    for w in n["workers"].as_array().into_iter().flatten() {
                        eprintln!("  {}", line(w));
                    }
                }
            }
            Err(e) => eprintln!("workers at failure: not answered: {e}"),
        }
        let mut logs = vec!["server".to_string()];
        logs.extend((0..self.nodes.len()).map(|i| format!("node{i}")));
        for name in logs {
            let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                .unwrap_or_default();
            let notable: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("panicked"))
                .collect();
            let skip = notable.len().saturating_sub(20);
            eprintln!("{name}.log: {} warnings/errors, the last:", notable.len());
            for line in &notable[skip..] {
                eprintln!("  {line}");
            }
        }
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.report_failure();
        }
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
        self.kill_server();
        if std::thread::panicking() {
            // Keep the logs of a failed test, and show the server's tail.
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
            let kept = dir.keep();
            let log = std::fs::read_to_string(kept.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("cluster kept at {}; server log tail:", kept.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
