//! The encoder's node-level stories against a fake server: the public segment route,
//! the `encode` capability, a source that is not a video, and a cancelled job.

mod encode_support;

use std::time::Duration;

use encode_support::*;
use reqwest::StatusCode;
use zib_proto::node_rpc::{CapabilityOp, NodeAction, NodeCommand};
use zib_proto::BlobId;

const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn segments_are_public_shards_are_not_and_deleting_removes_both() {
    let (url, fake) = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = node_config(&url, &dir);
    config.encode = false;
    let node = start_node(config).await;
    let base = format!("http://{}", node.addr);
    let http = reqwest::Client::new();

    let segment = BlobId::new_random();
    let shard = BlobId::new_random();
    let seg_bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    for (blob, op) in [
        (segment, CapabilityOp::Segment),
        (shard, CapabilityOp::Shard),
    ] {
        let token = fake
            .signer
            .sign(&claims(op, &node.node_id, blob, seg_bytes.len() as u64));
        let put = http
            .put(format!("{base}/v1/shards/{blob}"))
            .query(&[("token", token)])
            .body(seg_bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::OK, "{:?}", put.text().await);
    }

    // A segment: anyone, any origin, long cached, ranged.
    let got = http
        .get(format!("{base}/v1/segments/{segment}"))
        .header("origin", "https://player.example")
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    let h = got.headers();
    assert_eq!(h["content-type"], "video/mp2t");
    assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(got.bytes().await.unwrap().to_vec(), seg_bytes);
    let ranged = http
        .get(format!("{base}/v1/segments/{segment}"))
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.bytes().await.unwrap().to_vec(), seg_bytes[100..200]);

    // A shard is not served on the public route, nor is an unknown blob.
    for blob in [shard, BlobId::new_random()] {
        let refused = http
            .get(format!("{base}/v1/segments/{blob}"))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::NOT_FOUND);
        let body: serde_json::Value = refused.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("not stored"),
            "{body}"
        );
    }
    // ... while the cluster route still serves it.
    let shard_read = http
        .get(format!("{base}/v1/shards/{shard}"))
        .bearer_auth(CLUSTER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(shard_read.status(), StatusCode::OK);

    // The server's delete command removes the segment and its public route.
    fake.commands.lock().unwrap().push(NodeCommand {
        id: 7,
        action: NodeAction::DeleteBlobs {
            blob_ids: vec![segment],
        },
    });
    wait_for("the delete to be acknowledged", LIMIT, || {
        fake.seen.lock().unwrap().acked_commands.contains(&7)
    })
    .await;
    let gone = http
        .get(format!("{base}/v1/segments/{segment}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert!(!dir
        .path()
        .join("segments")
        .join(segment.to_string())
        .exists());
    node.stop().await;
}

#[tokio::test]
async fn only_a_node_whose_ffmpeg_works_advertises_encode() {
    ensure_ffmpeg();
    let (url, fake) = start_fake().await;
    let broken_dir = tempfile::tempdir().unwrap();
    let mut broken = node_config(&url, &broken_dir);
    broken.ffmpeg = Some("/bin/false".into());
    let broken = start_node(broken).await;
    let working_dir = tempfile::tempdir().unwrap();
    let working = start_node(node_config(&url, &working_dir)).await;

    let caps = |id| {
        fake.seen
            .lock()
            .unwrap()
            .registrations
            .iter()
            .find(|r| r.node_id == id)
            .map(|r| r.capabilities.clone())
            .unwrap()
    };
    assert!(!caps(broken.node_id.clone()).contains(&"encode".to_string()));
    assert_eq!(caps(working.node_id.clone()), ["encode"]);
    broken.stop().await;
    working.stop().await;
}

#[tokio::test]
async fn a_source_that_is_not_a_video_fails_for_good_with_a_clear_sentence() {
    ensure_ffmpeg();
    let (url, fake) = start_fake().await;
    let not_video: Vec<u8> = b"this is a spreadsheet, not a film\n".repeat(2000);
    offer_job(&fake, &url, &not_video, 4096);
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(node_config(&url, &dir)).await;
    wait_for("the job to fail", LIMIT, || {
        fake.seen.lock().unwrap().failed.is_some()
    })
    .await;
    let seen = fake.seen();
    let failure = seen.failed.clone().unwrap();
    assert!(failure.permanent, "{failure:?}");
    assert!(!failure.error_message.is_empty());
    assert!(seen.probed.is_none() && seen.segments.is_empty() && seen.done.is_none());
    node.stop().await;
}

#[tokio::test]
async fn a_cancelled_job_stops_at_the_first_410_and_its_ffmpeg_is_killed() {
    ensure_ffmpeg();
    let (url, fake) = start_fake().await;
    // Long enough that the job is still encoding when it is cancelled.
    let clip = make_clip(640, 360, 90, "cancel-test");
    offer_job(&fake, &url, &clip, 64 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(node_config(&url, &dir)).await;
    wait_for("a first renewal", LIMIT, || {
        !fake.seen.lock().unwrap().renewals.is_empty()
    })
    .await;
    *fake.cancelled.lock().unwrap() = true;
    let cancelled_at = fake.seen().renewals.len();
    // Every call after the cancellation is answered 410: a renewal or any other.
    let after = |seen: &Seen| seen.renewals.len() - cancelled_at + seen.stray_calls.len();
    wait_for("a call that learns of the cancellation", LIMIT, || {
        after(&fake.seen()) > 0
    })
    .await;
    // Let any straggler show itself: after the first 410 the node says nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = fake.seen();
    assert!(seen.done.is_none() && seen.failed.is_none());
    // The first call answered 410 (a renewal or a source read) stops the job: at most
    // one renewal after the cancellation, and a source read ffmpeg had already asked
    // for may still cross it, but nothing reports progress or results.
    assert!(
        seen.renewals.len() - cancelled_at <= 1,
        "renewals after the cancellation: {}",
        seen.renewals.len() - cancelled_at
    );
    assert!(
        seen.stray_calls.len() <= 2 && seen.stray_calls.iter().all(|c| c == "source"),
        "calls after the cancellation: {:?}",
        seen.stray_calls
    );
    // No encoding ffmpeg (the only one with HLS arguments) is left running.
    let left = std::process::Command::new("pgrep")
        .args(["-P", &std::process::id().to_string(), "-f", "hls_time"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "ffmpeg still running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    node.stop().await;
}

#[tokio::test]
async fn an_ffmpeg_that_fails_mid_job_reports_a_retryable_failure() {
    ensure_ffmpeg();
    // Passes the start-up check, fails every encode (the only calls with HLS output).
    let bin = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let wrapper = bin.path().join("ffmpeg");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\ncase \"$*\" in *hls_time*) echo 'injected failure' >&2; exit 3;; esac\nexec ffmpeg \"$@\"\n",
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .unwrap();

    let (url, fake) = start_fake().await;
    let clip = make_clip(640, 360, 2, "failure-test");
    offer_job(&fake, &url, &clip, 64 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let mut config = node_config(&url, &dir);
    config.ffmpeg = Some(wrapper);
    let node = start_node(config).await;
    wait_for("the job to fail", LIMIT, || fake.seen().failed.is_some()).await;
    let seen = fake.seen();
    let failure = seen.failed.clone().unwrap();
    assert!(!failure.permanent, "an encoder failure may pass on a retry");
    assert!(
        failure.error_message.contains("injected failure"),
        "{}",
        failure.error_message
    );
    assert!(seen.probed.is_some(), "the source was probed first");
    assert!(seen.published.is_empty() && seen.done.is_none());
    node.stop().await;
}
