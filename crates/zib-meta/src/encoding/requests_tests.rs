use std::str::FromStr;

use serde_json::json;
use zib_proto::{BlobId, NodeId};

use super::*;
use crate::{FileRow, ShardRow, Tenant};

async fn open() -> (tempfile::TempDir, Store, Tenant) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("meta.db"))
        .await
        .unwrap();
    let tenant = store.create_tenant("t", "AK", "x").await.unwrap();
    (dir, store, tenant)
}

/// A distributed file of `key`.
async fn distributed(store: &Store, tenant: &Tenant, key: &str) -> FileRow {
    let b = store.ensure_bucket(&tenant.id, "b").await.unwrap();
    let file = FileRow {
        file_id: FileId::new_random(),
        tenant_id: tenant.id.clone(),
        bucket_id: b.id,
        bucket: b.name.clone(),
        object_key: key.into(),
        size: 100,
        ciphertext_size: 116,
        content_type: "video/mp4".into(),
        phase: FilePhase::Pending,
        cancelled_reason: None,
        wrapped_dek: vec![1],
        chunk_size: 65536,
        nonce_prefix: vec![7; 7],
        data_shards: 2,
        parity_shards: 1,
        shard_size: 1024,
        originator: NodeId::from_str("ZB-ORIG01").unwrap(),
        upload_blob_id: BlobId::new_random(),
        part_count: 1,
        part_size: 0,
        expires_at: 9_000,
        created_at: 1_000,
        distributed_at: None,
    };
    store.insert_file(&file).await.unwrap();
    let shards: Vec<ShardRow> = (0..3u8)
        .map(|i| ShardRow {
            file_id: file.file_id,
            segment: 0,
            index: i,
            node_id: NodeId::from_str("ZB-NODE01").unwrap(),
            blob_id: BlobId::new_random(),
            size: 58,
            blake3: vec![i; 32],
        })
        .collect();
    store
        .complete_distribution(file.file_id, &shards, 2_000, "superseded")
        .await
        .unwrap();
    file
}

fn new_job(file: &FileRow, webhook: Option<&str>) -> NewEncodingJob {
    NewEncodingJob {
        id: uuid::Uuid::new_v4().to_string(),
        file_id: file.file_id,
        tenant_id: file.tenant_id.clone(),
        options: json!({"transcription": "fastest"}),
        wrapped_hls_key: vec![9; 60],
        webhook: webhook.map(|u| (u.to_string(), Some("s".repeat(16)))),
        detail: "waiting".into(),
        variants: vec![],
        compute: vec![],
    }
}

fn queued(job: &EncodingJobRow) -> NewWebhookEvent {
    NewWebhookEvent {
        tenant_id: job.tenant_id.clone(),
        event_type: "encoding.queued".into(),
        file_id: Some(job.file_id),
        job_id: Some(job.id.clone()),
        payload: json!({"event": "encoding.queued", "job_id": job.id}),
    }
}

async fn create(store: &Store, file: &FileRow, force: bool) -> JobCreation {
    store
        .create_encoding_job(new_job(file, None), force, 5_000, queued)
        .await
        .unwrap()
}

async fn set_phase(store: &Store, job_id: &str, phase: JobPhase) {
    sqlx::query("UPDATE encoding_jobs SET phase = $1 WHERE id = $2")
        .bind(phase.as_str())
        .bind(job_id)
        .execute(&store.pool)
        .await
        .unwrap();
}

#[test]
fn the_sql_phase_lists_match_the_phase_predicates() {
    let names = |keep: fn(JobPhase) -> bool| {
        JobPhase::ALL
            .into_iter()
            .filter(|p| keep(*p))
            .map(|p| format!("'{}'", p.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    assert_eq!(
        names(JobPhase::is_in_flight),
        "'queued', 'encoding', 'sharding', 'failed'"
    );
    assert_eq!(
        names(JobPhase::is_encoded),
        "'local_complete', 'replicating', 'safe'"
    );
}

#[tokio::test]
async fn a_request_creates_once_then_answers_the_existing_job() {
    let (_dir, store, tenant) = open().await;
    let file = distributed(&store, &tenant, "v/a.mp4").await;

    let JobCreation::Created(first) = create(&store, &file, false).await else {
        panic!("first request creates");
    };
    assert_eq!(first.phase, JobPhase::Queued);
    assert_eq!(first.options, json!({"transcription": "fastest"}));
    let events = store
        .list_webhook_events(&tenant.id, Some(&file.file_id.to_string()), 10)
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event_type == "encoding.queued" && e.job_id.as_deref() == Some(&first.id)),
        "encoding.queued committed with the job"
    );

    // In flight (even failed and retrying): the same job, force or not.
    for phase in [JobPhase::Queued, JobPhase::Encoding, JobPhase::Failed] {
        set_phase(&store, &first.id, phase).await;
        for force in [false, true] {
            match create(&store, &file, force).await {
                JobCreation::InFlight(j) => assert_eq!(j.id, first.id),
                other => panic!("{phase:?} force={force}: {other:?}"),
            }
        }
    }
    // Encoded: answered without force, re-encoded with it.
    set_phase(&store, &first.id, JobPhase::Safe).await;
    match create(&store, &file, false).await {
        JobCreation::Encoded(j) => assert_eq!(j.id, first.id),
        other => panic!("{other:?}"),
    }
    let JobCreation::Created(second) = create(&store, &file, true).await else {
        panic!("force creates");
    };
    assert_ne!(second.id, first.id);
    assert_eq!(
        store
            .latest_encoding_job(&tenant.id, file.file_id)
            .await
            .unwrap()
            .map(|j| j.id),
        Some(second.id.clone())
    );
    // A job the tenant must retry does not block a new request.
    set_phase(&store, &second.id, JobPhase::FailedUserAction).await;
    assert!(matches!(
        create(&store, &file, false).await,
        JobCreation::Encoded(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_requests_create_one_job() {
    let (_dir, store, tenant) = open().await;
    let file = distributed(&store, &tenant, "v/race.mp4").await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (store, file) = (store.clone(), file.clone());
            tokio::spawn(async move { create(&store, &file, false).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let created = results
        .iter()
        .filter(|r| matches!(r, JobCreation::Created(_)))
        .count();
    assert_eq!(created, 1, "{results:?}");
    assert!(results
        .iter()
        .all(|r| matches!(r, JobCreation::Created(_) | JobCreation::InFlight(_))));
}

#[tokio::test]
async fn a_file_not_distributed_gets_no_job() {
    let (_dir, store, tenant) = open().await;
    let file = distributed(&store, &tenant, "v/b.mp4").await;
    sqlx::query("UPDATE files SET phase = 'uploading' WHERE file_id = $1")
        .bind(file.file_id.to_string())
        .execute(&store.pool)
        .await
        .unwrap();
    assert_eq!(
        create(&store, &file, false).await,
        JobCreation::FileNotReady(Some(FilePhase::Uploading))
    );
    let mut gone = file.clone();
    gone.file_id = FileId::new_random();
    assert_eq!(
        create(&store, &gone, false).await,
        JobCreation::FileNotReady(None)
    );
}

#[tokio::test]
async fn my_jobs_lists_each_files_latest_job_and_filters_active() {
    let (_dir, store, tenant) = open().await;
    let other = store.create_tenant("o", "AK2", "y").await.unwrap();
    let a = distributed(&store, &tenant, "videos/a.mp4").await;
    let b = distributed(&store, &tenant, "videos/b.mp4").await;
    let theirs = distributed(&store, &other, "x.mp4").await;
    let JobCreation::Created(a1) = create(&store, &a, false).await else {
        panic!()
    };
    set_phase(&store, &a1.id, JobPhase::Safe).await;
    let JobCreation::Created(a2) = create(&store, &a, true).await else {
        panic!()
    };
    let JobCreation::Created(b1) = create(&store, &b, false).await else {
        panic!()
    };
    set_phase(&store, &b1.id, JobPhase::Cancelled).await;
    create(&store, &theirs, false).await;

    let all = store.my_encoding_jobs(&tenant.id, false).await.unwrap();
    let ids: Vec<(&str, &str)> = all
        .iter()
        .map(|(j, key)| (j.id.as_str(), key.as_str()))
        .collect();
    assert_eq!(ids.len(), 2, "one row per file, only the tenant's: {ids:?}");
    assert!(ids.contains(&(a2.id.as_str(), "videos/a.mp4")));
    assert!(ids.contains(&(b1.id.as_str(), "videos/b.mp4")));
    let active = store.my_encoding_jobs(&tenant.id, true).await.unwrap();
    assert_eq!(
        active
            .iter()
            .map(|(j, _)| j.id.as_str())
            .collect::<Vec<_>>(),
        [a2.id.as_str()]
    );
    assert_eq!(store.job_replication_peer_count(&a2.id).await.unwrap(), 0);
    assert!(!store.job_has_published_rung(&a2.id).await.unwrap());
}

#[tokio::test]
async fn only_a_failed_user_action_job_is_retried() {
    let (_dir, store, tenant) = open().await;
    let file = distributed(&store, &tenant, "v/c.mp4").await;
    let JobCreation::Created(job) = create(&store, &file, false).await else {
        panic!()
    };
    let retry = |id: String, tenant: String| {
        let store = store.clone();
        async move {
            store
                .retry_encoding_job(&tenant, &id, "again", 9_000, queued)
                .await
                .unwrap()
        }
    };
    assert_eq!(retry(job.id.clone(), tenant.id.clone()).await, None);
    sqlx::query(
        "UPDATE encoding_jobs SET phase = 'failed_user_action', retry_count = 3, \
         error_message = 'boom' WHERE id = $1",
    )
    .bind(&job.id)
    .execute(&store.pool)
    .await
    .unwrap();
    assert_eq!(retry(job.id.clone(), "someone-else".into()).await, None);
    let again = retry(job.id.clone(), tenant.id.clone()).await.unwrap();
    assert_eq!(again.phase, JobPhase::Queued);
    assert_eq!(again.retry_count, 0);
    assert_eq!(again.error_message, None);
    assert_eq!(again.phase_detail.as_deref(), Some("again"));
}

#[tokio::test]
async fn a_jobs_own_target_beats_the_files_which_beats_the_tenants() {
    let (_dir, store, tenant) = open().await;
    store
        .set_tenant_webhook_url(&tenant.id, Some("https://tenant.example/h"), "whsec_x", 1)
        .await
        .unwrap();
    let file = distributed(&store, &tenant, "v/d.mp4").await;
    let url_of = |event_id: String| {
        let store = store.clone();
        let tenant = tenant.id.clone();
        async move {
            let d = store
                .list_event_deliveries(&tenant, &event_id)
                .await
                .unwrap();
            let now = 10_000;
            // A job's events are handed out in order: deliver the earlier ones first.
            let mut mine = None;
            for _ in 0..10 {
                let claimed = store
                    .claim_webhook_deliveries(now, 1_000, 100)
                    .await
                    .unwrap();
                for c in claimed {
                    if c.delivery.event_id == event_id {
                        mine = Some(c);
                    } else {
                        let sent = crate::AttemptRecord {
                            url: c.delivery.url.clone(),
                            status_code: Some(200),
                            latency_ms: 1,
                            response_snippet: None,
                            error: None,
                        };
                        store
                            .finish_webhook_attempt(
                                &c,
                                &sent,
                                crate::AttemptOutcome::Succeeded,
                                now,
                            )
                            .await
                            .unwrap();
                    }
                }
                if mine.is_some() {
                    break;
                }
            }
            let mine =
                mine.expect("the event's delivery is claimed once the earlier ones are sent");
            let resolved = store
                .resolve_webhook_target(&mine, now)
                .await
                .unwrap()
                .unwrap();
            (d[0].url.clone(), resolved)
        }
    };
    let event = |job_id: Option<String>| NewWebhookEvent {
        tenant_id: tenant.id.clone(),
        event_type: "encoding.progress".into(),
        file_id: Some(file.file_id),
        job_id,
        payload: json!({}),
    };

    // No per-request target: the tenant's.
    let id = store.emit_webhook_event(event(None), 3_000).await.unwrap();
    assert_eq!(url_of(id).await.0, "https://tenant.example/h");

    // The upload's own target.
    store
        .set_file_webhook(file.file_id, "https://file.example/h", None, 3_000)
        .await
        .unwrap();
    let id = store.emit_webhook_event(event(None), 3_000).await.unwrap();
    assert_eq!(url_of(id).await.0, "https://file.example/h");

    // A job created with its own target: its events go there, signed with its secret.
    let JobCreation::Created(job) = store
        .create_encoding_job(
            new_job(&file, Some("https://job.example/h")),
            false,
            5_000,
            queued,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    let id = store
        .emit_webhook_event(event(Some(job.id.clone())), 6_000)
        .await
        .unwrap();
    let (url, resolved) = url_of(id).await;
    assert_eq!(url, "https://job.example/h");
    assert_eq!(resolved.url, "https://job.example/h");
    assert_eq!(resolved.secrets, ["s".repeat(16)]);
    // Another job of the file without its own target: the file's.
    let id = store
        .emit_webhook_event(event(Some("job-without-target".into())), 6_000)
        .await
        .unwrap();
    assert_eq!(url_of(id).await.0, "https://file.example/h");
}

#[tokio::test]
async fn the_declared_pipeline_round_trips() {
    let (_dir, store, tenant) = open().await;
    let file = distributed(&store, &tenant, "v/e.mp4").await;
    assert_eq!(store.file_pipeline(file.file_id).await.unwrap(), None);
    let declared = json!({"encode": true, "vision": "hq"});
    store
        .set_file_pipeline(file.file_id, &declared)
        .await
        .unwrap();
    assert_eq!(
        store.file_pipeline(file.file_id).await.unwrap(),
        Some(declared)
    );
}
