//! The webhook outbox on a real SQLite file: events commit with their state change,
//! deliveries are leased once, attempts are logged, redelivery starts over.

use std::str::FromStr;

use zib_meta::{
    AttemptOutcome, AttemptRecord, DeliveryStatus, DeliveryTarget, FilePhase, FileRow, NewEndpoint,
    ShardRow, Store, Tenant, WebhookEvent,
};
use zib_proto::{BlobId, FileId, NodeId};

async fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("meta.db"))
        .await
        .unwrap();
    (dir, store)
}

fn node(name: &str) -> NodeId {
    NodeId::from_str(name).unwrap()
}

async fn tenant(store: &Store, key: &str) -> Tenant {
    store.create_tenant("Acme", key, "x").await.unwrap()
}

async fn new_file(store: &Store, tenant: &Tenant, key: &str, created_at: i64) -> FileRow {
    let bucket = store.ensure_bucket(&tenant.id, "media").await.unwrap();
    let file = FileRow {
        file_id: FileId::new_random(),
        tenant_id: tenant.id.clone(),
        bucket_id: bucket.id,
        bucket: bucket.name.clone(),
        object_key: key.to_string(),
        size: 42,
        ciphertext_size: 58,
        content_type: "text/plain".into(),
        phase: FilePhase::Pending,
        cancelled_reason: None,
        wrapped_dek: vec![1; 4],
        chunk_size: 65536,
        nonce_prefix: vec![7; 7],
        data_shards: 2,
        parity_shards: 1,
        shard_size: 1024,
        originator: node("ZB-ORIG01"),
        upload_blob_id: BlobId::new_random(),
        part_count: 1,
        part_size: 0,
        expires_at: created_at + 3_600_000,
        created_at,
        distributed_at: None,
    };
    store.insert_file(&file).await.unwrap();
    file
}

fn shards(file_id: FileId) -> Vec<ShardRow> {
    ["ZB-NODE01", "ZB-NODE02", "ZB-NODE03"]
        .iter()
        .enumerate()
        .map(|(i, n)| ShardRow {
            file_id,
            segment: 0,
            index: i as u8,
            node_id: node(n),
            blob_id: BlobId::new_random(),
            size: 1024,
            blake3: vec![i as u8; 32],
        })
        .collect()
}

/// The tenant's events about one file, newest first.
async fn file_events(store: &Store, tenant: &Tenant, file: FileId) -> Vec<WebhookEvent> {
    store
        .list_webhook_events(&tenant.id, Some(&file.to_string()), 10)
        .await
        .unwrap()
}

fn ok_record() -> AttemptRecord {
    AttemptRecord {
        url: "https://example.com/hook".into(),
        status_code: Some(200),
        latency_ms: 3,
        response_snippet: Some("ok".into()),
        error: None,
    }
}

#[tokio::test]
async fn file_lifecycle_events_go_to_the_tenant_default_and_subscribed_endpoints() {
    let (_dir, store) = open().await;
    let t = tenant(&store, "AK1").await;
    store
        .set_tenant_webhook_url(&t.id, Some("https://example.com/hook"), "whsec_a", 1)
        .await
        .unwrap();
    let ep = store
        .create_webhook_endpoint(
            &t.id,
            NewEndpoint {
                url: "https://example.com/deleted-only".into(),
                description: "audit".into(),
                event_types: Some(vec!["file.deleted".into()]),
                enabled: true,
                secret: "whsec_b".into(),
                format: Default::default(),
            },
            1,
        )
        .await
        .unwrap();
    assert!(ep.id.starts_with("ep_"));

    let first = new_file(&store, &t, "a.txt", 10).await;
    store
        .complete_distribution(
            first.file_id,
            &shards(first.file_id),
            20,
            "superseded by re-upload",
        )
        .await
        .unwrap();
    let second = new_file(&store, &t, "a.txt", 30).await;
    store
        .complete_distribution(
            second.file_id,
            &shards(second.file_id),
            40,
            "superseded by re-upload",
        )
        .await
        .unwrap();
    store.delete_file(&t.id, second.file_id, 50).await.unwrap();

    let mut events = store.list_webhook_events(&t.id, None, 100).await.unwrap();
    events.reverse();
    let kinds: Vec<(&str, String)> = events
        .iter()
        .map(|e| (e.event_type.as_str(), e.file_id.clone().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("file.ready", first.file_id.to_string()),
            ("file.failed", first.file_id.to_string()),
            ("file.ready", second.file_id.to_string()),
            ("file.deleted", second.file_id.to_string()),
        ]
    );
    assert!(events.iter().all(|e| e.id.starts_with("evt_")));
    let failed = &events[1].payload;
    assert_eq!(failed["cancelled_reason"], "superseded by re-upload");
    assert_eq!(failed["object_key"], "a.txt");
    assert_eq!(events[3].payload["key"], "a.txt");
    assert_eq!(events[3].payload["bucket"], "media");

    // Four tenant deliveries, plus the endpoint's one file.deleted.
    let claimed = store
        .claim_webhook_deliveries(100, 30_000, 50)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 5);
    let to_endpoint: Vec<_> = claimed
        .iter()
        .filter(|c| c.delivery.target == DeliveryTarget::Endpoint)
        .collect();
    assert_eq!(to_endpoint.len(), 1);
    assert_eq!(to_endpoint[0].event.event_type, "file.deleted");
    // Leased: nobody else gets them until the lease ends.
    assert!(store
        .claim_webhook_deliveries(100, 30_000, 50)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .claim_webhook_deliveries(100 + 30_000, 30_000, 50)
            .await
            .unwrap()
            .len(),
        5
    );
}

#[tokio::test]
async fn a_stale_upload_and_a_replicated_file_emit_their_events() {
    let (_dir, store) = open().await;
    let t = tenant(&store, "AK2").await;
    let older = new_file(&store, &t, "k", 10).await;
    let newer = new_file(&store, &t, "k", 20).await;
    store
        .complete_distribution(newer.file_id, &shards(newer.file_id), 30, "superseded")
        .await
        .unwrap();
    store
        .complete_distribution(older.file_id, &shards(older.file_id), 40, "superseded")
        .await
        .unwrap();
    let events = store
        .list_webhook_events(&t.id, Some(&older.file_id.to_string()), 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "file.failed");

    for s in store.shards_for_file(newer.file_id).await.unwrap() {
        store
            .record_verification(s.blob_id, true, None, 50)
            .await
            .unwrap();
    }
    assert_eq!(store.promote_safe_files(3, 0, 60).await.unwrap().len(), 1);
    let events = store
        .list_webhook_events(&t.id, Some(&newer.file_id.to_string()), 10)
        .await
        .unwrap();
    assert_eq!(events[0].event_type, "file.replicated");
    assert_eq!(events[0].payload["phase"], "safe");
    // No target configured: events are kept, nothing is queued.
    assert_eq!(store.pending_webhook_deliveries().await.unwrap(), 0);
}

#[tokio::test]
async fn attempts_are_logged_and_redelivery_starts_a_new_round() {
    let (_dir, store) = open().await;
    let t = tenant(&store, "AK3").await;
    let f = new_file(&store, &t, "k", 10).await;
    store
        .set_file_webhook(f.file_id, "https://example.com/req", Some("whsec_req"), 11)
        .await
        .unwrap();
    store
        .set_tenant_webhook_url(&t.id, Some("https://example.com/tenant"), "whsec_t", 12)
        .await
        .unwrap();
    store
        .complete_distribution(f.file_id, &shards(f.file_id), 20, "superseded")
        .await
        .unwrap();
    // The per-request target wins over the tenant default.
    let claimed = store.claim_webhook_deliveries(20, 1000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let c = &claimed[0];
    assert_eq!(c.delivery.target, DeliveryTarget::Request);
    let target = store.resolve_webhook_target(c, 20).await.unwrap().unwrap();
    assert_eq!(target.url, "https://example.com/req");
    assert_eq!(target.secrets, vec!["whsec_req".to_string()]);

    let failure = AttemptRecord {
        status_code: Some(500),
        response_snippet: Some("x".repeat(5000)),
        ..ok_record()
    };
    assert!(store
        .finish_webhook_attempt(c, &failure, AttemptOutcome::RetryAt(500), 21)
        .await
        .unwrap());
    // A stale lease holder's report is logged but moves nothing.
    assert!(!store
        .finish_webhook_attempt(c, &ok_record(), AttemptOutcome::Succeeded, 22)
        .await
        .unwrap());
    assert!(store
        .claim_webhook_deliveries(499, 1000, 10)
        .await
        .unwrap()
        .is_empty());
    let again = store.claim_webhook_deliveries(500, 1000, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery.round_attempts, 1);
    store
        .finish_webhook_attempt(&again[0], &failure, AttemptOutcome::Failed, 501)
        .await
        .unwrap();

    let event_id = &c.event.id;
    let attempts = store.list_event_attempts(&t.id, event_id).await.unwrap();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[0].status_code, Some(500));
    assert_eq!(attempts[0].response_snippet.as_ref().unwrap().len(), 1024);
    let deliveries = store.list_event_deliveries(&t.id, event_id).await.unwrap();
    assert_eq!(deliveries[0].status, DeliveryStatus::Failed);
    assert!(store
        .list_event_attempts("ten_other", event_id)
        .await
        .unwrap()
        .is_empty());

    assert_eq!(
        store
            .redeliver_webhook_event(&t.id, event_id, 600)
            .await
            .unwrap(),
        Some(1)
    );
    let round = store.claim_webhook_deliveries(600, 1000, 10).await.unwrap();
    assert_eq!(round.len(), 1);
    assert_eq!(round[0].delivery.round_attempts, 0);
    assert_eq!(round[0].event.id, *event_id);
    assert_eq!(
        store
            .redeliver_webhook_event("ten_other", event_id, 600)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_rotated_secret_keeps_signing_until_the_overlap_ends() {
    let (_dir, store) = open().await;
    let t = tenant(&store, "AK4").await;
    store
        .set_tenant_webhook_url(&t.id, Some("https://example.com/t"), "whsec_old", 1)
        .await
        .unwrap();
    let rotated = store
        .rotate_tenant_webhook_secret(&t.id, "whsec_new", 1000, 2)
        .await
        .unwrap();
    assert_eq!(rotated.previous_secret.as_deref(), Some("whsec_old"));
    let f = new_file(&store, &t, "k", 10).await;
    store
        .complete_distribution(f.file_id, &shards(f.file_id), 20, "s")
        .await
        .unwrap();
    let c = store.claim_webhook_deliveries(20, 10, 10).await.unwrap();
    let during = store
        .resolve_webhook_target(&c[0], 999)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(during.secrets, vec!["whsec_new", "whsec_old"]);
    let after = store
        .resolve_webhook_target(&c[0], 1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.secrets, vec!["whsec_new"]);
    // Clearing the URL keeps the secret.
    let cleared = store
        .set_tenant_webhook_url(&t.id, None, "whsec_ignored", 3)
        .await
        .unwrap();
    assert_eq!(cleared.secret, "whsec_new");
    assert!(store
        .resolve_webhook_target(&c[0], 1000)
        .await
        .unwrap()
        .is_err());
}

#[tokio::test]
async fn two_dispatchers_on_one_store_never_lease_the_same_delivery() {
    let (dir, store) = open().await;
    // A second pool on the same file, as a second server would have.
    let other = Store::open_sqlite(&dir.path().join("meta.db"))
        .await
        .unwrap();
    let t = tenant(&store, "AK5").await;
    store
        .set_tenant_webhook_url(&t.id, Some("https://example.com/t"), "whsec_x", 1)
        .await
        .unwrap();
    for i in 0..40 {
        let f = new_file(&store, &t, &format!("k{i}"), 10 + i).await;
        store
            .complete_distribution(f.file_id, &shards(f.file_id), 100, "s")
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for s in [store.clone(), other.clone(), store.clone(), other.clone()] {
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = s.claim_webhook_deliveries(200, 60_000, 3).await.unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|c| c.delivery.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 40);
    assert_eq!(distinct.len(), 40);
}

#[tokio::test]
async fn an_upload_that_expires_unfinished_emits_file_failed_with_the_reason() {
    let (_dir, store) = open().await;
    let t = tenant(&store, "AK3").await;
    let abandoned = new_file(&store, &t, "never-finished", 10).await;
    let finished = new_file(&store, &t, "finished", 10).await;
    store
        .complete_distribution(
            finished.file_id,
            &shards(finished.file_id),
            30,
            "superseded",
        )
        .await
        .unwrap();
    // Not expired yet (within the grace period): nothing happens.
    let grace = 1_000;
    let still_open = abandoned.expires_at + grace - 1;
    assert!(store
        .expire_abandoned_uploads(still_open, grace)
        .await
        .unwrap()
        .is_empty());
    assert!(file_events(&store, &t, abandoned.file_id).await.is_empty());

    let expired = store
        .expire_abandoned_uploads(abandoned.expires_at + grace + 1, grace)
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    let events = file_events(&store, &t, abandoned.file_id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "file.failed");
    assert_eq!(events[0].payload["phase"], "failed");
    assert_eq!(events[0].payload["object_key"], "never-finished");
    assert!(
        events[0].payload["cancelled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("expired")),
        "{}",
        events[0].payload
    );
    // The completed upload is not touched, and expiry runs once.
    assert!(file_events(&store, &t, finished.file_id)
        .await
        .iter()
        .all(|e| e.event_type != "file.failed"));
    assert!(store
        .expire_abandoned_uploads(abandoned.expires_at + grace + 2, grace)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(file_events(&store, &t, abandoned.file_id).await.len(), 1);
}

#[tokio::test]
async fn webhook_history_past_retention_is_pruned_unless_a_delivery_is_pending() {
    let (_dir, store) = open().await;
    let t = tenant(&store, "AK4").await;
    store
        .set_tenant_webhook_url(&t.id, Some("https://example.com/tenant"), "whsec_t", 1)
        .await
        .unwrap();
    // Three files become ready at t=20, 30 and 1_000: one event and delivery each.
    let delivered = new_file(&store, &t, "delivered", 10).await;
    let pending = new_file(&store, &t, "pending", 10).await;
    let recent = new_file(&store, &t, "recent", 10).await;
    for (f, at) in [(&delivered, 20), (&pending, 30), (&recent, 1_000)] {
        store
            .complete_distribution(f.file_id, &shards(f.file_id), at, "superseded")
            .await
            .unwrap();
    }
    // The first is delivered (an attempt is logged); the others are not yet.
    let claimed = store.claim_webhook_deliveries(40, 1000, 1).await.unwrap();
    assert_eq!(
        claimed[0].event.file_id.as_deref(),
        Some(&*delivered.file_id.to_string())
    );
    store
        .finish_webhook_attempt(&claimed[0], &ok_record(), AttemptOutcome::Succeeded, 41)
        .await
        .unwrap();
    let delivered_event = file_events(&store, &t, delivered.file_id).await[0]
        .id
        .clone();

    // Retention reaching past t=30: the delivered event goes with its delivery and
    // attempt; the one still pending and the recent one stay.
    assert_eq!(store.prune_webhook_history(500, 100).await.unwrap(), 1);
    assert!(file_events(&store, &t, delivered.file_id).await.is_empty());
    assert!(store
        .list_event_attempts(&t.id, &delivered_event)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_event_deliveries(&t.id, &delivered_event)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(file_events(&store, &t, pending.file_id).await.len(), 1);
    assert_eq!(file_events(&store, &t, recent.file_id).await.len(), 1);
    assert_eq!(store.pending_webhook_deliveries().await.unwrap(), 2);

    // Once the pending one has failed for good it is history too; batches bound each pass.
    let claimed = store
        .claim_webhook_deliveries(1_000, 1000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    for c in &claimed {
        store
            .finish_webhook_attempt(c, &ok_record(), AttemptOutcome::Failed, 1_001)
            .await
            .unwrap();
    }
    assert_eq!(store.prune_webhook_history(2_000, 1).await.unwrap(), 1);
    assert_eq!(store.prune_webhook_history(2_000, 1).await.unwrap(), 1);
    assert_eq!(store.prune_webhook_history(2_000, 1).await.unwrap(), 0);
    assert!(file_events(&store, &t, pending.file_id).await.is_empty());
    assert!(file_events(&store, &t, recent.file_id).await.is_empty());
}

#[tokio::test]
async fn a_jobs_events_reach_each_target_in_order() {
    let (_dir, store) = open().await;
    let t = tenant(&store, "AKORDER").await;
    store
        .set_tenant_webhook_url(&t.id, Some("https://example.com/tenant"), "whsec_t", 1)
        .await
        .unwrap();
    let event = |job: Option<&str>, kind: &str| zib_meta::NewWebhookEvent {
        tenant_id: t.id.clone(),
        event_type: kind.to_string(),
        file_id: None,
        job_id: job.map(str::to_string),
        payload: serde_json::json!({ "event": kind }),
    };
    for kind in ["encoding.queued", "encoding.started", "encoding.complete"] {
        store
            .emit_webhook_event(event(Some("job-a"), kind), 10)
            .await
            .unwrap();
    }
    store
        .emit_webhook_event(event(Some("job-b"), "encoding.queued"), 10)
        .await
        .unwrap();
    store
        .emit_webhook_event(event(None, "file.ready"), 10)
        .await
        .unwrap();

    // One event per job at a time; events of no job are not held.
    let kinds = |c: &[zib_meta::ClaimedDelivery]| {
        let mut k: Vec<String> = c
            .iter()
            .map(|c| {
                format!(
                    "{}:{}",
                    c.event.job_id.as_deref().unwrap_or("-"),
                    c.event.event_type
                )
            })
            .collect();
        k.sort();
        k
    };
    let first = store.claim_webhook_deliveries(20, 1000, 10).await.unwrap();
    assert_eq!(
        kinds(&first),
        [
            "-:file.ready",
            "job-a:encoding.queued",
            "job-b:encoding.queued"
        ]
    );
    // A failing first event holds the next one back until it is delivered...
    let job_a = first
        .iter()
        .find(|c| c.event.job_id.as_deref() == Some("job-a"))
        .unwrap();
    let failure = AttemptRecord {
        status_code: Some(500),
        ..ok_record()
    };
    store
        .finish_webhook_attempt(job_a, &failure, AttemptOutcome::RetryAt(30), 21)
        .await
        .unwrap();
    let early = store.claim_webhook_deliveries(25, 1000, 10).await.unwrap();
    assert!(early.is_empty(), "{:?}", kinds(&early));
    let retried = store.claim_webhook_deliveries(30, 1000, 10).await.unwrap();
    assert_eq!(kinds(&retried), ["job-a:encoding.queued"]);
    store
        .finish_webhook_attempt(&retried[0], &ok_record(), AttemptOutcome::Succeeded, 31)
        .await
        .unwrap();
    let next = store.claim_webhook_deliveries(31, 1000, 10).await.unwrap();
    assert_eq!(kinds(&next), ["job-a:encoding.started"]);
    // ...and one that gave up does not hold the rest for ever.
    store
        .finish_webhook_attempt(&next[0], &failure, AttemptOutcome::Failed, 32)
        .await
        .unwrap();
    let last = store.claim_webhook_deliveries(32, 1000, 10).await.unwrap();
    assert_eq!(kinds(&last), ["job-a:encoding.complete"]);
}
