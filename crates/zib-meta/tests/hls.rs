//! HLS output of encoding jobs on a real SQLite store: what the CDN reads, the rule
//! that makes a job `safe`, eviction, repair, and the orphan collector's view.
//! The job, rendition, segment and replica rows are written with plain SQL as the
//! job protocol would write them (a second connection to the same file).

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tempfile::TempDir;
use zib_meta::{Distribution, FilePhase, FileRow, JobPhase, NodeRow, ShardRow, Store};
use zib_proto::node_rpc::NodeAction;
use zib_proto::{BlobId, FileId, NodeId};

const NOW: i64 = 1_000_000;
const ORIGIN: &str = "ZB-ORIG01";

struct Fixture {
    _dir: TempDir,
    store: Store,
    raw: SqlitePool,
    file: FileRow,
    tenant_id: String,
}

fn node(name: &str) -> NodeId {
    NodeId::from_str(name).unwrap()
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let store = Store::open_sqlite(&path).await.unwrap();
    let raw = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(&path))
        .await
        .unwrap();
    let tenant = store
        .create_tenant("Acme", "AK1", "deadbeef")
        .await
        .unwrap();
    let file = new_file(&store, &tenant.id, "clip.mp4").await;
    for n in [ORIGIN, "ZB-NODE01", "ZB-NODE02", "ZB-NODE03", "ZB-NODE04"] {
        add_node(&store, n, NOW).await;
    }
    Fixture {
        _dir: dir,
        store,
        raw,
        file,
        tenant_id: tenant.id,
    }
}

async fn add_node(store: &Store, name: &str, heartbeat: i64) {
    store
        .upsert_node(&NodeRow {
            node_id: node(name),
            public_url: format!("http://{name}.test"),
            capacity_bytes: 1 << 30,
            free_bytes: 1 << 30,
            used_bytes: 0,
            zone: None,
            capabilities: vec![],
            last_heartbeat_at: heartbeat,
            registered_at: 1,
            draining_since: None,
        })
        .await
        .unwrap();
}

async fn new_file(store: &Store, tenant_id: &str, key: &str) -> FileRow {
    let bucket = store.ensure_bucket(tenant_id, "videos").await.unwrap();
    let file = FileRow {
        file_id: FileId::new_random(),
        tenant_id: tenant_id.to_string(),
        bucket_id: bucket.id,
        bucket: bucket.name.clone(),
        object_key: key.to_string(),
        size: 1000,
        ciphertext_size: 1016,
        content_type: "video/mp4".to_string(),
        phase: FilePhase::Pending,
        cancelled_reason: None,
        wrapped_dek: vec![1, 2, 3, 4],
        chunk_size: 65536,
        nonce_prefix: vec![7; 7],
        data_shards: 1,
        parity_shards: 1,
        shard_size: 1024,
        originator: node(ORIGIN),
        upload_blob_id: BlobId::new_random(),
        part_count: 1,
        part_size: 0,
        expires_at: NOW * 10,
        created_at: 1_000,
        distributed_at: None,
    };
    store.insert_file(&file).await.unwrap();
    assert!(store.mark_uploading(file.file_id).await.unwrap());
    let shards: Vec<ShardRow> = ["ZB-NODE01", "ZB-NODE02"]
        .iter()
        .enumerate()
        .map(|(i, n)| ShardRow {
            file_id: file.file_id,
            segment: 0,
            index: i as u8,
            node_id: node(n),
            blob_id: BlobId::new_random(),
            size: 1024,
            blake3: vec![i as u8; 32],
        })
        .collect();
    let outcome = store
        .complete_distribution(file.file_id, &shards, 2_000, "superseded")
        .await
        .unwrap();
    assert!(
        matches!(outcome, Distribution::Current { .. }),
        "{outcome:?}"
    );
    file
}

impl Fixture {
    async fn job(&self, file_id: FileId, phase: JobPhase, created_at: i64) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO encoding_jobs (id, file_id, tenant_id, phase, progress, phase_updated_at, \
                 wrapped_hls_key, node_id, created_at) \
             VALUES ($1, $2, $3, $4, 100, 0, X'00', $5, $6)",
        )
        .bind(&id)
        .bind(file_id.to_string())
        .bind(&self.tenant_id)
        .bind(phase.as_str())
        .bind(ORIGIN)
        .bind(created_at)
        .execute(&self.raw)
        .await
        .unwrap();
        id
    }

    async fn rendition(&self, job: &str, name: &str, height: i64, published: bool) {
        sqlx::query(
            "INSERT INTO hls_renditions (job_id, name, width, height, bandwidth, average_bandwidth, \
                 codecs, frame_rate, segment_count, published_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'avc1.64001f,mp4a.40.2', 30.0, 2, $7)",
        )
        .bind(job)
        .bind(name)
        .bind(height * 16 / 9)
        .bind(height)
        .bind(height * 3000)
        .bind(height * 2000)
        .bind(published.then_some(NOW))
        .execute(&self.raw)
        .await
        .unwrap();
    }

    /// A segment and its copies: `(node, verified)`; the origin's copy first.
    async fn segment(
        &self,
        job: &str,
        rendition: &str,
        seq: i64,
        copies: &[(&str, bool)],
    ) -> BlobId {
        let blob = BlobId::new_random();
        sqlx::query(
            "INSERT INTO hls_segments (job_id, rendition, seq, duration_ms, size, blake3, iv, \
                 blob_id, created_at) VALUES ($1, $2, $3, 4000, 1000, $4, $5, $6, $7)",
        )
        .bind(job)
        .bind(rendition)
        .bind(seq)
        .bind(vec![seq as u8; 32])
        .bind(vec![0u8; 16])
        .bind(blob.to_string())
        .bind(NOW + seq)
        .execute(&self.raw)
        .await
        .unwrap();
        for (n, verified) in copies {
            sqlx::query(
                "INSERT INTO segment_replicas (blob_id, node_id, is_origin, verified_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(blob.to_string())
            .bind(*n)
            .bind(i64::from(*n == ORIGIN))
            .bind(verified.then_some(NOW))
            .bind(NOW)
            .execute(&self.raw)
            .await
            .unwrap();
        }
        blob
    }

    async fn make_live(&self, file_id: FileId, job: &str) {
        sqlx::query(
            "INSERT INTO live_encodings (file_id, job_id, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (file_id) DO UPDATE SET job_id = excluded.job_id",
        )
        .bind(file_id.to_string())
        .bind(job)
        .bind(NOW)
        .execute(&self.raw)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn the_cdn_reads_the_live_job_its_published_rungs_and_segments_in_order() {
    let f = fixture().await;
    let file_id = f.file.file_id;
    assert_eq!(f.store.live_stream_job(file_id).await.unwrap(), None);

    let job = f.job(file_id, JobPhase::Encoding, 10).await;
    f.rendition(&job, "720p", 720, true).await;
    f.rendition(&job, "360p", 360, true).await;
    f.rendition(&job, "1080p", 1080, false).await;
    let s1 = f
        .segment(&job, "360p", 1, &[(ORIGIN, true), ("ZB-NODE02", false)])
        .await;
    let s0 = f
        .segment(&job, "360p", 0, &[("ZB-NODE01", true), (ORIGIN, true)])
        .await;
    // Not live yet: the CDN has nothing; a named job of the file is readable.
    assert_eq!(f.store.live_stream_job(file_id).await.unwrap(), None);
    assert!(f.store.stream_job(file_id, &job).await.unwrap().is_some());
    f.make_live(file_id, &job).await;

    let live = f.store.live_stream_job(file_id).await.unwrap().unwrap();
    assert_eq!(live.id, job);
    let published: Vec<String> = f
        .store
        .published_renditions(&job)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(
        published,
        ["360p", "720p"],
        "lowest first, unpublished left out"
    );
    assert_eq!(f.store.renditions(&job).await.unwrap().len(), 3);

    let segments = f.store.rendition_segments(&job, "360p").await.unwrap();
    let order: Vec<(u32, BlobId)> = segments
        .iter()
        .map(|s| (s.segment.seq, s.segment.blob_id))
        .collect();
    assert_eq!(order, [(0, s0), (1, s1)]);
    let holders: Vec<(&str, bool)> = segments[0]
        .replicas
        .iter()
        .map(|r| (r.node_id.as_str(), r.is_origin))
        .collect();
    assert_eq!(holders, [("ZB-NODE01", false), (ORIGIN, true)]);
    assert_eq!(segments[1].replicas[0].node_id, node("ZB-NODE02"));
    assert_eq!(segments[1].replicas[0].verified_at, None);

    // The file id is the capability: another file's id finds neither job nor segment.
    let other = new_file(&f.store, &f.tenant_id, "other.mp4").await;
    assert!(f
        .store
        .stream_job(other.file_id, &job)
        .await
        .unwrap()
        .is_none());
    assert!(f
        .store
        .file_segment(other.file_id, s0)
        .await
        .unwrap()
        .is_none());
    let proxied = f.store.file_segment(file_id, s0).await.unwrap().unwrap();
    assert_eq!(proxied.replicas.len(), 2);

    // A deleted file takes its encodings with it (they reference it) and serves
    // nothing; every segment copy is among the blobs its holders are told to drop.
    let deleted = f
        .store
        .delete_file(&f.tenant_id, file_id, NOW)
        .await
        .unwrap()
        .unwrap();
    for (holder, blob) in [
        (ORIGIN, s0),
        ("ZB-NODE01", s0),
        (ORIGIN, s1),
        ("ZB-NODE02", s1),
    ] {
        assert!(
            deleted.blobs.contains(&(node(holder), blob)),
            "{holder} {blob}"
        );
    }
    assert!(f.store.encoding_job(&job).await.unwrap().is_none());
    assert_eq!(f.store.live_stream_job(file_id).await.unwrap(), None);
    assert!(f.store.stream_job(file_id, &job).await.unwrap().is_none());
}

#[tokio::test]
async fn a_job_is_safe_only_when_every_segment_has_three_verified_online_peers() {
    let f = fixture().await;
    let job = f.job(f.file.file_id, JobPhase::LocalComplete, 10).await;
    f.rendition(&job, "360p", 360, true).await;
    let full = [
        (ORIGIN, true),
        ("ZB-NODE01", true),
        ("ZB-NODE02", true),
        ("ZB-NODE03", true),
    ];
    f.segment(&job, "360p", 0, &full).await;
    // The origin's verified copy does not count; an unverified one does not either.
    let s1 = f
        .segment(
            &job,
            "360p",
            1,
            &[
                (ORIGIN, true),
                ("ZB-NODE01", true),
                ("ZB-NODE02", true),
                ("ZB-NODE04", false),
            ],
        )
        .await;
    let level = |online_since| {
        let store = f.store.clone();
        async move {
            let jobs = store.encoded_job_replication(online_since).await.unwrap();
            assert_eq!(jobs.len(), 1);
            jobs[0].clone()
        }
    };
    let l = level(NOW).await;
    assert_eq!(l.min_verified_peers, Some(2));
    assert_eq!(l.origin, Some(node(ORIGIN)));
    assert!(f
        .store
        .set_job_replication(
            &job,
            JobPhase::Replicating,
            66.7,
            "peer 2 of 3 verified",
            NOW
        )
        .await
        .unwrap());

    f.store
        .record_segment_verification(s1, &node("ZB-NODE04"), true, Some("[]"), NOW)
        .await
        .unwrap();
    assert_eq!(level(NOW).await.min_verified_peers, Some(3));
    // A holder that went silent is no proof its copy is there now.
    add_node(&f.store, "ZB-NODE03", NOW - 100).await;
    assert_eq!(level(NOW).await.min_verified_peers, Some(2));
    add_node(&f.store, "ZB-NODE03", NOW).await;
    // A copy found lost stops counting until repaired.
    f.store
        .mark_segment_replica_lost(s1, &node("ZB-NODE01"))
        .await
        .unwrap();
    assert_eq!(level(NOW).await.min_verified_peers, Some(2));
    f.store
        .record_segment_verification(s1, &node("ZB-NODE01"), true, None, NOW)
        .await
        .unwrap();
    assert_eq!(level(NOW).await.min_verified_peers, Some(3));

    assert!(f
        .store
        .set_job_replication(
            &job,
            JobPhase::Safe,
            100.0,
            "every segment verified",
            NOW + 5
        )
        .await
        .unwrap());
    let row = f.store.encoding_job(&job).await.unwrap().unwrap();
    assert_eq!(row.phase, JobPhase::Safe);
    assert_eq!(row.replication_safe_at, Some(NOW + 5));
    assert_eq!(row.progress, 100);
    // Safe jobs are no longer looked at, and a cancelled job is never promoted.
    assert!(f
        .store
        .encoded_job_replication(NOW)
        .await
        .unwrap()
        .is_empty());
    let cancelled = f.job(f.file.file_id, JobPhase::Cancelled, 20).await;
    assert!(!f
        .store
        .set_job_replication(&cancelled, JobPhase::Safe, 100.0, "x", NOW)
        .await
        .unwrap());
}

#[tokio::test]
async fn segment_copies_are_referenced_blobs_so_the_collector_keeps_them() {
    let f = fixture().await;
    let job = f.job(f.file.file_id, JobPhase::Sharding, 10).await;
    f.rendition(&job, "360p", 360, false).await;
    let replicated = f
        .segment(&job, "360p", 0, &[(ORIGIN, true), ("ZB-NODE03", false)])
        .await;
    // Stored on the encoding node, reported, no replica row yet.
    let fresh = f.segment(&job, "360p", 1, &[]).await;
    let on_origin = f.store.referenced_blobs(&node(ORIGIN)).await.unwrap();
    assert!(on_origin.contains(&replicated) && on_origin.contains(&fresh));
    let on_peer = f.store.referenced_blobs(&node("ZB-NODE03")).await.unwrap();
    assert!(on_peer.contains(&replicated));
    assert!(!on_peer.contains(&fresh));

    f.store.evict_job_output(&job, NOW).await.unwrap();
    assert!(!f
        .store
        .referenced_blobs(&node("ZB-NODE03"))
        .await
        .unwrap()
        .contains(&replicated));
}

async fn queued_deletes(store: &Store, n: &str) -> Vec<BlobId> {
    store
        .pending_commands(&node(n))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| serde_json::from_value::<NodeAction>(c.action).ok())
        .flat_map(|NodeAction::DeleteBlobs { blob_ids }| blob_ids)
        .collect()
}

#[tokio::test]
async fn eviction_returns_and_queues_every_holder_and_drops_the_rows() {
    let f = fixture().await;
    let file_id = f.file.file_id;
    let job = f.job(file_id, JobPhase::Safe, 10).await;
    f.rendition(&job, "360p", 360, true).await;
    let a = f
        .segment(
            &job,
            "360p",
            0,
            &[(ORIGIN, true), ("ZB-NODE01", true), ("ZB-NODE02", true)],
        )
        .await;
    let b = f.segment(&job, "360p", 1, &[("ZB-NODE03", true)]).await;
    f.make_live(file_id, &job).await;
    let keep = f.job(file_id, JobPhase::Encoding, 20).await;
    f.rendition(&keep, "360p", 360, false).await;
    let kept = f.segment(&keep, "360p", 0, &[(ORIGIN, true)]).await;

    assert_eq!(
        f.store.file_jobs_with_output(file_id).await.unwrap(),
        [job.clone(), keep.clone()]
    );
    assert_eq!(f.store.job_segment_blobs(&job).await.unwrap().len(), 5);
    let mut evicted = f.store.evict_job_output(&job, NOW).await.unwrap();
    evicted.sort();
    let mut expected = vec![
        (node(ORIGIN), a),
        (node("ZB-NODE01"), a),
        (node("ZB-NODE02"), a),
        (node(ORIGIN), b), // the encoding node holds every segment it reported
        (node("ZB-NODE03"), b),
    ];
    expected.sort();
    assert_eq!(evicted, expected);
    let mut on_origin = queued_deletes(&f.store, ORIGIN).await;
    on_origin.sort();
    let mut ab = vec![a, b];
    ab.sort();
    assert_eq!(on_origin, ab);
    assert_eq!(queued_deletes(&f.store, "ZB-NODE03").await, [b]);

    assert!(f
        .store
        .rendition_segments(&job, "360p")
        .await
        .unwrap()
        .is_empty());
    assert!(f.store.renditions(&job).await.unwrap().is_empty());
    assert_eq!(
        f.store.live_stream_job(file_id).await.unwrap(),
        None,
        "live pointer gone"
    );
    assert!(f.store.stream_job(file_id, &job).await.unwrap().is_none());
    // The job row stays for its history; the other job is untouched.
    assert!(f.store.encoding_job(&job).await.unwrap().is_some());
    assert_eq!(
        f.store.rendition_segments(&keep, "360p").await.unwrap()[0]
            .segment
            .blob_id,
        kept
    );
    // Evicting again is harmless.
    assert!(f
        .store
        .evict_job_output(&job, NOW)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn lost_copies_are_queued_for_repair_and_moved_to_their_new_holder() {
    let f = fixture().await;
    let job = f.job(f.file.file_id, JobPhase::Replicating, 10).await;
    f.rendition(&job, "360p", 360, true).await;
    let a = f
        .segment(
            &job,
            "360p",
            0,
            &[(ORIGIN, true), ("ZB-NODE01", true), ("ZB-NODE02", true)],
        )
        .await;
    let b = f
        .segment(&job, "360p", 1, &[(ORIGIN, true), ("ZB-NODE03", true)])
        .await;
    assert!(f
        .store
        .segment_replicas_needing_repair(&[], 10)
        .await
        .unwrap()
        .is_empty());
    f.store
        .mark_segment_replica_lost(a, &node("ZB-NODE01"))
        .await
        .unwrap();
    let broken: Vec<(BlobId, String)> = f
        .store
        .segment_replicas_needing_repair(&[node("ZB-NODE03")], 10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.segment.blob_id, c.replica.node_id.to_string()))
        .collect();
    assert_eq!(broken.len(), 2);
    assert!(broken.contains(&(a, "ZB-NODE01".into())));
    assert!(broken.contains(&(b, "ZB-NODE03".into())));

    assert!(f
        .store
        .replace_segment_replica(a, &node("ZB-NODE01"), &node("ZB-NODE04"), NOW)
        .await
        .unwrap());
    // A second repair of the same copy loses: the row moved.
    assert!(!f
        .store
        .replace_segment_replica(a, &node("ZB-NODE01"), &node("ZB-NODE03"), NOW)
        .await
        .unwrap());
    let holders = f.store.segment_holders(a).await.unwrap().unwrap();
    let mut nodes: Vec<(String, bool)> = holders
        .replicas
        .iter()
        .map(|r| (r.node_id.to_string(), r.verified_at.is_some()))
        .collect();
    nodes.sort();
    assert_eq!(
        nodes,
        [
            ("ZB-NODE02".to_string(), true),
            ("ZB-NODE04".to_string(), false),
            (ORIGIN.to_string(), true),
        ]
    );
    assert_eq!(queued_deletes(&f.store, "ZB-NODE01").await, [a]);
    // The new copy is the verifier's to check.
    let to_verify = f.store.segment_replicas_to_verify(10).await.unwrap();
    assert_eq!(to_verify.len(), 1);
    assert_eq!(to_verify[0].replica.node_id, node("ZB-NODE04"));
}
