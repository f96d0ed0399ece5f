//! Shared by the node's integration tests: a tiny fake server (register, heartbeat,
//! received, distributed) that signs capability tokens the way the real server does,
//! and a cluster of real nodes on 127.0.0.1 around it. The fake lives here only: it
//! is the boundary of these tests.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use tempfile::TempDir;
use zib_crypto::CapabilitySigner;
use zib_erasure::{Codec, Layout};
use zib_node::{NodeConfig, RunningNode};
use zib_proto::api::ErrorBody;
use zib_proto::node_rpc::{
    CapabilityClaims, CapabilityOp, DistributedRequest, DistributionPlan, HeartbeatRequest,
    HeartbeatResponse, NodeCommand, RegisterRequest, RegisterResponse, SegmentPlan, ShardTarget,
    UploadReceivedRequest,
};
use zib_proto::{BlobId, ErasureParams, NodeId};

pub const CLUSTER_TOKEN: &str = "test-cluster-token";
pub const TEST_LIMIT: Duration = Duration::from_secs(60);
/// Small shards so a few kilobytes already make several segments.
pub const ERASURE: ErasureParams = ErasureParams {
    data_shards: 2,
    parity_shards: 1,
    shard_size: 4096,
};

// ---------------------------------------------------------------- the fake server

#[derive(Default)]
pub struct Recorded {
    pub nodes: Vec<(NodeId, String)>,
    pub distributed: HashMap<BlobId, DistributedRequest>,
    pub commands: HashMap<NodeId, Vec<NodeCommand>>,
    pub acked: Vec<i64>,
}

pub struct Fake {
    pub signer: CapabilitySigner,
    pub erasure: ErasureParams,
    pub recorded: Mutex<Recorded>,
    pub faults: Mutex<Faults>,
}

/// Failures the fake server injects, for the resume and refusal stories.
#[derive(Default)]
pub struct Faults {
    /// The next this-many `received` calls answer 503.
    pub received_unavailable: u32,
    /// Every `distributed` call answers this status and error message.
    pub distributed_refusal: Option<(StatusCode, String)>,
    /// `received` calls seen, failed ones included.
    pub received_calls: u32,
}

fn fake_error(status: StatusCode, code: &str, message: &str) -> (StatusCode, Json<ErrorBody>) {
    (
        status,
        Json(ErrorBody {
            error: message.to_string(),
            code: code.to_string(),
            request_id: None,
        }),
    )
}

pub type FakeState = Arc<Fake>;

pub fn authorised(headers: &HeaderMap) -> Result<(), StatusCode> {
    let expected = format!("Bearer {CLUSTER_TOKEN}");
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(v) if v == expected => Ok(()),
        _ => Err(StatusCode::UNAUTHORIZED),
    }
}

pub async fn fake_register(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Json(req): Json<RegisterRequest>,
) -> Result<Json<RegisterResponse>, StatusCode> {
    authorised(&headers)?;
    let mut rec = fake.recorded.lock().unwrap();
    rec.nodes.retain(|(id, _)| *id != req.node_id);
    rec.nodes.push((req.node_id, req.public_url));
    Ok(Json(RegisterResponse {
        capability_public_key: fake.signer.public_key_hex(),
        heartbeat_interval_secs: 1,
    }))
}

pub async fn fake_heartbeat(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Json(req): Json<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, StatusCode> {
    authorised(&headers)?;
    let mut rec = fake.recorded.lock().unwrap();
    rec.acked.extend(&req.acked_commands);
    let queue = rec.commands.entry(req.node_id).or_default();
    queue.retain(|c| !req.acked_commands.contains(&c.id));
    Ok(Json(HeartbeatResponse {
        commands: queue.clone(),
    }))
}

/// Shard `i` of segment `s` goes to node `(s + i) % n`: with n == k + m every
/// segment spreads over distinct nodes, the originator included.
pub async fn fake_received(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Path(upload): Path<BlobId>,
    Json(req): Json<UploadReceivedRequest>,
) -> Result<Json<DistributionPlan>, (StatusCode, Json<ErrorBody>)> {
    authorised(&headers).map_err(|s| fake_error(s, "unauthorized", "bad cluster token"))?;
    if req.part.is_some() {
        // This fake plans whole uploads only, as a real server does for uploads
        // registered before parts were coded on arrival: the node then keeps each
        // part until `complete` and places the whole upload.
        return Err(fake_error(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "this server places whole uploads only",
        ));
    }
    {
        let mut faults = fake.faults.lock().unwrap();
        faults.received_calls += 1;
        if faults.received_unavailable > 0 {
            faults.received_unavailable -= 1;
            return Err(fake_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "no storage nodes available",
            ));
        }
    }
    if fake
        .recorded
        .lock()
        .unwrap()
        .distributed
        .contains_key(&upload)
    {
        // As the server answers: a distributed upload is never planned again.
        return Err(fake_error(
            StatusCode::CONFLICT,
            "conflict",
            &format!("upload {upload} is distributed and cannot be distributed again"),
        ));
    }
    let nodes = fake.recorded.lock().unwrap().nodes.clone();
    let layout = Layout::new(fake.erasure, req.size);
    let segments = (0..layout.segment_count())
        .map(|segment| SegmentPlan {
            segment,
            targets: (0..fake.erasure.total_shards())
                .map(|index| {
                    let (node_id, node_url) =
                        nodes[(segment as usize + index) % nodes.len()].clone();
                    let blob_id = BlobId::new_random();
                    let token = fake.signer.sign(&claims(
                        CapabilityOp::Shard,
                        &node_id,
                        blob_id,
                        layout.shard_len(segment),
                    ));
                    ShardTarget {
                        index: index as u8,
                        node_id,
                        node_url,
                        blob_id,
                        token,
                    }
                })
                .collect(),
        })
        .collect();
    Ok(Json(DistributionPlan {
        erasure: fake.erasure,
        segments,
        inline: false,
        first_segment: 0,
    }))
}

pub async fn fake_distributed(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Path(upload): Path<BlobId>,
    Json(req): Json<DistributedRequest>,
) -> Result<Json<serde_json::Value>, (StatusCode, Json<ErrorBody>)> {
    authorised(&headers).map_err(|s| fake_error(s, "unauthorized", "bad cluster token"))?;
    if let Some((status, message)) = fake.faults.lock().unwrap().distributed_refusal.clone() {
        return Err(fake_error(status, "conflict", &message));
    }
    fake.recorded
        .lock()
        .unwrap()
        .distributed
        .insert(upload, req);
    Ok(Json(serde_json::json!({"status": "distributed"})))
}

pub async fn start_fake_on(
    listener: tokio::net::TcpListener,
    erasure: ErasureParams,
) -> (String, FakeState) {
    let fake = Arc::new(Fake {
        signer: CapabilitySigner::generate(),
        erasure,
        recorded: Mutex::new(Recorded::default()),
        faults: Mutex::new(Faults::default()),
    });
    let app = Router::new()
        .route("/v1/node/register", post(fake_register))
        .route("/v1/node/heartbeat", post(fake_heartbeat))
        .route("/v1/node/uploads/{id}/received", post(fake_received))
        .route("/v1/node/uploads/{id}/distributed", post(fake_distributed))
        .with_state(fake.clone());
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fake)
}

// ---------------------------------------------------------------- helpers

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

/// Deterministic bytes that are not all alike.
pub fn bytes_of(len: usize, seed: u8) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&[seed])
        .finalize_xof()
        .fill(&mut out);
    out
}

pub struct Cluster {
    pub fake: FakeState,
    pub fake_url: String,
    pub nodes: Vec<RunningNode>,
    pub http: reqwest::Client,
    pub dirs: Vec<TempDir>,
}

pub async fn start_node(server_url: &str, dir: &TempDir) -> RunningNode {
    start_node_tweaked(server_url, dir, |_| {}).await
}

/// A node whose configuration `tweak` adjusts first.
pub async fn start_node_tweaked(
    server_url: &str,
    dir: &TempDir,
    tweak: impl FnOnce(&mut NodeConfig),
) -> RunningNode {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = NodeConfig {
        node_id: None,
        data_dir: dir.path().to_path_buf(),
        public_url: None,
        server_url: server_url.to_string(),
        cluster_token: CLUSTER_TOKEN.to_string(),
        capacity_bytes: 1 << 30,
        zone: None,
        heartbeat_interval: Duration::from_millis(100),
        // Storage nodes: no models to load (with the `ai` feature on).
        ai: false,
        ..NodeConfig::default()
    };
    tweak(&mut config);
    zib_node::start(config, listener).await.unwrap()
}

impl Cluster {
    pub async fn start(node_count: usize) -> Self {
        Self::start_with(node_count, ERASURE).await
    }

    /// Shards go to node `(segment + index) % node_count`.
    pub async fn start_with(node_count: usize, erasure: ErasureParams) -> Self {
        Self::start_tweaked(node_count, erasure, |_| {}).await
    }

    /// Every node's configuration adjusted by `tweak` first.
    pub async fn start_tweaked(
        node_count: usize,
        erasure: ErasureParams,
        tweak: impl Fn(&mut NodeConfig),
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (url, fake) = start_fake_on(listener, erasure).await;
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..node_count {
            let dir = tempfile::tempdir().unwrap();
            nodes.push(start_node_tweaked(&url, &dir, &tweak).await);
            dirs.push(dir);
        }
        Self {
            fake,
            fake_url: url,
            nodes,
            http: reqwest::Client::new(),
            dirs,
        }
    }

    pub fn url(&self, node: usize, path: &str) -> String {
        format!("http://{}{path}", self.nodes[node].addr)
    }

    pub fn token(&self, claims: &CapabilityClaims) -> String {
        self.fake.signer.sign(claims)
    }

    pub fn upload_token(&self, node: usize, blob: BlobId, size: u64) -> String {
        self.token(&claims(
            CapabilityOp::Upload,
            &self.nodes[node].node_id,
            blob,
            size,
        ))
    }

    pub async fn put(
        &self,
        node: usize,
        path: &str,
        token: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.http
            .put(self.url(node, path))
            .query(&[("token", token)])
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_blob(&self, node_id: &NodeId, blob: BlobId) -> Vec<u8> {
        let node = self.index_of(node_id);
        let response = self
            .http
            .get(self.url(node, &format!("/v1/shards/{blob}")))
            .bearer_auth(CLUSTER_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.bytes().await.unwrap().to_vec()
    }

    /// `GET /healthz` of node `node`, as JSON.
    pub async fn health(&self, node: usize) -> serde_json::Value {
        self.http
            .get(self.url(node, "/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub fn index_of(&self, node_id: &NodeId) -> usize {
        self.nodes
            .iter()
            .position(|n| n.node_id == *node_id)
            .unwrap()
    }

    pub async fn stop(self) {
        for node in self.nodes {
            node.stop().await;
        }
    }
}

pub async fn error_of(response: reqwest::Response) -> (StatusCode, ErrorBody) {
    let status = response.status();
    let body: ErrorBody = response.json().await.unwrap();
    (status, body)
}

/// Checks that the shards the fake server was told about are on their nodes, hash
/// right, rebuild the original bytes, and survive the loss of one shard per segment.
pub async fn assert_distributed(cluster: &Cluster, upload: BlobId, original: &[u8]) {
    let erasure = cluster.fake.erasure;
    let report = cluster.fake.recorded.lock().unwrap().distributed[&upload].clone();
    let layout = Layout::new(erasure, original.len() as u64);
    let codec = Codec::new(erasure).unwrap();
    let total = erasure.total_shards();
    assert_eq!(report.shards.len(), layout.segment_count() as usize * total);
    let mut rebuilt = Vec::new();
    for segment in 0..layout.segment_count() {
        let mut shards = Vec::new();
        for stored in report.shards.iter().filter(|s| s.segment == segment) {
            let bytes = cluster.get_blob(&stored.node_id, stored.blob_id).await;
            assert_eq!(bytes.len() as u64, stored.size);
            assert_eq!(blake3::hash(&bytes).to_hex().as_str(), stored.blake3);
            shards.push(bytes);
        }
        let range = layout.segment_range(segment);
        let data: Vec<u8> = shards[..erasure.data_shards as usize].concat();
        rebuilt.extend_from_slice(&data[..(range.end - range.start) as usize]);

        let mut damaged: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
        damaged[0] = None;
        codec.reconstruct(segment, &mut damaged).unwrap();
        assert_eq!(damaged[0].as_deref(), Some(&shards[0][..]));
    }
    assert_eq!(rebuilt, original);
}

/// Waits until the fake server has been told `upload` is distributed.
pub async fn wait_distributed(fake: &Fake, upload: BlobId) {
    while !fake
        .recorded
        .lock()
        .unwrap()
        .distributed
        .contains_key(&upload)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, future)
        .await
        .expect("test took too long")
}
