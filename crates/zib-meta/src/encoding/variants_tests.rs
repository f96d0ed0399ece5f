//! Aspect-variant jobs on a real SQLite file: created with their main job in one
//! transaction, backfilled idempotently, cancelled with their parent, silent until
//! they complete.

use std::str::FromStr;

use serde_json::{json, Value};
use zib_proto::{BlobId, NodeId};

use super::*;
use crate::encoding::{JobCreation, JobEvent, NewEncodingJob, RetryPolicy};
use crate::{FileRow, NewWebhookEvent, ShardRow, Tenant};

async fn open() -> (tempfile::TempDir, Store, Tenant) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("meta.db"))
        .await
        .unwrap();
    let tenant = store.create_tenant("t", "AK", "x").await.unwrap();
    (dir, store, tenant)
}

/// A distributed upload of `key`.
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
        data_shards: 1,
        parity_shards: 0,
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
    let shard = ShardRow {
        file_id: file.file_id,
        segment: 0,
        index: 0,
        node_id: NodeId::from_str("ZB-NODE01").unwrap(),
        blob_id: BlobId::new_random(),
        size: 116,
        blake3: vec![0; 32],
    };
    store
        .complete_distribution(file.file_id, &[shard], 2_000, "superseded")
        .await
        .unwrap();
    file
}

fn variant() -> NewVariantJob {
    let id = uuid::Uuid::new_v4().to_string();
    NewVariantJob {
        id,
        aspect_ratio: "9:16".into(),
        wrapped_hls_key: vec![5; 60],
        stream_file: NewStreamFile {
            file_id: FileId::new_random(),
            wrapped_dek: vec![3; 60],
            nonce_prefix: vec![4; 7],
        },
    }
}

fn main_job(file: &FileRow, variants: Vec<NewVariantJob>) -> NewEncodingJob {
    NewEncodingJob {
        id: uuid::Uuid::new_v4().to_string(),
        file_id: file.file_id,
        tenant_id: file.tenant_id.clone(),
        options: json!({"thumbnails": false, "aspect_variants": ["9:16"]}),
        wrapped_hls_key: vec![9; 60],
        webhook: None,
        detail: "waiting".into(),
        variants,
        compute: vec![],
    }
}

fn queued(job: &EncodingJobRow) -> NewWebhookEvent {
    NewWebhookEvent {
        tenant_id: job.tenant_id.clone(),
        event_type: "encoding.queued".into(),
        file_id: Some(job.file_id),
        job_id: Some(job.id.clone()),
        payload: json!({"event": "encoding.queued"}),
    }
}

/// The server's rule: a variant job announces only its completion; a main job's
/// completion names how many children it saw.
fn build(
    job: &EncodingJobRow,
    event: JobEvent,
    children: &[EncodingJobRow],
) -> Option<NewWebhookEvent> {
    if job.is_variant() && event != JobEvent::Complete {
        return None;
    }
    Some(NewWebhookEvent {
        tenant_id: job.tenant_id.clone(),
        event_type: format!("{event:?}"),
        file_id: Some(job.file_id),
        job_id: Some(job.id.clone()),
        payload: json!({"children": children.len()}),
    })
}

async fn create(store: &Store, new: NewEncodingJob, force: bool) -> EncodingJobRow {
    match store
        .create_encoding_job(new, force, 5_000, queued)
        .await
        .unwrap()
    {
        JobCreation::Created(job) => job,
        other => panic!("not created: {other:?}"),
    }
}

async fn job(store: &Store, id: &str) -> EncodingJobRow {
    store.encoding_job(id).await.unwrap().unwrap()
}

/// Marks `job_id` encoded and live for its file, as `done` leaves it.
async fn encoded(store: &Store, job_id: &str) {
    let j = job(store, job_id).await;
    sqlx::query("UPDATE encoding_jobs SET phase = 'local_complete' WHERE id = $1")
        .bind(job_id)
        .execute(&store.pool)
        .await
        .unwrap();
    let mut conn = store.pool.acquire().await.unwrap();
    crate::encoding::jobs::set_live(&mut conn, j.file_id, job_id, 6_000)
        .await
        .unwrap();
}

async fn set_phase(store: &Store, job_id: &str, phase: JobPhase) {
    sqlx::query("UPDATE encoding_jobs SET phase = $1 WHERE id = $2")
        .bind(phase.as_str())
        .bind(job_id)
        .execute(&store.pool)
        .await
        .unwrap();
}

async fn events(store: &Store) -> Vec<(String, String)> {
    sqlx::query_as("SELECT event_type, job_id FROM webhook_events WHERE event_type NOT LIKE 'file.%' ORDER BY rowid")
        .fetch_all(&store.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_main_job_with_variants_creates_its_children_and_their_stream_file() {
    let (_d, store, tenant) = open().await;
    let file = distributed(&store, &tenant, "videos/a.mp4").await;
    let v = variant();
    let main = create(&store, main_job(&file, vec![v.clone()]), false).await;

    let children = store.variant_jobs(&main.id).await.unwrap();
    assert_eq!(children.len(), 1);
    let child = &children[0];
    assert_eq!(child.id, v.id);
    assert_eq!(child.file_id, v.stream_file.file_id);
    assert_eq!(child.source_file(), file.file_id);
    assert_eq!(child.parent_job_id.as_deref(), Some(main.id.as_str()));
    assert_eq!(child.aspect_ratio.as_deref(), Some("9:16"));
    assert_eq!(child.phase, JobPhase::Queued);
    assert_eq!(
        child.options, main.options,
        "the thumbnails opt-out carries over"
    );
    assert_eq!(child.wrapped_hls_key, v.wrapped_hls_key);
    assert!(
        child.created_at > main.created_at,
        "the parent is claimed first"
    );

    // The stream file: derived, readable, no bytes, never an object.
    let (kind, from, key, phase, size): (String, String, String, String, i64) = sqlx::query_as(
        "SELECT derived_kind, derived_from, object_key, phase, size FROM files WHERE file_id = $1",
    )
    .bind(child.file_id.to_string())
    .fetch_one(&store.pool)
    .await
    .unwrap();
    assert_eq!(kind, ASPECT_VARIANT_KIND);
    assert_eq!(from, file.file_id.to_string());
    assert_eq!(key, "videos/a.mp4/.zib/variant-9x16");
    assert_eq!(phase, "distributed");
    assert_eq!(size, 0);
    let objects: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM objects WHERE file_id = $1")
        .bind(child.file_id.to_string())
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(objects, 0);

    // Only the main job announced itself; children are not the tenant's uploads.
    assert_eq!(
        events(&store).await,
        [("encoding.queued".into(), main.id.clone())]
    );
    let listed = store.my_encoding_jobs(&tenant.id, false).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0.id, main.id);

    // A request answered by the job in flight creates no child.
    let again = store
        .create_encoding_job(main_job(&file, vec![variant()]), true, 5_500, queued)
        .await
        .unwrap();
    assert!(matches!(again, JobCreation::InFlight(j) if j.id == main.id));
    assert_eq!(store.variant_jobs(&main.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_forced_re_encode_reuses_the_stream_file_and_replaces_a_child_in_flight() {
    let (_d, store, tenant) = open().await;
    let file = distributed(&store, &tenant, "a.mp4").await;
    let first = create(&store, main_job(&file, vec![variant()]), false).await;
    let old_child = store.variant_jobs(&first.id).await.unwrap().remove(0);
    encoded(&store, &first.id).await;

    let second = create(&store, main_job(&file, vec![variant()]), true).await;
    let new_child = store.variant_jobs(&second.id).await.unwrap().remove(0);
    assert_eq!(
        new_child.file_id, old_child.file_id,
        "the variant's URL is stable"
    );
    assert_eq!(new_child.parent_job_id.as_deref(), Some(second.id.as_str()));
    let old = job(&store, &old_child.id).await;
    assert_eq!(old.phase, JobPhase::Cancelled);
    assert!(new_child.created_at > old.created_at);
}

#[tokio::test]
async fn a_backfill_needs_an_encode_and_answers_a_live_child_again() {
    let (_d, store, tenant) = open().await;
    let file = distributed(&store, &tenant, "a.mp4").await;
    let backfill = |v: NewVariantJob| {
        let store = &store;
        async move {
            store
                .create_variant_jobs(file.file_id, vec![v], None, "waiting", 7_000)
                .await
                .unwrap()
        }
    };
    assert_eq!(backfill(variant()).await, VariantCreation::NotEncoded);
    let main = create(&store, main_job(&file, vec![]), false).await;
    assert_eq!(
        backfill(variant()).await,
        VariantCreation::NotEncoded,
        "a queued main job is not an encode to add to"
    );
    encoded(&store, &main.id).await;

    let v = variant();
    let VariantCreation::Queued { parent, children } = backfill(v.clone()).await else {
        panic!("not queued");
    };
    assert_eq!(parent.id, main.id);
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].id, v.id);
    assert_eq!(children[0].parent_job_id.as_deref(), Some(main.id.as_str()));
    assert_eq!(children[0].source_file(), file.file_id);
    let stream = children[0].file_id;

    // In flight, then encoded: the same child is answered, nothing is created.
    for phase in [JobPhase::Encoding, JobPhase::LocalComplete] {
        set_phase(&store, &v.id, phase).await;
        let VariantCreation::Queued { children, .. } = backfill(variant()).await else {
            panic!("not queued");
        };
        assert_eq!(children[0].id, v.id);
        assert_eq!(store.variant_jobs(&main.id).await.unwrap().len(), 1);
    }
    // A failed child is replaced by a new one on the same stream file.
    set_phase(&store, &v.id, JobPhase::FailedUserAction).await;
    let VariantCreation::Queued { children, .. } = backfill(variant()).await else {
        panic!("not queued");
    };
    assert_ne!(children[0].id, v.id);
    assert_eq!(children[0].file_id, stream);
    assert_eq!(store.variant_jobs(&main.id).await.unwrap().len(), 2);
    // No event for any of it: only the main job's encoding.queued.
    assert_eq!(events(&store).await.len(), 1);

    // A file that is not a readable upload.
    let missing = store
        .create_variant_jobs(FileId::new_random(), vec![variant()], None, "w", 7_000)
        .await
        .unwrap();
    assert_eq!(missing, VariantCreation::FileNotReady(None));
}

#[tokio::test]
async fn cancelling_a_main_job_cancels_its_children_in_flight_only() {
    let (_d, store, tenant) = open().await;
    let file = distributed(&store, &tenant, "a.mp4").await;
    let main = create(&store, main_job(&file, vec![variant()]), false).await;
    let queued_child = store.variant_jobs(&main.id).await.unwrap().remove(0);
    // A second ratio's child, already encoded (stands in for an earlier backfill).
    let mut conn = store.pool.acquire().await.unwrap();
    let mut encoded_child = variant();
    encoded_child.aspect_ratio = "1:1".into();
    let made = insert_children(&mut conn, &main, &[encoded_child], None, "w", 5_100)
        .await
        .unwrap();
    drop(conn);
    set_phase(&store, &made[0].id, JobPhase::LocalComplete).await;

    let was = store
        .cancel_encoding_job(&main.id, "cancelled by the tenant", 8_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(was.id, main.id);
    let child = job(&store, &queued_child.id).await;
    assert_eq!(child.phase, JobPhase::Cancelled);
    assert_eq!(
        child.cancelled_reason.as_deref(),
        Some("cancelled by the tenant")
    );
    assert_eq!(
        job(&store, &made[0].id).await.phase,
        JobPhase::LocalComplete
    );
    // The cancelled child can no longer be claimed.
    let node = NodeId::from_str("ZB-ENC001").unwrap();
    let claimed = store
        .claim_encoding_job(&node, "h", 99_000, 9_000, &build)
        .await
        .unwrap();
    assert_eq!(claimed, None);
}

#[tokio::test]
async fn a_child_sends_no_event_before_it_completes() {
    let (_d, store, tenant) = open().await;
    let file = distributed(&store, &tenant, "a.mp4").await;
    let main = create(&store, main_job(&file, vec![variant()]), false).await;
    let child = store.variant_jobs(&main.id).await.unwrap().remove(0);
    let node = NodeId::from_str("ZB-ENC001").unwrap();
    let policy = RetryPolicy {
        budget: 0,
        backoff_base_ms: 1_000,
        backoff_cap_ms: 1_000,
    };

    // Oldest first: the main job, then its child.
    let first = store
        .claim_encoding_job(&node, "h1", 99_000, 9_000, &build)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.id, main.id);
    let second = store
        .claim_encoding_job(&node, "h2", 99_000, 9_000, &build)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.id, child.id);
    // The child's permanent failure: no encoding.failed, and the parent is untouched.
    store
        .fail_encoding_job(&child.id, "h2", "crop failed", true, policy, 9_500, &build)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        job(&store, &child.id).await.phase,
        JobPhase::FailedUserAction
    );
    assert_eq!(job(&store, &main.id).await.phase, JobPhase::Encoding);
    let sent: Vec<String> = events(&store).await.into_iter().map(|(_, j)| j).collect();
    assert!(
        sent.iter().all(|j| j == &main.id),
        "only the main job's events: {sent:?}"
    );
    assert_eq!(sent.len(), 2, "encoding.queued and encoding.started");
}

/// Drives a claimed job (token `tok`) through one published rung to `done`.
async fn encode(store: &Store, job_id: &str, token: &str, at: i64) {
    let enc = NodeId::from_str("ZB-ENC001").unwrap();
    let rung = crate::encoding::NewRendition {
        name: "360p".into(),
        width: 640,
        height: 360,
        codecs: "avc1.64001f".into(),
        frame_rate: 30.0,
    };
    assert!(store
        .record_job_probe(job_id, token, &json!({"duration_secs": 4.0}), &[rung], at)
        .await
        .unwrap());
    let segment = crate::encoding::NewSegment {
        rendition: "360p".into(),
        seq: 0,
        duration_ms: 4_000,
        size: 1_000,
        blake3: vec![1; 32],
        iv: vec![0; 16],
        blob_id: BlobId::new_random(),
    };
    store
        .record_segment(job_id, &enc, token, &segment, at)
        .await
        .unwrap()
        .unwrap();
    store
        .publish_rendition(job_id, token, "360p", 1, at)
        .await
        .unwrap()
        .unwrap();
    store
        .complete_encoding_job(job_id, token, "replaced", at, &build)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_main_jobs_completion_sees_its_children_and_a_child_announces_its_own() {
    let (_d, store, tenant) = open().await;
    let file = distributed(&store, &tenant, "a.mp4").await;
    let main = create(&store, main_job(&file, vec![variant()]), false).await;
    let child = store.variant_jobs(&main.id).await.unwrap().remove(0);
    let node = NodeId::from_str("ZB-ENC001").unwrap();
    let claimed = store
        .claim_encoding_job(&node, "m", 99_000, 9_000, &build)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, main.id);
    encode(&store, &main.id, "m", 9_100).await;
    let claimed = store
        .claim_encoding_job(&node, "c", 99_000, 9_200, &build)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, child.id);
    encode(&store, &child.id, "c", 9_300).await;

    // The child is live on its own stream file; the source keeps the main job.
    assert_eq!(
        store.live_encoding_job_id(child.file_id).await.unwrap(),
        Some(child.id.clone())
    );
    assert_eq!(
        store.live_encoding_job_id(file.file_id).await.unwrap(),
        Some(main.id.clone())
    );
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT event_type, job_id, payload FROM webhook_events \
         WHERE event_type = 'Complete' ORDER BY rowid",
    )
    .fetch_all(&store.pool)
    .await
    .unwrap();
    let completes: Vec<(String, Value)> = rows
        .into_iter()
        .map(|(_, job, payload)| (job, serde_json::from_str(&payload).unwrap()))
        .collect();
    assert_eq!(
        completes,
        [
            (main.id.clone(), json!({"children": 1})),
            (child.id.clone(), json!({"children": 0})),
        ]
    );
}
