//! The node side of an encoding job against a real `zib dev` cluster, with this test
//! as the encoding node: claim, the source ciphertext (whole and ranged, decrypted
//! with the claim's key back to the upload), renewals, what the node reports, a
//! lapsed lease retried, and a cancelled job refused with `410 Gone` (a copy pushed after
//! the cancel is deleted when reported; a report naming blobs in use deletes nothing).

mod common;

use std::time::Duration;

use common::{pattern, wait_for, write_file, Cluster, MIB};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use zib_crypto::DataKey;
use zib_meta::JobPhase;
use zib_proto::jobs::{ClaimedJob, SegmentTargets};

const ENCODER: &str = "ZB-TESTEN";

struct Node {
    http: Client,
    api: String,
    token: String,
}

impl Node {
    fn post(&self, path: &str, body: Value) -> reqwest::blocking::Response {
        self.http
            .post(format!("{}{path}", self.api))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .expect("node RPC")
    }

    fn claim(&self) -> Option<ClaimedJob> {
        let resp = self.post("/v1/node/jobs/claim", json!({ "node_id": ENCODER }));
        match resp.status().as_u16() {
            204 => None,
            200 => Some(resp.json().expect("ClaimedJob")),
            s => panic!("claim answered {s}: {}", resp.text().unwrap_or_default()),
        }
    }

    fn renew(&self, job: &str, token: &str, progress: f64) -> u16 {
        self.post(
            &format!("/v1/node/jobs/{job}/lease"),
            json!({ "node_id": ENCODER, "lease_token": token, "stage": "encoding",
                    "progress": progress, "phase_progress": progress }),
        )
        .status()
        .as_u16()
    }

    fn source(&self, job: &ClaimedJob, range: Option<&str>) -> (u16, Vec<u8>) {
        let mut req = self
            .http
            .get(&job.source.url)
            .bearer_auth(&self.token)
            .header("x-zib-lease", &job.lease_token);
        if let Some(r) = range {
            req = req.header("Range", r);
        }
        let resp = req.send().expect("GET source");
        let status = resp.status().as_u16();
        (status, resp.bytes().expect("source body").to_vec())
    }
}

fn cluster_token(cluster: &Cluster) -> String {
    let text = std::fs::read_to_string(cluster.data_dir().join("secrets.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cluster_token"].as_str().unwrap().to_string()
}

fn request_encoding(cluster: &Cluster, body: Value) -> String {
    let resp = cluster
        .http()
        .post(format!("{}/v1/api/encoding/request", cluster.creds.api_url))
        .header("Authorization", cluster.bearer())
        .json(&body)
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().unwrap());
    let v: Value = resp.json().unwrap();
    v["encoding_id"].as_str().unwrap().to_string()
}

/// The node's probe report: one 360p rung of a 4 s clip.
fn probed(node: &Node, base: &str, lease: &str) -> reqwest::blocking::Response {
    node.post(
        &format!("{base}/probed"),
        json!({ "lease_token": lease,
                "probe": { "duration_secs": 4.0, "width": 640, "height": 360, "frame_rate": 30.0,
                           "video_codec": "h264", "audio_codec": null },
                "renditions": [{ "name": "360p", "width": 640, "height": 360,
                                 "codecs": "avc1.64001e", "frame_rate": 30.0 }] }),
    )
}

#[test]
fn an_encoding_node_claims_reads_reports_and_loses_its_lease() {
    let cluster = Cluster::start_with_env(
        3,
        &[
            ("ZIB_ENCODING_LEASE_SECS", "5"),
            ("ZIB_ENCODING_RETRY_BACKOFF_SECS", "1"),
            // The dev nodes find no ffmpeg, so none advertises `encode`: this test
            // is the cluster's only encoding node.
            ("PATH", "/nonexistent-no-ffmpeg"),
        ],
    );
    let node = Node {
        http: cluster.http(),
        api: cluster.creds.api_url.clone(),
        token: cluster_token(&cluster),
    };
    let rt = common::rt();
    let store = rt
        .block_on(zib_meta::Store::open_sqlite(
            &cluster.data_dir().join("meta.db"),
        ))
        .unwrap();
    let job_of = |id: &str| rt.block_on(store.encoding_job(id)).unwrap().unwrap();

    // Uploaded before the test node registers, so no shard is placed on it.
    let plaintext = pattern(5 * MIB + 12_345, 13);
    let path = write_file(cluster.data_dir(), "clip.mp4", &plaintext);
    let (file_id, _) = cluster.upload(&path, "videos", "clip.mp4");
    // Only a registered node advertising `encode` may claim.
    let refused = node.post("/v1/node/jobs/claim", json!({ "node_id": ENCODER }));
    assert_eq!(refused.status().as_u16(), 404);
    let register = |capabilities: Value| {
        let resp = node.post(
            "/v1/node/register",
            json!({ "node_id": ENCODER, "public_url": "http://127.0.0.1:9",
                    "capacity_bytes": 1u64 << 30, "free_bytes": 1u64 << 30,
                    "capabilities": capabilities }),
        );
        assert!(resp.status().is_success());
    };
    register(json!([]));
    let refused = node.post("/v1/node/jobs/claim", json!({ "node_id": ENCODER }));
    assert_eq!(refused.status().as_u16(), 403);
    register(json!(["encode"]));
    assert!(node.claim().is_none(), "nothing queued: 204");

    let first = request_encoding(&cluster, json!({ "object_key": file_id }));

    let job = node.claim().expect("the queued job");
    assert_eq!(job.job_id, first);
    assert_eq!(job.lease_secs, 5);
    assert_eq!(job.source.size, plaintext.len() as u64);
    assert_eq!(job.hls_key.len(), 32);
    assert_eq!(job_of(&first).phase, JobPhase::Encoding);
    assert!(node.claim().is_none(), "a claimed job is nobody else's");

    // The source is the stored envelope: the claim's data key opens it.
    let (status, envelope) = node.source(&job, None);
    assert_eq!(status, 200);
    assert_eq!(envelope.len() as u64, job.source.ciphertext_size);
    let mut key = [0u8; 32];
    hex::decode_to_slice(&job.source.data_key, &mut key).unwrap();
    let opened = zib_crypto::envelope::decrypt(&DataKey::from_bytes(key), &envelope).unwrap();
    assert!(opened == plaintext, "the source decrypts to the upload");
    // Ranged, across a segment boundary of the erasure layout.
    let (status, part) = node.source(&job, Some("bytes=2097000-4194500"));
    assert_eq!(status, 206);
    assert!(part == envelope[2_097_000..=4_194_500]);
    let (status, tail) = node.source(&job, Some("bytes=-100"));
    assert_eq!(
        (status, tail.as_slice()),
        (206, &envelope[envelope.len() - 100..])
    );
    let stranger = ClaimedJob {
        lease_token: "not-the-token".into(),
        ..job.clone()
    };
    assert_eq!(node.source(&stranger, None).0, 410);

    assert_eq!(node.renew(&first, &job.lease_token, 40.0), 200);
    assert_eq!(node.renew(&first, "not-the-token", 40.0), 410);
    assert_eq!(job_of(&first).progress, 40);

    // The ladder, one segment pushed to its replicas, the rung published, done.
    let lease = job.lease_token.as_str();
    let base = format!("/v1/node/jobs/{first}");
    let ok = |resp: reqwest::blocking::Response| {
        let status = resp.status().as_u16();
        assert!(
            status < 300,
            "{status}: {}",
            resp.text().unwrap_or_default()
        );
        resp
    };
    ok(probed(&node, &base, lease));
    let blob = zib_proto::BlobId::new_random();
    let targets: SegmentTargets = ok(node.post(
        &format!("{base}/segments"),
        json!({ "node_id": ENCODER, "lease_token": lease, "rendition": "360p", "seq": 0,
                "duration_ms": 4000, "size": 500_000, "blake3": "ab".repeat(32),
                "iv": "00".repeat(16), "blob_id": blob }),
    ))
    .json()
    .unwrap();
    assert_eq!(targets.targets.len(), 3, "every dev node but the encoder");
    assert!(targets
        .targets
        .iter()
        .all(|t| t.node_id.as_str() != ENCODER));
    let peers: Vec<_> = targets.targets.iter().map(|t| t.node_id.clone()).collect();
    ok(node.post(
        &format!("{base}/replicas"),
        json!({ "lease_token": lease, "blob_id": blob, "node_ids": peers }),
    ));
    let refused = node.post(
        &format!("{base}/renditions/360p/published"),
        json!({ "lease_token": lease, "segment_count": 2 }),
    );
    assert_eq!(
        refused.status().as_u16(),
        409,
        "one segment recorded, not two"
    );
    ok(node.post(
        &format!("{base}/renditions/360p/published"),
        json!({ "lease_token": lease, "segment_count": 1 }),
    ));
    let live = |file: &str| {
        rt.block_on(store.live_encoding_job_id(file.parse().unwrap()))
            .unwrap()
    };
    assert_eq!(
        live(&file_id),
        Some(first.clone()),
        "live from its first rung"
    );
    ok(node.post(&format!("{base}/done"), json!({ "lease_token": lease })));
    let done = job_of(&first);
    assert_eq!((done.phase, done.progress), (JobPhase::LocalComplete, 100));
    assert_eq!(node.renew(&first, lease, 100.0), 410, "done ends the lease");

    // A forced re-encode whose node goes silent: the lease lapses and it is retried.
    let second = request_encoding(&cluster, json!({ "object_key": file_id, "force": true }));
    let job = node.claim().expect("the re-encode");
    assert_eq!(job.job_id, second);
    wait_for("the lease to lapse", Duration::from_secs(20), || {
        job_of(&second).phase == JobPhase::Failed
    });
    let lapsed = job_of(&second);
    assert_eq!(lapsed.retry_count, 1);
    assert_eq!(
        lapsed.error_message.as_deref(),
        Some("the encoding node stopped answering")
    );
    assert_eq!(node.renew(&second, &job.lease_token, 10.0), 410);
    let mut again = None;
    wait_for("the retry", Duration::from_secs(10), || {
        again = node.claim();
        again.is_some()
    });
    let again = again.unwrap();
    assert_eq!(again.job_id, second);
    assert_ne!(again.lease_token, job.lease_token);
    assert_eq!(node.renew(&second, &again.lease_token, 5.0), 200);
    assert_eq!(
        live(&file_id),
        Some(first.clone()),
        "the old encode still serves"
    );

    // The re-encode stores a segment; its push to a peer lands after the cancel.
    let base = format!("/v1/node/jobs/{second}");
    let lease = again.lease_token.as_str();
    ok(probed(&node, &base, lease));
    let late = zib_proto::BlobId::new_random();
    let late_bytes = pattern(40_000, 5);
    let targets: SegmentTargets = ok(node.post(
        &format!("{base}/segments"),
        json!({ "node_id": ENCODER, "lease_token": lease, "rendition": "360p", "seq": 0,
                "duration_ms": 4000, "size": late_bytes.len(), "blake3": "cd".repeat(32),
                "iv": "00".repeat(16), "blob_id": late }),
    ))
    .json()
    .unwrap();
    let on_disk = |blob: &str| -> usize {
        cluster
            .node_dirs()
            .iter()
            .flat_map(|d| common::files_under(&d.join("blobs")))
            .filter(|f| f.file_name().and_then(|n| n.to_str()) == Some(blob))
            .count()
    };
    let upload_shards: Vec<String> = cluster
        .node_dirs()
        .iter()
        .flat_map(|d| common::files_under(&d.join("blobs")))
        .filter_map(|f| f.file_name().and_then(|n| n.to_str()).map(str::to_string))
        .collect();
    assert!(!upload_shards.is_empty());

    // The tenant cancels: the node's next call is refused and nothing is claimable.
    let resp = cluster
        .http()
        .delete(format!(
            "{}/v1/api/my-jobs/{file_id}",
            cluster.creds.api_url
        ))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().unwrap());
    assert_eq!(job_of(&second).phase, JobPhase::Cancelled);
    assert_eq!(node.renew(&second, &again.lease_token, 6.0), 410);
    assert_eq!(node.source(&again, None).0, 410);
    assert!(node.claim().is_none());

    // The copy lands anyway (the node has not heard yet); its report is refused and
    // the copy deleted now, not left for the orphan collector's hour.
    let target = &targets.targets[0];
    let put = node
        .http
        .put(format!("{}/v1/shards/{late}", target.node_url))
        .query(&[("token", &target.token)])
        .body(late_bytes)
        .send()
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    assert_eq!(on_disk(&late.to_string()), 1);
    let report = node.post(
        &format!("{base}/replicas"),
        json!({ "lease_token": lease, "blob_id": late, "node_ids": [target.node_id] }),
    );
    assert_eq!(report.status().as_u16(), 410);
    wait_for("the late copy deleted", Duration::from_secs(10), || {
        on_disk(&late.to_string()) == 0
    });
    // A late report naming blobs something still points to deletes nothing.
    let peers: Vec<_> = targets.targets.iter().map(|t| t.node_id.clone()).collect();
    for shard in &upload_shards {
        let report = node.post(
            &format!("{base}/replicas"),
            json!({ "lease_token": lease, "blob_id": shard, "node_ids": peers }),
        );
        assert_eq!(report.status().as_u16(), 410);
    }
    std::thread::sleep(Duration::from_secs(1));
    for shard in &upload_shards {
        assert_eq!(
            on_disk(shard),
            1,
            "a stored shard of the upload was deleted"
        );
    }
}
