//! Aspect variants and the video blocks as a tenant meets them on a real `zib dev`:
//! `aspect_variants_only` refusals (400 naming the field, 409 before an encode),
//! the backfill answer and its idempotency, the `aspect_variants` block (`{}` while
//! no variant is encoded, keyed by ratio after, omitted when none was asked) and the
//! `video` block on the job and pipeline status, a variant job's own status and its
//! one event (`encoding.complete` naming its parent), my-jobs listing main jobs only,
//! and cancelling a main job cancelling its variant in flight.
//!
//! No node runs ffmpeg here (`ZIB_FFMPEG=/bin/false`): the test gives a real node the
//! `encode` capability and drives the steps an encoding node takes (claim, probe,
//! segment, publish, done) through the node RPC, as that node. The variant's own
//! output (crop, ladder, poster) is the encoding node's and is checked end to end
//! elsewhere.

mod common;
#[path = "common/webhook_receiver.rs"]
mod receiver;

use std::time::Duration;

use common::*;
use receiver::Receiver;
use serde_json::{json, Value};
use zib_proto::jobs::ClaimedJob;
use zib_proto::NodeId;

const WAIT: Duration = Duration::from_secs(60);

fn call(
    cluster: &Cluster,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = cluster
        .http()
        .request(method, format!("{}{path}", cluster.creds.api_url))
        .header("Authorization", cluster.bearer());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

fn request(cluster: &Cluster, body: Value) -> (u16, Value) {
    call(
        cluster,
        reqwest::Method::POST,
        "/v1/api/encoding/request",
        Some(body),
    )
}

fn get_json(cluster: &Cluster, path: &str) -> Value {
    let (status, v) = call(cluster, reqwest::Method::GET, path, None);
    assert_eq!(status, 200, "{path}: {v}");
    v
}

fn job(cluster: &Cluster, id: &str) -> Value {
    get_json(cluster, &format!("/v1/api/encoding/jobs/{id}"))
}

fn encoding_stage(cluster: &Cluster, file: &str) -> Value {
    get_json(cluster, &format!("/v1/api/pipeline/{file}"))["stages"]["encoding"].clone()
}

fn upload(cluster: &Cluster, key: &str, seed: u64) -> String {
    let work = tempfile::tempdir().unwrap();
    let path = write_file(work.path(), "clip.mp4", &pattern(300_000, seed));
    cluster.upload(&path, "video", key).0
}

fn cluster_token(cluster: &Cluster) -> String {
    let secrets: Value =
        serde_json::from_slice(&std::fs::read(cluster.data_dir().join("secrets.json")).unwrap())
            .unwrap();
    secrets["cluster_token"].as_str().unwrap().to_string()
}

/// Registers the first node again advertising `encode` (what a node with a working
/// ffmpeg sends); its heartbeats keep it online. Returns its id.
fn advertise_encode(cluster: &Cluster) -> NodeId {
    let store = rt()
        .block_on(zib_meta::Store::open_sqlite(
            &cluster.data_dir().join("meta.db"),
        ))
        .unwrap();
    let mut nodes = rt().block_on(store.list_nodes()).unwrap();
    nodes.sort_by(|a, b| a.node_id.as_str().cmp(b.node_id.as_str()));
    let node = nodes.into_iter().next().expect("a node");
    let resp = node_post(
        cluster,
        "/v1/node/register",
        json!(zib_proto::node_rpc::RegisterRequest {
            node_id: node.node_id.clone(),
            public_url: node.public_url.clone(),
            capacity_bytes: node.capacity_bytes,
            free_bytes: node.free_bytes,
            zone: node.zone.clone(),
            capabilities: vec!["encode".into()],
        }),
    );
    assert_eq!(resp.status().as_u16(), 200);
    node.node_id
}

fn node_post(cluster: &Cluster, path: &str, body: Value) -> reqwest::blocking::Response {
    cluster
        .http()
        .post(format!("{}{path}", cluster.creds.api_url))
        .bearer_auth(cluster_token(cluster))
        .json(&body)
        .send()
        .unwrap()
}

/// Claims the oldest claimable job as `node`.
fn claim(cluster: &Cluster, node: &NodeId) -> ClaimedJob {
    let resp = node_post(cluster, "/v1/node/jobs/claim", json!({ "node_id": node }));
    assert_eq!(resp.status().as_u16(), 200, "a job to claim");
    resp.json().unwrap()
}

/// Finishes a claimed job as its encoding node would: the probe of a 640×360 clip
/// without audio, a one-rung ladder of one segment, the rung published, done.
fn finish(cluster: &Cluster, node: &NodeId, claimed: &ClaimedJob) {
    let base = format!("/v1/node/jobs/{}", claimed.job_id);
    let lease = &claimed.lease_token;
    let blob = zib_proto::BlobId::new_random();
    for (path, body) in [
        (
            "probed",
            json!({ "lease_token": lease,
                    "probe": { "duration_secs": 4.0, "width": 640, "height": 360, "frame_rate": 30.0,
                               "video_codec": "h264", "audio_codec": null },
                    "renditions": [{ "name": "360p", "width": 640, "height": 360,
                                     "codecs": "avc1.64001e", "frame_rate": 30.0 }] }),
        ),
        (
            "segments",
            json!({ "node_id": node, "lease_token": lease, "rendition": "360p", "seq": 0,
                    "duration_ms": 4000, "size": 1000, "blake3": "ab".repeat(32),
                    "iv": "00".repeat(16), "blob_id": blob }),
        ),
        (
            "renditions/360p/published",
            json!({ "lease_token": lease, "segment_count": 1 }),
        ),
        ("done", json!({ "lease_token": lease })),
    ] {
        let resp = node_post(cluster, &format!("{base}/{path}"), body);
        let status = resp.status().as_u16();
        assert!(
            status < 300,
            "{path}: {status} {}",
            resp.text().unwrap_or_default()
        );
    }
}

/// `{cdn}/stream/{file}/master.m3u8`.
fn stream_url(cluster: &Cluster, file: &str) -> String {
    let cdn = cluster.creds.cdn_url.trim_end_matches('/');
    format!(
        "{}/stream/{file}/master.m3u8",
        cdn.strip_suffix("/objects").unwrap_or(cdn)
    )
}

#[test]
fn a_backfilled_variant_from_request_to_its_completion() {
    let cluster = Cluster::start_with_env(3, &[("ZIB_FFMPEG", "/bin/false")]);
    let hook = Receiver::start();
    let a = upload(&cluster, "clips/a.mp4", 1);

    // 400s name the field.
    for body in [
        json!({"object_key": a, "aspect_variants_only": ["9:16"], "force": true}),
        json!({"object_key": a, "aspect_variants_only": ["9:16"], "aspect_variants": ["9:16"]}),
        json!({"object_key": a, "aspect_variants_only": ["4:3"]}),
        json!({"object_key": a, "aspect_variants_only": []}),
        json!({"object_key": a, "aspect_variants_only": "9:16"}),
    ] {
        let (status, v) = request(&cluster, body.clone());
        assert_eq!(status, 400, "{body} -> {v}");
        assert_eq!(v["code"], "invalid_field", "{body} -> {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("aspect_variants_only"),
            "{body} -> {v}"
        );
    }
    // Before any encode: 409 saying what to do (whether or not an encoder is online).
    let backfill = json!({"object_key": a, "aspect_variants_only": ["9:16"]});
    let refused_before_encode = |cluster: &Cluster| {
        let (status, v) = request(cluster, backfill.clone());
        assert_eq!(status, 409, "{v}");
        let error = v["error"].as_str().unwrap();
        assert!(error.contains("no finished encode"), "{v}");
        assert!(error.contains("request the encode first"), "{v}");
    };
    refused_before_encode(&cluster);
    let encoder = advertise_encode(&cluster);
    refused_before_encode(&cluster);

    // A plain encode: no variant asked, so no `aspect_variants` anywhere.
    let (status, queued) = request(
        &cluster,
        json!({"object_key": a, "webhook_url": hook.url("/job"), "thumbnails": false}),
    );
    assert_eq!(status, 200, "{queued}");
    let main = queued["encoding_id"].as_str().unwrap().to_string();
    refused_before_encode(&cluster);
    let stage = encoding_stage(&cluster, &a);
    assert!(stage.get("aspect_variants").is_none(), "{stage}");
    assert_eq!(stage["video"], Value::Null, "not probed yet: {stage}");
    assert_eq!(stage["thumbnails"], Value::Null);

    let claimed = claim(&cluster, &encoder);
    assert_eq!(claimed.job_id, main);
    assert_eq!(claimed.aspect_ratio, None);
    assert_eq!(claimed.thumbnails, None, "the tenant opted out");
    finish(&cluster, &encoder, &claimed);
    let video = json!({"duration": 4.0, "width": 640, "height": 360, "frame_rate": 30.0,
                       "video_codec": "h264", "audio_codec": null, "has_audio": false});
    let stage = encoding_stage(&cluster, &a);
    assert_eq!(stage["phase"], "local_complete", "{stage}");
    assert_eq!(stage["video"], video, "the pipeline shows the probe");
    assert!(stage.get("aspect_variants").is_none(), "{stage}");
    let status_a = job(&cluster, &main);
    assert_eq!(status_a["video"], video);
    assert!(status_a.get("aspect_variants").is_none(), "{status_a}");
    assert!(status_a.get("parent_encoding_job_id").is_none());

    // The backfill: only a child, answered again while it is in flight.
    let (status, answer) = request(&cluster, backfill.clone());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "queued");
    assert_eq!(answer["mode"], "aspect_variants_only");
    assert_eq!(answer["parent_encoding_job_id"], main.as_str());
    assert_eq!(answer["file_id"], a.as_str());
    let children = answer["child_encoding_job_ids"].as_array().unwrap().clone();
    assert_eq!(children.len(), 1, "{answer}");
    let child = children[0].as_str().unwrap().to_string();
    let (status, again) = request(&cluster, backfill.clone());
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, answer, "idempotent");
    // By bucket and key too.
    let (_, by_key) = request(
        &cluster,
        json!({"object_key": "clips/a.mp4", "bucket": "video", "aspect_variants_only": ["9:16"]}),
    );
    assert_eq!(by_key["child_encoding_job_ids"], json!([child]));
    // The main encode was not re-run.
    assert_eq!(job(&cluster, &main)["phase"], "local_complete");

    // Asked for, none encoded yet: `{}` on the parent's status and the pipeline.
    assert_eq!(job(&cluster, &main)["aspect_variants"], json!({}));
    assert_eq!(encoding_stage(&cluster, &a)["aspect_variants"], json!({}));
    // The child: its own job, stream file and ratio; not a my-jobs row.
    let c = job(&cluster, &child);
    assert_eq!(c["parent_encoding_job_id"], main.as_str(), "{c}");
    assert_eq!(c["aspect_ratio"], "9:16");
    assert_eq!(c["phase"], "queued");
    assert_eq!(c["hls_manifest_url"], Value::Null);
    let stream_file = c["file_id"].as_str().unwrap().to_string();
    assert_ne!(stream_file, a, "a variant has its own file_id");
    let (_, mine) = call(
        &cluster,
        reqwest::Method::GET,
        "/v1/api/my-jobs?status=all",
        None,
    );
    let rows = mine["jobs"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{mine}");
    assert_eq!(rows[0]["encoding_id"], main.as_str());
    // The stream file is no upload: it cannot be encoded, cancelled or retried.
    let (status, v) = request(&cluster, json!({"object_key": stream_file}));
    assert_eq!(status, 404, "{v}");
    for method in [reqwest::Method::DELETE, reqwest::Method::POST] {
        let path = match method {
            reqwest::Method::DELETE => format!("/v1/api/my-jobs/{stream_file}"),
            _ => format!("/v1/api/my-jobs/{stream_file}/retry"),
        };
        let (status, v) = call(&cluster, method, &path, None);
        assert_eq!(status, 404, "{path}: {v}");
    }
    assert_eq!(job(&cluster, &child)["phase"], "queued");

    // The encoding node claims the child: the crop and its own key.
    let claimed = claim(&cluster, &encoder);
    assert_eq!(claimed.job_id, child);
    assert_eq!(claimed.aspect_ratio.as_deref(), Some("9:16"));
    assert_eq!(
        claimed.thumbnails, None,
        "the parent's opt-out carries over"
    );
    // It reads the uploaded file's source, not its (empty) stream file.
    let source = cluster
        .http()
        .get(&claimed.source.url)
        .bearer_auth(cluster_token(&cluster))
        .header(zib_proto::jobs::LEASE_HEADER, &claimed.lease_token)
        .send()
        .unwrap();
    assert_eq!(source.status().as_u16(), 200);
    let bytes = source.bytes().unwrap();
    assert_eq!(claimed.source.size, 300_000);
    assert_eq!(bytes.len() as u64, claimed.source.ciphertext_size);
    assert!(bytes.len() > 300_000);
    finish(&cluster, &encoder, &claimed);

    let vertical = stream_url(&cluster, &stream_file);
    let entry = json!({"9:16": {"hls_manifest_url": vertical, "poster_url": null}});
    assert_eq!(job(&cluster, &main)["aspect_variants"], entry);
    assert_eq!(encoding_stage(&cluster, &a)["aspect_variants"], entry);
    let c = job(&cluster, &child);
    assert_eq!(c["hls_manifest_url"], vertical.as_str(), "{c}");
    assert_eq!(c["aspect_variants"], entry);
    // Encoded: the backfill answers the same child.
    let (_, again) = request(&cluster, backfill);
    assert_eq!(again["child_encoding_job_ids"], json!([child]));
    // The vertical stream is served from its own file id.
    let resp = cluster.http().get(&vertical).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.text().unwrap().starts_with("#EXTM3U"));

    // Events: the child sends only its encoding.complete, to the parent's target,
    // naming the uploaded file, its parent and ratio.
    let complete_of = |rs: &[receiver::Received], id: &str| {
        rs.iter()
            .any(|r| r.json()["job_id"] == id && r.event() == "encoding.complete")
    };
    let got = hook.wait_until("both encoding.complete events", WAIT, |rs| {
        complete_of(rs, &child) && complete_of(rs, &main)
    });
    let of = |id: &str| -> Vec<Value> {
        got.iter()
            .filter(|r| r.json()["job_id"] == id)
            .map(|r| r.json())
            .collect()
    };
    let child_events = of(&child);
    assert_eq!(child_events.len(), 1, "{child_events:?}");
    let done = &child_events[0];
    assert_eq!(done["event"], "encoding.complete");
    assert_eq!(done["file_id"], a.as_str());
    assert_eq!(done["parent_encoding_job_id"], main.as_str());
    assert_eq!(done["aspect_ratio"], "9:16");
    assert_eq!(done["hls_manifest_url"], vertical.as_str());
    assert_eq!(done["aspect_variants"], entry);
    assert_eq!(done["thumbnails"], Value::Null);
    let main_complete = of(&main)
        .into_iter()
        .find(|e| e["event"] == "encoding.complete")
        .expect("the main job's encoding.complete");
    assert!(
        main_complete.get("aspect_variants").is_none(),
        "asked for none when it completed: {main_complete}"
    );
    assert!(main_complete.get("parent_encoding_job_id").is_none());
}

/// Initiates with `pipeline`, then uploads through the registration.
fn upload_with_pipeline(cluster: &Cluster, key: &str, pipeline: Value) -> String {
    let data = pattern(200_000, 99);
    let (status, reg) = call(
        cluster,
        reqwest::Method::POST,
        "/v1/api/upload/initiate",
        Some(json!({"bucket": "video", "key": key, "file_size": data.len(), "pipeline": pipeline})),
    );
    assert_eq!(status, 200, "{reg}");
    let reg: zib_proto::api::Registration = serde_json::from_value(reg).unwrap();
    let work = tempfile::tempdir().unwrap();
    let path = write_file(work.path(), "f", &data);
    let client = cluster.client();
    rt().block_on(zib_client::upload_with_registration(
        client.http(),
        &reg,
        &path,
        &zib_client::UploadOptions::default(),
    ))
    .unwrap();
    reg.file_id.to_string()
}

#[test]
fn variants_declared_with_the_encode_and_cancelled_with_it() {
    let cluster = Cluster::start_with_env(3, &[("ZIB_FFMPEG", "/bin/false")]);
    let hook = Receiver::start();
    let encoder = advertise_encode(&cluster);
    let b = upload_with_pipeline(
        &cluster,
        "clips/b.mp4",
        json!({"encode": true, "aspect_variants": ["9:16"], "webhook_url": hook.url("/b")}),
    );
    // Declared but not uploaded yet: the stage is pending, its variants `{}`.
    let (status, reg) = call(
        &cluster,
        reqwest::Method::POST,
        "/v1/api/upload/initiate",
        Some(
            json!({"bucket": "video", "key": "clips/later.mp4", "file_size": 10,
                    "pipeline": {"encode": true, "aspect_variants": ["9:16"]}}),
        ),
    );
    assert_eq!(status, 200, "{reg}");
    let pending = encoding_stage(&cluster, reg["file_id"].as_str().unwrap());
    assert_eq!(pending["status"], "pending", "{pending}");
    assert_eq!(pending["aspect_variants"], json!({}), "{pending}");
    assert_eq!(pending["video"], Value::Null);

    let mut main = String::new();
    wait_for("the declared encode to be queued", WAIT, || {
        main = encoding_stage(&cluster, &b)["encoding_id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        !main.is_empty()
    });
    // Asked for with the encode: `{}` from the start.
    assert_eq!(job(&cluster, &main)["aspect_variants"], json!({}));
    assert_eq!(encoding_stage(&cluster, &b)["aspect_variants"], json!({}));
    let (_, mine) = call(
        &cluster,
        reqwest::Method::GET,
        "/v1/api/my-jobs?status=all",
        None,
    );
    assert_eq!(mine["jobs"].as_array().unwrap().len(), 1, "{mine}");
    // A backfill while the main job is in flight: nothing encoded to add to.
    let (status, v) = request(
        &cluster,
        json!({"object_key": b, "aspect_variants_only": ["9:16"]}),
    );
    assert_eq!(status, 409, "{v}");

    let store = rt()
        .block_on(zib_meta::Store::open_sqlite(
            &cluster.data_dir().join("meta.db"),
        ))
        .unwrap();
    let children = rt().block_on(store.variant_jobs(&main)).unwrap();
    assert_eq!(children.len(), 1);
    let child = children[0].id.clone();
    assert_eq!(job(&cluster, &child)["phase"], "queued");

    // The main job first (oldest first); its encoding.complete says its variant is
    // not encoded yet.
    let claimed = claim(&cluster, &encoder);
    assert_eq!(claimed.job_id, main);
    finish(&cluster, &encoder, &claimed);
    let got = hook.wait_until("the main encoding.complete", WAIT, |rs| {
        rs.iter().any(|r| r.event() == "encoding.complete")
    });
    let complete = got
        .iter()
        .find(|r| r.event() == "encoding.complete")
        .unwrap()
        .json();
    assert_eq!(complete["job_id"], main.as_str());
    assert_eq!(complete["aspect_variants"], json!({}), "{complete}");

    // Cancelling the main job cancels its variant in flight.
    let (status, v) = call(
        &cluster,
        reqwest::Method::DELETE,
        &format!("/v1/api/my-jobs/{b}"),
        None,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(job(&cluster, &main)["phase"], "cancelled");
    let c = job(&cluster, &child);
    assert_eq!(c["phase"], "cancelled", "{c}");
    let resp = node_post(
        &cluster,
        "/v1/node/jobs/claim",
        json!({ "node_id": encoder }),
    );
    assert_eq!(resp.status().as_u16(), 204, "nothing left to claim");
}
