//! The tenant's side of video encoding, as an integrator meets it on a real `zib
//! dev`: `POST /v1/api/encoding/request` (and `/encoding/jobs`) refuses what it
//! cannot do (400 naming the field, 404 for a missing or another tenant's file, 409
//! before the upload is done, 503 when no online node can encode), and answers
//! `queued` / `already_queued` / `already_encoded` idempotently with `force`;
//! `GET /encoding/jobs/{id}`, `my-jobs` with cancel and retry, the pipeline rollup,
//! `pipeline.encode` enqueueing the encode once the upload is distributed, a
//! re-upload cancelling the encode, and per-request webhook targets beating the
//! tenant default.
//!
//! No node runs ffmpeg here (`ZIB_FFMPEG=/bin/false`): the `encode` capability is
//! given to a real node by registering it again with it, through the node RPC, and
//! the test drives the steps an encoding node would (claim, failure, completion)
//! through the node RPC job routes, as that node.

mod common;
#[path = "common/webhook_receiver.rs"]
mod receiver;

use std::time::Duration;

use common::*;
use receiver::{zib_signature_ok, Receiver};
use serde_json::{json, Value};
use zib_proto::{FileId, NodeId};

const WAIT: Duration = Duration::from_secs(60);
/// The secret the per-request targets sign with.
const JOB_SECRET: &str = "job-secret-0123456789";

fn start() -> Cluster {
    // Nodes whose ffmpeg does not work never advertise `encode` nor claim jobs.
    Cluster::start_with_env(3, &[("ZIB_FFMPEG", "/bin/false")])
}

fn call(
    cluster: &Cluster,
    bearer: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = cluster
        .http()
        .request(method, format!("{}{path}", cluster.creds.api_url))
        .header("Authorization", bearer);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

fn post(cluster: &Cluster, path: &str, body: Value) -> (u16, Value) {
    call(
        cluster,
        &cluster.bearer(),
        reqwest::Method::POST,
        path,
        Some(body),
    )
}

fn get_json(cluster: &Cluster, path: &str) -> (u16, Value) {
    call(cluster, &cluster.bearer(), reqwest::Method::GET, path, None)
}

fn request(cluster: &Cluster, body: Value) -> (u16, Value) {
    post(cluster, "/v1/api/encoding/request", body)
}

fn upload(cluster: &Cluster, key: &str, seed: u64) -> String {
    let work = tempfile::tempdir().unwrap();
    let path = write_file(work.path(), "clip.mp4", &pattern(300_000, seed));
    cluster.upload(&path, "video", key).0
}

/// Initiates with `pipeline`, then uploads through the registration.
fn upload_with_pipeline(cluster: &Cluster, key: &str, pipeline: Value) -> String {
    let data = pattern(200_000, 99);
    let (status, reg) = post(
        cluster,
        "/v1/api/upload/initiate",
        json!({"bucket": "video", "key": key, "file_size": data.len(), "pipeline": pipeline}),
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

fn store(cluster: &Cluster) -> zib_meta::Store {
    rt().block_on(zib_meta::Store::open_sqlite(
        &cluster.data_dir().join("meta.db"),
    ))
    .unwrap()
}

fn cluster_token(cluster: &Cluster) -> String {
    let secrets: Value =
        serde_json::from_slice(&std::fs::read(cluster.data_dir().join("secrets.json")).unwrap())
            .unwrap();
    secrets["cluster_token"].as_str().unwrap().to_string()
}

/// Registers the first node again, now advertising `capabilities` (what a node with
/// a working ffmpeg sends); its heartbeats keep it online. Returns its id.
fn advertise(cluster: &Cluster, capabilities: &[&str]) -> NodeId {
    let mut nodes = rt().block_on(store(cluster).list_nodes()).unwrap();
    nodes.sort_by(|a, b| a.node_id.as_str().cmp(b.node_id.as_str()));
    let node = nodes.into_iter().next().expect("a node");
    let resp = cluster
        .http()
        .post(format!("{}/v1/node/register", cluster.creds.api_url))
        .header(
            "Authorization",
            format!("Bearer {}", cluster_token(cluster)),
        )
        .json(&zib_proto::node_rpc::RegisterRequest {
            node_id: node.node_id.clone(),
            public_url: node.public_url.clone(),
            capacity_bytes: node.capacity_bytes,
            free_bytes: node.free_bytes,
            zone: node.zone.clone(),
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
        })
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    node.node_id
}

/// A node RPC call as `node` would make it (cluster token).
fn node_post(cluster: &Cluster, path: &str, body: Value) -> reqwest::blocking::Response {
    cluster
        .http()
        .post(format!("{}{path}", cluster.creds.api_url))
        .bearer_auth(cluster_token(cluster))
        .json(&body)
        .send()
        .unwrap()
}

/// Claims the oldest claimable job as `node`: (job id, lease token).
fn claim(cluster: &Cluster, node: &NodeId) -> (String, String) {
    let resp = node_post(cluster, "/v1/node/jobs/claim", json!({ "node_id": node }));
    assert_eq!(resp.status().as_u16(), 200, "a job to claim");
    let job: zib_proto::jobs::ClaimedJob = resp.json().unwrap();
    (job.job_id, job.lease_token)
}

/// Finishes a claimed job as its encoding node would: a one-rung ladder with one
/// segment, the rung published, done (the server refuses `done` before a ladder).
fn finish(cluster: &Cluster, node: &NodeId, job: &str, lease: &str) {
    let base = format!("/v1/node/jobs/{job}");
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

fn my_jobs(cluster: &Cluster, status: &str) -> Vec<Value> {
    let (code, v) = get_json(cluster, &format!("/v1/api/my-jobs?status={status}"));
    assert_eq!(code, 200, "{v}");
    v["jobs"].as_array().unwrap().clone()
}

fn row<'a>(rows: &'a [Value], file_id: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["file_id"] == file_id)
        .unwrap_or_else(|| panic!("no my-jobs row for {file_id}: {rows:?}"))
}

#[test]
fn requests_are_validated_and_refused_before_anything_is_created() {
    let cluster = start();
    let a = upload(&cluster, "clips/a.mp4", 1);

    // No online node can encode: 503 naming the stage, and no job exists after it.
    let (status, v) = request(&cluster, json!({"object_key": a}));
    assert_eq!(status, 503, "{v}");
    assert!(v["error"].as_str().unwrap().contains("\"encode\""), "{v}");
    assert!(my_jobs(&cluster, "all").is_empty());

    // 400s name the field.
    for (body, field) in [
        (json!({}), "object_key"),
        (json!({"object_key": 7}), "object_key"),
        (
            json!({"object_key": a, "transcription": "ultra"}),
            "transcription",
        ),
        (json!({"object_key": a, "vision": "4k"}), "vision"),
        (json!({"object_key": a, "force": "yes"}), "force"),
        (
            json!({"object_key": a, "aspect_variants": ["4:3"]}),
            "aspect_variants",
        ),
        (
            json!({"object_key": a, "thumbnails": {"sprite": {"width": 1}}}),
            "thumbnails.sprite.width",
        ),
        (
            json!({"object_key": a, "webhook_url": "ftp://example.com/h"}),
            "webhook_url",
        ),
        (
            json!({"object_key": a, "webhook_url": "http://127.0.0.1:9/h", "webhook_secret": "short"}),
            "webhook_secret",
        ),
        (json!({"object_key": a, "encode": true}), "\"encode\""),
    ] {
        let (status, v) = request(&cluster, body.clone());
        assert_eq!(status, 400, "{body} -> {v}");
        assert_eq!(v["code"], "invalid_field", "{body} -> {v}");
        assert!(
            v["error"].as_str().unwrap().contains(field),
            "{body} -> {v}"
        );
    }
    let (status, v) = get_json(&cluster, "/v1/api/my-jobs?status=finished");
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("status"), "{v}");

    // Missing files are 404, by id (any other string names no file) or by bucket and
    // key.
    let missing = FileId::new_random().to_string();
    for key in [missing.as_str(), "not-a-file-id", "clips/a.mp4"] {
        let (status, v) = request(&cluster, json!({"object_key": key}));
        assert_eq!(status, 404, "{key}: {v}");
    }
    let (status, v) = request(
        &cluster,
        json!({"object_key": "clips/none.mp4", "bucket": "video"}),
    );
    assert_eq!(status, 404, "{v}");

    // A file not uploaded yet is a conflict with a clear sentence.
    let (status, reg) = post(
        &cluster,
        "/v1/api/upload/initiate",
        json!({"bucket": "video", "key": "clips/later.mp4", "file_size": 10}),
    );
    assert_eq!(status, 200, "{reg}");
    advertise(&cluster, &["encode"]);
    let (status, v) = request(&cluster, json!({"object_key": reg["file_id"]}));
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("not uploaded yet"),
        "{v}"
    );

    // The reference's Python example asks for a transcription too: refused while no
    // online node advertises its tier (tests/compute_api.rs runs one).
    let (status, v) = post(
        &cluster,
        "/v1/api/encoding/jobs",
        json!({"object_key": a, "transcription": "recommended"}),
    );
    assert_eq!(status, 503, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("\"transcription:recommended\""),
        "{v}"
    );
    let (status, queued) = post(&cluster, "/v1/api/encoding/jobs", json!({"object_key": a}));
    assert_eq!(status, 200, "{queued}");
    assert_eq!(queued["status"], "queued");

    // Another tenant's file and job behave exactly like missing ones everywhere.
    let job = queued["encoding_id"].as_str().unwrap();
    let other = cluster.create_tenant("other");
    let strip = |mut v: Value| {
        v.as_object_mut().map(|m| m.remove("request_id"));
        v["error"] = json!(v["error"]
            .as_str()
            .unwrap_or("")
            .replace(&a, "ID")
            .replace(&missing, "ID")
            .replace(job, "JOB")
            .replace("00000000-0000-4000-8000-000000000000", "JOB"));
        v
    };
    let as_other = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let (s, v) = call(&cluster, &other, method, path, body);
        (s, strip(v))
    };
    let missing_job = "00000000-0000-4000-8000-000000000000";
    for (theirs, nobodys) in [
        (
            as_other(
                reqwest::Method::POST,
                "/v1/api/encoding/request",
                Some(json!({"object_key": a})),
            ),
            as_other(
                reqwest::Method::POST,
                "/v1/api/encoding/request",
                Some(json!({"object_key": missing})),
            ),
        ),
        (
            as_other(
                reqwest::Method::GET,
                &format!("/v1/api/encoding/jobs/{job}"),
                None,
            ),
            as_other(
                reqwest::Method::GET,
                &format!("/v1/api/encoding/jobs/{missing_job}"),
                None,
            ),
        ),
        (
            as_other(
                reqwest::Method::DELETE,
                &format!("/v1/api/my-jobs/{a}"),
                None,
            ),
            as_other(
                reqwest::Method::DELETE,
                &format!("/v1/api/my-jobs/{missing}"),
                None,
            ),
        ),
        (
            as_other(
                reqwest::Method::POST,
                &format!("/v1/api/my-jobs/{a}/retry"),
                None,
            ),
            as_other(
                reqwest::Method::POST,
                &format!("/v1/api/my-jobs/{missing}/retry"),
                None,
            ),
        ),
        (
            as_other(reqwest::Method::GET, &format!("/v1/api/pipeline/{a}"), None),
            as_other(
                reqwest::Method::GET,
                &format!("/v1/api/pipeline/{missing}"),
                None,
            ),
        ),
    ] {
        assert_eq!(theirs.0, 404, "{theirs:?}");
        assert_eq!(theirs, nobodys);
    }
    let (status, v) = call(
        &cluster,
        &other,
        reqwest::Method::GET,
        "/v1/api/my-jobs?status=all",
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(v["jobs"], json!([]), "another tenant sees none of the jobs");
    // The owner's job is untouched.
    assert_eq!(
        get_json(&cluster, &format!("/v1/api/encoding/jobs/{job}")).1["phase"],
        "queued"
    );
}

#[test]
fn a_job_from_request_to_retry_to_forced_re_encode() {
    let cluster = start();
    let tenant_hook = Receiver::start();
    let job_hook = Receiver::start();
    let (status, v) = call(
        &cluster,
        &cluster.bearer(),
        reqwest::Method::PATCH,
        "/v1/api/customers/me/webhook",
        Some(json!({"webhook_url": tenant_hook.url("/tenant")})),
    );
    assert_eq!(status, 200, "{v}");
    let a = upload(&cluster, "clips/a.mp4", 1);
    let b = upload(&cluster, "clips/b.mp4", 2);
    // The encoder also advertises the vision tier the first request asks for.
    let encoder = advertise(&cluster, &["encode", "vision:hq"]);

    // Before any request: nothing declared, no encoding stage.
    let (_, p) = get_json(&cluster, &format!("/v1/api/pipeline/{a}"));
    assert_eq!(p["declared"], json!({}));
    assert_eq!(p["stages"]["encoding"], Value::Null);
    assert_eq!(p["status"], "complete");

    // A new request is queued, with its own webhook target.
    let (status, first) = request(
        &cluster,
        json!({"object_key": a, "webhook_url": job_hook.url("/job"), "webhook_secret": JOB_SECRET,
               "thumbnails": false, "vision": "hq"}),
    );
    assert_eq!(status, 200, "{first}");
    // `cdn_url` is the objects base (`{cdn}/objects`); streams sit beside it.
    let cdn = cluster.creds.cdn_url.trim_end_matches('/');
    let stream = format!(
        "{}/stream/{a}/master.m3u8",
        cdn.strip_suffix("/objects").unwrap_or(cdn)
    );
    assert_eq!(first["status"], "queued");
    assert_eq!(first["file_id"], a.as_str());
    assert_eq!(first["cdn_url"], stream.as_str(), "{first}");
    assert_eq!(first["hls_manifest_url"], stream.as_str());
    assert!(first.get("message").is_none(), "{first}");
    let job_a = first["encoding_id"].as_str().unwrap().to_string();

    // In flight: the same job, by id, by bucket and key, even with force.
    for body in [
        json!({"object_key": a}),
        json!({"object_key": "clips/a.mp4", "bucket": "video"}),
        json!({"object_key": a, "force": true}),
    ] {
        let (status, again) = request(&cluster, body.clone());
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["status"], "already_queued", "{body} -> {again}");
        assert_eq!(again["encoding_id"], job_a.as_str());
        assert!(again["message"].is_string(), "{again}");
    }
    // The Python example's endpoint is the same request.
    let (status, second) = post(&cluster, "/v1/api/encoding/jobs", json!({"object_key": b}));
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["status"], "queued");
    let job_b = second["encoding_id"].as_str().unwrap().to_string();

    // The job as the status endpoint shows it.
    let (status, j) = get_json(&cluster, &format!("/v1/api/encoding/jobs/{job_a}"));
    assert_eq!(status, 200, "{j}");
    assert_eq!(j["encoding_id"], job_a.as_str());
    assert_eq!(j["file_id"], a.as_str());
    assert_eq!(
        (j["phase"].as_str(), j["status"].as_str()),
        (Some("queued"), Some("queued"))
    );
    assert_eq!(j["progress"], 0);
    for null in [
        "hls_manifest_url",
        "error_message",
        "retry_after",
        "video",
        "thumbnails",
        "started_at",
        "completed_at",
        "replication_safe_at",
    ] {
        assert!(j[null].is_null(), "{null}: {j}");
    }
    assert!(
        j["created_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{j}"
    );

    // my-jobs: one row per file, every field of the reference.
    let rows = my_jobs(&cluster, "active");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (status, default) = get_json(&cluster, "/v1/api/my-jobs");
    assert_eq!(status, 200, "{default}");
    assert_eq!(default["jobs"], json!(rows), "active is the default");
    let r = row(&rows, &a);
    for field in [
        "file_id",
        "encoding_id",
        "title",
        "phase",
        "phase_progress_pct",
        "phase_detail",
        "phase_updated_at",
        "replication_peer_count",
        "replication_target_count",
        "replication_safe_at",
        "retry_count",
        "last_error",
        "cancellable",
        "retriable",
        "created_at",
        "node_id",
    ] {
        assert!(r.get(field).is_some(), "{field} missing: {r}");
    }
    assert_eq!(r["title"], "a.mp4");
    assert_eq!(r["encoding_id"], job_a.as_str());
    assert_eq!(r["phase"], "queued");
    assert_eq!(
        (r["cancellable"].as_bool(), r["retriable"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(
        (
            r["replication_peer_count"].as_u64(),
            r["replication_target_count"].as_u64()
        ),
        (Some(0), Some(3))
    );

    // The pipeline rolls the job up.
    let (_, p) = get_json(&cluster, &format!("/v1/api/pipeline/{a}"));
    assert_eq!(p["status"], "encoding", "{p}");
    assert_eq!(p["phase"], "queued");
    assert_eq!(p["stages"]["encoding"]["encoding_id"], job_a.as_str());
    assert_eq!(p["stages"]["encoding"]["phase"], "queued");
    assert_eq!(p["stages"]["encoding"]["hls_manifest_url"], Value::Null);

    // encoding.queued: the job's own target, signed with its secret, carries the job
    // id; the other job's goes to the tenant default.
    let got = job_hook.wait_until("a's encoding.queued", WAIT, |rs| {
        rs.iter().any(|r| r.event() == "encoding.queued")
    });
    let queued = got.iter().find(|r| r.event() == "encoding.queued").unwrap();
    assert_eq!(queued.json()["job_id"], job_a.as_str());
    assert_eq!(queued.json()["status"], "queued");
    // The stages asked of the job travel with it.
    assert_eq!(queued.json()["vision_model"], "hq");
    assert_eq!(queued.json()["transcription_model"], Value::Null);
    assert_eq!(queued.header("x-zib-job-id"), job_a);
    assert!(zib_signature_ok(JOB_SECRET, queued));
    tenant_hook.wait_until("b's encoding.queued", WAIT, |rs| {
        rs.iter()
            .any(|r| r.event() == "encoding.queued" && r.json()["job_id"] == job_b.as_str())
    });
    assert!(
        !tenant_hook
            .received()
            .iter()
            .any(|r| r.json()["job_id"] == job_a.as_str()),
        "a job with its own target does not also go to the tenant default"
    );

    // Cancel b: once, then it is no longer cancellable.
    let (status, c) = call(
        &cluster,
        &cluster.bearer(),
        reqwest::Method::DELETE,
        &format!("/v1/api/my-jobs/{b}"),
        Some(json!({"reason": "user_abandoned_upload"})),
    );
    assert_eq!(status, 200, "{c}");
    assert_eq!(
        (c["phase"].as_str(), c["cancellable"].as_bool()),
        (Some("cancelled"), Some(false))
    );
    let (status, c) = call(
        &cluster,
        &cluster.bearer(),
        reqwest::Method::DELETE,
        &format!("/v1/api/my-jobs/{b}"),
        None,
    );
    assert_eq!(status, 409, "{c}");
    assert!(my_jobs(&cluster, "active")
        .iter()
        .all(|r| r["file_id"] != b.as_str()));
    assert_eq!(row(&my_jobs(&cluster, "all"), &b)["phase"], "cancelled");
    let (_, p) = get_json(&cluster, &format!("/v1/api/pipeline/{b}"));
    assert_eq!(
        (
            p["status"].as_str(),
            p["stages"]["encoding"]["status"].as_str()
        ),
        (Some("failed"), Some("cancelled"))
    );

    // Only a failed_user_action job is retried.
    let (status, v) = post(&cluster, &format!("/v1/api/my-jobs/{a}/retry"), json!({}));
    assert_eq!(status, 409, "{v}");
    let (claimed, lease) = claim(&cluster, &encoder);
    assert_eq!(claimed, job_a);
    let resp = node_post(
        &cluster,
        &format!("/v1/node/jobs/{job_a}/failed"),
        json!({"lease_token": lease, "error_message": "not a video: no video stream", "permanent": true}),
    );
    assert_eq!(resp.status().as_u16(), 204);
    let (_, j) = get_json(&cluster, &format!("/v1/api/encoding/jobs/{job_a}"));
    assert_eq!(
        (j["phase"].as_str(), j["status"].as_str()),
        (Some("failed_user_action"), Some("failed")),
        "{j}"
    );
    assert_eq!(j["error_message"], "not a video: no video stream");
    assert!(j["started_at"].is_string(), "{j}");
    let r = my_jobs(&cluster, "active");
    let r = row(&r, &a);
    assert_eq!(
        (r["retriable"].as_bool(), r["cancellable"].as_bool()),
        (Some(true), Some(false)),
        "{r}"
    );
    assert_eq!(r["last_error"], "not a video: no video stream");
    assert_eq!(r["node_id"], encoder.as_str());
    let (_, p) = get_json(&cluster, &format!("/v1/api/pipeline/{a}"));
    assert_eq!(
        (p["status"].as_str(), p["phase"].as_str()),
        (Some("failed"), Some("failed_user_action")),
        "{p}"
    );
    assert_eq!(p["error"], "not a video: no video stream");
    // The tenant's retry queues the same job again, with a fresh budget.
    let (status, v) = post(&cluster, &format!("/v1/api/my-jobs/{a}/retry"), json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            v["phase"].as_str(),
            v["retry_count"].as_u64(),
            v["encoding_id"].as_str()
        ),
        (Some("queued"), Some(0), Some(job_a.as_str())),
        "{v}"
    );
    job_hook.wait_until("encoding.queued again after the retry", WAIT, |rs| {
        rs.iter().filter(|r| r.event() == "encoding.queued").count() >= 2
    });

    // Encoded: the same request answers already_encoded with the reference's message;
    // force re-encodes as a new job while the old one stays the answer's past.
    let (claimed, lease) = claim(&cluster, &encoder);
    assert_eq!(claimed, job_a);
    finish(&cluster, &encoder, &job_a, &lease);
    let (status, done) = request(&cluster, json!({"object_key": a}));
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "already_encoded");
    assert_eq!(done["encoding_id"], job_a.as_str());
    assert_eq!(done["cdn_url"], stream.as_str());
    assert_eq!(
        done["message"],
        "File is already encoded by an existing job. Pass { \"force\": true } in the request body to deliberately re-encode."
    );
    let (_, j) = get_json(&cluster, &format!("/v1/api/encoding/jobs/{job_a}"));
    assert_eq!(
        (j["status"].as_str(), j["hls_manifest_url"].as_str()),
        (Some("complete"), Some(stream.as_str())),
        "{j}"
    );
    // Encoded; the vision run asked with it waits for a node: `ai_processing`.
    let (_, p) = get_json(&cluster, &format!("/v1/api/pipeline/{a}"));
    assert_eq!(
        (
            p["status"].as_str(),
            p["stages"]["encoding"]["status"].as_str(),
            p["stages"]["vision"]["status"].as_str()
        ),
        (Some("ai_processing"), Some("completed"), Some("queued")),
        "{p}"
    );
    // Every step of the job reached its own target, signed, in the reference's shape.
    let got = job_hook.wait_until("encoding.complete at the job's target", WAIT, |rs| {
        rs.iter().any(|r| r.event() == "encoding.complete")
    });
    let mut names: Vec<String> = got.iter().map(|r| r.event()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "encoding.complete",
            "encoding.failed",
            "encoding.queued",
            "encoding.queued",
            "encoding.started",
            "encoding.started"
        ],
        "{names:?}"
    );
    for r in &got {
        assert_eq!(r.header("x-zib-job-id"), job_a, "{}", r.event());
        assert!(zib_signature_ok(JOB_SECRET, r), "{}", r.event());
        assert_eq!(r.json()["file_id"], a.as_str());
    }
    let failed = got.iter().find(|r| r.event() == "encoding.failed").unwrap();
    assert_eq!(
        failed.json()["error_message"],
        "not a video: no video stream"
    );
    let complete = got
        .iter()
        .find(|r| r.event() == "encoding.complete")
        .unwrap();
    assert_eq!(complete.json()["hls_manifest_url"], stream.as_str());
    assert!(
        !tenant_hook
            .received()
            .iter()
            .any(|r| r.json()["job_id"] == job_a.as_str()),
        "none of them also went to the tenant default"
    );
    let (status, forced) = request(&cluster, json!({"object_key": a, "force": true}));
    assert_eq!(status, 200, "{forced}");
    assert_eq!(forced["status"], "queued");
    let job_a2 = forced["encoding_id"].as_str().unwrap();
    assert_ne!(job_a2, job_a);
    let (_, again) = request(&cluster, json!({"object_key": a, "force": true}));
    assert_eq!(
        (again["status"].as_str(), again["encoding_id"].as_str()),
        (Some("already_queued"), Some(job_a2))
    );
    assert_eq!(row(&my_jobs(&cluster, "all"), &a)["encoding_id"], job_a2);
    let (_, p) = get_json(&cluster, &format!("/v1/api/pipeline/{a}"));
    assert_eq!(
        (p["status"].as_str(), p["phase"].as_str()),
        (Some("encoding"), Some("queued")),
        "{p}"
    );
}

#[test]
fn a_declared_encode_is_enqueued_once_distributed_and_a_re_upload_cancels_it() {
    let cluster = start();
    let hook = Receiver::start();
    // The upload goes to a node that can run the declared stage.
    let pipeline =
        json!({"encode": true, "webhook_url": hook.url("/pipeline"), "webhook_secret": JOB_SECRET});
    let (status, v) = post(
        &cluster,
        "/v1/api/upload/initiate",
        json!({"bucket": "video", "key": "clips/declared.mp4", "file_size": 10, "pipeline": pipeline}),
    );
    assert_eq!(status, 503, "{v}");
    advertise(&cluster, &["encode"]);
    let file = upload_with_pipeline(&cluster, "clips/declared.mp4", pipeline);

    let mut job = String::new();
    wait_for("the declared encode to be queued", WAIT, || {
        let (_, p) = get_json(&cluster, &format!("/v1/api/pipeline/{file}"));
        job = p["stages"]["encoding"]["encoding_id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        !job.is_empty()
    });
    let (_, p) = get_json(&cluster, &format!("/v1/api/pipeline/{file}"));
    assert_eq!(
        p["declared"],
        json!({"encode": true, "webhook_url": hook.url("/pipeline")}),
        "the secret is never shown back"
    );
    assert_eq!(
        (p["status"].as_str(), p["phase"].as_str()),
        (Some("encoding"), Some("queued")),
        "{p}"
    );
    assert_eq!(p["stages"]["encoding"]["status"], "queued");
    assert_eq!(p["stages"]["upload"]["status"], "complete");
    // Its events go to the upload's own target.
    let got = hook.wait_until("encoding.queued of the declared encode", WAIT, |rs| {
        rs.iter().any(|r| r.event() == "encoding.queued")
    });
    let queued = got.iter().find(|r| r.event() == "encoding.queued").unwrap();
    assert_eq!(queued.json()["job_id"], job.as_str());
    assert!(zib_signature_ok(JOB_SECRET, queued));
    // Requesting it again is idempotent.
    let (_, again) = request(&cluster, json!({"object_key": file}));
    assert_eq!(
        (again["status"].as_str(), again["encoding_id"].as_str()),
        (Some("already_queued"), Some(job.as_str()))
    );

    // A re-upload to the same key cancels the prior file's encode and starts none.
    let newer = upload(&cluster, "clips/declared.mp4", 7);
    wait_for("the superseded file's encode to be cancelled", WAIT, || {
        get_json(&cluster, &format!("/v1/api/encoding/jobs/{job}")).1["phase"] == "cancelled"
    });
    let (_, j) = get_json(&cluster, &format!("/v1/api/encoding/jobs/{job}"));
    assert_eq!(j["status"], "cancelled");
    let (_, p) = get_json(&cluster, &format!("/v1/api/pipeline/{file}"));
    assert_eq!(p["status"], "failed", "{p}");
    let (_, p) = get_json(&cluster, &format!("/v1/api/pipeline/{newer}"));
    assert_eq!(p["stages"]["encoding"], Value::Null, "{p}");
    // The old file is gone for requests too.
    let (status, v) = request(&cluster, json!({"object_key": file}));
    assert_eq!(status, 404, "{v}");
}
