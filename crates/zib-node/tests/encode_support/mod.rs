//! A fake server for the encoder's tests: registration, heartbeats (with commands)
//! and the whole job protocol of `zib_proto::jobs`, recording every call. It holds
//! one source envelope and hands out one job; it is the boundary of these tests.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tempfile::TempDir;
use zib_crypto::envelope::Header;
use zib_crypto::{CapabilitySigner, DataKey};
use zib_node::{NodeConfig, RunningNode};
use zib_proto::jobs::{
    ArtifactKind, ArtifactStored, ClaimRequest, ClaimedJob, JobDone, JobFailure, JobProbed,
    JobSource, LeaseRenewal, LeaseStatus, RenditionDone, ReplicaTarget, ReplicasStored,
    SegmentStored, SegmentTargets, ThumbnailPlan, ThumbnailsRegistered, LEASE_HEADER,
    MAX_ARTIFACT_BYTES,
};
use zib_proto::node_rpc::{
    CapabilityClaims, CapabilityOp, HeartbeatRequest, HeartbeatResponse, NodeCommand,
    RegisterRequest, RegisterResponse,
};
use zib_proto::{BlobId, FileId, NodeId};

pub const CLUSTER_TOKEN: &str = "encode-test-cluster-token";
pub const JOB_ID: &str = "job-1";
pub const LEASE: &str = "lease-token-1";

/// Everything the nodes told the fake, in arrival order where it matters.
#[derive(Clone, Default)]
pub struct Seen {
    pub registrations: Vec<RegisterRequest>,
    pub claims: u32,
    pub renewals: Vec<LeaseRenewal>,
    pub source_reads: u32,
    pub probed: Option<JobProbed>,
    pub segments: Vec<SegmentStored>,
    pub replicas: Vec<ReplicasStored>,
    pub published: Vec<(String, RenditionDone)>,
    pub done: Option<JobDone>,
    pub failed: Option<JobFailure>,
    /// Calls made with a wrong lease or after the job ended.
    pub stray_calls: Vec<String>,
    pub acked_commands: Vec<i64>,
    /// Artefact uploads, in arrival order, with the file the fake answered.
    pub artifacts: Vec<Artifact>,
    pub thumbnails: Option<ThumbnailsRegistered>,
    /// The job's result calls in arrival order: `artifact:{kind}:{seq}`,
    /// `thumbnails`, `done`, `failed`.
    pub order: Vec<String>,
}

/// One artefact a node sent.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub kind: ArtifactKind,
    pub seq: u32,
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub stored: ArtifactStored,
}

pub struct Fake {
    pub signer: CapabilitySigner,
    pub seen: Mutex<Seen>,
    /// The job handed out to the first claim (then `None`).
    pub job: Mutex<Option<ClaimedJob>>,
    pub envelope: Mutex<Vec<u8>>,
    /// Renewals answer `410` once this is set (the job was cancelled).
    pub cancelled: Mutex<bool>,
    pub commands: Mutex<Vec<NodeCommand>>,
    /// Nodes (id, url) that receive segment replicas.
    pub nodes: Mutex<Vec<(NodeId, String)>>,
    /// Artefact uploads answer `410` (and the job counts as cancelled) once set.
    pub artifacts_gone: Mutex<bool>,
}

pub type FakeState = Arc<Fake>;

impl Fake {
    /// A copy of what was seen so far (no lock held across an await).
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

fn authorised(headers: &HeaderMap) -> Result<(), StatusCode> {
    let expected = format!("Bearer {CLUSTER_TOKEN}");
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(v) if v == expected => Ok(()),
        _ => Err(StatusCode::UNAUTHORIZED),
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn claims(op: CapabilityOp, node: &NodeId, blob: BlobId, size: u64) -> CapabilityClaims {
    CapabilityClaims {
        op,
        node_id: node.clone(),
        blob_id: blob,
        size,
        part: None,
        offset: None,
        parts: None,
        envelope: None,
        expires_at: unix_now() + 600,
        jti: uuid::Uuid::new_v4().simple().to_string(),
    }
}

async fn register(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Json(req): Json<RegisterRequest>,
) -> Result<Json<RegisterResponse>, StatusCode> {
    authorised(&headers)?;
    let mut seen = fake.seen.lock().unwrap();
    {
        let mut nodes = fake.nodes.lock().unwrap();
        nodes.retain(|(id, _)| *id != req.node_id);
        nodes.push((req.node_id.clone(), req.public_url.clone()));
    }
    seen.registrations.push(req);
    Ok(Json(RegisterResponse {
        capability_public_key: fake.signer.public_key_hex(),
        heartbeat_interval_secs: 1,
    }))
}

async fn heartbeat(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Json(req): Json<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, StatusCode> {
    authorised(&headers)?;
    fake.seen
        .lock()
        .unwrap()
        .acked_commands
        .extend(&req.acked_commands);
    let mut commands = fake.commands.lock().unwrap();
    commands.retain(|c| !req.acked_commands.contains(&c.id));
    Ok(Json(HeartbeatResponse {
        commands: commands.clone(),
    }))
}

async fn claim(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Json(_req): Json<ClaimRequest>,
) -> Response {
    if let Err(s) = authorised(&headers) {
        return s.into_response();
    }
    fake.seen.lock().unwrap().claims += 1;
    match fake.job.lock().unwrap().take() {
        Some(job) => Json(job).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// The job's calls must carry the cluster token and the lease, and come before
/// the job ended; anything else is recorded as stray and answered `410`.
fn check_call(fake: &Fake, headers: &HeaderMap, job: &str, lease: &str, what: &str) -> bool {
    let ok = authorised(headers).is_ok() && job == JOB_ID && lease == LEASE;
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
    Json(req): Json<LeaseRenewal>,
) -> Response {
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

/// The envelope, whole or one `bytes=a-b` range, like the real route.
async fn source(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Path(job): Path<String>,
) -> Response {
    let lease = headers
        .get(LEASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !check_call(&fake, &headers, &job, &lease, "source") {
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

async fn probed(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Path(job): Path<String>,
    Json(req): Json<JobProbed>,
) -> StatusCode {
    if !check_call(&fake, &headers, &job, &req.lease_token, "probed") {
        return StatusCode::GONE;
    }
    fake.seen.lock().unwrap().probed = Some(req);
    StatusCode::NO_CONTENT
}

/// Replicas go to every registered node but the encoding one.
async fn segments(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Path(job): Path<String>,
    Json(req): Json<SegmentStored>,
) -> Response {
    if !check_call(&fake, &headers, &job, &req.lease_token, "segments") {
        return StatusCode::GONE.into_response();
    }
    let targets = fake
        .nodes
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, _)| *id != req.node_id)
        .map(|(id, url)| ReplicaTarget {
            node_id: id.clone(),
            node_url: url.clone(),
            token: fake
                .signer
                .sign(&claims(CapabilityOp::Segment, id, req.blob_id, req.size)),
        })
        .collect();
    fake.seen.lock().unwrap().segments.push(req);
    Json(SegmentTargets { targets }).into_response()
}

async fn replicas(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Path(job): Path<String>,
    Json(req): Json<ReplicasStored>,
) -> StatusCode {
    if !check_call(&fake, &headers, &job, &req.lease_token, "replicas") {
        return StatusCode::GONE;
    }
    fake.seen.lock().unwrap().replicas.push(req);
    StatusCode::NO_CONTENT
}

async fn published(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Path((job, name)): Path<(String, String)>,
    Json(req): Json<RenditionDone>,
) -> StatusCode {
    if !check_call(&fake, &headers, &job, &req.lease_token, "published") {
        return StatusCode::GONE;
    }
    fake.seen.lock().unwrap().published.push((name, req));
    StatusCode::NO_CONTENT
}

async fn done(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Path(job): Path<String>,
    Json(req): Json<JobDone>,
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

#[derive(serde::Deserialize)]
struct SeqQuery {
    seq: u32,
}

/// Like the real route: lease in the header, the kind's Content-Type, a bounded
/// body; answers a new file id and its CDN URL.
async fn artifact(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Path((job, kind)): Path<(String, String)>,
    Query(query): Query<SeqQuery>,
    body: Bytes,
) -> Response {
    let lease = headers
        .get(LEASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !check_call(&fake, &headers, &job, &lease, "artifact") {
        return StatusCode::GONE.into_response();
    }
    if *fake.artifacts_gone.lock().unwrap() {
        *fake.cancelled.lock().unwrap() = true;
        fake.seen
            .lock()
            .unwrap()
            .order
            .push(format!("artifact:{kind}:gone"));
        return StatusCode::GONE.into_response();
    }
    let Some(kind) = ArtifactKind::parse(&kind) else {
        return (StatusCode::NOT_FOUND, "unknown artefact kind").into_response();
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if content_type != kind.content_type() || body.is_empty() || body.len() > MAX_ARTIFACT_BYTES {
        return (StatusCode::BAD_REQUEST, "bad artefact").into_response();
    }
    let file_id = FileId::new_random();
    let stored = ArtifactStored {
        file_id,
        url: format!("https://cdn.test/objects/{file_id}"),
    };
    let mut seen = fake.seen.lock().unwrap();
    seen.order
        .push(format!("artifact:{}:{}", kind.as_str(), query.seq));
    seen.artifacts.push(Artifact {
        kind,
        seq: query.seq,
        content_type,
        bytes: body.to_vec(),
        stored: stored.clone(),
    });
    Json(stored).into_response()
}

async fn thumbnails(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Path(job): Path<String>,
    Json(req): Json<ThumbnailsRegistered>,
) -> StatusCode {
    if !check_call(&fake, &headers, &job, &req.lease_token, "thumbnails") {
        return StatusCode::GONE;
    }
    let mut seen = fake.seen.lock().unwrap();
    seen.thumbnails = Some(req);
    seen.order.push("thumbnails".into());
    StatusCode::NO_CONTENT
}

pub async fn start_fake() -> (String, FakeState) {
    let fake = Arc::new(Fake {
        signer: CapabilitySigner::generate(),
        seen: Mutex::new(Seen::default()),
        job: Mutex::new(None),
        envelope: Mutex::new(Vec::new()),
        cancelled: Mutex::new(false),
        commands: Mutex::new(Vec::new()),
        nodes: Mutex::new(Vec::new()),
        artifacts_gone: Mutex::new(false),
    });
    let app = Router::new()
        .route("/v1/node/register", post(register))
        .route("/v1/node/heartbeat", post(heartbeat))
        .route("/v1/node/jobs/claim", post(claim))
        .route("/v1/node/jobs/{job}/lease", post(lease))
        .route("/v1/node/jobs/{job}/source", get(source))
        .route("/v1/node/jobs/{job}/probed", post(probed))
        .route("/v1/node/jobs/{job}/segments", post(segments))
        .route("/v1/node/jobs/{job}/replicas", post(replicas))
        .route(
            "/v1/node/jobs/{job}/renditions/{name}/published",
            post(published),
        )
        .route("/v1/node/jobs/{job}/artifacts/{kind}", post(artifact))
        .route("/v1/node/jobs/{job}/thumbnails", post(thumbnails))
        .route("/v1/node/jobs/{job}/done", post(done))
        .route("/v1/node/jobs/{job}/failed", post(failed))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fake)
}

/// The keys of one offered job, kept by the test to decrypt and to scan for.
pub struct OfferedJob {
    pub data_key: [u8; 32],
    pub hls_key: [u8; 16],
}

/// Seals `plaintext` as the server stores a file and offers it as the next job (no
/// thumbnails, not a variant).
pub fn offer_job(fake: &Fake, server_url: &str, plaintext: &[u8], chunk_size: u32) -> OfferedJob {
    offer_job_with(fake, server_url, plaintext, chunk_size, None, None)
}

/// [`offer_job`] with a thumbnail plan and an aspect ratio (a variant job).
pub fn offer_job_with(
    fake: &Fake,
    server_url: &str,
    plaintext: &[u8],
    chunk_size: u32,
    thumbnails: Option<ThumbnailPlan>,
    aspect_ratio: Option<&str>,
) -> OfferedJob {
    let key = DataKey::generate();
    let header = Header::new_random(chunk_size);
    let envelope = zib_crypto::envelope::encrypt(&key, header, plaintext);
    let params = header.to_params();
    let hls_key: [u8; 16] = rand_bytes();
    *fake.job.lock().unwrap() = Some(ClaimedJob {
        job_id: JOB_ID.into(),
        lease_token: LEASE.into(),
        lease_secs: 30,
        source: JobSource {
            url: format!("{server_url}/v1/node/jobs/{JOB_ID}/source"),
            size: plaintext.len() as u64,
            ciphertext_size: envelope.len() as u64,
            chunk_size,
            nonce_prefix: params.nonce_prefix,
            data_key: hex::encode(key.as_bytes()),
            parts: Vec::new(),
        },
        hls_key: hex::encode(hls_key),
        options: serde_json::json!({}),
        thumbnails,
        aspect_ratio: aspect_ratio.map(str::to_string),
    });
    *fake.envelope.lock().unwrap() = envelope;
    OfferedJob {
        data_key: *key.as_bytes(),
        hls_key,
    }
}

pub fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let seed = uuid::Uuid::new_v4();
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

pub fn node_config(server_url: &str, dir: &TempDir) -> NodeConfig {
    NodeConfig {
        data_dir: dir.path().to_path_buf(),
        server_url: server_url.to_string(),
        cluster_token: CLUSTER_TOKEN.to_string(),
        capacity_bytes: 1 << 30,
        heartbeat_interval: Duration::from_millis(100),
        // These nodes encode (or store); the AI tests load models themselves.
        ai: false,
        ..NodeConfig::default()
    }
}

pub async fn start_node(config: NodeConfig) -> RunningNode {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    zib_node::start(config, listener).await.unwrap()
}

/// Installs ffmpeg/ffprobe if they are missing (fails loudly if it cannot).
pub fn ensure_ffmpeg() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/install-media-deps.sh"
    );
    if std::path::Path::new(script).exists() {
        let status = std::process::Command::new("bash")
            .arg(script)
            .status()
            .expect("cannot run scripts/install-media-deps.sh");
        assert!(status.success(), "scripts/install-media-deps.sh failed");
    }
    for tool in ["ffmpeg", "ffprobe"] {
        let ran = std::process::Command::new(tool)
            .arg("-version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            ran,
            "{tool} is not installed (scripts/install-media-deps.sh)"
        );
    }
}

/// A short generated clip (testsrc2 + sine), MP4 with the `moov` atom at the end
/// (ffmpeg's default: no faststart), made outside every directory a test scans.
pub fn make_clip(width: u32, height: u32, secs: u32, comment: &str) -> Vec<u8> {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("clip.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "testsrc2=size={width}x{height}:rate=25:duration={secs}"
        ))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={secs}"
        ))
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
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg could not make the test clip");
    std::fs::read(&path).unwrap()
}

pub async fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !ready() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first video stream's (width, height) as ffprobe reads `bytes` from a pipe (a
/// JPEG or an MPEG-TS segment): nothing is written to disk.
pub fn media_size(bytes: &[u8]) -> (u32, u32) {
    use std::io::Write;
    let mut child = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=width,height", "-of", "csv=p=0"])
        .args(["-i", "pipe:0"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    // ffprobe may stop reading early: a broken pipe here is fine.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or("");
    let (w, h) = line
        .split_once(',')
        .unwrap_or_else(|| panic!("ffprobe read no picture: {text:?}"));
    (w.trim().parse().unwrap(), h.trim().parse().unwrap())
}

/// Whether `bytes` look like one whole JPEG (SOI … EOI).
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8]) && bytes.ends_with(&[0xFF, 0xD9])
}
