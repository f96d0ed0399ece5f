//! Memory must stay flat however large the upload: the node streams the body to disk
//! and encodes a bounded number of segments at a time. Ignored by default (it writes
//! a few GiB); run with
//! `ZIB_NODE_BIG_MIB=1024 cargo test -p zib-node --release --test large_upload -- --ignored --nocapture`.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;
use zib_proto::{BlobId, ErasureParams};

const MIB: u64 = 1 << 20;

/// Peak resident memory of this process so far (Linux), in MiB.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes several GiB; run on demand"]
async fn a_large_upload_keeps_memory_flat() {
    let size_mib: u64 = std::env::var("ZIB_NODE_BIG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let size = size_mib * MIB;
    let erasure = ErasureParams {
        data_shards: 4,
        parity_shards: 2,
        shard_size: MIB as u32,
    };
    let cluster = Cluster::start_with(6, erasure).await;
    let blob = BlobId::new_random();
    let token = cluster.upload_token(0, blob, size);

    // Warm up the allocator and every connection pool with a small upload first.
    let warm = BlobId::new_random();
    let warm_token = cluster.upload_token(0, warm, 8 * MIB);
    let response = cluster
        .put(
            0,
            &format!("/v1/upload/{warm}"),
            &warm_token,
            bytes_of(8 * MIB as usize, 1),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let before = peak_rss_mib();

    let chunk = bytes_of(MIB as usize, 9);
    let body = futures::stream::unfold(0u64, move |i| {
        let chunk = chunk.clone();
        async move {
            (i < size_mib).then(|| {
                let mut c = chunk;
                c[..8].copy_from_slice(&i.to_le_bytes());
                (Ok::<_, std::io::Error>(c), i + 1)
            })
        }
    });
    let started = Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(600),
        cluster
            .http
            .put(cluster.url(0, &format!("/v1/upload/{blob}")))
            .query(&[("token", &token)])
            .header("content-length", size)
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    )
    .await
    .expect("upload took too long")
    .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    let after = peak_rss_mib();

    let report = cluster.fake.recorded.lock().unwrap().distributed[&blob].clone();
    assert_eq!(report.shards.len() as u64, size.div_ceil(4 * MIB) * 6);
    println!(
        "{size_mib} MiB upload, stored, encoded 4+2 and pushed to 6 nodes (one process) in {:.2}s \
         ({:.0} MiB/s); peak RSS {before} MiB before, {after} MiB after",
        elapsed.as_secs_f64(),
        size_mib as f64 / elapsed.as_secs_f64()
    );
    assert!(
        after < before + 256,
        "peak RSS grew from {before} MiB to {after} MiB"
    );
    cluster.stop().await;
}
