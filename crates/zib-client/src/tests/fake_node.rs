//! Uploads and downloads against a fake node: checks what goes on the wire (lengths,
//! no credential, part bytes) and how answers are handled (retry, conflict, refusal).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use zib_crypto::envelope::decrypt;
use zib_proto::api::UploadType;

use super::{key, plaintext, registration, registration_with_chunk, temp_file};
use crate::{download, upload_with_registration, ClientError, Progress, Stage, UploadOptions};

#[derive(Default)]
struct Behaviour {
    /// Parts answered 503 on their first attempt.
    flaky: HashSet<u32>,
    /// Parts stored, then answered 409 part_already_uploaded (a lost first answer).
    conflict: HashSet<u32>,
    /// Parts refused with a 409 token error.
    refused: HashSet<u32>,
}

#[derive(Clone, Default)]
struct Node {
    behaviour: Arc<Behaviour>,
    stored: Arc<Mutex<BTreeMap<u32, Vec<u8>>>>,
    attempts: Arc<Mutex<HashMap<u32, u32>>>,
    completed: Arc<Mutex<bool>>,
    object: Arc<Vec<u8>>,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": message, "code": code})),
    )
        .into_response()
}

fn check_headers(headers: &HeaderMap, body: &Bytes) {
    assert!(
        headers.get("authorization").is_none(),
        "a node must never see the tenant credential"
    );
    let declared: usize = headers["content-length"].to_str().unwrap().parse().unwrap();
    assert_eq!(declared, body.len());
}

async fn put_part(
    State(node): State<Node>,
    Path(number): Path<u32>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    check_headers(&headers, &body);
    let attempt = {
        let mut attempts = node.attempts.lock().unwrap();
        let n = attempts.entry(number).or_default();
        *n += 1;
        *n
    };
    if node.behaviour.refused.contains(&number) {
        return error(
            StatusCode::CONFLICT,
            "token_used",
            "upload token already used",
        );
    }
    if node.behaviour.flaky.contains(&number) && attempt == 1 {
        return error(StatusCode::SERVICE_UNAVAILABLE, "busy", "disk busy");
    }
    node.stored.lock().unwrap().insert(number, body.to_vec());
    if node.behaviour.conflict.contains(&number) {
        return error(
            StatusCode::CONFLICT,
            "part_already_uploaded",
            "part already uploaded",
        );
    }
    Json(serde_json::json!({"part_number": number})).into_response()
}

async fn put_single(State(node): State<Node>, headers: HeaderMap, body: Bytes) -> Response {
    check_headers(&headers, &body);
    let size = body.len();
    node.stored.lock().unwrap().insert(1, body.to_vec());
    Json(serde_json::json!({"upload_id": "up-1", "size": size, "status": "stored"})).into_response()
}

async fn complete(State(node): State<Node>) -> Response {
    *node.completed.lock().unwrap() = true;
    Json(serde_json::json!({"upload_id": "up-1", "size": 0, "status": "distributed"}))
        .into_response()
}

/// Ignores Range, as a naive server would.
async fn object_full(State(node): State<Node>) -> Vec<u8> {
    node.object.to_vec()
}

async fn object_ranged(State(node): State<Node>, headers: HeaderMap) -> Response {
    let range = headers["range"]
        .to_str()
        .unwrap()
        .trim_start_matches("bytes=")
        .to_string();
    let (a, b) = range.split_once('-').unwrap();
    let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
    (StatusCode::PARTIAL_CONTENT, node.object[a..=b].to_vec()).into_response()
}

/// Counts the body without keeping it, for uploads too big to hold.
async fn sink(headers: HeaderMap, body: axum::body::Body) -> Response {
    use futures::StreamExt;
    let declared: u64 = headers["content-length"].to_str().unwrap().parse().unwrap();
    let mut received = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        received += piece.unwrap().len() as u64;
    }
    assert_eq!(received, declared);
    Json(serde_json::json!({"upload_id": "sink", "size": received, "status": "stored"}))
        .into_response()
}

async fn start(node: Node) -> String {
    let app = Router::new()
        .route("/part/{number}", put(put_part))
        .route("/single", put(put_single))
        .route("/complete", post(complete))
        .route("/sink/part/{number}", put(sink))
        .route("/sink/single", put(sink))
        .route("/sink/complete", post(complete))
        .route("/objects/full", get(object_full))
        .route("/objects/ranged", get(object_ranged))
        .route(
            "/objects/missing",
            get(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such file") }),
        )
        .with_state(node);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn envelope_of(node: &Node) -> Vec<u8> {
    node.stored
        .lock()
        .unwrap()
        .values()
        .flatten()
        .copied()
        .collect()
}

#[tokio::test]
async fn multipart_upload_retries_flaky_parts_and_accepts_already_uploaded_ones() {
    let node = Node {
        behaviour: Arc::new(Behaviour {
            flaky: [2].into(),
            conflict: [3].into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let base = start(node.clone()).await;
    let data = plaintext(10 * 1024 + 77);
    let file = temp_file(&data);
    let reg = registration(data.len() as u64, 3, &base);
    assert_eq!(reg.parts.len(), 4);

    let events = Arc::new(Mutex::new(Vec::<Progress>::new()));
    let sink = events.clone();
    let opts = UploadOptions {
        concurrency: 2,
        part_retries: 2,
        progress: Some(Arc::new(move |p| sink.lock().unwrap().push(p))),
        resume: false,
    };
    let result = upload_with_registration(&reqwest::Client::new(), &reg, file.path(), &opts)
        .await
        .unwrap();
    assert_eq!(result.file_id, reg.file_id);
    assert_eq!(result.cdn_url, reg.cdn_url);
    assert!(*node.completed.lock().unwrap());
    assert_eq!(
        node.attempts.lock().unwrap()[&2],
        2,
        "the 503 part was retried once"
    );
    assert_eq!(decrypt(&key(), &envelope_of(&node)).unwrap(), data);

    let events = events.lock().unwrap();
    let last = |stage| {
        events
            .iter()
            .rev()
            .find(|p| p.stage == stage)
            .copied()
            .unwrap()
    };
    assert_eq!(last(Stage::Encrypting).done, reg.file_size);
    assert_eq!(last(Stage::Uploading).done, reg.ciphertext_size);
    assert_eq!(
        *events.last().unwrap(),
        Progress {
            stage: Stage::Completing,
            done: 1,
            total: 1
        }
    );
}

#[tokio::test]
async fn single_upload_streams_one_envelope() {
    let node = Node::default();
    let base = start(node.clone()).await;
    for size in [0usize, 5000] {
        let data = plaintext(size);
        let file = temp_file(&data);
        let mut reg = registration(size as u64, 1000, &base);
        reg.upload_type = UploadType::Single;
        reg.upload_url = Some(format!("{base}/single"));
        reg.parts.clear();
        reg.complete_url = None;
        upload_with_registration(
            &reqwest::Client::new(),
            &reg,
            file.path(),
            &UploadOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(decrypt(&key(), &envelope_of(&node)).unwrap(), data);
    }
}

#[tokio::test]
async fn a_refused_part_fails_at_once_with_the_nodes_words() {
    let node = Node {
        behaviour: Arc::new(Behaviour {
            refused: [1].into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let base = start(node.clone()).await;
    let data = plaintext(4000);
    let file = temp_file(&data);
    let reg = registration(4000, 1, &base);
    let opts = UploadOptions {
        concurrency: 1,
        ..Default::default()
    };
    let err = upload_with_registration(&reqwest::Client::new(), &reg, file.path(), &opts)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "upload registration already used (each registration uploads once; initiate a new upload): \
         HTTP 409 from node: upload token already used (part 1)"
    );
    assert!(matches!(err, ClientError::Api { status: 409, ref code, .. } if code == "token_used"));
    assert!(err.is_registration_used());
    assert_eq!(node.attempts.lock().unwrap()[&1], 1);
    assert!(!*node.completed.lock().unwrap());
}

#[tokio::test]
async fn unreachable_nodes_and_expired_registrations_are_named() {
    // Bind then drop: nothing listens on this port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let data = plaintext(100);
    let file = temp_file(&data);
    let reg = registration(100, 1, &base);
    let opts = UploadOptions {
        part_retries: 0,
        ..Default::default()
    };
    let err = upload_with_registration(&reqwest::Client::new(), &reg, file.path(), &opts)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("node unreachable at {base}/part/1: ")),
        "{text}"
    );
    assert!(text.ends_with("(part 1)"), "{text}");
    assert!(
        !format!("{err:?}").contains("secret"),
        "the token must not leak: {err:?}"
    );

    let mut expired = reg.clone();
    expired.expires_at = "2001-01-01T00:00:00Z".into();
    let err = upload_with_registration(&reqwest::Client::new(), &expired, file.path(), &opts)
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("upload registration expired"),
        "{err}"
    );

    let wrong_size = temp_file(&data[..99]);
    let err = upload_with_registration(&reqwest::Client::new(), &reg, wrong_size.path(), &opts)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("99 bytes but the registration is for 100"),
        "{err}"
    );
}

#[tokio::test]
async fn downloads_stream_whole_objects_and_ranges() {
    let object = plaintext(10_000);
    let node = Node {
        object: Arc::new(object.clone()),
        ..Default::default()
    };
    let base = start(node).await;
    let http = reqwest::Client::new();

    let mut out = Vec::new();
    let n = download(&http, &format!("{base}/objects/full"), None, &mut out)
        .await
        .unwrap();
    assert_eq!((n, &out), (10_000, &object));

    for path in ["full", "ranged"] {
        let mut out = Vec::new();
        let n = download(
            &http,
            &format!("{base}/objects/{path}"),
            Some(100..2100),
            &mut out,
        )
        .await
        .unwrap();
        assert_eq!(n, 2000);
        assert_eq!(out, object[100..2100], "{path}");
    }

    let err = download(
        &http,
        &format!("{base}/objects/missing"),
        None,
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "HTTP 404 from CDN: no such file");
}

/// Peak resident memory of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// `cargo test -p zib-client --release -- --ignored --nocapture large_uploads`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "uploads 2 GiB through loopback; run by hand to measure"]
async fn large_uploads_keep_memory_flat() {
    const SIZE: u64 = 1 << 30;
    const CHUNK: u32 = 256 * 1024;
    let base = start(Node::default()).await;
    // Sparse: reads cost no disk, so the figure is the SDK's own speed.
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().set_len(SIZE).unwrap();
    let http = reqwest::Client::new();
    // Warm the page cache so both runs measure the SDK, not the first read of the file.
    std::io::copy(
        &mut std::fs::File::open(file.path()).unwrap(),
        &mut std::io::sink(),
    )
    .unwrap();
    let before = peak_rss();

    let mut single = registration_with_chunk(SIZE, CHUNK, u64::MAX / 2, &format!("{base}/sink"));
    single.upload_type = UploadType::Single;
    single.upload_url = Some(format!("{base}/sink/single?token=t"));
    single.parts.clear();
    single.complete_url = None;
    let started = std::time::Instant::now();
    upload_with_registration(&http, &single, file.path(), &UploadOptions::default())
        .await
        .unwrap();
    let single_secs = started.elapsed().as_secs_f64();

    // 64 MiB parts, four in flight.
    let multi = registration_with_chunk(SIZE, CHUNK, 256, &format!("{base}/sink"));
    let started = std::time::Instant::now();
    upload_with_registration(&http, &multi, file.path(), &UploadOptions::default())
        .await
        .unwrap();
    let multi_secs = started.elapsed().as_secs_f64();

    let growth = peak_rss().saturating_sub(before);
    let mib = (SIZE >> 20) as f64;
    println!(
        "1 GiB single: {:.0} MiB/s; multipart ({} parts): {:.0} MiB/s; peak RSS growth {} MiB",
        mib / single_secs,
        multi.parts.len(),
        mib / multi_secs,
        growth >> 20
    );
    assert!(growth < 64 << 20, "peak RSS grew by {} MiB", growth >> 20);
}
