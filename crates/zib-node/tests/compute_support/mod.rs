//! A fake server for the compute worker's tests: registration, heartbeats and the
//! compute-job protocol of `zib_proto::compute`, recording every call. It holds one
//! source envelope and hands out one job; it is the boundary of these tests.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tempfile::TempDir;
use zib_crypto::envelope::Header;
use zib_crypto::{CapabilitySigner, DataKey};
use zib_node::{NodeConfig, RunningNode};
use zib_proto::compute::{
    ClaimedComputeJob, ComputeClaimRequest, ComputeDone, ComputeKind, ComputeLeaseRenewal,
    ComputeOutputKind,
};
use zib_proto::jobs::{
    ArtifactStored, JobFailure, JobSource, LeaseStatus, LEASE_HEADER, MAX_ARTIFACT_BYTES,
};
use zib_proto::node_rpc::{HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse};
use zib_proto::FileId;

pub const CLUSTER_TOKEN: &str = "compute-test-cluster-token";
pub const JOB_ID: &str = "cjob-1";
pub const LEASE: &str = "compute-lease-1";

/// Everything the node told the fake.
#[derive(Clone, Default)]
pub struct Seen {
    pub registrations: Vec<RegisterRequest>,
    pub claims: Vec<ComputeClaimRequest>,
    pub renewals: Vec<ComputeLeaseRenewal>,
    pub source_reads: u32,
    pub outputs: Vec<Output>,
    pub done: Option<ComputeDone>,
    pub failed: Option<JobFailure>,
    /// Calls made with a wrong lease or after the job ended.
    pub stray_calls: Vec<String>,
    /// `output:{kind}`, `done`, `failed` in arrival order.
    pub order: Vec<String>,
}

/// One output a node sent.
#[derive(Clone, Debug)]
pub struct Output {
    pub kind: ComputeOutputKind,
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub stored: ArtifactStored,
}

pub struct Fake {
    pub signer: CapabilitySigner,
    pub seen: Mutex<Seen>,
    pub job: Mutex<Option<ClaimedComputeJob>>,
    pub envelope: Mutex<Vec<u8>>,
    /// Renewals (and every job call) answer `410` once set.
    pub cancelled: Mutex<bool>,
    /// Cancel the job at its first renewal.
    pub cancel_at_first_renewal: Mutex<bool>,
}

pub type FakeState = Arc<Fake>;

impl Fake {
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

fn authorised(headers: &HeaderMap) -> bool {
    let expected = format!("Bearer {CLUSTER_TOKEN}");
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
}

async fn register(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Json(req): Json<RegisterRequest>,
) -> Result<Json<RegisterResponse>, StatusCode> {
    if !authorised(&headers) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    fake.seen.lock().unwrap().registrations.push(req);
    Ok(Json(RegisterResponse {
        capability_public_key: fake.signer.public_key_hex(),
        heartbeat_interval_secs: 1,
    }))
}

async fn heartbeat(Json(_req): Json<HeartbeatRequest>) -> Json<HeartbeatResponse> {
    Json(HeartbeatResponse {
        commands: Vec::new(),
    })
}

async fn claim(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Json(req): Json<ComputeClaimRequest>,
) -> Response {
    if !authorised(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    fake.seen.lock().unwrap().claims.push(req);
    match fake.job.lock().unwrap().take() {
        Some(job) => Json(job).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// A job call must carry the cluster token and the lease and come before the job
/// ended; anything else is recorded as stray and answered `410`.
fn check_call(fake: &Fake, headers: &HeaderMap, job: &str, lease: &str, what: &str) -> bool {
    let ok = authorised(headers) && job == JOB_ID && lease == LEASE;
    let mut seen = fake.seen.lock().unwrap();
    let ended = seen.done.is_some() || seen.failed.is_some() || *fake.cancelled.lock().unwrap();
    if !ok || ended {
        seen.stray_calls.push(what.to_string());
        return false;
    }
    true
}

async fn lease(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Path(job): Path<String>,
    Json(req): Json<ComputeLeaseRenewal>,
) -> Response {
    if *fake.cancel_at_first_renewal.lock().unwrap() {
        *fake.cancelled.lock().unwrap() = true;
    }
    if *fake.cancelled.lock().unwrap() {
        fake.seen.lock().unwrap().renewals.push(req);
        return StatusCode::GONE.into_response();
    }
    if !check_call(&fake, &headers, &job, &req.lease_token, "lease") {
        return StatusCode::GONE.into_response();
    }
    fake.seen.lock().unwrap().renewals.push(req);
    Json(LeaseStatus { lease_secs: 30 }).into_response()
}

fn lease_header(headers: &HeaderMap) -> String {
    headers
        .get(LEASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The envelope, whole or one `bytes=a-b` range, like the real route.
async fn source(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Path(job): Path<String>,
) -> Response {
    if !check_call(&fake, &headers, &job, &lease_header(&headers), "source") {
        return StatusCode::GONE.into_response();
    }
    fake.seen.lock().unwrap().source_reads += 1;
    let envelope = fake.envelope.lock().unwrap().clone();
    let len = envelope.len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .map(|(a, b)| {
            let a: usize = a.parse().unwrap();
            let b: usize = if b.is_empty() {
                len - 1
            } else {
                b.parse().unwrap()
            };
            (a, b.min(len - 1))
        });
    match range {
        None => Response::new(Body::from(envelope)),
        Some((a, b)) => Response::builder()
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}"))
            .body(Body::from(envelope[a..=b].to_vec()))
            .unwrap(),
    }
}

/// Like the real route: lease in the header, the kind's Content-Type, a bounded
/// body (an SRT without cues may be empty); answers a new file id and its URL.
async fn output(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Path((job, kind)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if !check_call(&fake, &headers, &job, &lease_header(&headers), "output") {
        return StatusCode::GONE.into_response();
    }
    let Some(kind) = ComputeOutputKind::parse(&kind) else {
        return (StatusCode::NOT_FOUND, "unknown output kind").into_response();
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if content_type != kind.content_type() || body.len() > MAX_ARTIFACT_BYTES {
        return (StatusCode::BAD_REQUEST, "bad output").into_response();
    }
    let file_id = FileId::new_random();
    let stored = ArtifactStored {
        file_id,
        url: format!("https://cdn.test/objects/{file_id}"),
    };
    let mut seen = fake.seen.lock().unwrap();
    seen.order.push(format!("output:{}", kind.as_str()));
    seen.outputs.push(Output {
        kind,
        content_type,
        bytes: body.to_vec(),
        stored: stored.clone(),
    });
    Json(stored).into_response()
}

async fn done(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Path(job): Path<String>,
    Json(req): Json<ComputeDone>,
) -> StatusCode {
    if !check_call(&fake, &headers, &job, &req.lease_token, "done") {
        return StatusCode::GONE;
    }
    let mut seen = fake.seen.lock().unwrap();
    seen.done = Some(req);
    seen.order.push("done".into());
    StatusCode::NO_CONTENT
}

async fn failed(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Path(job): Path<String>,
    Json(req): Json<JobFailure>,
) -> StatusCode {
    if !check_call(&fake, &headers, &job, &req.lease_token, "failed") {
        return StatusCode::GONE;
    }
    let mut seen = fake.seen.lock().unwrap();
    seen.failed = Some(req);
    seen.order.push("failed".into());
    StatusCode::NO_CONTENT
}

pub async fn start_fake() -> (String, FakeState) {
    let fake = Arc::new(Fake {
        signer: CapabilitySigner::generate(),
        seen: Mutex::new(Seen::default()),
        job: Mutex::new(None),
        envelope: Mutex::new(Vec::new()),
        cancelled: Mutex::new(false),
        cancel_at_first_renewal: Mutex::new(false),
    });
    let app = Router::new()
        .route("/v1/node/register", post(register))
        .route("/v1/node/heartbeat", post(heartbeat))
        .route("/v1/node/compute/claim", post(claim))
        .route("/v1/node/compute/{job}/lease", post(lease))
        .route("/v1/node/compute/{job}/source", get(source))
        .route("/v1/node/compute/{job}/outputs/{kind}", post(output))
        .route("/v1/node/compute/{job}/done", post(done))
        .route("/v1/node/compute/{job}/failed", post(failed))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fake)
}

/// Seals `plaintext` as the server stores a file and offers it as the next job;
/// returns the data key (to scan the disk for) and the source's file id.
pub fn offer_job(
    fake: &Fake,
    server_url: &str,
    plaintext: &[u8],
    kind: ComputeKind,
    tier: &str,
    lease_secs: u64,
) -> ([u8; 32], FileId) {
    let file_id = FileId::new_random();
    let key = DataKey::generate();
    let chunk_size = 64 * 1024;
    let header = Header::new_random(chunk_size);
    let envelope = zib_crypto::envelope::encrypt(&key, header, plaintext);
    *fake.job.lock().unwrap() = Some(ClaimedComputeJob {
        job_id: JOB_ID.into(),
        file_id,
        lease_token: LEASE.into(),
        lease_secs,
        kind,
        tier: tier.into(),
        source: JobSource {
            url: format!("{server_url}/v1/node/compute/{JOB_ID}/source"),
            size: plaintext.len() as u64,
            ciphertext_size: envelope.len() as u64,
            chunk_size,
            nonce_prefix: header.to_params().nonce_prefix,
            data_key: hex::encode(key.as_bytes()),
            parts: Vec::new(),
        },
        encoding_job_id: None,
    });
    *fake.envelope.lock().unwrap() = envelope;
    (*key.as_bytes(), file_id)
}

/// A node that runs AI (models from `ZIB_MODELS_DIR` or `~/.cache/zib/models`) and
/// no encodes.
pub fn node_config(server_url: &str, dir: &TempDir) -> NodeConfig {
    NodeConfig {
        data_dir: dir.path().to_path_buf(),
        server_url: server_url.to_string(),
        cluster_token: CLUSTER_TOKEN.to_string(),
        capacity_bytes: 1 << 30,
        heartbeat_interval: Duration::from_millis(200),
        encode: false,
        ai: true,
        ..NodeConfig::default()
    }
}

pub async fn start_node(config: NodeConfig) -> RunningNode {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    zib_node::start(config, listener).await.unwrap()
}

pub async fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !ready() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fails loudly when a model is missing: these tests run the real models.
pub fn ensure_models() {
    let dir = zib_ai::ModelsDir::from_env();
    let tiny = dir.whisper(zib_proto::pipeline::TranscriptionTier::Fastest);
    for needed in [
        tiny.join("model.bin"),
        dir.ocr().join("det.onnx"),
        dir.ocr().join("rec.onnx"),
        dir.nudenet().join("320n.onnx"),
        dir.minilm().join("model.safetensors"),
    ] {
        assert!(
            needed.exists(),
            "{} is missing: run scripts/install-models.sh fastest && scripts/install-models.sh vision",
            needed.display()
        );
    }
}

/// Runs a command that makes a test input; panics with its stderr when it fails.
pub fn run_tool(cmd: &mut std::process::Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An MP4 of `text` spoken by espeak-ng over a dark picture, with `comment` in its
/// metadata (a marker to scan the disk for). Made in a temp dir outside the node's.
pub fn spoken_clip(text: &str, comment: &str) -> Vec<u8> {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let wav = dir.path().join("speech.wav");
    run_tool(
        std::process::Command::new("espeak-ng")
            .args(["-s", "150", "-w"])
            .arg(&wav)
            .arg(text),
    );
    let mp4 = dir.path().join("speech.mp4");
    run_tool(
        std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", "color=c=0x202020:size=320x180:rate=25"])
            .arg("-i")
            .arg(&wav)
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ])
            .args(["-c:a", "aac", "-shortest", "-metadata"])
            .arg(format!("comment={comment}"))
            .arg(&mp4),
    );
    std::fs::read(&mp4).unwrap()
}

/// `secs` of a picture with `text` drawn large (white on dark) and a hard cut to a
/// test pattern half-way, with a sine tone.
pub fn text_clip(text: &str, secs: u32) -> Vec<u8> {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mp4 = dir.path().join("text.mp4");
    let half = secs / 2;
    let filter = format!(
        "[0:v]drawtext=text='{text}':fontcolor=white:fontsize=56:x=(w-text_w)/2:y=(h-text_h)/2[a];\
         [a][1:v]concat=n=2:v=1:a=0[v]"
    );
    run_tool(
        std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i"])
            .arg(format!(
                "color=c=0x101010:size=960x540:rate=25:duration={half}"
            ))
            .args(["-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size=960x540:rate=25:duration={half}"))
            .args(["-f", "lavfi", "-i"])
            .arg(format!(
                "sine=frequency=440:sample_rate=48000:duration={secs}"
            ))
            .args(["-filter_complex", &filter, "-map", "[v]", "-map", "2:a"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ])
            .args(["-c:a", "aac", "-shortest"])
            .arg(&mp4),
    );
    std::fs::read(&mp4).unwrap()
}

/// Every regular file under `dir`, relative to it.
pub fn files_under(dir: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
