//! A node's story, end to end: real nodes on 127.0.0.1 talking to a tiny fake server
//! (register, heartbeat, received, distributed) that signs capability tokens the way
//! the real server does. The fake lives here only: it is the boundary of these tests.

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
use zib_proto::api::{ErrorBody, UploadReceipt};
use zib_proto::node_rpc::{
    CapabilityClaims, CapabilityOp, DistributedRequest, DistributionPlan, HeartbeatRequest,
    HeartbeatResponse, NodeAction, NodeCommand, RegisterRequest, RegisterResponse, SegmentPlan,
    ShardTarget, UploadReceivedRequest,
};
use zib_proto::{BlobId, ErasureParams, NodeId};

const CLUSTER_TOKEN: &str = "test-cluster-token";
const TEST_LIMIT: Duration = Duration::from_secs(60);
/// Small shards so a few kilobytes already make several segments.
const ERASURE: ErasureParams = ErasureParams {
    data_shards: 2,
    parity_shards: 1,
    shard_size: 4096,
};

// ---------------------------------------------------------------- the fake server

#[derive(Default)]
struct Recorded {
    nodes: Vec<(NodeId, String)>,
    distributed: HashMap<BlobId, DistributedRequest>,
    commands: HashMap<NodeId, Vec<NodeCommand>>,
    acked: Vec<i64>,
}

struct Fake {
    signer: CapabilitySigner,
    recorded: Mutex<Recorded>,
}

type FakeState = Arc<Fake>;

fn authorised(headers: &HeaderMap) -> Result<(), StatusCode> {
    let expected = format!("Bearer {CLUSTER_TOKEN}");
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(v) if v == expected => Ok(()),
        _ => Err(StatusCode::UNAUTHORIZED),
    }
}

async fn fake_register(
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

async fn fake_heartbeat(
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
async fn fake_received(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Path(_upload): Path<BlobId>,
    Json(req): Json<UploadReceivedRequest>,
) -> Result<Json<DistributionPlan>, StatusCode> {
    authorised(&headers)?;
    let nodes = fake.recorded.lock().unwrap().nodes.clone();
    let layout = Layout::new(ERASURE, req.size);
    let segments = (0..layout.segment_count())
        .map(|segment| SegmentPlan {
            segment,
            targets: (0..ERASURE.total_shards())
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
        erasure: ERASURE,
        segments,
    }))
}

async fn fake_distributed(
    State(fake): State<FakeState>,
    headers: HeaderMap,
    Path(upload): Path<BlobId>,
    Json(req): Json<DistributedRequest>,
) -> Result<Json<serde_json::Value>, StatusCode> {
    authorised(&headers)?;
    fake.recorded
        .lock()
        .unwrap()
        .distributed
        .insert(upload, req);
    Ok(Json(serde_json::json!({"status": "distributed"})))
}

async fn start_fake_on(listener: tokio::net::TcpListener) -> (String, FakeState) {
    let fake = Arc::new(Fake {
        signer: CapabilitySigner::generate(),
        recorded: Mutex::new(Recorded::default()),
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(op: CapabilityOp, node: &NodeId, blob: BlobId, size: u64) -> CapabilityClaims {
    CapabilityClaims {
        op,
        node_id: node.clone(),
        blob_id: blob,
        size,
        part: None,
        offset: None,
        parts: None,
        expires_at: unix_now() + 600,
        jti: uuid::Uuid::new_v4().simple().to_string(),
    }
}

/// Deterministic bytes that are not all alike.
fn bytes_of(len: usize, seed: u8) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&[seed])
        .finalize_xof()
        .fill(&mut out);
    out
}

struct Cluster {
    fake: FakeState,
    nodes: Vec<RunningNode>,
    http: reqwest::Client,
    _dirs: Vec<TempDir>,
}

async fn start_node(server_url: &str, dir: &TempDir) -> RunningNode {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    zib_node::start(
        NodeConfig {
            node_id: None,
            data_dir: dir.path().to_path_buf(),
            public_url: None,
            server_url: server_url.to_string(),
            cluster_token: CLUSTER_TOKEN.to_string(),
            capacity_bytes: 1 << 30,
            zone: None,
            heartbeat_interval: Duration::from_millis(100),
        },
        listener,
    )
    .await
    .unwrap()
}

impl Cluster {
    async fn start(node_count: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (url, fake) = start_fake_on(listener).await;
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..node_count {
            let dir = tempfile::tempdir().unwrap();
            nodes.push(start_node(&url, &dir).await);
            dirs.push(dir);
        }
        Self {
            fake,
            nodes,
            http: reqwest::Client::new(),
            _dirs: dirs,
        }
    }

    fn url(&self, node: usize, path: &str) -> String {
        format!("http://{}{path}", self.nodes[node].addr)
    }

    fn token(&self, claims: &CapabilityClaims) -> String {
        self.fake.signer.sign(claims)
    }

    fn upload_token(&self, node: usize, blob: BlobId, size: u64) -> String {
        self.token(&claims(
            CapabilityOp::Upload,
            &self.nodes[node].node_id,
            blob,
            size,
        ))
    }

    async fn put(&self, node: usize, path: &str, token: &str, body: Vec<u8>) -> reqwest::Response {
        self.http
            .put(self.url(node, path))
            .query(&[("token", token)])
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn get_blob(&self, node_id: &NodeId, blob: BlobId) -> Vec<u8> {
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

    fn index_of(&self, node_id: &NodeId) -> usize {
        self.nodes
            .iter()
            .position(|n| n.node_id == *node_id)
            .unwrap()
    }

    async fn stop(self) {
        for node in self.nodes {
            node.stop().await;
        }
    }
}

async fn error_of(response: reqwest::Response) -> (StatusCode, ErrorBody) {
    let status = response.status();
    let body: ErrorBody = response.json().await.unwrap();
    (status, body)
}

/// Checks that the shards the fake server was told about are on their nodes, hash
/// right, rebuild the original bytes, and survive the loss of one shard per segment.
async fn assert_distributed(cluster: &Cluster, upload: BlobId, original: &[u8]) {
    let report = cluster.fake.recorded.lock().unwrap().distributed[&upload].clone();
    let layout = Layout::new(ERASURE, original.len() as u64);
    let codec = Codec::new(ERASURE).unwrap();
    let total = ERASURE.total_shards();
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
        let data: Vec<u8> = shards[..ERASURE.data_shards as usize].concat();
        rebuilt.extend_from_slice(&data[..(range.end - range.start) as usize]);

        let mut damaged: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
        damaged[0] = None;
        codec.reconstruct(segment, &mut damaged).unwrap();
        assert_eq!(damaged[0].as_deref(), Some(&shards[0][..]));
    }
    assert_eq!(rebuilt, original);
}

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, future)
        .await
        .expect("test took too long")
}

// ---------------------------------------------------------------- the stories

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_upload_is_stored_sharded_and_served() {
    within(async {
        let cluster = Cluster::start(3).await;
        let original = bytes_of(20_000, 1);
        let blob = BlobId::new_random();
        let token = cluster.upload_token(0, blob, original.len() as u64);

        let response = cluster
            .put(0, &format!("/v1/upload/{blob}"), &token, original.clone())
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().contains_key("etag"));
        let receipt: UploadReceipt = response.json().await.unwrap();
        assert_eq!(receipt.upload_id, blob.to_string());
        assert_eq!(receipt.size, 20_000);
        assert_eq!(receipt.status, "distributed");
        assert_distributed(&cluster, blob, &original).await;

        // The originator keeps the whole envelope until durability work drops it.
        let node0 = cluster.nodes[0].node_id.clone();
        assert_eq!(cluster.get_blob(&node0, blob).await, original);

        // Ranges.
        let shard_url = cluster.url(0, &format!("/v1/shards/{blob}"));
        let ranged = cluster
            .http
            .get(&shard_url)
            .bearer_auth(CLUSTER_TOKEN)
            .header("range", "bytes=100-199")
            .send()
            .await
            .unwrap();
        assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(ranged.headers()["content-range"], "bytes 100-199/20000");
        assert_eq!(ranged.bytes().await.unwrap(), original[100..200]);
        let suffix = cluster
            .http
            .get(&shard_url)
            .bearer_auth(CLUSTER_TOKEN)
            .header("range", "bytes=-10")
            .send()
            .await
            .unwrap();
        assert_eq!(suffix.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(suffix.bytes().await.unwrap(), original[19_990..]);
        let outside = cluster
            .http
            .get(&shard_url)
            .bearer_auth(CLUSTER_TOKEN)
            .header("range", "bytes=30000-")
            .send()
            .await
            .unwrap();
        assert_eq!(outside.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(outside.headers()["content-range"], "bytes */20000");

        // Reads need the cluster token.
        let anonymous = cluster.http.get(&shard_url).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        let wrong = cluster
            .http
            .get(&shard_url)
            .bearer_auth("not-the-token")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

        // Delete, twice: both succeed; then the blob is gone.
        for expected in ["deleted", "already_deleted"] {
            let deleted = cluster
                .http
                .delete(&shard_url)
                .bearer_auth(CLUSTER_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(deleted.status(), StatusCode::OK);
            let body: serde_json::Value = deleted.json().await.unwrap();
            assert_eq!(body["status"], expected);
        }
        let gone = cluster
            .http
            .get(&shard_url)
            .bearer_auth(CLUSTER_TOKEN)
            .send()
            .await
            .unwrap();
        let (status, body) = error_of(gone).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body.code, "not_found");
        cluster.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_tokens_are_checked() {
    within(async {
        let cluster = Cluster::start(3).await;
        let body = bytes_of(1000, 2);
        let blob = BlobId::new_random();
        let path = format!("/v1/upload/{blob}");

        // Missing.
        let response = cluster
            .http
            .put(cluster.url(0, &path))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

        // Issued for another node.
        let other = cluster.upload_token(1, blob, 1000);
        let (status, err) = error_of(cluster.put(0, &path, &other, body.clone()).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            err.error,
            format!(
                "token was issued for node {}, not this node ({})",
                cluster.nodes[1].node_id, cluster.nodes[0].node_id
            )
        );

        // Issued for another blob.
        let elsewhere = cluster.upload_token(0, BlobId::new_random(), 1000);
        let (status, err) = error_of(cluster.put(0, &path, &elsewhere, body.clone()).await).await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::FORBIDDEN, "wrong_blob")
        );

        // Expired.
        let mut stale = claims(CapabilityOp::Upload, &cluster.nodes[0].node_id, blob, 1000);
        stale.expires_at = unix_now() - 60;
        let (status, err) = error_of(
            cluster
                .put(0, &path, &cluster.token(&stale), body.clone())
                .await,
        )
        .await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::FORBIDDEN, "token_expired")
        );

        // Altered: the claims say a bigger size than was signed.
        let good = cluster.upload_token(0, blob, 1000);
        let (_, signature) = good.split_once('.').unwrap();
        let mut bigger = claims(CapabilityOp::Upload, &cluster.nodes[0].node_id, blob, 5000);
        bigger.expires_at += 1;
        let forged_claims = cluster.token(&bigger);
        let (forged_body, _) = forged_claims.split_once('.').unwrap();
        let forged = format!("{forged_body}.{signature}");
        let (status, err) = error_of(cluster.put(0, &path, &forged, bytes_of(5000, 2)).await).await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::FORBIDDEN, "invalid_token")
        );

        // Signed by someone else entirely.
        let stranger = CapabilitySigner::generate().sign(&claims(
            CapabilityOp::Upload,
            &cluster.nodes[0].node_id,
            blob,
            1000,
        ));
        let (status, err) = error_of(cluster.put(0, &path, &stranger, body.clone()).await).await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::FORBIDDEN, "invalid_token")
        );

        // A token for another operation.
        let shard_token = cluster.token(&claims(
            CapabilityOp::Shard,
            &cluster.nodes[0].node_id,
            blob,
            1000,
        ));
        let (status, err) = error_of(cluster.put(0, &path, &shard_token, body.clone()).await).await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::FORBIDDEN, "wrong_operation")
        );

        // The real one works once; a replay is refused.
        let response = cluster.put(0, &path, &good, body.clone()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let (status, err) = error_of(cluster.put(0, &path, &good, body.clone()).await).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(err.error, "upload token already used");

        // A fresh token for a blob that already exists.
        let again = cluster.upload_token(0, blob, 1000);
        let (status, err) = error_of(cluster.put(0, &path, &again, body).await).await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::CONFLICT, "blob_exists")
        );
        cluster.stop().await;
    })
    .await
}

fn chunked(chunks: Vec<Vec<u8>>) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures::stream::iter(
        chunks.into_iter().map(Ok::<_, std::io::Error>),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_sizes_are_enforced() {
    within(async {
        let cluster = Cluster::start(3).await;
        let blob = BlobId::new_random();
        let url = cluster.url(0, &format!("/v1/upload/{blob}"));
        let token = cluster.upload_token(0, blob, 10_000);
        let original = bytes_of(10_000, 3);

        // Content-Length disagrees with the token: refused before reading.
        let response = cluster
            .http
            .put(&url)
            .query(&[("token", &token)])
            .body(bytes_of(9_999, 3))
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(response).await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::BAD_REQUEST, "size_mismatch")
        );

        // Streamed without a length, too long: 413.
        let response = cluster
            .http
            .put(&url)
            .query(&[("token", &token)])
            .body(chunked(vec![original.clone(), vec![0u8; 10]]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

        // Streamed without a length, too short: 400.
        let response = cluster
            .http
            .put(&url)
            .query(&[("token", &token)])
            .body(chunked(vec![
                original[..4000].to_vec(),
                original[4000..9000].to_vec(),
            ]))
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(response).await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::BAD_REQUEST, "body_too_short")
        );

        // Nothing half-written is left behind, and the token is still good.
        let incoming = cluster._dirs[0].path().join("incoming");
        let leftovers: Vec<_> = std::fs::read_dir(&incoming).unwrap().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let response = cluster
            .http
            .put(&url)
            .query(&[("token", &token)])
            .body(chunked(vec![
                original[..3000].to_vec(),
                original[3000..].to_vec(),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_distributed(&cluster, blob, &original).await;
        cluster.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_parts_arrive_in_any_order_then_complete() {
    within(async {
        let cluster = Cluster::start(3).await;
        let original = bytes_of(25_000, 4);
        let blob = BlobId::new_random();
        let node = cluster.nodes[0].node_id.clone();
        let parts: [(u32, u64, u64); 3] = [(1, 0, 10_000), (2, 10_000, 10_000), (3, 20_000, 5_000)];
        let part_token = |n: u32| {
            let (_, offset, size) = parts[n as usize - 1];
            let mut c = claims(CapabilityOp::Part, &node, blob, size);
            c.part = Some(n);
            c.offset = Some(offset);
            cluster.token(&c)
        };
        let part_body = |n: u32| {
            let (_, offset, size) = parts[n as usize - 1];
            original[offset as usize..(offset + size) as usize].to_vec()
        };
        let part_path = |n: u32| format!("/v1/upload/{blob}/parts/{n}");
        let tokens: Vec<String> = (1..=3).map(part_token).collect();
        let mut complete_claims = claims(CapabilityOp::Complete, &node, blob, 25_000);
        complete_claims.parts = Some(3);
        let complete_token = cluster.token(&complete_claims);
        let complete = || {
            cluster
                .http
                .post(cluster.url(0, &format!("/v1/upload/{blob}/complete")))
                .query(&[("token", &complete_token)])
                .send()
        };

        // A token for part 1 cannot write part 2.
        let (status, err) = error_of(
            cluster
                .put(0, &part_path(2), &tokens[0], part_body(1))
                .await,
        )
        .await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::FORBIDDEN, "wrong_part")
        );

        // The last part first, then the first; completing now names the missing one.
        let response = cluster
            .put(0, &part_path(3), &tokens[2], part_body(3))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().contains_key("etag"));
        let response = cluster
            .put(0, &part_path(1), &tokens[0], part_body(1))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let (status, err) = error_of(complete().await.unwrap()).await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::BAD_REQUEST, "missing_parts")
        );
        assert!(err.error.contains("part 2"), "{}", err.error);

        // A retried part that already landed.
        let (status, err) = error_of(
            cluster
                .put(0, &part_path(1), &tokens[0], part_body(1))
                .await,
        )
        .await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::CONFLICT, "part_already_uploaded")
        );

        let response = cluster
            .put(0, &part_path(2), &tokens[1], part_body(2))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let response = complete().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let receipt: UploadReceipt = response.json().await.unwrap();
        assert_eq!(
            (receipt.size, receipt.status.as_str()),
            (25_000, "distributed")
        );
        assert_distributed(&cluster, blob, &original).await;
        assert_eq!(cluster.get_blob(&node, blob).await, original);

        let (status, err) = error_of(complete().await.unwrap()).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(err.error, "upload already completed");
        cluster.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_parts_are_written_at_their_offsets() {
    within(async {
        let cluster = Cluster::start(3).await;
        let part_size = 8 * 1024u64;
        let count = 8u32;
        let original = bytes_of((part_size * count as u64) as usize, 5);
        let blob = BlobId::new_random();
        let node = cluster.nodes[0].node_id.clone();

        let uploads = (1..=count).rev().map(|n| {
            let offset = (n as u64 - 1) * part_size;
            let mut c = claims(CapabilityOp::Part, &node, blob, part_size);
            c.part = Some(n);
            c.offset = Some(offset);
            let token = cluster.token(&c);
            let body = original[offset as usize..(offset + part_size) as usize].to_vec();
            let path = format!("/v1/upload/{blob}/parts/{n}");
            let cluster = &cluster;
            async move { cluster.put(0, &path, &token, body).await.status() }
        });
        for status in futures::future::join_all(uploads).await {
            assert_eq!(status, StatusCode::OK);
        }

        let mut c = claims(CapabilityOp::Complete, &node, blob, original.len() as u64);
        c.parts = Some(count);
        let response = cluster
            .http
            .post(cluster.url(0, &format!("/v1/upload/{blob}/complete")))
            .query(&[("token", cluster.token(&c))])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_distributed(&cluster, blob, &original).await;
        cluster.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_is_down_makes_distribution_fail_loudly() {
    within(async {
        let mut cluster = Cluster::start(3).await;
        let down = cluster.nodes.pop().unwrap();
        let down_id = down.node_id.clone();
        down.abort();

        let original = bytes_of(10_000, 6);
        let blob = BlobId::new_random();
        let token = cluster.upload_token(0, blob, original.len() as u64);
        let response = cluster
            .put(0, &format!("/v1/upload/{blob}"), &token, original.clone())
            .await;
        let (status, err) = error_of(response).await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::BAD_GATEWAY, "distribution_failed")
        );
        assert!(err.error.contains(down_id.as_str()), "{}", err.error);

        // The envelope itself stays stored on the originator.
        let node0 = cluster.nodes[0].node_id.clone();
        assert_eq!(cluster.get_blob(&node0, blob).await, original);
        cluster.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_carry_delete_commands_and_their_acks() {
    within(async {
        let cluster = Cluster::start(1).await;
        let node = cluster.nodes[0].node_id.clone();
        let blob = BlobId::new_random();
        let body = bytes_of(3000, 7);
        let token = cluster.token(&claims(CapabilityOp::Shard, &node, blob, 3000));
        let response = cluster
            .put(0, &format!("/v1/shards/{blob}"), &token, body.clone())
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(cluster.get_blob(&node, blob).await, body);

        cluster.fake.recorded.lock().unwrap().commands.insert(
            node.clone(),
            vec![NodeCommand {
                id: 7,
                action: NodeAction::DeleteBlobs {
                    blob_ids: vec![blob, BlobId::new_random()],
                },
            }],
        );
        loop {
            if cluster.fake.recorded.lock().unwrap().acked.contains(&7) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let response = cluster
            .http
            .get(cluster.url(0, &format!("/v1/shards/{blob}")))
            .bearer_auth(CLUSTER_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let health: serde_json::Value = cluster
            .http
            .get(cluster.url(0, "/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["status"], "ok");
        assert_eq!(health["node_id"], node.as_str());
        assert_eq!(health["used_bytes"], 0);
        cluster.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_wait_for_a_server_that_starts_later() {
    within(async {
        // Reserve a port for the server, then let it go until the server starts.
        let reserved = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_addr = reserved.local_addr().unwrap();
        drop(reserved);
        let dir = tempfile::tempdir().unwrap();
        let node = start_node(&format!("http://{server_addr}"), &dir).await;
        let http = reqwest::Client::new();
        let blob = BlobId::new_random();
        let url = format!("http://{}/v1/upload/{blob}", node.addr);

        let response = http
            .put(&url)
            .query(&[("token", "anything")])
            .body(vec![0u8; 10])
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(response).await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "node_not_registered")
        );

        let listener = tokio::net::TcpListener::bind(server_addr).await.unwrap();
        let (_, fake) = start_fake_on(listener).await;
        loop {
            if !fake.recorded.lock().unwrap().nodes.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let token = fake.signer.sign(&claims(
            CapabilityOp::Upload,
            &node.node_id,
            BlobId::new_random(),
            10,
        ));
        let response = http
            .put(&url)
            .query(&[("token", token)])
            .body(vec![0u8; 10])
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(response).await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::FORBIDDEN, "wrong_blob")
        );

        // The identity outlives the process.
        let first_id = node.node_id.clone();
        node.stop().await;
        let again = start_node(&format!("http://{server_addr}"), &dir).await;
        assert_eq!(again.node_id, first_id);
        assert_eq!(node_id_in(&dir), first_id);
        again.abort();
    })
    .await
}

fn node_id_in(dir: &TempDir) -> NodeId {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("node.json")).unwrap()).unwrap();
    json["node_id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_on_other_origins_may_upload() {
    within(async {
        let cluster = Cluster::start(1).await;
        let blob = BlobId::new_random();
        let response = cluster
            .http
            .request(
                reqwest::Method::OPTIONS,
                cluster.url(0, &format!("/v1/upload/{blob}/parts/1")),
            )
            .header("origin", "https://app.example")
            .header("access-control-request-method", "PUT")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
        let methods = response.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(methods.contains("PUT"), "{methods}");
        cluster.stop().await;
    })
    .await
}
