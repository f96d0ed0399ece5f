//! A job's thumbnail artefacts against a real `zib dev` cluster, with this test as the
//! encoding node (as tests/encoding_jobs.rs): a JPEG handed over in plaintext comes
//! back from `/objects/{id}` byte for byte as `image/jpeg`, is sealed on the nodes'
//! disks, is in no listing (S3 or native) and no event; a retry replaces it; the
//! thumbnails registration accepts only the job's own artefacts of the right kind;
//! deleting the source takes the artefacts (and an aspect variant's stream file)
//! with it, blobs included.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{contains, files_under, pattern, wait_for, write_file, Cluster, MIB};
use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};
use zib_meta::{DerivedKind, FilePhase, FileRow, JobThumbnails, Store};
use zib_proto::jobs::{ArtifactStored, ClaimedJob, MAX_ARTIFACT_BYTES};
use zib_proto::{BlobId, FileId};

const ENCODER: &str = "ZB-TESTAR";
/// `zib dev`'s `node_offline_after`: past it, the test node takes no upload or shard.
const DEV_OFFLINE_AFTER_MS: i64 = 6_000;

struct Node {
    http: Client,
    api: String,
    token: String,
}

impl Node {
    fn post(&self, path: &str, body: Value) -> Response {
        self.http
            .post(format!("{}{path}", self.api))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .expect("node RPC")
    }

    fn artifact(&self, job: &str, lease: &str, kind: &str, seq: u32, body: Vec<u8>) -> Response {
        self.http
            .post(format!(
                "{}/v1/node/jobs/{job}/artifacts/{kind}?seq={seq}",
                self.api
            ))
            .bearer_auth(&self.token)
            .header("x-zib-lease", lease)
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .send()
            .expect("artefact upload")
    }

    fn stored(&self, job: &str, lease: &str, kind: &str, seq: u32, body: &[u8]) -> ArtifactStored {
        let resp = self.artifact(job, lease, kind, seq, body.to_vec());
        let status = resp.status().as_u16();
        assert_eq!(status, 200, "{kind}: {}", resp.text().unwrap_or_default());
        resp.json().expect("ArtifactStored")
    }

    fn thumbnails(&self, job: &str, body: Value) -> (u16, String) {
        let resp = self.post(&format!("/v1/node/jobs/{job}/thumbnails"), body);
        (resp.status().as_u16(), resp.text().unwrap_or_default())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn cluster_token(cluster: &Cluster) -> String {
    let text = std::fs::read_to_string(cluster.data_dir().join("secrets.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cluster_token"].as_str().unwrap().to_string()
}

/// A real JPEG frame from ffmpeg's test pattern, made in memory.
fn jpeg(size: &str, seed: u32) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!(
            "testsrc2=size={size}:rate=1,noise=alls={seed}:allf=t"
        ))
        .args(["-frames:v", "1", "-f", "image2", "-c:v", "mjpeg", "pipe:1"])
        .output()
        .expect("ffmpeg is installed (scripts/install-media-deps.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(&out.stdout[..3], &[0xFF, 0xD8, 0xFF], "a JPEG");
    out.stdout
}

fn get(http: &Client, url: &str) -> (u16, String, Vec<u8>) {
    let resp = http.get(url).send().expect("GET");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, ct, resp.bytes().expect("body").to_vec())
}

/// Where any node keeps blob `blob`.
fn blob_on_disk(cluster: &Cluster, blob: BlobId) -> bool {
    let name = blob.to_string();
    cluster
        .node_dirs()
        .iter()
        .any(|d| d.join("blobs").join(&name[..2]).join(&name).exists())
}

/// A cluster with this test registered as its only encoding node (offline for
/// storage), and the store the server writes.
struct Rig {
    cluster: Cluster,
    http: Client,
    api: String,
    node: Node,
    rt: tokio::runtime::Runtime,
    store: Store,
}

impl Rig {
    fn start(extra_env: &[(&str, &str)]) -> Rig {
        let mut env = vec![
            ("ZIB_ENCODING_LEASE_SECS", "300"),
            // No dev node finds ffmpeg: this test is the cluster's only encoder.
            ("PATH", "/nonexistent-no-ffmpeg"),
        ];
        env.extend_from_slice(extra_env);
        let cluster = Cluster::start_with_env(3, &env);
        let api = cluster.creds.api_url.clone();
        let node = Node {
            http: cluster.http(),
            api: api.clone(),
            token: cluster_token(&cluster),
        };
        let rt = common::rt();
        let store = rt
            .block_on(Store::open_sqlite(&cluster.data_dir().join("meta.db")))
            .unwrap();
        let resp = node.post(
            "/v1/node/register",
            json!({ "node_id": ENCODER, "public_url": "http://127.0.0.1:9",
                    "capacity_bytes": 1u64 << 30, "free_bytes": 1u64 << 30,
                    "capabilities": ["encode"] }),
        );
        assert!(resp.status().is_success());
        let rig = Rig {
            http: cluster.http(),
            cluster,
            api,
            node,
            rt,
            store,
        };
        rig.wait_offline();
        rig
    }

    /// The test node heartbeats only to request an encode (which needs an `encode`
    /// node online): once offline again it is nobody's originator or shard holder,
    /// so uploads and artefacts land on the real nodes only.
    fn wait_offline(&self) {
        wait_for(
            "the test node to be offline",
            Duration::from_secs(20),
            || {
                let n = self
                    .rt
                    .block_on(self.store.node(&ENCODER.parse().unwrap()))
                    .unwrap()
                    .unwrap();
                now_ms() - n.last_heartbeat_at > DEV_OFFLINE_AFTER_MS + 500
            },
        );
    }

    fn upload(&self, key: &str, seed: u64) -> FileId {
        let clip = pattern(MIB + 7, seed);
        let path = write_file(self.cluster.data_dir(), "clip.mp4", &clip);
        let (file_id, _) = self.cluster.upload(&path, "videos", key);
        file_id.parse().unwrap()
    }

    /// Requests an encode of `file_id` and claims it: (job id, lease token).
    fn encode_and_claim(&self, file_id: FileId) -> (String, String) {
        let beat = self.node.post(
            "/v1/node/heartbeat",
            json!({ "node_id": ENCODER, "free_bytes": 1u64 << 30, "used_bytes": 0 }),
        );
        assert!(beat.status().is_success());
        let resp = self
            .http
            .post(format!("{}/v1/api/encoding/request", self.api))
            .header("Authorization", self.cluster.bearer())
            .json(&json!({ "object_key": file_id.to_string() }))
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().unwrap());
        let claimed = self
            .node
            .post("/v1/node/jobs/claim", json!({ "node_id": ENCODER }));
        assert_eq!(claimed.status().as_u16(), 200);
        let job: ClaimedJob = claimed.json().unwrap();
        self.wait_offline();
        (job.job_id, job.lease_token)
    }

    fn file(&self, id: FileId) -> Option<FileRow> {
        self.rt.block_on(self.store.file(id)).unwrap()
    }

    fn blobs_of(&self, id: FileId) -> Vec<BlobId> {
        let shards = self.rt.block_on(self.store.shards_for_file(id)).unwrap();
        assert!(!shards.is_empty());
        shards.into_iter().map(|s| s.blob_id).collect()
    }

    fn wait_blobs_gone(&self, blobs: &[BlobId]) {
        wait_for(
            "the artefacts' blobs to go",
            Duration::from_secs(20),
            || blobs.iter().all(|b| !blob_on_disk(&self.cluster, *b)),
        );
    }
}

#[test]
fn artefacts_are_sealed_unlisted_files_that_go_with_their_source() {
    let rig = Rig::start(&[]);
    let (cluster, http, api, node, rt, store) = (
        &rig.cluster,
        &rig.http,
        rig.api.clone(),
        &rig.node,
        &rig.rt,
        &rig.store,
    );
    let source_id = rig.upload("clips/clip.mp4", 21);
    let file_id = source_id.to_string();
    let (job_id, lease) = rig.encode_and_claim(source_id);

    // The poster: stored, served back as it was, with its Content-Type.
    let poster = jpeg("320x180", 10);
    let first = node.stored(&job_id, &lease, "poster", 0, &poster);
    assert_eq!(first.url, format!("{api}/objects/{}", first.file_id));
    let (status, ct, body) = get(http, &first.url);
    assert_eq!((status, ct.as_str()), (200, "image/jpeg"));
    assert!(body == poster, "the poster comes back byte for byte");
    // A retry replaces it: the earlier file is gone.
    let poster = jpeg("320x180", 20);
    let stored_poster = node.stored(&job_id, &lease, "poster", 0, &poster);
    assert_ne!(stored_poster.file_id, first.file_id);
    assert_eq!(get(http, &first.url).0, 404);
    assert!(get(http, &stored_poster.url).2 == poster);

    let sheet = jpeg("1600x900", 30);
    let stored_sheet = node.stored(&job_id, &lease, "sprite_sheet", 0, &sheet);
    let vtt = format!(
        "WEBVTT\n\n00:00:00.000 --> 00:00:05.000\n{}#xywh=0,0,160,90\n",
        stored_sheet.url
    );
    let stored_vtt = node.stored(&job_id, &lease, "sprite_vtt", 0, vtt.as_bytes());
    let (status, ct, body) = get(http, &stored_vtt.url);
    assert_eq!(
        (status, ct.as_str(), body),
        (200, "text/vtt", vtt.clone().into_bytes())
    );
    let (_, ct, _) = get(http, &stored_sheet.url);
    assert_eq!(ct, "image/jpeg");

    // What the route refuses.
    let refused = node.artifact(&job_id, &lease, "trailer", 0, poster.clone());
    assert_eq!(refused.status().as_u16(), 400);
    assert!(refused.text().unwrap().contains("trailer"));
    assert_eq!(
        node.artifact(&job_id, &lease, "poster", 0, vec![])
            .status()
            .as_u16(),
        400
    );
    assert_eq!(
        node.artifact(&job_id, "not-the-lease", "poster", 0, poster.clone())
            .status()
            .as_u16(),
        410
    );
    let too_big = node.artifact(
        &job_id,
        &lease,
        "poster",
        0,
        vec![0xFF; MAX_ARTIFACT_BYTES + 1],
    );
    assert_eq!(too_big.status().as_u16(), 413);

    // The registration names only this job's artefacts, each of its kind.
    let register = |poster: FileId, sheets: Vec<FileId>, vtt: Option<FileId>, lease: &str| {
        node.thumbnails(
            &job_id,
            json!({ "lease_token": lease, "poster_file_id": poster,
                    "sprite_sheet_file_ids": sheets, "sprite_vtt_file_id": vtt }),
        )
    };
    let sheets = vec![stored_sheet.file_id];
    let (status, text) = register(source_id, sheets.clone(), Some(stored_vtt.file_id), &lease);
    assert_eq!(status, 400, "a foreign file as the poster: {text}");
    assert!(text.contains("poster_file_id"), "{text}");
    let (status, text) = register(
        stored_sheet.file_id,
        sheets.clone(),
        Some(stored_vtt.file_id),
        &lease,
    );
    assert_eq!(status, 400, "a sprite sheet as the poster: {text}");
    let (status, _) = register(first.file_id, sheets.clone(), None, &lease);
    assert_eq!(status, 400, "the replaced poster is no artefact any more");
    let (status, _) = register(
        stored_poster.file_id,
        sheets.clone(),
        Some(stored_vtt.file_id),
        "not-the-lease",
    );
    assert_eq!(status, 410);
    assert_eq!(
        rt.block_on(store.encoding_job(&job_id))
            .unwrap()
            .unwrap()
            .thumbnails,
        None
    );
    for _ in 0..2 {
        let (status, text) = register(
            stored_poster.file_id,
            sheets.clone(),
            Some(stored_vtt.file_id),
            &lease,
        );
        assert_eq!(status, 204, "{text}");
    }
    assert_eq!(
        rt.block_on(store.encoding_job(&job_id))
            .unwrap()
            .unwrap()
            .thumbnails,
        Some(JobThumbnails {
            poster_file_id: stored_poster.file_id,
            sprite_sheet_file_ids: sheets,
            sprite_vtt_file_id: Some(stored_vtt.file_id),
        })
    );

    // In no listing: only the upload is there.
    let native: Value = http
        .get(format!("{api}/v1/api/storage/videos"))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let keys: Vec<&str> = native["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["clips/clip.mp4"]);
    let listed = http
        .get(format!("{api}/s3/videos?list-type=2"))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap();
    assert_eq!(listed.status().as_u16(), 200);
    let xml = listed.text().unwrap();
    assert!(xml.contains("<Key>clips/clip.mp4</Key>"), "{xml}");
    assert!(!xml.contains(".zib"), "an artefact is listed: {xml}");
    assert!(xml.contains("<KeyCount>1</KeyCount>"), "{xml}");

    // Sealed on disk; never announced to the tenant.
    let roots = cluster.node_dirs();
    let middle = |b: &[u8]| b[b.len() / 2..b.len() / 2 + 64].to_vec();
    let needles = [
        middle(&poster),
        middle(&sheet),
        stored_sheet.url.clone().into_bytes(),
    ];
    for root in &roots {
        for f in files_under(root) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            for (i, n) in needles.iter().enumerate() {
                assert!(!contains(&bytes, n), "plaintext of artefact {i} in {f:?}");
            }
        }
    }
    let source = rt.block_on(store.file(source_id)).unwrap().unwrap();
    for id in [
        stored_poster.file_id,
        stored_sheet.file_id,
        stored_vtt.file_id,
    ] {
        let events = rt
            .block_on(store.list_webhook_events(&source.tenant_id, Some(&id.to_string()), 10))
            .unwrap();
        assert!(events.is_empty(), "{events:?}");
    }

    // An aspect variant's stream file (as the variant request creates it) has no
    // bytes: the CDN points at its stream.
    let stream = variant_stream_file(rt, store, &source);
    let (status, _, body) = get(http, &format!("{api}/objects/{stream}"));
    assert_eq!(status, 404);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains(&format!("/stream/{stream}/master.m3u8")),
        "{text}"
    );

    // The durability workers treat them like any file: verified, then safe (still
    // unannounced), still served.
    let artefacts = [
        stored_poster.file_id,
        stored_sheet.file_id,
        stored_vtt.file_id,
    ];
    wait_for("the artefacts to be safe", Duration::from_secs(60), || {
        artefacts.iter().all(|id| {
            rt.block_on(store.file(*id))
                .unwrap()
                .is_some_and(|f| f.phase == FilePhase::Safe)
        })
    });
    assert!(get(http, &stored_poster.url).2 == poster);
    for id in artefacts {
        let events = rt
            .block_on(store.list_webhook_events(&source.tenant_id, Some(&id.to_string()), 10))
            .unwrap();
        assert!(events.is_empty(), "{events:?}");
    }

    // An artefact is not an upload: the tenant cannot delete it on its own (its job
    // would name a missing file); the API answers as for a file it does not have
    // (the contract's `already_deleted`), and the poster is still served.
    let resp = http
        .delete(format!("{api}/v1/api/file/{}", stored_poster.file_id))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let answer: Value = resp.json().unwrap();
    assert_eq!(answer["already_deleted"], true, "{answer}");
    assert!(get(http, &stored_poster.url).2 == poster);

    // Deleting the source takes its artefacts, their blobs and the variant with it.
    let mut blobs = Vec::new();
    for id in artefacts {
        let shards = rt.block_on(store.shards_for_file(id)).unwrap();
        assert!(!shards.is_empty());
        blobs.extend(shards.into_iter().map(|s| s.blob_id));
    }
    assert!(blobs.iter().all(|b| blob_on_disk(cluster, *b)));
    let resp = http
        .delete(format!("{api}/v1/api/file/{file_id}"))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().unwrap());
    for id in artefacts {
        assert_eq!(get(http, &format!("{api}/objects/{id}")).0, 404);
        assert_eq!(rt.block_on(store.file(id)).unwrap(), None);
    }
    assert_eq!(rt.block_on(store.file(stream)).unwrap(), None);
    assert_eq!(rt.block_on(store.encoding_job(&job_id)).unwrap(), None);
    wait_for(
        "the artefacts' blobs to go",
        Duration::from_secs(20),
        || blobs.iter().all(|b| !blob_on_disk(cluster, *b)),
    );
    // The node's late call finds nothing to work on.
    let late = node.artifact(&job_id, &lease, "poster", 0, poster.clone());
    assert_eq!(late.status().as_u16(), 410);
}

#[test]
fn a_cancelled_job_and_a_superseded_source_take_their_artefacts_along() {
    // Uploads from 1 MiB go in parts: so does an artefact that large.
    let rig = Rig::start(&[
        ("ZIB_MULTIPART_THRESHOLD", "1048576"),
        ("ZIB_PART_SIZE", "262144"),
    ]);
    let source = rig.upload("clips/take.mp4", 31);
    let poster = jpeg("320x180", 40);

    // The tenant cancels the encode: its artefacts go, and the node is stopped.
    let (job, lease) = rig.encode_and_claim(source);
    let cancelled = rig.node.stored(&job, &lease, "poster", 0, &poster);
    let blobs = rig.blobs_of(cancelled.file_id);
    assert_eq!(get(&rig.http, &cancelled.url).0, 200);
    let resp = rig
        .http
        .delete(format!("{}/v1/api/my-jobs/{source}", rig.api))
        .header("Authorization", rig.cluster.bearer())
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().unwrap());
    assert_eq!(get(&rig.http, &cancelled.url).0, 404);
    assert_eq!(rig.file(cancelled.file_id), None);
    assert!(rig
        .rt
        .block_on(rig.store.job_artifacts(&job))
        .unwrap()
        .is_empty());
    rig.wait_blobs_gone(&blobs);
    let late = rig.node.artifact(&job, &lease, "poster", 0, poster.clone());
    assert_eq!(late.status().as_u16(), 410);

    // A new encode with a poster and a variant; then the key is uploaded again.
    let (job, lease) = rig.encode_and_claim(source);
    let kept = rig.node.stored(&job, &lease, "poster", 0, &poster);
    let large = pattern(MIB + MIB / 2 + 3, 33);
    let sheet = rig.node.stored(&job, &lease, "sprite_sheet", 0, &large);
    assert!(
        rig.file(sheet.file_id).unwrap().part_count > 1,
        "sent in parts"
    );
    let (status, ct, body) = get(&rig.http, &sheet.url);
    assert_eq!((status, ct.as_str()), (200, "image/jpeg"));
    assert!(body == large, "a multipart artefact comes back whole");
    let mut blobs = rig.blobs_of(kept.file_id);
    blobs.extend(rig.blobs_of(sheet.file_id));
    let row = rig.file(source).unwrap();
    let stream = variant_stream_file(&rig.rt, &rig.store, &row);
    let newer = rig.upload("clips/take.mp4", 32);
    assert_ne!(newer, source);
    assert_eq!(get(&rig.http, &kept.url).0, 404);
    assert_eq!(get(&rig.http, &sheet.url).0, 404);
    assert_eq!(rig.file(kept.file_id), None);
    assert_eq!(rig.file(stream), None);
    rig.wait_blobs_gone(&blobs);
    let late = rig.node.artifact(&job, &lease, "poster", 0, poster.clone());
    assert_eq!(
        late.status().as_u16(),
        410,
        "the superseded file's encode is cancelled"
    );
    // The new upload is whole and current.
    let (status, _, _) = get(&rig.http, &format!("{}/objects/{newer}", rig.api));
    assert_eq!(status, 200);
}

/// A variant stream file of `source` made with the store calls the variant request
/// uses: registered, marked derived, distributed with no shards.
fn variant_stream_file(rt: &tokio::runtime::Runtime, store: &Store, source: &FileRow) -> FileId {
    let row = FileRow {
        file_id: FileId::new_random(),
        object_key: format!("{}/.zib/9x16", source.object_key),
        size: 0,
        ciphertext_size: 0,
        content_type: "application/vnd.apple.mpegurl".into(),
        phase: FilePhase::Pending,
        upload_blob_id: BlobId::new_random(),
        ..source.clone()
    };
    rt.block_on(async {
        store.insert_file(&row).await.unwrap();
        assert!(store
            .mark_derived(row.file_id, source.file_id, DerivedKind::AspectVariant)
            .await
            .unwrap());
        store
            .complete_distribution(row.file_id, &[], now_ms(), "superseded")
            .await
            .unwrap();
    });
    row.file_id
}
