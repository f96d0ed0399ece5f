//! Compute jobs on a real SQLite file: claims gated by capability, tier, file and
//! encode (with the encoding node's head start), racing claims and asks, lookups and
//! tenant isolation. The lifecycle after a claim is in `lifecycle_tests.rs`.

use std::str::FromStr;

use serde_json::json;
use zib_proto::compute::{ComputeKind, ComputeOutputKind, ComputeStatus};
use zib_proto::{BlobId, FileId, NodeId};

use super::*;
use crate::{
    DerivedKind, FilePhase, FileRow, JobCreation, MetaError, NewEncodingJob, NewWebhookEvent,
    ShardRow, Tenant,
};

#[path = "lifecycle_tests.rs"]
mod lifecycle;

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
        part_size: 0,
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
async fn an_encode_replaced_after_it_completed_still_releases_its_runs() {
    let (_d, store, tenant) = open().await;
    let file = video(&store, &tenant).await;
    let enc = with_encode(
        &store,
        &file,
        vec![ask(&file, ComputeKind::Vision, "standard")],
    )
    .await;
    // A forced re-encode went live: the old one is cancelled after it completed.
    encode_ends(&store, &enc, "local_complete", 40_000).await;
    sqlx::query(
        "UPDATE encoding_jobs SET phase = 'cancelled', phase_updated_at = 45000 WHERE id = $1",
    )
    .bind(&enc)
    .execute(&store.pool)
    .await
    .unwrap();
    assert!(
        claim(&store, "ZB-NODE02", &ALL_AI, None, "a", 40_000 + GRACE - 1)
            .await
            .is_none()
    );
    assert!(
        claim(&store, "ZB-NODE02", &ALL_AI, None, "b", 40_000 + GRACE)
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
async fn a_second_ask_while_one_is_in_flight_gets_the_first() {
    let (_d, store, tenant) = open().await;
    let file = video(&store, &tenant).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        let new = ask(&file, ComputeKind::Transcription, "fastest");
        tasks.push(tokio::spawn(async move {
            store.submit_compute_job(new, 1_000).await.unwrap()
        }));
    }
    let mut created = Vec::new();
    let mut answered = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            ComputeSubmission::Created(j) => created.push(j.id),
            ComputeSubmission::InFlight(j) => answered.push(j.id),
        }
    }
    assert_eq!(created.len(), 1, "racing asks create one job");
    assert!(answered.iter().all(|id| *id == created[0]));
    // Another tier is another job; once the first ended, a new ask runs again.
    let hq = store
        .submit_compute_job(ask(&file, ComputeKind::Transcription, "recommended"), 1_001)
        .await
        .unwrap();
    assert!(matches!(hq, ComputeSubmission::Created(_)));
    store
        .cancel_compute_jobs_of_file(file.file_id, "gone", 2_000)
        .await
        .unwrap();
    let again = store
        .submit_compute_job(ask(&file, ComputeKind::Transcription, "fastest"), 3_000)
        .await
        .unwrap();
    assert!(matches!(again, ComputeSubmission::Created(j) if j.id != created[0]));
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
