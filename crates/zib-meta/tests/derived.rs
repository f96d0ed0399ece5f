//! Derived files on a real SQLite store: a job's artefacts and an aspect variant's
//! stream file are stored like uploads but never become current for a key, never
//! supersede, never reach the outbox, and go with their source or their job. Job rows
//! and segments are written with plain SQL as the job protocol would write them.

use std::collections::HashSet;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tempfile::TempDir;
use zib_meta::{DerivedKind, Distribution, FilePhase, FileRow, JobThumbnails, ShardRow, Store};
use zib_proto::jobs::ArtifactKind;
use zib_proto::{BlobId, FileId, NodeId};

const NOW: i64 = 1_000_000;
const ORIGIN: &str = "ZB-ORIG01";

struct Fixture {
    _dir: TempDir,
    store: Store,
    raw: SqlitePool,
    tenant_id: String,
    source: FileRow,
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
    let mut f = Fixture {
        _dir: dir,
        store,
        raw,
        tenant_id: tenant.id,
        source: placeholder(),
    };
    f.source = f.uploaded("clip.mp4", 1_000).await;
    f
}

fn placeholder() -> FileRow {
    FileRow {
        file_id: FileId::new_random(),
        tenant_id: String::new(),
        bucket_id: 0,
        bucket: "videos".into(),
        object_key: String::new(),
        size: 1000,
        ciphertext_size: 1016,
        content_type: "video/mp4".into(),
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
        created_at: 0,
        distributed_at: None,
    }
}

fn shards(file_id: FileId) -> Vec<ShardRow> {
    ["ZB-NODE01", "ZB-NODE02"]
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

impl Fixture {
    async fn insert(&self, key: &str, content_type: &str, created_at: i64) -> FileRow {
        let bucket = self
            .store
            .ensure_bucket(&self.tenant_id, "videos")
            .await
            .unwrap();
        let file = FileRow {
            file_id: FileId::new_random(),
            tenant_id: self.tenant_id.clone(),
            bucket_id: bucket.id,
            object_key: key.to_string(),
            content_type: content_type.to_string(),
            upload_blob_id: BlobId::new_random(),
            created_at,
            ..placeholder()
        };
        self.store.insert_file(&file).await.unwrap();
        file
    }

    /// An uploaded file, distributed and current for its key.
    async fn uploaded(&self, key: &str, created_at: i64) -> FileRow {
        let file = self.insert(key, "video/mp4", created_at).await;
        let outcome = self
            .store
            .complete_distribution(file.file_id, &shards(file.file_id), created_at + 1, "sup")
            .await
            .unwrap();
        assert!(
            matches!(outcome, Distribution::Current { .. }),
            "{outcome:?}"
        );
        file
    }

    /// A file derived from the source, distributed with `with_shards` (none for a
    /// variant stream file).
    async fn derived(&self, key: &str, kind: DerivedKind, with_shards: bool) -> FileRow {
        let file = self.insert(key, "image/jpeg", NOW).await;
        assert!(self
            .store
            .mark_derived(file.file_id, self.source.file_id, kind)
            .await
            .unwrap());
        let rows = if with_shards {
            shards(file.file_id)
        } else {
            vec![]
        };
        let outcome = self
            .store
            .complete_distribution(file.file_id, &rows, NOW + 1, "sup")
            .await
            .unwrap();
        assert_eq!(outcome, Distribution::Derived);
        file
    }

    async fn job(&self, file_id: FileId, variant_of: Option<&str>) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO encoding_jobs (id, file_id, tenant_id, phase, progress, phase_updated_at, \
                 wrapped_hls_key, node_id, created_at, source_file_id, parent_job_id, aspect_ratio) \
             VALUES ($1, $2, $3, 'encoding', 50, 0, X'00', $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(file_id.to_string())
        .bind(&self.tenant_id)
        .bind(ORIGIN)
        .bind(NOW)
        .bind(variant_of.map(|_| self.source.file_id.to_string()))
        .bind(variant_of)
        .bind(variant_of.map(|_| "9:16"))
        .execute(&self.raw)
        .await
        .unwrap();
        id
    }

    async fn segment(&self, job: &str) -> BlobId {
        let blob = BlobId::new_random();
        sqlx::query(
            "INSERT INTO hls_segments (job_id, rendition, seq, duration_ms, size, blake3, iv, \
                 blob_id, created_at) VALUES ($1, '360p', 0, 4000, 1000, $2, $3, $4, $5)",
        )
        .bind(job)
        .bind(vec![0u8; 32])
        .bind(vec![0u8; 16])
        .bind(blob.to_string())
        .bind(NOW)
        .execute(&self.raw)
        .await
        .unwrap();
        blob
    }

    /// A stored artefact of `job`, recorded in `job_artifacts`.
    async fn artifact(&self, job: &str, kind: ArtifactKind, seq: u32) -> FileRow {
        let key = format!("clip.mp4/.zib/{job}/{}-{seq}", kind.as_str());
        let file = self.derived(&key, DerivedKind::Artifact(kind), true).await;
        self.store
            .record_job_artifact(job, kind, seq, file.file_id, NOW)
            .await
            .unwrap();
        file
    }

    async fn blobs_of(&self, file: &FileRow) -> Vec<(NodeId, BlobId)> {
        let mut out: Vec<_> = self
            .store
            .shards_for_file(file.file_id)
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.node_id, s.blob_id))
            .collect();
        out.push((file.originator.clone(), file.upload_blob_id));
        out
    }

    async fn event_types(&self, file: FileId) -> Vec<String> {
        self.store
            .list_webhook_events(&self.tenant_id, Some(&file.to_string()), 20)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }
}

#[tokio::test]
async fn a_derived_files_distribution_leaves_objects_and_the_outbox_untouched() {
    let f = fixture().await;
    let poster = f
        .derived(
            "clip.mp4/.zib/j1/poster.jpg",
            DerivedKind::Artifact(ArtifactKind::Poster),
            true,
        )
        .await;
    // Even one named exactly like the source's key supersedes nothing.
    let same_key = f
        .derived(
            "clip.mp4",
            DerivedKind::Artifact(ArtifactKind::SpriteSheet),
            true,
        )
        .await;

    for file in [&poster, &same_key] {
        let stored = f.store.file(file.file_id).await.unwrap().unwrap();
        assert_eq!(stored.phase, FilePhase::Distributed);
        assert_eq!(
            f.store.shards_for_file(file.file_id).await.unwrap().len(),
            2
        );
        assert!(f.event_types(file.file_id).await.is_empty());
    }
    // Verified everywhere, they become safe like any file, still unannounced.
    for file in [&poster, &same_key, &f.source] {
        for shard in f.store.shards_for_file(file.file_id).await.unwrap() {
            f.store
                .record_verification(shard.blob_id, true, None, NOW)
                .await
                .unwrap();
        }
    }
    let safe = f.store.promote_safe_files(0, 0, NOW + 2).await.unwrap();
    assert_eq!(safe.len(), 3);
    for file in [&poster, &same_key] {
        let stored = f.store.file(file.file_id).await.unwrap().unwrap();
        assert_eq!(stored.phase, FilePhase::Safe);
        assert!(f.event_types(file.file_id).await.is_empty());
    }
    let listed: Vec<FileId> = f
        .store
        .list_objects(&f.tenant_id, "videos", "")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.file.file_id)
        .collect();
    assert_eq!(listed, vec![f.source.file_id]);
    let current = f
        .store
        .object(&f.tenant_id, "videos", "clip.mp4")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.file_id, f.source.file_id);
    assert_eq!(current.phase, FilePhase::Safe);
    assert_eq!(
        f.event_types(f.source.file_id).await,
        vec!["file.replicated", "file.ready"]
    );

    let d = f.store.derived_file(poster.file_id).await.unwrap().unwrap();
    assert_eq!(d.derived_from, f.source.file_id);
    assert_eq!(d.kind, DerivedKind::Artifact(ArtifactKind::Poster));
    assert_eq!(f.store.derived_file(f.source.file_id).await.unwrap(), None);
    let all: HashSet<FileId> = f
        .store
        .derived_files(f.source.file_id)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.file_id)
        .collect();
    assert_eq!(all, HashSet::from([poster.file_id, same_key.file_id]));
}

#[tokio::test]
async fn a_retried_artefact_replaces_its_row_and_thumbnails_round_trip() {
    let f = fixture().await;
    let job = f.job(f.source.file_id, None).await;
    let first = f.artifact(&job, ArtifactKind::Poster, 0).await;
    let again = f
        .derived(
            "clip.mp4/.zib/j/poster.jpg",
            DerivedKind::Artifact(ArtifactKind::Poster),
            true,
        )
        .await;
    let replaced = f
        .store
        .record_job_artifact(&job, ArtifactKind::Poster, 0, again.file_id, NOW)
        .await
        .unwrap();
    assert_eq!(replaced, Some(first.file_id));
    // The same file recorded twice replaces nothing.
    let same = f
        .store
        .record_job_artifact(&job, ArtifactKind::Poster, 0, again.file_id, NOW)
        .await
        .unwrap();
    assert_eq!(same, None);
    let gone = f
        .store
        .delete_derived_file(first.file_id, NOW)
        .await
        .unwrap();
    assert_eq!(gone.len(), 3, "two shards and the upload blob: {gone:?}");
    assert_eq!(f.store.file(first.file_id).await.unwrap(), None);
    // An uploaded file is never deleted this way.
    assert!(f
        .store
        .delete_derived_file(f.source.file_id, NOW)
        .await
        .unwrap()
        .is_empty());
    assert!(f.store.file(f.source.file_id).await.unwrap().is_some());

    let arts = f.store.job_artifacts(&job).await.unwrap();
    assert_eq!(arts.len(), 1);
    assert_eq!(arts[0].file_id, again.file_id);

    let thumbs = JobThumbnails {
        poster_file_id: again.file_id,
        sprite_sheet_file_ids: vec![],
        sprite_vtt_file_id: None,
    };
    assert!(f.store.set_job_thumbnails(&job, &thumbs).await.unwrap());
    let row = f.store.encoding_job(&job).await.unwrap().unwrap();
    assert_eq!(row.thumbnails, Some(thumbs));
    assert!(matches!(
        f.store
            .record_job_artifact("no-such-job", ArtifactKind::Poster, 0, again.file_id, NOW)
            .await,
        Err(zib_meta::MetaError::Conflict(_))
    ));
}

#[tokio::test]
async fn evicting_a_job_deletes_its_artefacts_and_the_reaper_sees_them() {
    let f = fixture().await;
    let job = f.job(f.source.file_id, None).await;
    let poster = f.artifact(&job, ArtifactKind::Poster, 0).await;
    let sheet = f.artifact(&job, ArtifactKind::SpriteSheet, 0).await;
    let other_job = f.job(f.source.file_id, None).await;
    let kept = f.artifact(&other_job, ArtifactKind::Poster, 0).await;

    // A cancelled job with artefacts but no segment is still due for eviction.
    f.store
        .cancel_encoding_job(&job, "cancelled by the tenant", NOW)
        .await
        .unwrap()
        .unwrap();
    let due: Vec<String> = f
        .store
        .cancelled_jobs_to_evict(NOW, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(due, vec![job.clone()]);

    let mut expected = f.blobs_of(&poster).await;
    expected.extend(f.blobs_of(&sheet).await);
    let mut blobs = f.store.evict_job_output(&job, NOW).await.unwrap();
    blobs.sort();
    expected.sort();
    assert_eq!(blobs, expected);
    assert_eq!(f.store.file(poster.file_id).await.unwrap(), None);
    assert_eq!(f.store.file(sheet.file_id).await.unwrap(), None);
    assert!(f.store.job_artifacts(&job).await.unwrap().is_empty());
    assert!(f
        .store
        .cancelled_jobs_to_evict(NOW, 10)
        .await
        .unwrap()
        .is_empty());
    // The other job's artefact and the source are untouched.
    assert!(f.store.file(kept.file_id).await.unwrap().is_some());
    assert_eq!(
        f.store
            .shards_for_file(f.source.file_id)
            .await
            .unwrap()
            .len(),
        2
    );
    // The holders are told.
    let queued = f.store.pending_commands(&node("ZB-NODE01")).await.unwrap();
    let text =
        serde_json::to_string(&queued.iter().map(|c| &c.action).collect::<Vec<_>>()).unwrap();
    for (n, blob) in &expected {
        if n.as_str() == "ZB-NODE01" {
            assert!(
                text.contains(&blob.to_string()),
                "{blob} not queued: {text}"
            );
        }
    }
}

/// The source, its main job with a poster and a sprite, and a 9:16 variant: its
/// stream file (no shards), its job with a segment and a poster.
struct Family {
    main_job: String,
    variant_job: String,
    stream: FileRow,
    derived: Vec<FileRow>,
    blobs: Vec<(NodeId, BlobId)>,
}

async fn family(f: &Fixture) -> Family {
    let main_job = f.job(f.source.file_id, None).await;
    let poster = f.artifact(&main_job, ArtifactKind::Poster, 0).await;
    let sheet = f.artifact(&main_job, ArtifactKind::SpriteSheet, 0).await;
    let stream = f
        .derived("clip.mp4/.zib/9x16", DerivedKind::AspectVariant, false)
        .await;
    let variant_job = f.job(stream.file_id, Some(&main_job)).await;
    let segment = f.segment(&variant_job).await;
    let variant_poster = f.artifact(&variant_job, ArtifactKind::Poster, 0).await;
    let mut blobs = vec![(node(ORIGIN), segment)];
    for file in [&poster, &sheet, &variant_poster] {
        blobs.extend(f.blobs_of(file).await);
    }
    Family {
        main_job,
        variant_job,
        stream: stream.clone(),
        derived: vec![poster, sheet, stream, variant_poster],
        blobs,
    }
}

#[tokio::test]
async fn deleting_the_source_deletes_every_derived_file_and_variant_job() {
    let f = fixture().await;
    let fam = family(&f).await;
    assert_eq!(
        f.store.derived_files(f.source.file_id).await.unwrap().len(),
        4
    );

    let deleted = f
        .store
        .delete_file(&f.tenant_id, f.source.file_id, NOW)
        .await
        .unwrap()
        .unwrap();
    let got: HashSet<_> = deleted.blobs.iter().cloned().collect();
    for blob in &fam.blobs {
        assert!(got.contains(blob), "{blob:?} not deleted: {got:?}");
    }
    for file in &fam.derived {
        assert_eq!(f.store.file(file.file_id).await.unwrap(), None);
        assert!(f.event_types(file.file_id).await.is_empty());
    }
    assert!(f
        .store
        .derived_files(f.source.file_id)
        .await
        .unwrap()
        .is_empty());
    for job in [&fam.main_job, &fam.variant_job] {
        assert_eq!(f.store.encoding_job(job).await.unwrap(), None);
        assert!(f.store.job_artifacts(job).await.unwrap().is_empty());
    }
    assert_eq!(
        f.store.live_stream_job(fam.stream.file_id).await.unwrap(),
        None
    );
    // The tenant hears of its own file only.
    assert_eq!(
        f.event_types(f.source.file_id).await,
        vec!["file.deleted", "file.ready"]
    );
}

#[tokio::test]
async fn evicting_a_superseded_source_deletes_what_derives_from_it() {
    let f = fixture().await;
    let fam = family(&f).await;
    let newer = f.uploaded("clip.mp4", 5_000).await;
    let prior = f.store.file(f.source.file_id).await.unwrap().unwrap();
    assert_eq!(prior.phase, FilePhase::Cancelled);

    let blobs: HashSet<_> = f
        .store
        .evict_file(f.source.file_id, NOW)
        .await
        .unwrap()
        .into_iter()
        .collect();
    for blob in &fam.blobs {
        assert!(blobs.contains(blob), "{blob:?} not evicted");
    }
    for file in &fam.derived {
        assert_eq!(f.store.file(file.file_id).await.unwrap(), None);
    }
    assert_eq!(f.store.encoding_job(&fam.variant_job).await.unwrap(), None);
    // The source's row stays for audit, the new upload is untouched.
    assert!(f.store.file(f.source.file_id).await.unwrap().is_some());
    assert_eq!(
        f.store.shards_for_file(newer.file_id).await.unwrap().len(),
        2
    );
}
