//! Peer formats on a real SQLite file: the events each transition makes, and no
//! second one when a transition is reported again (a repeated publish or `done`, a
//! second delete), for superseded files, non-videos and variant jobs.

use std::str::FromStr;

use serde_json::json;
use zib_proto::peer_events::WebhookFormat;
use zib_proto::{BlobId, FileId, NodeId};

use crate::encoding::{NewRendition, NewSegment};
use crate::{FilePhase, FileRow, NewEndpoint, NewWebhookEvent, ShardRow, Store};

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    tenant: String,
    bucket_id: i64,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("meta.db"))
        .await
        .unwrap();
    let tenant = store.create_tenant("t", "AK", "x").await.unwrap().id;
    let bucket_id = store.ensure_bucket(&tenant, "library").await.unwrap().id;
    for format in [
        WebhookFormat::Lifecycle,
        WebhookFormat::Media,
        WebhookFormat::Zib,
    ] {
        store
            .create_webhook_endpoint(
                &tenant,
                NewEndpoint {
                    url: format!("https://example.com/{}", format.as_str()),
                    description: String::new(),
                    event_types: None,
                    enabled: true,
                    secret: "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ=".into(),
                    format,
                },
                1,
            )
            .await
            .unwrap();
    }
    World {
        _dir: dir,
        store,
        tenant,
        bucket_id,
    }
}

fn node(name: &str) -> NodeId {
    NodeId::from_str(name).unwrap()
}

impl World {
    async fn register(&self, key: &str, content_type: &str, at: i64) -> FileRow {
        let file = FileRow {
            file_id: FileId::new_random(),
            tenant_id: self.tenant.clone(),
            bucket_id: self.bucket_id,
            bucket: "library".into(),
            object_key: key.into(),
            size: 100,
            ciphertext_size: 132,
            content_type: content_type.into(),
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
            expires_at: at + 100_000,
            created_at: at,
            distributed_at: None,
        };
        self.store.insert_file(&file).await.unwrap();
        file
    }

    async fn distribute(&self, file: &FileRow, at: i64) {
        let shard = ShardRow {
            file_id: file.file_id,
            segment: 0,
            index: 0,
            node_id: node("ZB-NODE01"),
            blob_id: BlobId::new_random(),
            size: 132,
            blake3: vec![0; 32],
        };
        self.store
            .complete_distribution(file.file_id, &[shard], at, "superseded")
            .await
            .unwrap();
    }

    /// A job of `file` leased with token hash `h` (as a claim leaves it).
    async fn leased_job(&self, file: &FileRow, parent: Option<&str>) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO encoding_jobs (id, file_id, tenant_id, phase, phase_updated_at, \
                 wrapped_hls_key, created_at, lease_node, lease_token_hash, lease_expires_at, \
                 parent_job_id) \
             VALUES ($1, $2, $3, 'encoding', 10, $4, 10, 'ZB-NODE01', 'h', 9000000000000, $5)",
        )
        .bind(&id)
        .bind(file.file_id.to_string())
        .bind(&self.tenant)
        .bind(vec![9u8; 60])
        .bind(parent)
        .execute(&self.store.pool)
        .await
        .unwrap();
        id
    }

    /// Probes (1280×720, 3.2 s) and publishes every rung of `rungs` with one segment.
    async fn encode(&self, job: &str, rungs: &[&str]) {
        let probe = json!({"duration_secs": 3.2, "width": 1280, "height": 720,
            "frame_rate": 30.0, "video_codec": "h264", "audio_codec": null});
        let plan: Vec<NewRendition> = rungs
            .iter()
            .map(|name| NewRendition {
                name: (*name).into(),
                width: 640,
                height: name.trim_end_matches('p').parse().unwrap_or(360),
                codecs: "avc1.64001f".into(),
                frame_rate: 30.0,
            })
            .collect();
        assert!(self
            .store
            .record_job_probe(job, "h", &probe, &plan, 20)
            .await
            .unwrap());
        for name in rungs {
            let segment = NewSegment {
                rendition: (*name).into(),
                seq: 0,
                duration_ms: 3200,
                size: 1000,
                blake3: vec![1; 32],
                iv: vec![2; 16],
                blob_id: BlobId::new_random(),
            };
            self.store
                .record_segment(job, &node("ZB-NODE01"), "h", &segment, 30)
                .await
                .unwrap()
                .unwrap();
            for _ in 0..2 {
                // The node repeats the call (a retry after a lost answer).
                self.store
                    .publish_rendition(job, "h", name, 1, 40)
                    .await
                    .unwrap()
                    .unwrap();
            }
        }
    }

    async fn zib(&self, file: &FileRow, job: &str, event_type: &str) {
        self.store
            .emit_webhook_event(
                NewWebhookEvent {
                    tenant_id: self.tenant.clone(),
                    event_type: event_type.into(),
                    file_id: Some(file.file_id),
                    job_id: Some(job.into()),
                    payload: json!({"event": event_type, "job_id": job, "progress": 40}),
                },
                50,
            )
            .await
            .unwrap();
    }

    /// The file's events of `format` in the order they were made (ids are UUIDv7; the
    /// fixture's clock is not monotonic), as `(type, payload)`.
    async fn events(
        &self,
        file: &FileRow,
        format: WebhookFormat,
    ) -> Vec<(String, serde_json::Value)> {
        let mut all = self
            .store
            .list_webhook_events(&self.tenant, Some(&file.file_id.to_string()), 500)
            .await
            .unwrap();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all.into_iter()
            .filter(|e| WebhookFormat::of_payload(&e.payload) == format)
            .map(|e| (e.event_type, e.payload))
            .collect()
    }
}

fn types(events: &[(String, serde_json::Value)]) -> Vec<&str> {
    events.iter().map(|(t, _)| t.as_str()).collect()
}

#[tokio::test]
async fn a_video_gets_each_transition_once_however_often_it_is_reported() {
    let w = world().await;
    let file = w.register("shows/Pilot.mp4", "video/mp4", 1_000).await;
    w.distribute(&file, 2_000).await;
    let job = w.leased_job(&file, None).await;
    w.zib(&file, &job, "encoding.started").await;
    w.zib(&file, &job, "encoding.started").await; // a retry's claim
    w.zib(&file, &job, "encoding.progress").await;
    w.encode(&job, &["360p", "720p"]).await;
    w.zib(&file, &job, "encoding.complete").await;
    w.zib(&file, &job, "encoding.complete").await; // a repeated done

    let life = w.events(&file, WebhookFormat::Lifecycle).await;
    assert_eq!(
        types(&life),
        [
            "video.upload.started",
            "video.upload.completed",
            "video.encoding.started",
            "video.encoding.progress",
            "video.encoding.completed",
            "video.encoding.completed",
            "video.ready",
            "video.published",
        ]
    );
    let (_, ready) = &life[6];
    assert_eq!(ready["data"]["video"]["duration_ms"], 3200);
    assert_eq!(ready["data"]["video"]["width"], 1280);
    assert_eq!(ready["data"]["video"]["title"], "Pilot.mp4");
    assert_eq!(life[3].1["data"]["progress"], 40);
    let media = w.events(&file, WebhookFormat::Media).await;
    assert_eq!(
        types(&media),
        [
            "file.received",
            "encoding.started",
            "partial.finished",
            "partial.finished",
            "encoding.finished",
        ]
    );
    assert_eq!(media[2].1["qualities"], "360p");
    assert_eq!(media[4].1["qualities"], "360p,720p");

    // A forced re-encode is ready again, but published only the first time.
    let again = w.leased_job(&file, None).await;
    w.encode(&again, &["360p"]).await;
    w.zib(&file, &again, "encoding.complete").await;
    let life = w.events(&file, WebhookFormat::Lifecycle).await;
    assert_eq!(
        types(&life)[8..],
        ["video.encoding.completed", "video.ready"]
    );

    // Deleted once; a second delete finds nothing and says nothing.
    assert!(w
        .store
        .delete_file(&w.tenant, file.file_id, 60)
        .await
        .unwrap()
        .is_some());
    assert!(w
        .store
        .delete_file(&w.tenant, file.file_id, 61)
        .await
        .unwrap()
        .is_none());
    let life = w.events(&file, WebhookFormat::Lifecycle).await;
    assert_eq!(types(&life).last(), Some(&"video.deleted"));
    assert_eq!(
        types(&life)
            .iter()
            .filter(|t| **t == "video.deleted")
            .count(),
        1
    );
    assert_eq!(
        life.last().map(|l| l.1["data"]["video"].clone()),
        Some(json!({"id": file.file_id.to_string()}))
    );
}

#[tokio::test]
async fn superseded_non_video_and_variant_transitions_make_no_peer_event() {
    let w = world().await;
    // A ready video superseded by a re-upload did not fail to upload...
    let first = w.register("a/clip.mp4", "video/mp4", 1_000).await;
    w.distribute(&first, 2_000).await;
    let second = w.register("a/clip.mp4", "video/mp4", 3_000).await;
    w.distribute(&second, 4_000).await;
    let life = w.events(&first, WebhookFormat::Lifecycle).await;
    assert_eq!(
        types(&life),
        ["video.upload.started", "video.upload.completed"]
    );
    // ...but a late upload the newer one already replaced did.
    let late = w.register("a/clip.mp4", "video/mp4", 2_500).await;
    w.distribute(&late, 5_000).await;
    let life = w.events(&late, WebhookFormat::Lifecycle).await;
    assert_eq!(
        types(&life),
        ["video.upload.started", "video.upload.failed"]
    );
    assert_eq!(life[1].1["data"]["video"]["status"], "upload_failed");

    // A tenant's own key that looks like a derived file's path is an upload like any.
    let own = w.register("a/.zib/b.mp4", "video/mp4", 5_500).await;
    assert_eq!(
        types(&w.events(&own, WebhookFormat::Lifecycle).await),
        ["video.upload.started"]
    );

    // Not a video: nothing but zib events.
    let doc = w.register("docs/a.pdf", "application/pdf", 6_000).await;
    w.distribute(&doc, 7_000).await;
    assert!(w.events(&doc, WebhookFormat::Lifecycle).await.is_empty());
    assert!(w.events(&doc, WebhookFormat::Media).await.is_empty());
    assert_eq!(w.events(&doc, WebhookFormat::Zib).await.len(), 1);

    // A variant (child) job of a video: its rungs and completion are not the video's.
    let main = w.leased_job(&second, None).await;
    let child = w.leased_job(&second, Some(&main)).await;
    w.encode(&child, &["360p"]).await;
    w.zib(&second, &child, "encoding.complete").await;
    let life = w.events(&second, WebhookFormat::Lifecycle).await;
    assert_eq!(
        types(&life),
        ["video.upload.started", "video.upload.completed"]
    );
    assert!(types(&w.events(&second, WebhookFormat::Media).await)
        .iter()
        .all(|t| *t == "file.received"));
}
