//! The OpenAPI document at `GET /v1/openapi.json` stays true: it names exactly the
//! routes the server registers (read from the source, so drift fails here), and
//! schemathesis (PyPI, scripts/install-openapi-test-deps.sh) fuzzes a live `zib dev`
//! against it without a 5xx or a response the document does not describe. Errors
//! carry the request id of the header and the server's log line.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{pattern, write_file, Cluster};
use serde_json::Value;

/// Every source file of the two route-registering modules, by name. The test also
/// lists the directories, so a new file that is not read here fails it.
const ROUTE_SOURCES: &[(&str, &str)] = &[
    (
        "api/mod.rs",
        include_str!("../../zib-server/src/api/mod.rs"),
    ),
    (
        "api/files.rs",
        include_str!("../../zib-server/src/api/files.rs"),
    ),
    (
        "api/pipeline.rs",
        include_str!("../../zib-server/src/api/pipeline.rs"),
    ),
    (
        "api/upload.rs",
        include_str!("../../zib-server/src/api/upload.rs"),
    ),
    (
        "webhooks/mod.rs",
        include_str!("../../zib-server/src/webhooks/mod.rs"),
    ),
    (
        "webhooks/api.rs",
        include_str!("../../zib-server/src/webhooks/api.rs"),
    ),
];

const HTTP_METHODS: &[&str] = &["get", "post", "put", "patch", "delete", "head", "options"];

/// The fuzzer's wall-clock bound: it takes ~10 s on 2 cores today.
const FUZZ_DEADLINE: Duration = Duration::from_secs(150);

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("repo root")
}

/// `(path, method)` of every `.route("/v1/api/...", ...)` in `source`, with axum's
/// `{*rest}` written as OpenAPI's `{rest}`.
fn routes_in(source: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find(".route(") {
        let args = &rest[at + ".route(".len()..];
        // The call's arguments end at the parenthesis that closes `.route(`.
        let mut depth = 1;
        let mut end = args.len();
        for (i, c) in args.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let call = &args[..end];
        rest = &args[end..];
        let Some(open) = call.find('"') else { continue };
        let Some(len) = call[open + 1..].find('"') else {
            continue;
        };
        let path = &call[open + 1..open + 1 + len];
        if !path.starts_with("/v1/api/") {
            continue;
        }
        let path = path.replace("{*", "{");
        let handlers = &call[open + 1 + len + 1..];
        for m in HTTP_METHODS {
            let needle = format!("{m}(");
            for (i, _) in handlers.match_indices(&needle) {
                let before = handlers[..i].chars().next_back();
                if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                    out.push((path.clone(), m.to_string()));
                }
            }
        }
    }
    out
}

fn fetch_document(cluster: &Cluster) -> Value {
    let resp = cluster
        .http()
        .get(format!("{}/v1/openapi.json", cluster.creds.api_url))
        .send()
        .expect("GET /v1/openapi.json");
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("application/json"), "content type {ct:?}");
    resp.json().expect("the document is JSON")
}

/// Every `$ref` in `v`, recursively.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn document_names_exactly_the_registered_routes() {
    // A new source file in these modules must be read by this test too.
    for dir in ["api", "webhooks"] {
        let on_disk: BTreeSet<String> =
            std::fs::read_dir(repo_root().join("crates/zib-server/src").join(dir))
                .expect("source dir")
                .map(|e| format!("{dir}/{}", e.expect("entry").file_name().to_string_lossy()))
                .filter(|name| name.ends_with(".rs"))
                .collect();
        let read: BTreeSet<String> = ROUTE_SOURCES
            .iter()
            .map(|(name, _)| name.to_string())
            .filter(|name| name.starts_with(&format!("{dir}/")))
            .collect();
        assert_eq!(on_disk, read, "add new files to ROUTE_SOURCES");
    }

    let registered: BTreeSet<(String, String)> = ROUTE_SOURCES
        .iter()
        .flat_map(|(_, src)| routes_in(src))
        .collect();
    assert!(
        registered.len() >= 20,
        "the route scan found too little: {registered:?}"
    );

    let cluster = Cluster::start(1);
    let doc = fetch_document(&cluster);
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().expect("paths");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .filter(|(p, _)| p.starts_with("/v1/api/"))
        .flat_map(|(p, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .filter(|k| HTTP_METHODS.contains(&k.as_str()))
                .map(|m| (p.clone(), m.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty() && phantom.is_empty(),
        "registered but not documented: {undocumented:?}\ndocumented but not registered: {phantom:?}"
    );

    // The CDN is described; the S3 surface and node RPC are not.
    for m in ["get", "head"] {
        assert!(paths["/objects/{file_id}"][m].is_object(), "CDN {m}");
    }
    assert!(
        paths
            .keys()
            .all(|p| !p.starts_with("/s3") && !p.starts_with("/v1/node")),
        "internal or XML surfaces leaked into the document"
    );

    // Every reference resolves, and every authenticated operation documents its 401
    // with the error body.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {r}"
        );
    }
    for (path, item) in paths.iter().filter(|(p, _)| p.starts_with("/v1/api/")) {
        for (method, op) in item.as_object().unwrap() {
            if HTTP_METHODS.contains(&method.as_str()) {
                assert_eq!(
                    op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} documents its 401"
                );
            }
        }
    }
}

fn install_schemathesis() {
    let status = Command::new("bash")
        .arg(repo_root().join("scripts/install-openapi-test-deps.sh"))
        .status()
        .expect("run install-openapi-test-deps.sh");
    assert!(status.success(), "installing schemathesis failed");
}

fn schemathesis() -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "schemathesis.cli"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// The checks we want, narrowed to those this schemathesis version knows.
fn supported_checks() -> Vec<&'static str> {
    let help = schemathesis()
        .args(["run", "--help"])
        .output()
        .expect("schemathesis run --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let wanted = [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "missing_required_header",
        "unsupported_method",
        "ignored_auth",
    ];
    let checks: Vec<_> = wanted.into_iter().filter(|c| help.contains(c)).collect();
    assert!(
        checks.contains(&"not_a_server_error"),
        "this schemathesis has no not_a_server_error check:\n{help}"
    );
    checks
}

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    install_schemathesis();
    let checks = supported_checks();
    let cluster = Cluster::start(6);
    let out_path = cluster.data_dir().join("schemathesis.log");
    let out = std::fs::File::create(&out_path).expect("log file");
    let mut child = schemathesis()
        .arg("--config-file")
        .arg(repo_root().join("crates/zib-cli/tests/support/schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/v1/openapi.json", cluster.creds.api_url))
        .args(["--header", &format!("Authorization: {}", cluster.bearer())])
        .args(["--checks", &checks.join(",")])
        .args(["--max-examples", "25"])
        .args(["--seed", "20261122"])
        .args(["--workers", "2"])
        .args(["--request-timeout", "20"])
        .args(["--report", "junit"])
        .arg("--report-dir")
        .arg(cluster.data_dir().join("schemathesis-report"))
        .current_dir(cluster.data_dir())
        .stdout(out.try_clone().expect("dup log"))
        .stderr(out)
        .spawn()
        .expect("run schemathesis");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait schemathesis") {
            break Some(status);
        }
        if started.elapsed() > FUZZ_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => {
            eprintln!(
                "schemathesis passed in {:.1} s ({})",
                started.elapsed().as_secs_f64(),
                checks.join(",")
            );
        }
        Some(s) => panic!("schemathesis failed ({s}):\n{output}"),
        None => panic!("schemathesis did not finish within {FUZZ_DEADLINE:?}:\n{output}"),
    }
}

/// Strips the ANSI colours the dev server's log is written with.
fn plain(log: &str) -> String {
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

/// The error body's request id, after checking it equals the header's.
fn request_id_of(resp: reqwest::blocking::Response, status: u16) -> String {
    assert_eq!(resp.status().as_u16(), status);
    let header = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-request-id header")
        .to_string();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("application/json"), "content type {ct:?}");
    let body: Value = resp.json().expect("JSON error body");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(body["code"].as_str().is_some(), "{body}");
    assert_eq!(body["request_id"].as_str(), Some(header.as_str()), "{body}");
    header
}

fn log_line_of(cluster: &Cluster, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = plain(&std::fs::read_to_string(cluster.data_dir().join("dev.log")).unwrap());
        if let Some(line) = log
            .lines()
            .find(|l| l.contains(&format!("request_id={id} ")))
        {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no log line for request {id} in dev.log"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn errors_carry_the_request_id_of_the_header_and_the_log_line() {
    let cluster = Cluster::start(6);
    let http = cluster.http();
    let api = &cluster.creds.api_url;

    // A handler's error.
    let resp = http
        .get(format!("{api}/v1/api/file/no-such-file"))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap();
    let id = request_id_of(resp, 404);
    let line = log_line_of(&cluster, &id);
    assert!(
        line.contains("status=404") && line.contains("path=/v1/api/file/no-such-file"),
        "{line}"
    );

    // An authentication failure, with an id the caller chose.
    let resp = http
        .get(format!("{api}/v1/api/me/buckets"))
        .header("x-request-id", "caller-chosen-id-42")
        .send()
        .unwrap();
    assert_eq!(request_id_of(resp, 401), "caller-chosen-id-42");
    assert!(log_line_of(&cluster, "caller-chosen-id-42").contains("status=401"));

    // Axum's own rejections: a query string that does not parse, a method the
    // route does not have.
    let resp = http
        .get(format!("{api}/v1/api/webhooks/events?limit=many"))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap();
    let id = request_id_of(resp, 400);
    assert!(log_line_of(&cluster, &id).contains("status=400"));
    let resp = http
        .put(format!("{api}/v1/api/me/buckets"))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap();
    let id = request_id_of(resp, 405);
    assert!(log_line_of(&cluster, &id).contains("status=405"));

    // The CDN as documented: 206 with Content-Range, 416 with the error body.
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "f.bin", &pattern(1000, 7));
    let (_, cdn_url) = cluster.upload(&path, "openapi", "f.bin");
    let resp = http
        .get(&cdn_url)
        .header("Range", "bytes=10-19")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 206);
    assert_eq!(
        resp.headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok()),
        Some("bytes 10-19/1000")
    );
    assert_eq!(resp.bytes().unwrap().as_ref(), &pattern(1000, 7)[10..20]);
    let resp = http
        .get(&cdn_url)
        .header("Range", "bytes=5000-")
        .send()
        .unwrap();
    assert_eq!(
        resp.headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok()),
        Some("bytes */1000")
    );
    let id = request_id_of(resp, 416);
    assert!(log_line_of(&cluster, &id).contains("status=416"));
}
