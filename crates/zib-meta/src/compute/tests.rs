//! Compute jobs on a real SQLite file: claims gated by capability, tier, file and
//! encode (with the encoding node's head start), racing claims, leases that renew and
//! lapse, outputs then done with its one event, retries, cancel cascades, and tenant
//! isolation.

use std::str::FromStr;

use serde_json::json;
use zib_proto::compute::{ComputeKind, ComputeOutputKind, ComputeStatus};
use zib_proto::{BlobId, FileId, NodeId};

use super::*;
use crate::{
    DerivedKind, FilePhase, FileRow, JobCreation, MetaError, NewEncodingJob, NewWebhookEvent,
    ShardRow, Tenant,
};

const GRACE: i64 = 30_000;
const LEASE: i64 = 60_000;

fn node(name: &str) -> NodeId {
    NodeId::from_str(name).unwrap()
}

fn caps(list: &[&str]) -> Vec<String> {
    list.iter().map(|c| c.to_string()).collect()
}

/// The server's event, reduced to what the tests read: its type and job_id.
fn build(job: &ComputeJobRow) -> Option<NewWebhookEvent> {
    let event_type = format!("{}.complete", job.kind.as_str());
    Some(NewWebhookEvent {
        tenant_id: job.tenant_id.clone(),
        event_type: event_type.clone(),
        file_id: Some(job.file_id),
        job_id: Some(job.event_job_id().to_string()),
        payload: json!({ "event": event_type }),
    })
}

async fn open() -> (tempfile::TempDir, Store, Tenant) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("meta.db"))
        .await
        .unwrap();
    let tenant = store.create_tenant("t", "AK", "x").await.unwrap();
    (dir, store, tenant)
}

/// A file of `key` registered at `created_at`, distributed unless `pending`.
async fn file_at(
    store: &Store,
    tenant: &Tenant,
    key: &str,
    created_at: i64,
    pending: bool,
) -> FileRow {
    let b = store.ensure_bucket(&tenant.id, "b").await.unwrap();
    let file = FileRow {
        file_id: FileId::new_random(),
        tenant_id: tenant.id.clone(),
        bucket_id: b.id,
        bucket: b.name.clone(),
        object_key: key.into(),
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
        expires_at: 9_000_000,
        created_at,
        distributed_at: None,
    };
    store.insert_file(&file).await.unwrap();
    if !pending {
        distribute(store, &file).await;
    }
    file
}

async fn distribute(store: &Store, file: &FileRow) {
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
        .complete_distribution(
            file.file_id,
            &[shard],
            2_000,
            "superseded by a newer upload",
        )
        .await
        .unwrap();
}

async fn video(store: &Store, tenant: &Tenant) -> FileRow {
    file_at(
        store,
        tenant,
        &format!("v-{}", FileId::new_random()),
        1_000,
        false,
    )
    .await
}

fn ask(file: &FileRow, kind: ComputeKind, tier: &str) -> NewComputeJob {
    NewComputeJob {
        id: uuid::Uuid::new_v4().to_string(),
        file_id: file.file_id,
        tenant_id: file.tenant_id.clone(),
        kind,
        tier: tier.into(),
        encoding_job_id: None,
    }
}

/// One standalone job, created at `at`.
async fn alone(
    store: &Store,
    file: &FileRow,
    kind: ComputeKind,
    tier: &str,
    at: i64,
) -> ComputeJobRow {
    let mut rows = store
        .create_compute_jobs(&[ask(file, kind, tier)], at)
        .await
        .unwrap();
    rows.pop().unwrap()
}

/// An encoding job of `file` created with `compute` asks (as `encoding/request` is).
async fn with_encode(store: &Store, file: &FileRow, compute: Vec<NewComputeJob>) -> String {
    let new = NewEncodingJob {
        id: uuid::Uuid::new_v4().to_string(),
        file_id: file.file_id,
        tenant_id: file.tenant_id.clone(),
        options: json!({"transcription": "fastest"}),
        wrapped_hls_key: vec![9; 60],
        webhook: None,
        detail: "waiting".into(),
        variants: vec![],
        compute,
    };
    let created = store
        .create_encoding_job(new, false, 3_000, |job| NewWebhookEvent {
            tenant_id: job.tenant_id.clone(),
            event_type: "encoding.queued".into(),
            file_id: Some(job.file_id),
            job_id: Some(job.id.clone()),
            payload: json!({"event": "encoding.queued"}),
        })
        .await
        .unwrap();
    match created {
        JobCreation::Created(job) => job.id,
        other => panic!("expected a new job, got {other:?}"),
    }
}

/// Moves the encoding job to `phase`, ended at `at` (what `done` or a failure writes).
async fn encode_ends(store: &Store, job_id: &str, phase: &str, at: i64) {
    let completed = (phase != "failed_user_action").then_some(at);
    sqlx::query(
        "UPDATE encoding_jobs SET phase = $1, completed_at = $2, phase_updated_at = $3 \
         WHERE id = $4",
    )
    .bind(phase)
    .bind(completed)
    .bind(at)
    .bind(job_id)
    .execute(&store.pool)
    .await
    .unwrap();
}

async fn claim(
    store: &Store,
    who: &str,
    capabilities: &[&str],
    after: Option<&str>,
    token: &str,
    now: i64,
) -> Option<ComputeJobRow> {
    store
        .claim_compute_job(
            &node(who),
            &caps(capabilities),
            after,
            token,
            now + LEASE,
            now,
            GRACE,
        )
        .await
        .unwrap()
}

async fn events(store: &Store, event_type: &str) -> Vec<Option<String>> {
    sqlx::query_scalar("SELECT job_id FROM webhook_events WHERE event_type = $1 ORDER BY rowid")
        .bind(event_type)
        .fetch_all(&store.pool)
        .await
        .unwrap()
}

const ALL_AI: [&str; 5] = [
    "transcription:fastest",
    "transcription:recommended",
    "transcription:accurate",
    "vision:standard",
    "vision:hq",
];

#[tokio::test]
async fn a_claim_offers_only_what_the_node_advertises() {
    let (_d, store, tenant) = open().await;
    let file = video(&store, &tenant).await;
    let t = alone(&store, &file, ComputeKind::Transcription, "fastest", 10_000).await;
    let v = alone(&store, &file, ComputeKind::Vision, "standard", 10_001).await;

    // Another tier, encode only, or nothing: no job.
    for offer in [
        &["transcription:recommended", "vision:hq", "encode"][..],
        &["encode"][..],
        &[][..],
        &["transcription:nonsense", "garbage"][..],
    ] {
        assert!(claim(&store, "ZB-NODE02", offer, None, "h", 20_000)
            .await
            .is_none());
    }
    let got = claim(
        &store,
        "ZB-NODE02",
        &["vision:standard"],
        None,
        "hv",
        20_000,
    )
    .await
    .unwrap();
    assert_eq!(got.id, v.id);
    assert_eq!(got.status, ComputeJobState::Processing);
    assert_eq!(got.node_id, Some(node("ZB-NODE02")));
    assert_eq!(got.lease_expires_at, Some(20_000 + LEASE));
    assert_eq!(got.started_at, Some(20_000));
    assert_eq!(got.tenant_status(), ComputeStatus::Processing);
    // A legacy bare stage name means its default tier (recommended): not fastest.
    assert!(
        claim(&store, "ZB-NODE03", &["transcription"], None, "h3", 20_000)
            .await
            .is_none()
    );
    let got = claim(
        &store,
        "ZB-NODE03",
        &["encode", "transcription:fastest"],
        None,
        "ht",
        20_000,
    )
    .await
    .unwrap();
    assert_eq!(got.id, t.id);
    assert!(claim(&store, "ZB-NODE04", &ALL_AI, None, "h4", 20_000)
        .await
        .is_none());
}

#[tokio::test]
async fn a_file_not_readable_is_not_claimable_and_the_oldest_goes_first() {
    let (_d, store, tenant) = open().await;
    let pending = file_at(&store, &tenant, "p.mp4", 1_000, true).await;
    let ready = video(&store, &tenant).await;
    let first = alone(
        &store,
        &pending,
        ComputeKind::Transcription,
        "fastest",
        10_000,
    )
    .await;
    let second = alone(
        &store,
        &ready,
        ComputeKind::Transcription,
        "fastest",
        11_000,
    )
    .await;
    let third = alone(
        &store,
        &ready,
        ComputeKind::Transcription,
        "fastest",
        12_000,
    )
    .await;

    let got = claim(&store, "ZB-NODE02", &ALL_AI, None, "a", 20_000)
        .await
        .unwrap();
    assert_eq!(got.id, second.id, "the pending file's job waits");
    distribute(&store, &pending).await;
    let got = claim(&store, "ZB-NODE02", &ALL_AI, None, "b", 20_000)
        .await
        .unwrap();
    assert_eq!(got.id, first.id, "oldest first once its file is ready");
    let got = claim(&store, "ZB-NODE02", &ALL_AI, None, "c", 20_000)
        .await
        .unwrap();
    assert_eq!(got.id, third.id);
}

#[tokio::test]
async fn runs_asked_with_an_encode_wait_for_it_and_its_node_goes_first() {
    let (_d, store, tenant) = open().await;
    let file = video(&store, &tenant).await;
    let enc = with_encode(
        &store,
        &file,
        vec![
            ask(&file, ComputeKind::Transcription, "fastest"),
            ask(&file, ComputeKind::Vision, "standard"),
        ],
    )
    .await;
    let attached = store.compute_jobs_of_encoding(&enc).await.unwrap();
    assert_eq!(attached.len(), 2);
    assert!(attached
        .iter()
        .all(|j| j.encoding_job_id.as_deref() == Some(enc.as_str())
            && j.status == ComputeJobState::Queued
            && j.event_job_id() == enc));

    // The encode runs: nobody, not even its node, gets the AI runs.
    assert!(claim(&store, "ZB-NODE01", &ALL_AI, Some(&enc), "a", 5_000)
        .await
        .is_none());
    assert!(claim(&store, "ZB-NODE02", &ALL_AI, None, "a", 5_000)
        .await
        .is_none());

    encode_ends(&store, &enc, "local_complete", 50_000).await;
    // Within the grace: only the claim naming the encode.
    assert!(claim(&store, "ZB-NODE02", &ALL_AI, None, "b", 50_001)
        .await
        .is_none());
    let first = claim(&store, "ZB-NODE01", &ALL_AI, Some(&enc), "c", 50_001)
        .await
        .unwrap();
    assert_eq!(first.encoding_job_id.as_deref(), Some(enc.as_str()));
    // Just before the grace ends: still nobody else; at its end, anyone capable.
    assert!(
        claim(&store, "ZB-NODE02", &ALL_AI, None, "d", 50_000 + GRACE - 1)
            .await
            .is_none()
    );
    let second = claim(&store, "ZB-NODE02", &ALL_AI, None, "e", 50_000 + GRACE)
        .await
        .unwrap();
    assert_ne!(first.id, second.id);
}

#[tokio::test]
async fn an_encode_that_needs_the_tenant_releases_its_runs_too() {
    let (_d, store, tenant) = open().await;
    let file = video(&store, &tenant).await;
    let enc = with_encode(&store, &file, vec![ask(&file, ComputeKind::Vision, "hq")]).await;
    encode_ends(&store, &enc, "failed", 40_000).await;
    assert!(
        claim(&store, "ZB-NODE02", &ALL_AI, None, "a", 40_000 + GRACE)
            .await
            .is_none()
    );
    encode_ends(&store, &enc, "failed_user_action", 41_000).await;
    assert!(
        claim(&store, "ZB-NODE02", &ALL_AI, None, "b", 41_000 + GRACE - 1)
            .await
            .is_none()
    );
    assert!(
        claim(&store, "ZB-NODE02", &ALL_AI, None, "c", 41_000 + GRACE)
            .await
            .is_some()
    );
}

#[tokio::test]
async fn a_claim_naming_an_encode_sees_only_its_runs() {
    let (_d, store, tenant) = open().await;
    let file = video(&store, &tenant).await;
    let other = video(&store, &tenant).await;
    let older = alone(&store, &other, ComputeKind::Transcription, "fastest", 1_000).await;
    let enc = with_encode(
        &store,
        &file,
        vec![ask(&file, ComputeKind::Transcription, "fastest")],
    )
    .await;
    encode_ends(&store, &enc, "local_complete", 50_000).await;

    // The standalone job is older, but the encoding node asked for its encode's run.
    let got = claim(&store, "ZB-NODE01", &ALL_AI, Some(&enc), "a", 50_001)
        .await
        .unwrap();
    assert_eq!(got.encoding_job_id.as_deref(), Some(enc.as_str()));
    // Nothing left of that encode: none, though the standalone job is claimable.
    assert!(claim(&store, "ZB-NODE01", &ALL_AI, Some(&enc), "b", 50_002)
        .await
        .is_none());
    assert!(claim(
        &store,
        "ZB-NODE01",
        &ALL_AI,
        Some("no-such-job"),
        "b",
        50_002
    )
    .await
    .is_none());
    let got = claim(&store, "ZB-NODE01", &ALL_AI, None, "c", 50_003)
        .await
        .unwrap();
    assert_eq!(got.id, older.id);
}

#[tokio::test]
async fn racing_claims_never_share_a_job() {
    let (_d, store, tenant) = open().await;
    let file = video(&store, &tenant).await;
    for i in 0..3 {
        alone(
            &store,
            &file,
            ComputeKind::Transcription,
            "fastest",
            1_000 + i,
        )
        .await;
    }
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let who = format!("ZB-NODE0{i}");
            store
                .claim_compute_job(
                    &node(&who),
                    &caps(&["transcription:fastest"]),
                    None,
                    &format!("token-{i}"),
                    60_000,
                    5_000,
                    GRACE,
                )
                .await
                .unwrap()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        if let Some(job) = t.await.unwrap() {
            ids.push(job.id);
        }
    }
    assert_eq!(ids.len(), 3, "each job once, and every job");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "no job handed out twice");
}

#[tokio::test]
async fn a_lease_renews_and_a_lapsed_one_is_requeued_with_a_backoff() {
    let (_d, store, tenant) = open().await;
    let file = video(&store, &tenant).await;
    let job = alone(
        &store,
        &file,
        ComputeKind::Transcription,
        "recommended",
        1_000,
    )
    .await;
    let me = node("ZB-NODE02");
    let got = claim(&store, "ZB-NODE02", &ALL_AI, None, "tok", 10_000)
        .await
        .unwrap();
    assert_eq!(got.id, job.id);

    // Another node, another token: refused.
    let renew = |who: NodeId, token: &'static str, progress: i64, now: i64| {
        let store = store.clone();
        let id = job.id.clone();
        async move {
            store
                .renew_compute_lease(
                    &id,
                    &who,
                    token,
                    progress,
                    Some("transcribing 00:30 of 01:00"),
                    now + LEASE,
                    now,
                )
                .await
                .unwrap()
        }
    };
    assert!(renew(node("ZB-NODE03"), "tok", 10, 20_000).await.is_none());
    assert!(renew(me.clone(), "other", 10, 20_000).await.is_none());
    let r = renew(me.clone(), "tok", 150, 20_000).await.unwrap();
    assert_eq!(r.progress, 100, "clamped");
    assert_eq!(r.lease_expires_at, Some(20_000 + LEASE));
    assert_eq!(
        r.phase_detail.as_deref(),
        Some("transcribing 00:30 of 01:00")
    );
    let r = renew(me.clone(), "tok", 40, 30_000).await.unwrap();
    assert_eq!(r.progress, 40);
    assert!(store
        .leased_compute_job(&job.id, Some(&me), "tok", 30_001)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .leased_compute_job(&job.id, None, "tok", 30_001)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .leased_compute_job(&job.id, Some(&node("ZB-NODE03")), "tok", 30_001)
        .await
        .unwrap()
        .is_none());

    // Not lapsed yet: nothing moves. Lapsed: queued again, one retry used, backoff.
    let lapse = 30_000 + LEASE;
    assert_eq!(
        store.requeue_lapsed_compute_jobs(lapse - 1).await.unwrap(),
        0
    );
    assert_eq!(store.requeue_lapsed_compute_jobs(lapse).await.unwrap(), 1);
    let back = store.compute_job(&job.id).await.unwrap().unwrap();
    assert_eq!(back.status, ComputeJobState::Queued);
    assert_eq!(back.retry_count, 1);
    assert_eq!(back.retry_after, Some(lapse + COMPUTE_RETRY.backoff_ms(1)));
    assert_eq!(back.error_message.as_deref(), Some(COMPUTE_LAPSED_ERROR));
    assert_eq!(
        (
            back.lease_node.clone(),
            back.lease_expires_at,
            back.progress
        ),
        (None, None, 0)
    );
    assert_eq!(back.tenant_status(), ComputeStatus::Queued);
    // The old lease answers nothing; the job waits out its backoff.
    assert!(renew(me.clone(), "tok", 50, lapse + 1).await.is_none());
    assert!(store
        .leased_compute_job(&job.id, None, "tok", lapse + 1)
        .await
        .unwrap()
        .is_none());
    let ready = lapse + COMPUTE_RETRY.backoff_ms(1);
    assert!(claim(&store, "ZB-NODE03", &ALL_AI, None, "t2", ready - 1)
        .await
        .is_none());
    let again = claim(&store, "ZB-NODE03", &ALL_AI, None, "t2", ready)
        .await
        .unwrap();
    assert_eq!(
        (again.id, again.retry_count, again.retry_after),
        (job.id, 1, None)
    );
}

#[tokio::test]
async fn outputs_then_done_emit_one_event_under_the_encodes_id() {
    let (_d, store, tenant) = open().await;
    let file = video(&store, &tenant).await;
    let enc = with_encode(
        &store,
        &file,
        vec![ask(&file, ComputeKind::Transcription, "fastest")],
    )
    .await;
    encode_ends(&store, &enc, "local_complete", 50_000).await;
    let job = claim(&store, "ZB-NODE01", &ALL_AI, Some(&enc), "tok", 50_001)
        .await
        .unwrap();
    let (srt, vtt) = (FileId::new_random(), FileId::new_random());

    let done = |now: i64| {
        let store = store.clone();
        let id = job.id.clone();
        async move {
            store
                .complete_compute_job(&id, "tok", Some("en"), now, &build)
                .await
        }
    };
    assert!(
        matches!(done(50_100).await, Err(MetaError::Conflict(_))),
        "no output yet"
    );
    // A vision output on a transcription: refused.
    let wrong = store
        .set_compute_output(&job.id, "tok", ComputeOutputKind::Sidecar, srt, 50_150)
        .await;
    assert!(matches!(wrong, Err(MetaError::Conflict(_))));
    let r = store
        .set_compute_output(&job.id, "tok", ComputeOutputKind::Srt, srt, 50_200)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.srt_file_id, Some(srt));
    assert!(
        matches!(done(50_300).await, Err(MetaError::Conflict(_))),
        "the VTT is missing"
    );
    assert!(store
        .set_compute_output(&job.id, "bad", ComputeOutputKind::Vtt, vtt, 50_350)
        .await
        .unwrap()
        .is_none());
    store
        .set_compute_output(&job.id, "tok", ComputeOutputKind::Vtt, vtt, 50_400)
        .await
        .unwrap()
        .unwrap();
    assert!(events(&store, "transcription.complete").await.is_empty());

    let finished = done(50_500).await.unwrap().unwrap();
    assert_eq!(finished.status, ComputeJobState::Complete);
    assert_eq!(
        (finished.progress, finished.completed_at),
        (100, Some(50_500))
    );
    assert_eq!(finished.language.as_deref(), Some("en"));
    assert_eq!(
        (finished.srt_file_id, finished.vtt_file_id),
        (Some(srt), Some(vtt))
    );
    assert_eq!(finished.lease_expires_at, None);
    // Done again (a retried call): the lease is gone, no second event.
    assert!(done(50_600).await.unwrap().is_none());
    assert_eq!(
        events(&store, "transcription.complete").await,
        vec![Some(enc.clone())]
    );

    // The HLS subtitle track follows the newest complete transcription.
    let latest = store
        .latest_transcription(file.file_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((latest.id, latest.vtt_file_id), (job.id.clone(), Some(vtt)));
    assert!(store
        .in_flight_compute_job(file.file_id, ComputeKind::Transcription, "fastest")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_standalone_vision_run_reports_under_its_own_id() {
    let (_d, store, tenant) = open().await;
    let file = video(&store, &tenant).await;
    let job = alone(&store, &file, ComputeKind::Vision, "standard", 1_000).await;
    let same = store
        .in_flight_compute_job(file.file_id, ComputeKind::Vision, "standard")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same.id, job.id);
    assert!(store
        .in_flight_compute_job(file.file_id, ComputeKind::Vision, "hq")
        .await
        .unwrap()
        .is_none());
    claim(
        &store,
        "ZB-NODE02",
        &["vision:standard"],
        None,
        "tok",
        2_000,
    )
    .await
    .unwrap();
    let sidecar = FileId::new_random();
    store
        .set_compute_output(&job.id, "tok", ComputeOutputKind::Sidecar, sidecar, 3_000)
        .await
        .unwrap()
        .unwrap();
    let done = store
        .complete_compute_job(&job.id, "tok", None, 4_000, &build)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((done.sidecar_file_id, done.language), (Some(sidecar), None));
    assert_eq!(
        events(&store, "vision.complete").await,
        vec![Some(job.id.clone())]
    );
    assert!(store
        .latest_transcription(file.file_id)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn transient_failures_retry_until_the_last_try_and_permanent_ones_fail_at_once() {
    let (_d, store, tenant) = open().await;
    let file = video(&store, &tenant).await;
    let job = alone(&store, &file, ComputeKind::Transcription, "fastest", 1_000).await;
    let mut now = 10_000;
    let mut waits = Vec::new();
    for try_no in 1..=COMPUTE_TRIES {
        let token = format!("tok{try_no}");
        claim(&store, "ZB-NODE02", &ALL_AI, None, &token, now)
            .await
            .unwrap();
        assert!(store
            .fail_compute_job(&job.id, "wrong", "x", false, now)
            .await
            .unwrap()
            .is_none());
        let after = store
            .fail_compute_job(&job.id, &token, "ffmpeg exited with 1", false, now + 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(after.error_message.as_deref(), Some("ffmpeg exited with 1"));
        if try_no < COMPUTE_TRIES {
            assert_eq!(after.status, ComputeJobState::Queued);
            assert_eq!(after.retry_count, try_no);
            let at = after.retry_after.unwrap();
            waits.push(at - (now + 1));
            now = at;
        } else {
            assert_eq!(after.status, ComputeJobState::Failed);
            assert_eq!(after.tenant_status(), ComputeStatus::Failed);
            assert_eq!(after.retry_after, None);
        }
    }
    assert_eq!(waits, vec![5_000, 10_000], "backoff doubles");
    assert!(
        claim(&store, "ZB-NODE02", &ALL_AI, None, "late", now + 1_000_000)
            .await
            .is_none()
    );

    let perm = alone(&store, &file, ComputeKind::Vision, "standard", 2_000).await;
    claim(&store, "ZB-NODE02", &ALL_AI, None, "p", 3_000)
        .await
        .unwrap();
    let after = store
        .fail_compute_job(&perm.id, "p", "not a video", true, 3_001)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (after.status, after.retry_count),
        (ComputeJobState::Failed, 0)
    );
    assert!(!after.is_in_flight());
}

#[tokio::test]
async fn cancelling_the_encode_cancels_its_runs_only() {
    let (_d, store, tenant) = open().await;
    let file = video(&store, &tenant).await;
    let standalone = alone(&store, &file, ComputeKind::Vision, "hq", 1_000).await;
    let enc = with_encode(
        &store,
        &file,
        vec![ask(&file, ComputeKind::Transcription, "fastest")],
    )
    .await;
    store
        .cancel_encoding_job(&enc, "cancelled by the tenant", 9_000)
        .await
        .unwrap()
        .unwrap();

    let run = store
        .compute_jobs_of_encoding(&enc)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(run.status, ComputeJobState::Cancelled);
    assert_eq!(run.tenant_status(), ComputeStatus::Failed);
    let reason = run.error_message.unwrap();
    assert!(
        reason.contains("encode was cancelled") && reason.contains("cancelled by the tenant"),
        "{reason}"
    );
    let other = store.compute_job(&standalone.id).await.unwrap().unwrap();
    assert_eq!(other.status, ComputeJobState::Queued);
}

#[tokio::test]
async fn deleting_or_superseding_the_file_ends_its_runs() {
    let (_d, store, tenant) = open().await;
    // Superseded: a newer upload of the key completes; the old file's runs end,
    // the running one's lease with them.
    let old = file_at(&store, &tenant, "clip.mp4", 1_000, false).await;
    let running = alone(&store, &old, ComputeKind::Transcription, "fastest", 2_000).await;
    let queued = alone(&store, &old, ComputeKind::Vision, "standard", 2_001).await;
    claim(
        &store,
        "ZB-NODE02",
        &["transcription:fastest"],
        None,
        "tok",
        3_000,
    )
    .await
    .unwrap();
    file_at(&store, &tenant, "clip.mp4", 5_000, false).await;
    for id in [&running.id, &queued.id] {
        let j = store.compute_job(id).await.unwrap().unwrap();
        assert_eq!(j.status, ComputeJobState::Cancelled);
        assert_eq!(
            j.error_message.as_deref(),
            Some("superseded by a newer upload")
        );
    }
    assert!(store
        .leased_compute_job(&running.id, None, "tok", 3_001)
        .await
        .unwrap()
        .is_none());

    // Deleted: the file goes with its runs (attached ones too) and their outputs.
    let file = video(&store, &tenant).await;
    let enc = with_encode(
        &store,
        &file,
        vec![ask(&file, ComputeKind::Transcription, "fastest")],
    )
    .await;
    let done = alone(&store, &file, ComputeKind::Vision, "standard", 4_000).await;
    let out = file_at(
        &store,
        &tenant,
        &format!("{}/.zib/sidecar", file.object_key),
        4_500,
        true,
    )
    .await;
    assert!(store
        .mark_derived(
            out.file_id,
            file.file_id,
            DerivedKind::ComputeOutput(ComputeOutputKind::Sidecar)
        )
        .await
        .unwrap());
    let d = store.derived_file(out.file_id).await.unwrap().unwrap();
    assert_eq!(
        d.kind,
        DerivedKind::ComputeOutput(ComputeOutputKind::Sidecar)
    );
    assert_eq!(d.kind.as_str(), "sidecar");
    assert_eq!(
        store
            .compute_jobs_of_file(file.file_id)
            .await
            .unwrap()
            .len(),
        2
    );
    store
        .delete_file(&tenant.id, file.file_id, 9_000)
        .await
        .unwrap()
        .unwrap();
    assert!(store
        .compute_jobs_of_file(file.file_id)
        .await
        .unwrap()
        .is_empty());
    assert!(store.compute_job(&done.id).await.unwrap().is_none());
    assert!(store
        .compute_jobs_of_encoding(&enc)
        .await
        .unwrap()
        .is_empty());
    assert!(store.derived_file(out.file_id).await.unwrap().is_none());

    // The explicit cancel (the server's delete and supersede paths call it too).
    let f = video(&store, &tenant).await;
    alone(&store, &f, ComputeKind::Transcription, "fastest", 1_000).await;
    assert_eq!(
        store
            .cancel_compute_jobs_of_file(f.file_id, "gone", 2_000)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .cancel_compute_jobs_of_file(f.file_id, "gone", 2_000)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn another_tenants_job_reads_as_missing() {
    let (_d, store, tenant) = open().await;
    let other = store.create_tenant("u", "AK2", "y").await.unwrap();
    let file = video(&store, &tenant).await;
    let job = alone(&store, &file, ComputeKind::Transcription, "fastest", 1_000).await;
    assert!(store
        .compute_job_for_tenant(&other.id, &job.id)
        .await
        .unwrap()
        .is_none());
    let mine = store
        .compute_job_for_tenant(&tenant.id, &job.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mine, job);
    assert_eq!(mine.capability(), "transcription:fastest");
    assert!(store
        .compute_job_for_tenant(&tenant.id, "nope")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_files_jobs_list_newest_first() {
    let (_d, store, tenant) = open().await;
    let file = video(&store, &tenant).await;
    let a = alone(&store, &file, ComputeKind::Transcription, "fastest", 1_000).await;
    let b = alone(&store, &file, ComputeKind::Vision, "standard", 2_000).await;
    let ids: Vec<String> = store
        .compute_jobs_of_file(file.file_id)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(ids, vec![b.id, a.id]);
}

#[test]
fn states_and_derived_kinds_round_trip() {
    for s in ComputeJobState::ALL {
        assert_eq!(ComputeJobState::parse(s.as_str()), Some(s));
    }
    for k in ComputeOutputKind::ALL {
        let d = DerivedKind::ComputeOutput(k);
        assert_eq!(DerivedKind::parse(d.as_str()), Some(d));
    }
    assert_eq!(
        DerivedKind::parse("subtitles_vtt"),
        Some(DerivedKind::ComputeOutput(ComputeOutputKind::Vtt))
    );
}
