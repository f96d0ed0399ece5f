//! The job lifecycle on a real SQLite file: claims that race, leases that lapse,
//! the retry budget, the progress throttle, published rungs and the live switch.

use std::str::FromStr;

use zib_proto::{BlobId, FileId, NodeId};

use super::*;
use crate::{FilePhase, FileRow, NewWebhookEvent, ShardRow};

const POLICY: RetryPolicy = RetryPolicy {
    budget: 3,
    backoff_base_ms: 5_000,
    backoff_cap_ms: 300_000,
};
const THROTTLE: ProgressThrottle = ProgressThrottle {
    min_interval_ms: 10_000,
    min_points: 5,
};

fn node(name: &str) -> NodeId {
    NodeId::from_str(name).unwrap()
}

/// Names the event after its kind, as the server's bodies do.
fn build(
    job: &EncodingJobRow,
    event: JobEvent,
    _children: &[EncodingJobRow],
) -> Option<NewWebhookEvent> {
    let event_type = match event {
        JobEvent::Started => "encoding.started",
        JobEvent::Sharding => "encoding.sharding",
        JobEvent::Progress { .. } => "encoding.progress",
        JobEvent::Complete => "encoding.complete",
        JobEvent::Failed => "encoding.failed",
    };
    let percent = match event {
        JobEvent::Progress { percent, .. } => Some(percent),
        _ => None,
    };
    Some(NewWebhookEvent {
        tenant_id: job.tenant_id.clone(),
        event_type: event_type.into(),
        file_id: Some(job.file_id),
        job_id: Some(job.id.clone()),
        payload: serde_json::json!({ "event": event_type, "progress": percent }),
    })
}

async fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("meta.db"))
        .await
        .unwrap();
    (dir, store)
}

/// A file in `phase` (distributed or still pending), one per call.
async fn file(store: &Store, distributed: bool) -> FileRow {
    let tenant = match store.tenant_by_access_key("AK").await.unwrap() {
        Some(t) => t,
        None => store.create_tenant("t", "AK", "x").await.unwrap(),
    };
    let bucket = store.ensure_bucket(&tenant.id, "b").await.unwrap();
    let file = FileRow {
        file_id: FileId::new_random(),
        tenant_id: tenant.id.clone(),
        bucket_id: bucket.id,
        bucket: bucket.name.clone(),
        object_key: format!("v-{}", FileId::new_random()),
        size: 100,
        ciphertext_size: 132,
        content_type: "video/mp4".into(),
        phase: FilePhase::Pending,
        cancelled_reason: None,
        wrapped_dek: vec![1],
        chunk_size: 65536,
        nonce_prefix: vec![7; 7],
        data_shards: 1,
        parity_shards: 0,
        shard_size: 1024,
        originator: node("ZB-ORIG01"),
        upload_blob_id: BlobId::new_random(),
        part_count: 1,
        part_size: 0,
        expires_at: 9_000,
        created_at: 1_000,
        distributed_at: None,
    };
    store.insert_file(&file).await.unwrap();
    if distributed {
        assert!(store.mark_uploading(file.file_id).await.unwrap());
        let shard = ShardRow {
            file_id: file.file_id,
            segment: 0,
            index: 0,
            node_id: node("ZB-NODE01"),
            blob_id: BlobId::new_random(),
            size: 132,
            blake3: vec![0; 32],
        };
        store
            .complete_distribution(file.file_id, &[shard], 2_000, "superseded")
            .await
            .unwrap();
    }
    file
}

/// A queued job of `file` created at `at` (as the request endpoint writes it).
async fn queued_job(store: &Store, file: &FileRow, at: i64) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO encoding_jobs (id, file_id, tenant_id, phase, phase_updated_at, \
             wrapped_hls_key, created_at) VALUES ($1, $2, $3, 'queued', $4, $5, $4)",
    )
    .bind(&id)
    .bind(file.file_id.to_string())
    .bind(&file.tenant_id)
    .bind(at)
    .bind(vec![9u8; 60])
    .execute(&store.pool)
    .await
    .unwrap();
    id
}

async fn events_of(store: &Store, job_id: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM webhook_events WHERE job_id = $1 ORDER BY rowid")
        .bind(job_id)
        .fetch_all(&store.pool)
        .await
        .unwrap()
}

async fn claim(store: &Store, who: &str, token: &str, now: i64) -> Option<EncodingJobRow> {
    store
        .claim_encoding_job(&node(who), token, now + 30_000, now, &build)
        .await
        .unwrap()
}

fn update(progress: u8) -> LeaseUpdate {
    LeaseUpdate {
        sharding: false,
        progress,
        phase_progress: f64::from(progress),
        detail: Some("encoding 360p (1 of 1)".into()),
    }
}

#[tokio::test]
async fn two_racing_claims_hand_a_job_to_one_node_only() {
    let (_dir, store) = open().await;
    let pending = file(&store, false).await;
    queued_job(&store, &pending, 100).await;
    assert!(
        claim(&store, "ZB-ENC001", "h1", 1_000).await.is_none(),
        "a file not yet readable is not claimable"
    );

    let video = file(&store, true).await;
    let id = queued_job(&store, &video, 200).await;
    let (a, b) = tokio::join!(
        claim(&store, "ZB-ENC001", "h1", 1_000),
        claim(&store, "ZB-ENC002", "h2", 1_000)
    );
    let won: Vec<_> = [a, b].into_iter().flatten().collect();
    assert_eq!(won.len(), 1, "exactly one claim wins");
    let job = &won[0];
    assert_eq!(job.id, id);
    assert_eq!(job.phase, JobPhase::Encoding);
    assert_eq!(job.lease_expires_at, Some(31_000));
    assert_eq!(job.lease_node, job.node_id);
    assert_eq!(job.started_at, Some(1_000));
    assert_eq!(events_of(&store, &id).await, ["encoding.started"]);
    assert!(claim(&store, "ZB-ENC003", "h3", 1_000).await.is_none());
}

#[tokio::test]
async fn a_lapsed_lease_is_retried_with_backoff_until_the_budget_is_spent() {
    let (_dir, store) = open().await;
    let video = file(&store, true).await;
    let id = queued_job(&store, &video, 100).await;
    let mut now = 1_000;
    for attempt in 1..=3u32 {
        let job = claim(&store, "ZB-ENC001", "tok", now).await.unwrap();
        assert_eq!(job.id, id);
        // Renewals before the lapse keep it.
        let expired = now + 30_000;
        assert!(store
            .requeue_lapsed_encoding_jobs("gone", POLICY, expired - 1, 10, &build)
            .await
            .unwrap()
            .is_empty());
        let lapsed = store
            .requeue_lapsed_encoding_jobs("gone", POLICY, expired, 10, &build)
            .await
            .unwrap();
        assert_eq!(lapsed.len(), 1);
        let job = store.encoding_job(&id).await.unwrap().unwrap();
        assert_eq!(job.phase, JobPhase::Failed);
        assert_eq!(job.retry_count, attempt);
        assert_eq!(job.error_message.as_deref(), Some("gone"));
        assert_eq!(job.lease_node, None);
        let wait = 5_000 * (1 << (attempt - 1));
        assert_eq!(job.retry_after, Some(expired + wait));
        // The old lease is refused; the job waits out its backoff.
        assert!(store
            .leased_encoding_job(&id, None, "tok", expired + 1)
            .await
            .unwrap()
            .is_none());
        assert!(claim(&store, "ZB-ENC002", "t2", expired + wait - 1)
            .await
            .is_none());
        now = expired + wait;
    }
    // The fourth attempt's lapse spends the budget: the tenant's turn.
    claim(&store, "ZB-ENC001", "tok", now).await.unwrap();
    store
        .requeue_lapsed_encoding_jobs("gone", POLICY, now + 30_000, 10, &build)
        .await
        .unwrap();
    let job = store.encoding_job(&id).await.unwrap().unwrap();
    assert_eq!(job.phase, JobPhase::FailedUserAction);
    assert!(claim(&store, "ZB-ENC001", "tok", now + 10_000_000)
        .await
        .is_none());
    let events = events_of(&store, &id).await;
    assert_eq!(
        events.iter().filter(|e| *e == "encoding.started").count(),
        4
    );
    assert_eq!(events.last().map(String::as_str), Some("encoding.failed"));
    assert_eq!(events.iter().filter(|e| *e == "encoding.failed").count(), 1);
}

#[tokio::test]
async fn a_permanent_failure_needs_the_tenant_at_once() {
    let (_dir, store) = open().await;
    let video = file(&store, true).await;
    let id = queued_job(&store, &video, 100).await;
    claim(&store, "ZB-ENC001", "tok", 1_000).await.unwrap();
    assert_eq!(
        store
            .fail_encoding_job(&id, "wrong", "x", true, POLICY, 2_000, &build)
            .await
            .unwrap(),
        None,
        "a wrong token changes nothing"
    );
    let outcome = store
        .fail_encoding_job(&id, "tok", "not a video", true, POLICY, 2_000, &build)
        .await
        .unwrap();
    assert_eq!(outcome, Some(FailureOutcome::NeedsUser));
    let job = store.encoding_job(&id).await.unwrap().unwrap();
    assert_eq!(
        (job.phase, job.retry_count, job.error_message.as_deref()),
        (JobPhase::FailedUserAction, 0, Some("not a video"))
    );
    assert_eq!(
        events_of(&store, &id).await,
        ["encoding.started", "encoding.failed"]
    );
}

#[tokio::test]
async fn progress_events_are_throttled_and_sharding_is_announced_once() {
    let (_dir, store) = open().await;
    let video = file(&store, true).await;
    let id = queued_job(&store, &video, 100).await;
    let enc = node("ZB-ENC001");
    claim(&store, "ZB-ENC001", "tok", 1_000).await.unwrap();
    let renew = |u: LeaseUpdate, now: i64| {
        let store = store.clone();
        let id = id.clone();
        let enc = enc.clone();
        async move {
            store
                .renew_encoding_lease(&id, &enc, "tok", &u, now + 30_000, THROTTLE, now, &build)
                .await
                .unwrap()
        }
    };
    let progress_events = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT payload FROM webhook_events WHERE job_id = $1 \
             AND event_type = 'encoding.progress' ORDER BY rowid",
        )
        .bind(&id)
        .fetch_all(&store.pool)
        .await
        .unwrap()
        .len()
    };
    assert!(renew(update(1), 2_000).await.is_some());
    assert_eq!(progress_events().await, 1, "the first progress is sent");
    renew(update(3), 3_000).await.unwrap();
    assert_eq!(progress_events().await, 1, "2 points in 1 s: held back");
    renew(update(6), 4_000).await.unwrap();
    assert_eq!(progress_events().await, 2, "5 points: sent");
    renew(update(7), 14_000).await.unwrap();
    assert_eq!(progress_events().await, 3, "10 s since the last: sent");
    renew(update(7), 30_000).await.unwrap();
    assert_eq!(progress_events().await, 3, "no change: nothing to say");
    let job = store.encoding_job(&id).await.unwrap().unwrap();
    assert_eq!((job.progress, job.lease_expires_at), (7, Some(60_000)));
    assert_eq!(job.phase_detail.as_deref(), Some("encoding 360p (1 of 1)"));

    let sharding = LeaseUpdate {
        sharding: true,
        ..update(91)
    };
    renew(sharding.clone(), 31_000).await.unwrap();
    renew(sharding, 32_000).await.unwrap();
    let job = store.encoding_job(&id).await.unwrap().unwrap();
    assert_eq!(job.phase, JobPhase::Sharding);
    let events = events_of(&store, &id).await;
    assert_eq!(
        events.iter().filter(|e| *e == "encoding.sharding").count(),
        1
    );
    // Another node's renewal with the token is refused.
    assert!(store
        .renew_encoding_lease(
            &id,
            &node("ZB-ENC002"),
            "tok",
            &update(95),
            90_000,
            THROTTLE,
            33_000,
            &build
        )
        .await
        .unwrap()
        .is_none());
}

fn segment(rendition: &str, seq: u32, size: u64, duration_ms: u64) -> NewSegment {
    NewSegment {
        rendition: rendition.into(),
        seq,
        duration_ms,
        size,
        blake3: vec![1; 32],
        iv: vec![0; 16],
        blob_id: BlobId::new_random(),
    }
}

fn rung(name: &str, height: u32) -> NewRendition {
    NewRendition {
        name: name.into(),
        width: height * 16 / 9,
        height,
        codecs: "avc1.64001f,mp4a.40.2".into(),
        frame_rate: 30.0,
    }
}

/// A job of `video` claimed by ZB-ENC001 with token `tok`, ladder planned.
async fn encoding(store: &Store, video: &FileRow, at: i64) -> String {
    let id = queued_job(store, video, at).await;
    let job = claim(store, "ZB-ENC001", "tok", at).await.unwrap();
    assert_eq!(job.id, id);
    let probe = serde_json::json!({"duration_secs": 12.0});
    assert!(store
        .record_job_probe(
            &id,
            "tok",
            &probe,
            &[rung("360p", 360), rung("720p", 720)],
            at
        )
        .await
        .unwrap());
    id
}

#[tokio::test]
async fn a_published_rung_carries_its_bandwidth_and_makes_the_first_job_live() {
    let (_dir, store) = open().await;
    let video = file(&store, true).await;
    let enc = node("ZB-ENC001");
    let id = encoding(&store, &video, 1_000).await;
    // 4 s at 500 kB, 4 s at 1 MB, 2 s at 100 kB.
    let segs = [
        segment("360p", 0, 500_000, 4_000),
        segment("360p", 1, 1_000_000, 4_000),
        segment("360p", 2, 100_000, 2_000),
    ];
    for s in &segs {
        assert!(store
            .record_segment(&id, &enc, "tok", s, 2_000)
            .await
            .unwrap()
            .is_some());
    }
    assert!(store
        .record_segment_replicas(
            &id,
            "tok",
            segs[0].blob_id,
            &[node("ZB-PEER01"), enc.clone()],
            2_000
        )
        .await
        .unwrap());
    let holders: Vec<(String, i64)> = sqlx::query_as(
        "SELECT node_id, is_origin FROM segment_replicas WHERE blob_id = $1 ORDER BY node_id",
    )
    .bind(segs[0].blob_id.to_string())
    .fetch_all(&store.pool)
    .await
    .unwrap();
    assert_eq!(holders, [("ZB-ENC001".into(), 1), ("ZB-PEER01".into(), 0)]);
    // An unplanned rung and a miscounted publish are refused.
    assert!(store
        .record_segment(&id, &enc, "tok", &segment("4k", 0, 1, 1), 2_000)
        .await
        .is_err());
    assert!(store
        .publish_rendition(&id, "tok", "360p", 4, 3_000)
        .await
        .is_err());

    assert_eq!(
        store.live_encoding_job_id(video.file_id).await.unwrap(),
        None
    );
    let published = store
        .publish_rendition(&id, "tok", "360p", 3, 3_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(published.bandwidth, 2_000_000, "peak: 1 MB over 4 s");
    assert_eq!(published.average_bandwidth, 1_280_000, "1.6 MB over 10 s");
    assert!(published.made_live);
    assert_eq!(
        store.live_encoding_job_id(video.file_id).await.unwrap(),
        Some(id.clone())
    );
    let row: (i64, i64, i64, Option<i64>) = sqlx::query_as(
        "SELECT bandwidth, average_bandwidth, segment_count, published_at FROM hls_renditions \
         WHERE job_id = $1 AND name = '360p'",
    )
    .bind(&id)
    .fetch_one(&store.pool)
    .await
    .unwrap();
    assert_eq!(row, (2_000_000, 1_280_000, 3, Some(3_000)));
    store
        .record_segment(&id, &enc, "tok", &segment("720p", 0, 10, 1_000), 3_000)
        .await
        .unwrap();
    let second = store
        .publish_rendition(&id, "tok", "720p", 1, 4_000)
        .await
        .unwrap()
        .unwrap();
    assert!(!second.made_live, "already live");
}

#[tokio::test]
async fn a_forced_reencode_replaces_the_live_job_only_when_done() {
    let (_dir, store) = open().await;
    let video = file(&store, true).await;
    let enc = node("ZB-ENC001");
    let first = encoding(&store, &video, 1_000).await;
    store
        .record_segment(&first, &enc, "tok", &segment("360p", 0, 10, 1_000), 1_000)
        .await
        .unwrap();
    store
        .publish_rendition(&first, "tok", "360p", 1, 1_000)
        .await
        .unwrap();
    assert!(
        store
            .complete_encoding_job(&first, "tok", "replaced", 2_000, &build)
            .await
            .is_err(),
        "720p is planned and not published"
    );
    store
        .record_segment(&first, &enc, "tok", &segment("720p", 0, 10, 1_000), 1_000)
        .await
        .unwrap();
    store
        .publish_rendition(&first, "tok", "720p", 1, 1_000)
        .await
        .unwrap();
    let done = store
        .complete_encoding_job(&first, "tok", "replaced", 2_000, &build)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.replaced, None);
    let job = store.encoding_job(&first).await.unwrap().unwrap();
    assert_eq!((job.phase, job.progress), (JobPhase::LocalComplete, 100));
    assert!(
        store
            .leased_encoding_job(&first, None, "tok", 2_001)
            .await
            .unwrap()
            .is_none(),
        "done releases the lease"
    );

    let second = encoding(&store, &video, 3_000).await;
    store
        .record_segment(&second, &enc, "tok", &segment("360p", 0, 10, 1_000), 3_000)
        .await
        .unwrap();
    let p = store
        .publish_rendition(&second, "tok", "360p", 1, 3_000)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !p.made_live,
        "the old encode keeps serving until the new one is done"
    );
    store
        .record_segment(&second, &enc, "tok", &segment("720p", 0, 10, 1_000), 3_000)
        .await
        .unwrap();
    store
        .publish_rendition(&second, "tok", "720p", 1, 3_000)
        .await
        .unwrap();
    assert_eq!(
        store.live_encoding_job_id(video.file_id).await.unwrap(),
        Some(first.clone())
    );
    let done = store
        .complete_encoding_job(&second, "tok", "replaced by encoding 2", 4_000, &build)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.replaced, Some(first.clone()));
    assert_eq!(
        store.live_encoding_job_id(video.file_id).await.unwrap(),
        Some(second.clone())
    );
    let old = store.encoding_job(&first).await.unwrap().unwrap();
    assert_eq!(old.phase, JobPhase::Cancelled);
    assert_eq!(
        old.cancelled_reason.as_deref(),
        Some("replaced by encoding 2")
    );
    // Its segments are evicted once the grace has passed, not before.
    assert!(store
        .cancelled_jobs_to_evict(3_999, 10)
        .await
        .unwrap()
        .is_empty());
    let due = store.cancelled_jobs_to_evict(4_000, 10).await.unwrap();
    assert_eq!(due.iter().map(|j| &j.id).collect::<Vec<_>>(), [&first]);
    assert_eq!(
        events_of(&store, &second).await,
        ["encoding.started", "encoding.complete"]
    );
}

#[tokio::test]
async fn a_cancelled_job_refuses_its_lease_and_sends_nothing_more() {
    let (_dir, store) = open().await;
    let video = file(&store, true).await;
    let id = encoding(&store, &video, 1_000).await;
    let was = store
        .cancel_encoding_job(&id, "cancelled by the tenant", 2_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(was.phase, JobPhase::Encoding);
    assert!(store
        .cancel_encoding_job(&id, "again", 2_000)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .renew_encoding_lease(
            &id,
            &node("ZB-ENC001"),
            "tok",
            &update(50),
            90_000,
            THROTTLE,
            2_100,
            &build
        )
        .await
        .unwrap()
        .is_none());
    assert!(store
        .complete_encoding_job(&id, "tok", "r", 2_200, &build)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .requeue_lapsed_encoding_jobs("gone", POLICY, 1_000_000, 10, &build)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .unfinished_encoding_jobs(video.file_id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(events_of(&store, &id).await, ["encoding.started"]);
}

#[test]
fn bandwidth_is_the_peak_and_the_mean_over_segments() {
    assert_eq!(segments::bandwidth_figures(&[]), (0, 0));
    assert_eq!(
        segments::bandwidth_figures(&[(1_000, 0)]),
        (8_000_000, 8_000_000)
    );
    assert_eq!(
        segments::bandwidth_figures(&[(400_000, 4_000), (200_000, 1_000)]),
        (1_600_000, 960_000)
    );
}

#[test]
fn retries_back_off_doubling_up_to_the_cap() {
    let waits: Vec<i64> = (1..=8).map(|n| POLICY.backoff_ms(n)).collect();
    assert_eq!(
        waits,
        [5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000]
    );
}
