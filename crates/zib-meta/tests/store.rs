//! The store on real SQLite files: what the server does, and what it then sees.

use std::str::FromStr;

use tempfile::TempDir;
use zib_meta::{Distribution, FilePhase, FileRow, MetaError, NodeRow, ShardRow, Store, Tenant};
use zib_proto::node_rpc::NodeAction;
use zib_proto::{BlobId, FileId, NodeId};

async fn open() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("meta.db"))
        .await
        .unwrap();
    (dir, store)
}

fn node(name: &str) -> NodeId {
    NodeId::from_str(name).unwrap()
}

async fn tenant(store: &Store, access_key: &str) -> Tenant {
    store
        .create_tenant("Acme", access_key, "deadbeef")
        .await
        .unwrap()
}

async fn new_file(store: &Store, tenant: &Tenant, bucket: &str, key: &str, size: u64) -> FileRow {
    let bucket = store.ensure_bucket(&tenant.id, bucket).await.unwrap();
    let file = FileRow {
        file_id: FileId::new_random(),
        tenant_id: tenant.id.clone(),
        bucket_id: bucket.id,
        bucket: bucket.name.clone(),
        object_key: key.to_string(),
        size,
        ciphertext_size: size + 16,
        content_type: "video/mp4".to_string(),
        phase: FilePhase::Pending,
        cancelled_reason: None,
        wrapped_dek: vec![1, 2, 3, 4],
        chunk_size: 65536,
        nonce_prefix: vec![7; 7],
        data_shards: 2,
        parity_shards: 1,
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
    file
}

/// One segment of 2+1 shards on three nodes.
fn shards(file_id: FileId) -> Vec<ShardRow> {
    ["ZB-NODE01", "ZB-NODE02", "ZB-ORIG01"]
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

async fn distribute(store: &Store, file: &FileRow, now: i64) -> (Vec<ShardRow>, Option<FileId>) {
    assert!(store.mark_uploading(file.file_id).await.unwrap());
    let shards = shards(file.file_id);
    let outcome = store
        .complete_distribution(file.file_id, &shards, now, "superseded")
        .await
        .unwrap();
    let Distribution::Current { superseded } = outcome else {
        panic!("unexpected {outcome:?}");
    };
    (shards, superseded)
}

#[tokio::test]
async fn tenants_are_found_by_access_key_which_is_unique() {
    let (_dir, store) = open().await;
    let acme = tenant(&store, "AK1").await;
    assert!(acme.id.starts_with("ten_"));
    assert_eq!(acme.id.len(), 24);
    assert!(acme.id[4..].chars().all(|c| c.is_ascii_alphanumeric()));

    assert_eq!(
        store.tenant_by_access_key("AK1").await.unwrap(),
        Some(acme.clone())
    );
    assert_eq!(store.tenant_by_access_key("AK2").await.unwrap(), None);

    let err = store.create_tenant("Other", "AK1", "x").await.unwrap_err();
    assert!(matches!(err, MetaError::Conflict(_)), "{err}");

    let other = tenant(&store, "AK2").await;
    let listed = store.list_tenants().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&acme) && listed.contains(&other));
}

#[tokio::test]
async fn ensure_bucket_is_idempotent_and_per_tenant() {
    let (_dir, store) = open().await;
    let a = tenant(&store, "AK1").await;
    let b = tenant(&store, "AK2").await;
    let first = store.ensure_bucket(&a.id, "media").await.unwrap();
    let again = store.ensure_bucket(&a.id, "media").await.unwrap();
    assert_eq!(first, again);
    let theirs = store.ensure_bucket(&b.id, "media").await.unwrap();
    assert_ne!(first.id, theirs.id);
    assert_eq!(store.bucket(&a.id, "media").await.unwrap(), Some(first));
    assert_eq!(store.bucket(&a.id, "none").await.unwrap(), None);
}

#[tokio::test]
async fn a_distributed_file_is_visible_with_its_shards_and_object() {
    let (_dir, store) = open().await;
    let acme = tenant(&store, "AK1").await;
    let file = new_file(&store, &acme, "media", "clips/a.mp4", 5000).await;

    let stored = store.file(file.file_id).await.unwrap().unwrap();
    assert_eq!(stored, file);
    assert_eq!(
        store
            .file_by_upload_blob(file.upload_blob_id)
            .await
            .unwrap(),
        Some(file.clone())
    );
    // Not current until distributed.
    assert_eq!(
        store
            .object(&acme.id, "media", "clips/a.mp4")
            .await
            .unwrap(),
        None
    );

    let (shards, superseded) = distribute(&store, &file, 2_000).await;
    assert_eq!(superseded, None);
    assert!(!store.mark_uploading(file.file_id).await.unwrap());

    let done = store.file(file.file_id).await.unwrap().unwrap();
    assert_eq!(done.phase, FilePhase::Distributed);
    assert_eq!(done.distributed_at, Some(2_000));
    assert_eq!(store.shards_for_file(file.file_id).await.unwrap(), shards);
    assert_eq!(
        store
            .object(&acme.id, "media", "clips/a.mp4")
            .await
            .unwrap(),
        Some(done.clone())
    );
    let listed = store
        .list_objects(&acme.id, "media", "clips/")
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, "clips/a.mp4");
    assert_eq!(listed[0].file, done);

    // A second completion is refused and changes nothing.
    let err = store
        .complete_distribution(file.file_id, &[], 3_000, "x")
        .await
        .unwrap_err();
    assert!(matches!(err, MetaError::Conflict(_)), "{err}");
    assert_eq!(store.file(file.file_id).await.unwrap(), Some(done));
}

#[tokio::test]
async fn a_reupload_supersedes_and_cancels_the_previous_file() {
    let (_dir, store) = open().await;
    let acme = tenant(&store, "AK1").await;
    let old = new_file(&store, &acme, "media", "a.mp4", 100).await;
    distribute(&store, &old, 2_000).await;
    let new = new_file(&store, &acme, "media", "a.mp4", 200).await;
    let (_, superseded) = distribute(&store, &new, 3_000).await;
    assert_eq!(superseded, Some(old.file_id));

    let old_now = store.file(old.file_id).await.unwrap().unwrap();
    assert_eq!(old_now.phase, FilePhase::Cancelled);
    assert_eq!(old_now.cancelled_reason.as_deref(), Some("superseded"));
    let current = store
        .object(&acme.id, "media", "a.mp4")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.file_id, new.file_id);
    assert_eq!(
        store
            .list_objects(&acme.id, "media", "")
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn another_tenants_file_behaves_like_a_missing_one() {
    let (_dir, store) = open().await;
    let acme = tenant(&store, "AK1").await;
    let mallory = tenant(&store, "AK2").await;
    let file = new_file(&store, &acme, "media", "a.mp4", 100).await;
    distribute(&store, &file, 2_000).await;

    assert_eq!(
        store
            .file_for_tenant(&mallory.id, file.file_id)
            .await
            .unwrap(),
        None
    );
    assert!(store
        .file_for_tenant(&acme.id, file.file_id)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store
            .delete_file(&mallory.id, file.file_id, 3_000)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.object(&mallory.id, "media", "a.mp4").await.unwrap(),
        None
    );
    assert!(store
        .list_objects(&mallory.id, "media", "")
        .await
        .unwrap()
        .is_empty());

    // Nothing was deleted or queued.
    assert!(store.file(file.file_id).await.unwrap().is_some());
    assert_eq!(store.shards_for_file(file.file_id).await.unwrap().len(), 3);
    assert!(store
        .object(&acme.id, "media", "a.mp4")
        .await
        .unwrap()
        .is_some());
    for n in ["ZB-NODE01", "ZB-NODE02", "ZB-ORIG01"] {
        assert!(store.pending_commands(&node(n)).await.unwrap().is_empty());
    }
    assert_eq!(
        store
            .delete_file(&acme.id, FileId::new_random(), 3_000)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn delete_removes_rows_and_tells_every_holder() {
    let (_dir, store) = open().await;
    let acme = tenant(&store, "AK1").await;
    let file = new_file(&store, &acme, "media", "a.mp4", 100).await;
    let (shards, _) = distribute(&store, &file, 2_000).await;

    let deleted = store
        .delete_file(&acme.id, file.file_id, 5_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deleted.file.file_id, file.file_id);
    assert_eq!(deleted.shard_rows, 3);
    assert_eq!(deleted.blobs.len(), 4);
    assert!(deleted
        .blobs
        .contains(&(file.originator.clone(), file.upload_blob_id)));

    assert_eq!(store.file(file.file_id).await.unwrap(), None);
    assert!(store
        .shards_for_file(file.file_id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.object(&acme.id, "media", "a.mp4").await.unwrap(),
        None
    );
    assert_eq!(
        store
            .delete_file(&acme.id, file.file_id, 6_000)
            .await
            .unwrap(),
        None
    );

    // One command per holder; the originator's carries its shard and the upload blob.
    let expect = [
        ("ZB-NODE01", vec![shards[0].blob_id]),
        ("ZB-NODE02", vec![shards[1].blob_id]),
        ("ZB-ORIG01", vec![shards[2].blob_id, file.upload_blob_id]),
    ];
    for (n, blob_ids) in expect {
        let pending = store.pending_commands(&node(n)).await.unwrap();
        assert_eq!(pending.len(), 1, "{n}");
        assert_eq!(pending[0].created_at, 5_000);
        let action: NodeAction = serde_json::from_value(pending[0].action.clone()).unwrap();
        assert_eq!(
            action,
            NodeAction::DeleteBlobs {
                blob_ids: blob_ids.clone()
            }
        );
        assert_eq!(
            pending[0].action,
            serde_json::json!({"action": "delete_blobs", "blob_ids": blob_ids})
        );
    }
}

#[tokio::test]
async fn deleting_a_superseded_file_keeps_the_current_object() {
    let (_dir, store) = open().await;
    let acme = tenant(&store, "AK1").await;
    let old = new_file(&store, &acme, "media", "a.mp4", 100).await;
    distribute(&store, &old, 2_000).await;
    let new = new_file(&store, &acme, "media", "a.mp4", 200).await;
    distribute(&store, &new, 3_000).await;

    store
        .delete_file(&acme.id, old.file_id, 4_000)
        .await
        .unwrap()
        .unwrap();
    let current = store
        .object(&acme.id, "media", "a.mp4")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.file_id, new.file_id);
}

#[tokio::test]
async fn bucket_stats_count_readable_current_objects() {
    let (_dir, store) = open().await;
    let acme = tenant(&store, "AK1").await;
    let other = tenant(&store, "AK2").await;
    store.ensure_bucket(&acme.id, "empty").await.unwrap();
    let a = new_file(&store, &acme, "media", "a", 100).await;
    distribute(&store, &a, 2_000).await;
    let b = new_file(&store, &acme, "media", "b", 250).await;
    distribute(&store, &b, 2_000).await;
    // Superseded: only the new size counts.
    let b2 = new_file(&store, &acme, "media", "b", 300).await;
    distribute(&store, &b2, 3_000).await;
    // Still uploading: not counted.
    new_file(&store, &acme, "media", "c", 1_000).await;
    let theirs = new_file(&store, &other, "media", "z", 77).await;
    distribute(&store, &theirs, 2_000).await;

    let stats = store.list_bucket_stats(&acme.id).await.unwrap();
    let summary: Vec<_> = stats
        .iter()
        .map(|s| (s.name.as_str(), s.object_count, s.total_bytes))
        .collect();
    assert_eq!(summary, vec![("empty", 0, 0), ("media", 2, 400)]);

    store.mark_failed(a.file_id, "lost shards").await.unwrap();
    let failed = store.file(a.file_id).await.unwrap().unwrap();
    assert_eq!(failed.phase, FilePhase::Failed);
    assert_eq!(failed.cancelled_reason.as_deref(), Some("lost shards"));
    let stats = store.list_bucket_stats(&acme.id).await.unwrap();
    assert_eq!((stats[1].object_count, stats[1].total_bytes), (1, 300));
}

#[tokio::test]
async fn list_objects_matches_prefixes_exactly() {
    let (_dir, store) = open().await;
    let acme = tenant(&store, "AK1").await;
    for key in [
        "a%b/1", "axb/2", "A%b/3", "a_c", "abc", "a%b", "b", "café/1", "cafe",
    ] {
        let f = new_file(&store, &acme, "media", key, 1).await;
        distribute(&store, &f, 2_000).await;
    }
    let keys = |rows: Vec<zib_meta::ObjectRow>| rows.into_iter().map(|r| r.key).collect::<Vec<_>>();
    assert_eq!(
        keys(store.list_objects(&acme.id, "media", "a%b").await.unwrap()),
        ["a%b", "a%b/1"]
    );
    assert_eq!(
        keys(store.list_objects(&acme.id, "media", "a_").await.unwrap()),
        ["a_c"]
    );
    assert_eq!(
        keys(store.list_objects(&acme.id, "media", "").await.unwrap()),
        ["A%b/3", "a%b", "a%b/1", "a_c", "abc", "axb/2", "b", "cafe", "café/1"]
    );
    assert_eq!(
        keys(store.list_objects(&acme.id, "media", "café").await.unwrap()),
        ["café/1"]
    );
    assert_eq!(
        keys(store.list_objects(&acme.id, "media", "caf").await.unwrap()),
        ["cafe", "café/1"]
    );
    assert!(store
        .list_objects(&acme.id, "other", "")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn s3_pages_start_after_or_at_their_bound_within_the_prefix() {
    use zib_meta::ListFrom;
    let (_dir, store) = open().await;
    let acme = tenant(&store, "AK1").await;
    for key in ["a/1", "a/2", "a/3", "b/1"] {
        let f = new_file(&store, &acme, "media", key, 1).await;
        distribute(&store, &f, 2_000).await;
    }
    let page = |from: ListFrom, limit: u32| {
        let store = store.clone();
        let tenant_id = acme.id.clone();
        async move {
            store
                .list_s3_objects_page(&tenant_id, "media", "a/", &from, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.key)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        page(ListFrom::AtOrAfter(String::new()), 10).await,
        ["a/1", "a/2", "a/3"]
    );
    assert_eq!(
        page(ListFrom::After("a/1".into()), 10).await,
        ["a/2", "a/3"]
    );
    assert_eq!(page(ListFrom::AtOrAfter("a/2".into()), 1).await, ["a/2"]);
    assert!(page(ListFrom::After("a/3".into()), 10).await.is_empty());
}

fn node_row(id: &str, now: i64) -> NodeRow {
    NodeRow {
        node_id: node(id),
        public_url: format!("http://{id}.local"),
        capacity_bytes: 1 << 40,
        free_bytes: 1 << 39,
        used_bytes: 0,
        zone: Some("eu-1".to_string()),
        capabilities: vec!["encode".to_string()],
        last_heartbeat_at: now,
        registered_at: now,
        draining_since: None,
    }
}

#[tokio::test]
async fn nodes_register_heartbeat_and_refresh() {
    let (_dir, store) = open().await;
    let n1 = node_row("ZB-NODE01", 1_000);
    assert!(!store.heartbeat(&n1.node_id, 1, 2, 1_500).await.unwrap());
    store.upsert_node(&n1).await.unwrap();
    assert_eq!(store.node(&n1.node_id).await.unwrap(), Some(n1.clone()));

    assert!(store.heartbeat(&n1.node_id, 10, 20, 2_000).await.unwrap());
    let seen = store.node(&n1.node_id).await.unwrap().unwrap();
    assert_eq!(
        (seen.free_bytes, seen.used_bytes, seen.last_heartbeat_at),
        (10, 20, 2_000)
    );

    // Re-registering refreshes everything but the first registration time.
    let mut again = node_row("ZB-NODE01", 3_000);
    again.capabilities = vec![];
    again.zone = None;
    store.upsert_node(&again).await.unwrap();
    let seen = store.node(&n1.node_id).await.unwrap().unwrap();
    assert_eq!(seen.registered_at, 1_000);
    assert_eq!(seen.last_heartbeat_at, 3_000);
    assert!(seen.capabilities.is_empty() && seen.zone.is_none());

    store
        .upsert_node(&node_row("ZB-NODE02", 1_000))
        .await
        .unwrap();
    let all = store.list_nodes().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(store.node(&node("ZB-NONE00")).await.unwrap(), None);
}

#[tokio::test]
async fn commands_stay_pending_until_their_node_acks_them() {
    let (_dir, store) = open().await;
    let n1 = node("ZB-NODE01");
    let n2 = node("ZB-NODE02");
    let first = store
        .enqueue_command(
            &n1,
            &serde_json::json!({"action": "delete_blobs", "blob_ids": []}),
            10,
        )
        .await
        .unwrap();
    let second = store
        .enqueue_command(&n1, &serde_json::json!({"action": "x"}), 20)
        .await
        .unwrap();
    let theirs = store
        .enqueue_command(&n2, &serde_json::json!({"action": "y"}), 30)
        .await
        .unwrap();

    let pending = store.pending_commands(&n1).await.unwrap();
    assert_eq!(
        pending.iter().map(|c| c.id).collect::<Vec<_>>(),
        [first, second]
    );
    assert_eq!(pending[1].action, serde_json::json!({"action": "x"}));
    assert_eq!(pending[0].node_id, n1);

    // A node cannot acknowledge another node's command.
    store
        .ack_commands(&n1, &[first, theirs, 999], 40)
        .await
        .unwrap();
    let pending = store.pending_commands(&n1).await.unwrap();
    assert_eq!(pending.iter().map(|c| c.id).collect::<Vec<_>>(), [second]);
    assert_eq!(store.pending_commands(&n2).await.unwrap().len(), 1);

    store
        .ack_commands(&n1, &[second, second], 50)
        .await
        .unwrap();
    store.ack_commands(&n1, &[], 50).await.unwrap();
    assert!(store.pending_commands(&n1).await.unwrap().is_empty());
}

#[tokio::test]
async fn reopening_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let (acme, file) = {
        let store = Store::open_sqlite(&path).await.unwrap();
        assert!(
            dir.path().join("meta.db-wal").exists(),
            "WAL journal expected"
        );
        let acme = tenant(&store, "AK1").await;
        let file = new_file(&store, &acme, "media", "a.mp4", 100).await;
        distribute(&store, &file, 2_000).await;
        (acme, file)
    };
    let store = Store::open_sqlite(&path).await.unwrap();
    assert_eq!(
        store.tenant_by_access_key("AK1").await.unwrap(),
        Some(acme.clone())
    );
    let current = store
        .object(&acme.id, "media", "a.mp4")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.file_id, file.file_id);
    assert_eq!(store.shards_for_file(file.file_id).await.unwrap().len(), 3);
}

#[tokio::test]
async fn duplicate_ids_are_conflicts() {
    let (_dir, store) = open().await;
    let acme = tenant(&store, "AK1").await;
    let file = new_file(&store, &acme, "media", "a.mp4", 100).await;
    let err = store.insert_file(&file).await.unwrap_err();
    assert!(matches!(err, MetaError::Conflict(_)), "{err}");
    let mut same_blob = file.clone();
    same_blob.file_id = FileId::new_random();
    let err = store.insert_file(&same_blob).await.unwrap_err();
    assert!(matches!(err, MetaError::Conflict(_)), "{err}");
}

#[tokio::test]
async fn concurrent_writers_wait_rather_than_fail() {
    let (_dir, store) = open().await;
    let acme = tenant(&store, "AK1").await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        let acme = acme.clone();
        tasks.push(tokio::spawn(async move {
            let f = new_file(&store, &acme, "media", &format!("k{i}"), 10).await;
            distribute(&store, &f, 2_000).await;
            store
                .delete_file(&acme.id, f.file_id, 3_000)
                .await
                .unwrap()
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = store.list_bucket_stats(&acme.id).await.unwrap();
    assert_eq!(stats[0].object_count, 0);
}

#[tokio::test]
async fn an_older_registration_finishing_late_is_the_superseded_one() {
    let (_dir, store) = open().await;
    let acme = tenant(&store, "AK1").await;
    let older = new_file(&store, &acme, "media", "a.mp4", 100).await;
    let mut newer = new_file(&store, &acme, "media", "b.mp4", 100).await;
    // Re-register the newer one for the same key, later in time.
    store.delete_file(&acme.id, newer.file_id, 1).await.unwrap();
    newer.file_id = FileId::new_random();
    newer.upload_blob_id = BlobId::new_random();
    newer.object_key = "a.mp4".into();
    newer.created_at = 5_000;
    store.insert_file(&newer).await.unwrap();
    distribute(&store, &newer, 6_000).await;

    assert!(store.mark_uploading(older.file_id).await.unwrap());
    let outcome = store
        .complete_distribution(older.file_id, &shards(older.file_id), 7_000, "superseded")
        .await
        .unwrap();
    assert_eq!(
        outcome,
        Distribution::Stale {
            current: newer.file_id
        }
    );
    let older_now = store.file(older.file_id).await.unwrap().unwrap();
    assert_eq!(older_now.phase, FilePhase::Cancelled);
    let current = store
        .object(&acme.id, "media", "a.mp4")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.file_id, newer.file_id);
    // Its blobs go away, the file row stays for audit.
    let evicted = store.evict_file(older.file_id, 8_000).await.unwrap();
    assert_eq!(evicted.len(), 4, "three shards and the upload blob");
    assert!(store
        .shards_for_file(older.file_id)
        .await
        .unwrap()
        .is_empty());
    assert!(store.file(older.file_id).await.unwrap().is_some());
}

#[tokio::test]
async fn a_file_is_safe_only_once_every_shard_is_verified_on_enough_peers() {
    let (_dir, store) = open().await;
    let acme = tenant(&store, "AK1").await;
    let file = new_file(&store, &acme, "media", "a.mp4", 100).await;
    let (shards, _) = distribute(&store, &file, 2_000).await;
    let to_verify = store.shards_to_verify(100).await.unwrap();
    assert_eq!(to_verify.len(), 3);

    // Two non-originator peers only: never safe, even fully verified.
    for s in &shards {
        store
            .record_verification(s.blob_id, true, Some("[]"), 3_000)
            .await
            .unwrap();
    }
    assert!(store
        .promote_safe_files(3, 0, 3_000)
        .await
        .unwrap()
        .is_empty());
    let safe = store.promote_safe_files(2, 0, 3_000).await.unwrap();
    assert_eq!(safe.len(), 1);
    assert_eq!(
        store.replication_safe_at(file.file_id).await.unwrap(),
        Some(3_000)
    );
    // The originator is told to drop its full copy.
    let cmds = store.pending_commands(&node("ZB-ORIG01")).await.unwrap();
    assert!(cmds.iter().any(|c| c
        .action
        .to_string()
        .contains(&file.upload_blob_id.to_string())));

    // A corrupt shard is queued for repair; replacing it points the row elsewhere.
    store.mark_needs_repair(shards[0].blob_id).await.unwrap();
    let broken = store.shards_needing_repair(&[], 10).await.unwrap();
    assert_eq!(broken.len(), 1);
    let lost = store
        .shards_needing_repair(&[node("ZB-NODE02")], 10)
        .await
        .unwrap();
    assert_eq!(lost.len(), 2);
    let new_blob = BlobId::new_random();
    assert!(store
        .replace_shard(&broken[0], &node("ZB-NODE09"), new_blob, 4_000)
        .await
        .unwrap());
    assert!(!store
        .replace_shard(&broken[0], &node("ZB-NODE09"), new_blob, 4_000)
        .await
        .unwrap());
    assert!(store
        .shards_needing_repair(&[], 10)
        .await
        .unwrap()
        .is_empty());
    let referenced = store.referenced_blobs(&node("ZB-NODE09")).await.unwrap();
    assert!(referenced.contains(&new_blob));
}

#[tokio::test]
async fn abandoned_uploads_expire_and_release_their_blob() {
    let (_dir, store) = open().await;
    let acme = tenant(&store, "AK1").await;
    let file = new_file(&store, &acme, "media", "a.mp4", 100).await; // expires_at 9_000
    assert!(store
        .expire_abandoned_uploads(9_500, 1_000)
        .await
        .unwrap()
        .is_empty());
    let expired = store.expire_abandoned_uploads(20_000, 1_000).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        store.file(file.file_id).await.unwrap().unwrap().phase,
        FilePhase::Failed
    );
    assert!(!store
        .referenced_blobs(&node("ZB-ORIG01"))
        .await
        .unwrap()
        .contains(&file.upload_blob_id));
}

#[tokio::test]
async fn object_headers_tags_and_checksums_round_trip_per_file() {
    let (_dir, store) = open().await;
    let t = tenant(&store, "AKATTRS").await;
    let a = new_file(&store, &t, "b", "a", 10).await;
    let b = new_file(&store, &t, "b", "b", 10).await;
    let mut headers = zib_meta::ObjectHeaders {
        cache_control: Some("max-age=60".into()),
        content_disposition: Some("attachment; filename=\"a.txt\"".into()),
        ..Default::default()
    };
    headers.metadata.insert("colour".into(), "blue".into());
    store.set_object_headers(a.file_id, &headers).await.unwrap();
    let tags = vec![("k".to_string(), "v".to_string())];
    store.set_object_tags(a.file_id, &tags).await.unwrap();
    let sums = zib_meta::Checksums::from([("crc32".to_string(), "AAAAAA==".to_string())]);
    store.set_object_checksums(a.file_id, &sums).await.unwrap();

    assert_eq!(store.object_headers(a.file_id).await.unwrap(), headers);
    assert_eq!(store.object_tags(a.file_id).await.unwrap(), tags);
    assert_eq!(store.object_checksums(a.file_id).await.unwrap(), sums);
    // Another file has none of them.
    assert!(store.object_headers(b.file_id).await.unwrap().is_empty());
    assert!(store.object_tags(b.file_id).await.unwrap().is_empty());
    // Clearing stores nothing.
    store.set_object_tags(a.file_id, &Vec::new()).await.unwrap();
    assert!(store.object_tags(a.file_id).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_file_naming_a_deleted_bucket_is_refused_as_such() {
    let (_dir, store) = open().await;
    let t = tenant(&store, "AKGONE").await;
    let mut file = new_file(&store, &t, "gone", "a", 10).await;
    // A failed upload's row goes with its bucket.
    store.mark_failed(file.file_id, "test").await.unwrap();
    store.delete_empty_bucket(&t.id, "gone").await.unwrap();
    // An upload that looked the bucket up before it was deleted.
    file.file_id = FileId::new_random();
    file.upload_blob_id = BlobId::new_random();
    let refused = store.insert_file(&file).await;
    assert!(
        matches!(refused, Err(zib_meta::MetaError::BucketDeleted)),
        "{refused:?}"
    );
}

/// `segment`'s three shards (2+1), on fresh blob ids.
fn segment_shards(file_id: FileId, segment: u32) -> Vec<ShardRow> {
    shards(file_id)
        .into_iter()
        .map(|s| ShardRow { segment, ..s })
        .collect()
}

#[tokio::test]
async fn parts_are_recorded_while_uploading_and_complete_once_every_shard_is_in() {
    let (_dir, store) = open().await;
    let acme = tenant(&store, "AK1").await;
    let file = new_file(&store, &acme, "media", "big.bin", 100).await;

    // Part 2 (segments 1..2) first, then part 1 (segment 0): any order.
    store
        .record_part_shards(file.file_id, 1..2, &segment_shards(file.file_id, 1), 1_000)
        .await
        .unwrap();
    let row = store.file(file.file_id).await.unwrap().unwrap();
    assert_eq!(row.phase, FilePhase::Uploading, "recorded while uploading");
    // Not every part is in: completing is refused, nothing changes.
    assert!(matches!(
        store
            .complete_parts(file.file_id, 6, 1_500, "superseded")
            .await,
        Err(MetaError::Conflict(_))
    ));
    assert_eq!(
        store.object(&acme.id, "media", "big.bin").await.unwrap(),
        None
    );

    // Part 1 sent twice (its answer was lost): the second attempt's shards replace
    // the first's, whose deletion is queued on their holders.
    let first = segment_shards(file.file_id, 0);
    store
        .record_part_shards(file.file_id, 0..1, &first, 1_100)
        .await
        .unwrap();
    let again = segment_shards(file.file_id, 0);
    let replaced = store
        .record_part_shards(file.file_id, 0..1, &again, 1_200)
        .await
        .unwrap();
    let mut gone: Vec<BlobId> = replaced.iter().map(|(_, b)| *b).collect();
    let mut expected: Vec<BlobId> = first.iter().map(|s| s.blob_id).collect();
    gone.sort();
    expected.sort();
    assert_eq!(gone, expected);
    let held = store.shards_for_file(file.file_id).await.unwrap();
    assert_eq!(held.len(), 6);
    assert!(held.iter().all(|s| !expected.contains(&s.blob_id)));
    let queued = store.pending_commands(&node("ZB-NODE01")).await.unwrap();
    let action: NodeAction = serde_json::from_value(queued[0].action.clone()).unwrap();
    assert_eq!(
        action,
        NodeAction::DeleteBlobs {
            blob_ids: vec![first[0].blob_id]
        }
    );

    let outcome = store
        .complete_parts(file.file_id, 6, 2_000, "superseded")
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        Distribution::Current { superseded: None }
    ));
    let row = store.file(file.file_id).await.unwrap().unwrap();
    assert_eq!(row.phase, FilePhase::Distributed);
    assert!(store
        .object(&acme.id, "media", "big.bin")
        .await
        .unwrap()
        .is_some());
    // A completed file takes no more parts.
    assert!(matches!(
        store
            .record_part_shards(file.file_id, 0..1, &segment_shards(file.file_id, 0), 3_000)
            .await,
        Err(MetaError::Conflict(_))
    ));
}

#[tokio::test]
async fn an_expired_upload_drops_the_shards_of_its_coded_parts() {
    let (_dir, store) = open().await;
    let acme = tenant(&store, "AK1").await;
    let file = new_file(&store, &acme, "media", "gone.bin", 100).await;
    let coded = segment_shards(file.file_id, 0);
    store
        .record_part_shards(file.file_id, 0..1, &coded, 1_000)
        .await
        .unwrap();
    let expired = store
        .expire_abandoned_uploads(file.expires_at + 10_000, 1_000)
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    assert!(store
        .shards_for_file(file.file_id)
        .await
        .unwrap()
        .is_empty());
    for shard in &coded {
        let queued = store.pending_commands(&shard.node_id).await.unwrap();
        let blobs: Vec<BlobId> = queued
            .iter()
            .filter_map(|c| serde_json::from_value(c.action.clone()).ok())
            .flat_map(|action: NodeAction| {
                let NodeAction::DeleteBlobs { blob_ids } = action;
                blob_ids
            })
            .collect();
        assert!(
            blobs.contains(&shard.blob_id),
            "{} queued for deletion",
            shard.blob_id
        );
    }
}
