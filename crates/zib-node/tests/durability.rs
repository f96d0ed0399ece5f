//! The node's part in durability: answering audit challenges from the bytes on disk,
//! listing what it stores for orphan collection, finishing distributions on its own
//! after failures and restarts, and passing the server's final refusals to clients.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use zib_crypto::challenge::challenge_answer;
use zib_proto::node_rpc::CapabilityOp;
use zib_proto::node_rpc::{BlobInventory, ChallengeRequest, ChallengeResponse};
use zib_proto::BlobId;

const SUPERSEDED: &str = "this upload was superseded by a newer upload to the same bucket and key";

async fn challenge(
    cluster: &Cluster,
    node: usize,
    blob: BlobId,
    body: serde_json::Value,
) -> reqwest::Response {
    cluster
        .http
        .post(cluster.url(node, &format!("/v1/shards/{blob}/challenge")))
        .bearer_auth(CLUSTER_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn answer(cluster: &Cluster, blob: BlobId, nonce: [u8; 32], offset: u64, len: u64) -> String {
    let request = ChallengeRequest {
        nonce: hex::encode(nonce),
        offset,
        len,
    };
    let response = challenge(cluster, 0, blob, serde_json::to_value(request).unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json::<ChallengeResponse>().await.unwrap().blake3
}

async fn inventory(cluster: &Cluster, node: usize) -> BlobInventory {
    let response = cluster
        .http
        .get(cluster.url(node, "/v1/blobs"))
        .bearer_auth(CLUSTER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn pending_markers(dir: &tempfile::TempDir) -> usize {
    std::fs::read_dir(dir.path().join("pending"))
        .unwrap()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenges_are_answered_from_the_stored_bytes() {
    within(async {
        let cluster = Cluster::start(1).await;
        let node = cluster.nodes[0].node_id.clone();
        let blob = BlobId::new_random();
        // Larger than the node's read chunk, so ranges cross chunk boundaries.
        let bytes = bytes_of(700_000, 11);
        let token = cluster.token(&claims(
            CapabilityOp::Shard,
            &node,
            blob,
            bytes.len() as u64,
        ));
        let response = cluster
            .put(0, &format!("/v1/shards/{blob}"), &token, bytes.clone())
            .await;
        assert_eq!(response.status(), StatusCode::OK);

        let nonce = [42u8; 32];
        for (offset, len) in [
            (0usize, bytes.len()),
            (1234, 300_000),
            (699_999, 1),
            (10, 0),
        ] {
            let got = answer(&cluster, blob, nonce, offset as u64, len as u64).await;
            assert_eq!(
                got,
                challenge_answer(&nonce, &bytes[offset..offset + len]),
                "range {offset}+{len}"
            );
            assert_eq!(
                got,
                blake3::keyed_hash(&nonce, &bytes[offset..offset + len])
                    .to_hex()
                    .to_string()
            );
        }
        // Another nonce, another answer: nothing can be precomputed.
        let other = answer(&cluster, blob, [43u8; 32], 0, 1000).await;
        assert_ne!(other, answer(&cluster, blob, nonce, 0, 1000).await);
        assert_ne!(other, blake3::hash(&bytes[..1000]).to_hex().to_string());

        // Bytes that changed on disk give a different answer.
        let path = cluster.dirs[0]
            .path()
            .join("blobs")
            .join(&blob.to_string()[..2])
            .join(blob.to_string());
        let mut rotten = bytes.clone();
        rotten[500] ^= 1;
        std::fs::write(&path, &rotten).unwrap();
        assert_ne!(
            answer(&cluster, blob, nonce, 0, 1000).await,
            challenge_answer(&nonce, &bytes[..1000])
        );
        assert_eq!(
            answer(&cluster, blob, nonce, 1000, 1000).await,
            challenge_answer(&nonce, &bytes[1000..2000])
        );

        let good_nonce = hex::encode(nonce);
        let cases = [
            (
                serde_json::json!({"nonce": good_nonce, "offset": 699_999, "len": 2}),
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
            ),
            (
                serde_json::json!({"nonce": good_nonce, "offset": u64::MAX, "len": 2}),
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
            ),
            (
                serde_json::json!({"nonce": "abcd", "offset": 0, "len": 2}),
                StatusCode::BAD_REQUEST,
                "invalid_nonce",
            ),
            (
                serde_json::json!({"nonce": "zz".repeat(32), "offset": 0, "len": 2}),
                StatusCode::BAD_REQUEST,
                "invalid_nonce",
            ),
            (
                serde_json::json!({"nonce": good_nonce}),
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
        ];
        for (body, status, code) in cases {
            let (got_status, err) =
                error_of(challenge(&cluster, 0, blob, body.clone()).await).await;
            assert_eq!((got_status, err.code.as_str()), (status, code), "{body}");
        }
        let missing = BlobId::new_random();
        let body = serde_json::json!({"nonce": good_nonce, "offset": 0, "len": 1});
        let (status, err) = error_of(challenge(&cluster, 0, missing, body.clone()).await).await;
        assert_eq!(
            (status, err.code.as_str()),
            (StatusCode::NOT_FOUND, "not_found")
        );
        let anonymous = cluster
            .http
            .post(cluster.url(0, &format!("/v1/shards/{blob}/challenge")))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        cluster.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_lists_stored_blobs_and_not_partials() {
    within(async {
        // One node: every shard of the upload lands on it too.
        let cluster = Cluster::start(1).await;
        let node = cluster.nodes[0].node_id.clone();
        assert!(inventory(&cluster, 0).await.blobs.is_empty());

        let original = bytes_of(20_000, 12);
        let upload = BlobId::new_random();
        let token = cluster.upload_token(0, upload, original.len() as u64);
        let response = cluster
            .put(0, &format!("/v1/upload/{upload}"), &token, original.clone())
            .await;
        assert_eq!(response.status(), StatusCode::OK);

        // A multipart upload with one of its two parts in: a partial, not a blob.
        let partial = BlobId::new_random();
        let mut part = claims(CapabilityOp::Part, &node, partial, 5000);
        part.part = Some(1);
        part.offset = Some(0);
        let response = cluster
            .put(
                0,
                &format!("/v1/upload/{partial}/parts/1"),
                &cluster.token(&part),
                bytes_of(5000, 13),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);

        let started = std::time::Instant::now();
        let listed = inventory(&cluster, 0).await;
        assert!(started.elapsed() < Duration::from_secs(1));
        let report = cluster.fake.recorded.lock().unwrap().distributed[&upload].clone();
        // The upload itself was erasure-coded as it arrived: only its shards are stored.
        let mut expected: Vec<(BlobId, u64)> =
            report.shards.iter().map(|s| (s.blob_id, s.size)).collect();
        expected.sort();
        let mut got: Vec<(BlobId, u64)> =
            listed.blobs.iter().map(|b| (b.blob_id, b.size)).collect();
        got.sort();
        assert_eq!(got, expected);
        assert!(listed.blobs.iter().all(|b| b.blob_id != partial));
        let now_ms = unix_now() as i64 * 1000;
        for b in &listed.blobs {
            assert!(
                (now_ms - 120_000..now_ms + 120_000).contains(&b.modified_at_ms),
                "{}",
                b.modified_at_ms
            );
        }

        let anonymous = cluster
            .http
            .get(cluster.url(0, "/v1/blobs"))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        cluster.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_distribution_is_finished_by_the_node_itself() {
    within(async {
        let cluster = Cluster::start(3).await;
        // The first refused plan makes the node store the upload whole; the second
        // fails its distribution.
        cluster.fake.faults.lock().unwrap().received_unavailable = 2;
        let original = bytes_of(15_000, 14);
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
        assert_eq!(pending_markers(&cluster.dirs[0]), 1);

        // No client retries: the node gets there alone.
        wait_distributed(&cluster.fake, blob).await;
        assert_distributed(&cluster, blob, &original).await;
        assert_eq!(cluster.fake.faults.lock().unwrap().received_calls, 3);
        while pending_markers(&cluster.dirs[0]) != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cluster.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_mid_distribution_finishes_it_at_startup() {
    within(async {
        let mut cluster = Cluster::start(3).await;
        // The server stays unable to plan while the node is up the first time.
        cluster.fake.faults.lock().unwrap().received_unavailable = u32::MAX;
        let original = bytes_of(9_000, 15);
        let blob = BlobId::new_random();
        let token = cluster.upload_token(0, blob, original.len() as u64);
        let response = cluster
            .put(0, &format!("/v1/upload/{blob}"), &token, original.clone())
            .await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        // Like kill -9: nothing is flushed or finished on the way out.
        cluster.nodes.remove(0).abort();
        cluster.fake.faults.lock().unwrap().received_unavailable = 0;

        let restarted = start_node(&cluster.fake_url, &cluster.dirs[0]).await;
        cluster.nodes.insert(0, restarted);
        wait_distributed(&cluster.fake, blob).await;
        assert_distributed(&cluster, blob, &original).await;
        let node0 = cluster.nodes[0].node_id.clone();
        assert_eq!(cluster.get_blob(&node0, blob).await, original);
        cluster.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_upload_is_refused_to_the_client_as_the_server_said() {
    within(async {
        let cluster = Cluster::start(3).await;
        cluster.fake.faults.lock().unwrap().distributed_refusal =
            Some((StatusCode::CONFLICT, SUPERSEDED.to_string()));
        let node = cluster.nodes[0].node_id.clone();
        let original = bytes_of(8_000, 16);

        // Single upload.
        let blob = BlobId::new_random();
        let token = cluster.upload_token(0, blob, original.len() as u64);
        let response = cluster
            .put(0, &format!("/v1/upload/{blob}"), &token, original.clone())
            .await;
        let (status, err) = error_of(response).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(err.error, SUPERSEDED);

        // Multipart completion.
        let multi = BlobId::new_random();
        let mut part = claims(CapabilityOp::Part, &node, multi, 8_000);
        part.part = Some(1);
        part.offset = Some(0);
        let response = cluster
            .put(
                0,
                &format!("/v1/upload/{multi}/parts/1"),
                &cluster.token(&part),
                original.clone(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let mut complete = claims(CapabilityOp::Complete, &node, multi, 8_000);
        complete.parts = Some(1);
        let response = cluster
            .http
            .post(cluster.url(0, &format!("/v1/upload/{multi}/complete")))
            .query(&[("token", cluster.token(&complete))])
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(response).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(err.error, SUPERSEDED);

        // The refusal is final: no marker left, no retry, and the multipart upload's
        // bytes stay for the server to delete. The single upload was never stored
        // whole (erasure-coded as it arrived); its shards are the collector's.
        assert_eq!(pending_markers(&cluster.dirs[0]), 0);
        let calls = cluster.fake.faults.lock().unwrap().received_calls;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(cluster.fake.faults.lock().unwrap().received_calls, calls);
        assert!(!zib_node::blob_path(cluster.dirs[0].path(), blob).exists());
        assert_eq!(cluster.get_blob(&node, multi).await, original);
        cluster.stop().await;
    })
    .await
}

/// Orphan collection lists whole nodes; run with
/// `cargo test -p zib-node --release --test durability -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "creates 100k files; run on demand"]
async fn the_inventory_of_100k_blobs_is_quick() {
    const BLOBS: usize = 100_000;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (url, _fake) = start_fake_on(listener, ERASURE).await;
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..BLOBS {
        let name = BlobId::new_random().to_string();
        let fanout = dir.path().join("blobs").join(&name[..2]);
        std::fs::create_dir_all(&fanout).unwrap();
        std::fs::write(fanout.join(&name), b"x").unwrap();
    }
    let node = start_node(&url, &dir).await;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let response = http
            .get(format!("http://{}/v1/blobs", node.addr))
            .bearer_auth(CLUSTER_TOKEN)
            .send()
            .await
            .unwrap();
        let body = response.bytes().await.unwrap();
        let elapsed = started.elapsed();
        let listed: BlobInventory = serde_json::from_slice(&body).unwrap();
        assert_eq!(listed.blobs.len(), BLOBS);
        println!(
            "inventory of {BLOBS} blobs: {:.0} ms, {} KiB of JSON",
            elapsed.as_secs_f64() * 1000.0,
            body.len() / 1024
        );
        assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    }
    node.stop().await;
}
