//! A node's story, end to end: real nodes on 127.0.0.1 talking to a tiny fake server.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use tempfile::TempDir;
use zib_crypto::CapabilitySigner;
use zib_proto::api::UploadReceipt;
use zib_proto::node_rpc::{CapabilityOp, NodeAction, NodeCommand};
use zib_proto::{BlobId, NodeId};

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

        // Erasure-coded as it arrived: the originator never stored the envelope whole.
        assert!(!zib_node::blob_path(cluster.dirs[0].path(), blob).exists());

        // Serving a stored blob (20 000 bytes pushed here as a shard): ranges.
        let node0 = cluster.nodes[0].node_id.clone();
        let held = BlobId::new_random();
        let push = cluster.token(&claims(CapabilityOp::Shard, &node0, held, 20_000));
        let response = cluster
            .put(0, &format!("/v1/shards/{held}"), &push, original.clone())
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let shard_url = cluster.url(0, &format!("/v1/shards/{held}"));
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

        // A fresh token for an upload already distributed: the server's refusal.
        let again = cluster.upload_token(0, blob, 1000);
        let (status, err) = error_of(cluster.put(0, &path, &again, body).await).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            err.error.contains("cannot be distributed again"),
            "{}",
            err.error
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
        let incoming = cluster.dirs[0].path().join("incoming");
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
        assert_eq!(response.headers()["retry-after"], "1");
        let (status, err) = error_of(response).await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "distribution_failed")
        );
        assert!(err.error.contains(down_id.as_str()), "{}", err.error);
        assert!(err.error.contains("retry the upload"), "{}", err.error);

        // Erasure-coded as it arrived: nothing is kept whole, and the token is unspent.
        assert!(!zib_node::blob_path(cluster.dirs[0].path(), blob).exists());
        let response = cluster
            .put(0, &format!("/v1/upload/{blob}"), &token, original.clone())
            .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
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
        let health = cluster.health(0).await;
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
        let (_, fake) = start_fake_on(listener, ERASURE).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_that_failed_to_distribute_can_be_retried() {
    within(async {
        let mut cluster = Cluster::start(3).await;
        let node = cluster.nodes[0].node_id.clone();
        let original = bytes_of(12_000, 8);
        let blob = BlobId::new_random();
        let mut part = claims(CapabilityOp::Part, &node, blob, 12_000);
        part.part = Some(1);
        part.offset = Some(0);
        let response = cluster
            .put(
                0,
                &format!("/v1/upload/{blob}/parts/1"),
                &cluster.token(&part),
                original.clone(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);

        // A peer dies: the bytes are safe on the originator, distribution is not done.
        let down = cluster.nodes.pop().unwrap();
        let down_id = down.node_id.clone();
        down.abort();
        let mut c = claims(CapabilityOp::Complete, &node, blob, 12_000);
        c.parts = Some(1);
        let complete_token = cluster.token(&c);
        let http = cluster.http.clone();
        let complete_url = cluster.url(0, &format!("/v1/upload/{blob}/complete"));
        let complete = || {
            http.post(&complete_url)
                .query(&[("token", &complete_token)])
                .send()
        };
        let (status, err) = error_of(complete().await.unwrap()).await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::BAD_GATEWAY, "distribution_failed")
        );

        // A replacement joins; the server would now place shards on it instead.
        cluster
            .fake
            .recorded
            .lock()
            .unwrap()
            .nodes
            .retain(|(id, _)| *id != down_id);
        let dir = tempfile::tempdir().unwrap();
        cluster
            .nodes
            .push(start_node(&cluster.fake_url, &dir).await);
        cluster.dirs.push(dir);

        // The node also retries on its own a moment after a failure, so the
        // client's retry may find the work done or under way.
        let response = complete().await.unwrap();
        if response.status() != StatusCode::OK {
            let (status, err) = error_of(response).await;
            assert_eq!(status, StatusCode::CONFLICT, "{}", err.error);
            assert!(
                ["upload_already_completed", "in_progress"].contains(&err.code.as_str()),
                "{}",
                err.code
            );
        }
        wait_distributed(&cluster.fake, blob).await;
        assert_distributed(&cluster, blob, &original).await;
        let (status, err) = loop {
            let (status, err) = error_of(complete().await.unwrap()).await;
            if err.code != "in_progress" {
                break (status, err);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::CONFLICT, "upload_already_completed")
        );
        cluster.stop().await;
    })
    .await
}

/// Concurrent uploads share one buffer budget: the node never holds more segment
/// buffers than it allows, and every upload still completes (they wait instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_stay_inside_the_buffer_budget() {
    within(async {
        // A segment here is 3 x 4 KiB; the budget takes five of them at once.
        let cluster =
            Cluster::start_tweaked(3, ERASURE, |c| c.upload_buffer_bytes = 64 * 1024).await;
        let uploads: Vec<(BlobId, Vec<u8>)> = (0..8)
            .map(|i| (BlobId::new_random(), bytes_of(200_000 + i * 1000, i as u8)))
            .collect();
        let puts = uploads.iter().map(|(blob, original)| {
            let token = cluster.upload_token(0, *blob, original.len() as u64);
            let cluster = &cluster;
            async move {
                cluster
                    .put(0, &format!("/v1/upload/{blob}"), &token, original.clone())
                    .await
                    .status()
            }
        });
        let statuses = futures::future::join_all(puts).await;
        assert!(
            statuses.iter().all(|s| *s == StatusCode::OK),
            "{statuses:?}"
        );
        for (blob, original) in &uploads {
            assert_distributed(&cluster, *blob, original).await;
        }

        let health = cluster.health(0).await;
        let buffers = &health["upload_buffers"];
        let (limit, high, now) = (
            buffers["limit_bytes"].as_u64().unwrap(),
            buffers["high_water_bytes"].as_u64().unwrap(),
            buffers["in_use_bytes"].as_u64().unwrap(),
        );
        assert_eq!(limit, 64 * 1024);
        assert!(high > 0 && high <= limit, "high water {high} of {limit}");
        assert_eq!(now, 0);
        cluster.stop().await;
    })
    .await
}
