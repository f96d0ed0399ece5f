//! Status you can see: `/metrics` scraped and parsed by the Prometheus Python
//! client, and `/v1/admin/workers` listing the server's and every node's workers.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{get, pattern, write_file, Cluster, MIB};
use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn install_parser() {
    let status = Command::new(repo_root().join("scripts/install-metrics-test-deps.sh"))
        .status()
        .expect("run scripts/install-metrics-test-deps.sh");
    assert!(status.success(), "installing prometheus-client failed");
}

/// One parsed sample.
#[derive(Debug)]
struct Sample {
    family: String,
    kind: String,
    name: String,
    labels: serde_json::Map<String, Value>,
    value: f64,
}

/// Scrapes `/metrics` and parses it with `prometheus_client`'s parsers.
fn scrape(cluster: &Cluster) -> Vec<Sample> {
    let resp = cluster
        .http()
        .get(format!("{}/metrics", cluster.creds.api_url))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = resp.text().unwrap();
    let mut child = Command::new("python3")
        .arg(repo_root().join("crates/zib-cli/tests/support/parse_metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser rejected /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    parsed
        .into_iter()
        .map(|s| Sample {
            family: s["family"].as_str().unwrap().to_string(),
            kind: s["type"].as_str().unwrap().to_string(),
            name: s["name"].as_str().unwrap().to_string(),
            labels: s["labels"].as_object().unwrap().clone(),
            value: s["value"].as_f64().unwrap(),
        })
        .collect()
}

/// The value of the sample `name` whose labels include every pair of `labels`
/// (summed when several match); `None` when none does.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).and_then(Value::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

fn cluster_token(cluster: &Cluster) -> String {
    let secrets: Value =
        serde_json::from_slice(&std::fs::read(cluster.data_dir().join("secrets.json")).unwrap())
            .unwrap();
    secrets["cluster_token"].as_str().unwrap().to_string()
}

fn admin_workers(cluster: &Cluster, authorization: Option<&str>) -> (u16, Value) {
    let mut req = cluster
        .http()
        .get(format!("{}/v1/admin/workers", cluster.creds.api_url));
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

#[test]
fn metrics_count_requests_bytes_nodes_and_files() {
    install_parser();
    let cluster = Cluster::start(6);
    let http = cluster.http();

    let before = scrape(&cluster);
    let initiate = [
        ("route", "/v1/api/upload/initiate"),
        ("method", "POST"),
        ("status", "200"),
    ];
    let initiated_before = value(&before, "zib_http_requests_total", &initiate).unwrap_or(0.0);

    let work = tempfile::tempdir().unwrap();
    let size = 3 * MIB + 4321;
    let data = pattern(size, 7);
    let path = write_file(work.path(), "file.bin", &data);
    let (file_id, cdn_url) = cluster.upload(&path, "metrics", "file.bin");
    let (status, body) = get(&http, &cdn_url, None);
    assert_eq!(status, 200);
    assert_eq!(body, data);
    // Counting the bytes keeps the length announced.
    let head = http.get(&cdn_url).send().unwrap();
    assert_eq!(head.headers()["content-length"], size.to_string().as_str());
    drop(head);

    let samples = scrape(&cluster);
    let initiated = value(&samples, "zib_http_requests_total", &initiate).unwrap_or(0.0);
    assert!(
        initiated >= initiated_before + 1.0,
        "initiate 200s: {initiated_before} then {initiated}"
    );
    let families: Vec<(&str, &str)> = samples
        .iter()
        .map(|s| (s.family.as_str(), s.kind.as_str()))
        .collect();
    for expected in [
        ("zib_http_requests", "counter"),
        ("zib_http_request_duration_seconds", "histogram"),
        ("zib_cdn_bytes_out", "counter"),
        ("zib_cdn_bytes_in", "counter"),
        ("zib_worker_runs", "counter"),
        ("zib_nodes_online", "gauge"),
        ("zib_files", "gauge"),
        ("zib_webhook_deliveries", "gauge"),
    ] {
        assert!(families.contains(&expected), "{expected:?} in {families:?}");
    }

    let object_route = [("route", "/objects/{file_id}")];
    let reads = value(
        &samples,
        "zib_http_request_duration_seconds_count",
        &object_route,
    );
    assert!(reads.unwrap_or(0.0) >= 1.0, "{reads:?}");
    assert!(
        samples.iter().all(|s| !s
            .labels
            .get("route")
            .and_then(Value::as_str)
            .is_some_and(|r| r.contains(&file_id))),
        "routes are labelled by pattern, never by raw path"
    );
    let out = value(&samples, "zib_cdn_bytes_out_total", &[]).unwrap();
    assert!(out >= size as f64, "CDN bytes out {out} < {size}");
    assert!(value(&samples, "zib_cdn_bytes_in_total", &[]).is_some());

    assert_eq!(value(&samples, "zib_nodes_online", &[]), Some(6.0));
    let stored = value(&samples, "zib_files", &[("phase", "safe")]).unwrap_or(0.0)
        + value(&samples, "zib_files", &[("phase", "distributed")]).unwrap_or(0.0);
    assert!(stored >= 1.0, "files safe or distributed: {stored}");
    assert_eq!(
        value(&samples, "zib_webhook_deliveries", &[("status", "failed")]),
        Some(0.0)
    );
    assert!(value(&samples, "zib_webhook_deliveries", &[("status", "pending")]).is_some());
    let verifier_ok = value(
        &samples,
        "zib_worker_runs_total",
        &[("worker", "verifier"), ("result", "ok")],
    );
    assert!(verifier_ok.unwrap_or(0.0) >= 1.0, "{verifier_ok:?}");
}

#[test]
fn admin_workers_lists_server_and_node_workers_for_the_operator_only() {
    let cluster = Cluster::start_with_env(6, &[("ZIB_FFMPEG", "/bin/false")]);
    // Without a working ffmpeg a node runs no encoder worker: its list is fixed.
    let token = cluster_token(&cluster);

    assert_eq!(admin_workers(&cluster, None).0, 401);
    assert_eq!(admin_workers(&cluster, Some("Bearer not-the-token")).0, 401);
    assert_eq!(
        admin_workers(&cluster, Some(&cluster.bearer())).0,
        401,
        "a tenant is not an operator"
    );

    // Every worker has finished its first tick soon after the start.
    let operator = format!("Bearer {token}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let listing = loop {
        let (status, listing) = admin_workers(&cluster, Some(&operator));
        assert_eq!(status, 200, "{listing}");
        let ran = |workers: &Value| {
            workers
                .as_array()
                .is_some_and(|ws| ws.iter().all(|w| w["runs"].as_u64() >= Some(1)))
        };
        let nodes = listing["nodes"].as_array().cloned().unwrap_or_default();
        if ran(&listing["server"])
            && nodes.len() == 6
            && nodes
                .iter()
                .all(|n| n["error"].is_null() && ran(&n["workers"]))
        {
            break listing;
        }
        assert!(
            Instant::now() < deadline,
            "workers never all ran: {listing}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };

    let names = |workers: &Value| -> Vec<String> {
        workers
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["name"].as_str().unwrap().to_string())
            .collect()
    };
    let server = names(&listing["server"]);
    for expected in [
        "auditor",
        "collector",
        "repairer",
        "verifier",
        "webhook-dispatcher",
    ] {
        assert!(server.contains(&expected.to_string()), "{server:?}");
    }
    for w in listing["server"].as_array().unwrap() {
        let state = w["state"].as_str().unwrap();
        assert!(["idle", "busy", "backoff"].contains(&state), "{w}");
        assert!(w["last_run_at"].is_string(), "{w}");
        assert!(w["errors"].is_u64() && w["pace"].is_number(), "{w}");
        assert!(
            !w["status"].as_str().unwrap_or_default().is_empty(),
            "every server worker says what its last tick did: {w}"
        );
    }
    let repairer = listing["server"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "repairer")
        .unwrap();
    assert_eq!(repairer["pace"], 1.0, "the default repair pace");

    for node in listing["nodes"].as_array().unwrap() {
        assert_eq!(node["online"], true, "{node}");
        let mut workers = names(&node["workers"]);
        workers.sort();
        assert_eq!(workers, ["heartbeat", "resume"], "{node}");
        // The node's own endpoint wants the cluster token too.
        let url = format!("{}/v1/workers", node["url"].as_str().unwrap());
        let http = cluster.http();
        assert_eq!(http.get(&url).send().unwrap().status(), 401);
        let own = http.get(&url).bearer_auth(&token).send().unwrap();
        assert_eq!(own.status(), 200);
        let own: Value = own.json().unwrap();
        assert_eq!(own["workers"].as_array().unwrap().len(), 2);
    }
}
