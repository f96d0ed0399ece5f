//! The tenant's side of AI compute jobs, as an integrator meets it on a real `zib
//! dev` whose nodes load no model (`ZIB_AI_NODES=0`, no ffmpeg): every submission
//! names the capability no node offers (503), an unknown tier (400 naming `tier`),
//! a missing or another tenant's file or job (404 alike); an encoding request or an
//! upload pipeline asking for AI is refused the same way. Then a node is registered
//! again advertising the AI capabilities, and the test drives the node RPC as that
//! node would (claim, source, outputs, done): the job completes with its outputs
//! served by the CDN, `transcription.complete` is sent, and the stream's master
//! playlist gains the subtitles track. The real models run in `proof`'s tests.

mod common;

use common::*;
use serde_json::{json, Value};
use zib_proto::{FileId, NodeId};

fn start() -> Cluster {
    Cluster::start_with_env(3, &[("ZIB_FFMPEG", "/bin/false"), ("ZIB_AI_NODES", "0")])
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

fn upload(cluster: &Cluster, key: &str, seed: u64) -> String {
    let work = tempfile::tempdir().unwrap();
    let path = write_file(work.path(), "clip.mp4", &pattern(300_000, seed));
    cluster.upload(&path, "video", key).0
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

/// Registers the first node again, now advertising `capabilities`; its heartbeats
/// keep it online. Returns its id.
fn advertise(cluster: &Cluster, capabilities: &[&str]) -> NodeId {
    let mut nodes = rt().block_on(store(cluster).list_nodes()).unwrap();
    nodes.sort_by(|a, b| a.node_id.as_str().cmp(b.node_id.as_str()));
    let node = nodes.into_iter().next().expect("a node");
    let resp = cluster
        .http()
        .post(format!("{}/v1/node/register", cluster.creds.api_url))
        .bearer_auth(cluster_token(cluster))
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

/// A node RPC call as a node would make it (cluster token), with a lease header.
fn node_call(
    cluster: &Cluster,
    method: reqwest::Method,
    path: &str,
    lease: Option<&str>,
    body: Option<reqwest::blocking::Body>,
) -> reqwest::blocking::Response {
    let mut req = cluster
        .http()
        .request(method, format!("{}{path}", cluster.creds.api_url))
        .bearer_auth(cluster_token(cluster));
    if let Some(lease) = lease {
        req = req.header(zib_proto::jobs::LEASE_HEADER, lease);
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    req.send().unwrap()
}

fn node_post(cluster: &Cluster, path: &str, body: Value) -> reqwest::blocking::Response {
    node_call(
        cluster,
        reqwest::Method::POST,
        path,
        None,
        Some(serde_json::to_vec(&body).unwrap().into()),
    )
}

/// Finishes a claimed encoding job as its node would: one rung, one segment, done.
fn finish_encode(cluster: &Cluster, node: &NodeId, job: &str, lease: &str) {
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

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("")
}

#[test]
fn ai_asks_are_refused_while_no_node_runs_them() {
    let cluster = start();
    let a = upload(&cluster, "clips/a.mp4", 1);

    // No node advertises AI: 503 naming the capability, the default tier's when none
    // is given.
    for (path, body, capability) in [
        (
            "/v1/api/compute/transcription",
            json!({"file_id": a}),
            "\"transcription:recommended\"",
        ),
        (
            "/v1/api/compute/transcription",
            json!({"file_id": a, "tier": "fastest"}),
            "\"transcription:fastest\"",
        ),
        (
            "/v1/api/compute/vision",
            json!({"file_id": a}),
            "\"vision:standard\"",
        ),
        (
            "/v1/api/compute/vision",
            json!({"file_id": a, "tier": "hq"}),
            "\"vision:hq\"",
        ),
    ] {
        let (status, v) = post(&cluster, path, body.clone());
        assert_eq!(status, 503, "{body} -> {v}");
        assert!(error_of(&v).contains(capability), "{body} -> {v}");
    }

    // 400 names the field: an unknown tier, an unknown field, a missing file id.
    for (path, body, field) in [
        (
            "/v1/api/compute/transcription",
            json!({"file_id": a, "tier": "ultra"}),
            "tier",
        ),
        (
            "/v1/api/compute/vision",
            json!({"file_id": a, "tier": "fastest"}),
            "tier",
        ),
        (
            "/v1/api/compute/transcription",
            json!({"file_id": a, "model": "x"}),
            "model",
        ),
        ("/v1/api/compute/vision", json!({}), "file_id"),
    ] {
        let (status, v) = post(&cluster, path, body.clone());
        assert_eq!(status, 400, "{body} -> {v}");
        assert!(error_of(&v).contains(field), "{body} -> {v}");
    }
    let (status, v) = post(
        &cluster,
        "/v1/api/compute/transcription",
        json!({"file_id": a, "tier": "ultra"}),
    );
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("invalid_field")),
        "{v}"
    );

    // A missing file, a string that is no file id, another tenant's file: 404 alike.
    let missing = FileId::new_random().to_string();
    let other = cluster.create_tenant("other");
    for (bearer, file) in [
        (cluster.bearer(), missing.as_str()),
        (cluster.bearer(), "clips/a.mp4"),
        (other.clone(), a.as_str()),
    ] {
        for path in ["/v1/api/compute/transcription", "/v1/api/compute/vision"] {
            let (status, v) = call(
                &cluster,
                &bearer,
                reqwest::Method::POST,
                path,
                Some(json!({"file_id": file})),
            );
            assert_eq!(status, 404, "{path} {file}: {v}");
        }
    }
    let (status, v) = get_json(
        &cluster,
        "/v1/api/compute/jobs/00000000-0000-4000-8000-000000000000",
    );
    assert_eq!(status, 404, "{v}");

    // An encoding request asking for AI needs a node for it too, even with an
    // encoder online; and no job is created by the refusal.
    advertise(&cluster, &["encode"]);
    for (field, tier, capability) in [
        (
            "transcription",
            "recommended",
            "\"transcription:recommended\"",
        ),
        ("vision", "hq", "\"vision:hq\""),
    ] {
        let (status, v) = post(
            &cluster,
            "/v1/api/encoding/request",
            json!({"object_key": a, field: tier}),
        );
        assert_eq!(status, 503, "{field} -> {v}");
        assert!(error_of(&v).contains(capability), "{field} -> {v}");
    }
    let jobs = rt()
        .block_on(store(&cluster).compute_jobs_of_file(a.parse().unwrap()))
        .unwrap();
    assert!(jobs.is_empty(), "{jobs:?}");
    let (status, v) = get_json(&cluster, "/v1/api/my-jobs?status=all");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["jobs"], json!([]), "{v}");

    // So does an upload declaring it.
    let (status, v) = post(
        &cluster,
        "/v1/api/upload/initiate",
        json!({"bucket": "video", "key": "clips/b.mp4", "file_size": 1000,
               "pipeline": {"encode": true, "transcription": "fastest"}}),
    );
    assert_eq!(status, 503, "{v}");
    assert!(error_of(&v).contains("\"transcription:fastest\""), "{v}");
}

#[test]
fn a_transcription_runs_on_the_node_that_advertises_it_and_subtitles_the_stream() {
    let cluster = start();
    let a = upload(&cluster, "clips/a.mp4", 2);
    let node = advertise(
        &cluster,
        &["encode", "transcription:fastest", "vision:standard"],
    );

    // An encode first, so the stream exists when the subtitles arrive.
    let (status, enc) = post(
        &cluster,
        "/v1/api/encoding/request",
        json!({"object_key": a}),
    );
    assert_eq!(status, 200, "{enc}");
    let resp = node_post(&cluster, "/v1/node/jobs/claim", json!({"node_id": node}));
    assert_eq!(resp.status().as_u16(), 200);
    let claimed: zib_proto::jobs::ClaimedJob = resp.json().unwrap();
    finish_encode(&cluster, &node, &claimed.job_id, &claimed.lease_token);
    let stream = format!("{}/stream/{a}", cluster.creds.api_url);
    let master = cluster
        .http()
        .get(format!("{stream}/master.m3u8"))
        .send()
        .unwrap();
    assert_eq!(master.status().as_u16(), 200);
    assert!(!master.text().unwrap().contains("SUBTITLES"));
    let subs = cluster
        .http()
        .get(format!("{stream}/subtitles.m3u8"))
        .send()
        .unwrap();
    assert_eq!(subs.status().as_u16(), 404);

    // Submitted: 202 with a new job; again while it is in flight: 200 naming it.
    let (status, first) = post(
        &cluster,
        "/v1/api/compute/transcription",
        json!({"file_id": a, "tier": "fastest"}),
    );
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["status"], "queued");
    assert_eq!(first["kind"], "transcription");
    assert_eq!(first["tier"], "fastest");
    assert_eq!(first["message"], Value::Null);
    let job = first["job_id"].as_str().unwrap().to_string();
    let (status, again) = post(
        &cluster,
        "/v1/api/compute/transcription",
        json!({"file_id": a, "tier": "fastest"}),
    );
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["job_id"], job.as_str());
    assert_eq!(again["message"], "already_queued");

    // Another tenant's job is missing, like one that never existed.
    let other = cluster.create_tenant("other");
    let (status, v) = call(
        &cluster,
        &other,
        reqwest::Method::GET,
        &format!("/v1/api/compute/jobs/{job}"),
        None,
    );
    assert_eq!(status, 404, "{v}");

    // The node claims it and reads the source under its lease.
    let resp = node_post(&cluster, "/v1/node/compute/claim", json!({"node_id": node}));
    assert_eq!(resp.status().as_u16(), 200);
    let claimed: zib_proto::compute::ClaimedComputeJob = resp.json().unwrap();
    assert_eq!(claimed.job_id, job);
    assert_eq!(claimed.tier, "fastest");
    let lease = claimed.lease_token.clone();
    let base = format!("/v1/node/compute/{job}");
    let source = node_call(
        &cluster,
        reqwest::Method::GET,
        &format!("{base}/source"),
        Some(&lease),
        None,
    );
    assert_eq!(source.status().as_u16(), 200);
    assert_eq!(
        source.bytes().unwrap().len() as u64,
        claimed.source.ciphertext_size
    );
    let wrong = node_call(
        &cluster,
        reqwest::Method::GET,
        &format!("{base}/source"),
        Some("not-the-lease"),
        None,
    );
    assert_eq!(wrong.status().as_u16(), 410);
    // Nothing else to claim.
    let none = node_post(&cluster, "/v1/node/compute/claim", json!({"node_id": node}));
    assert_eq!(none.status().as_u16(), 204);

    // Progress shows on the tenant's status.
    let renew = node_post(
        &cluster,
        &format!("{base}/lease"),
        json!({"node_id": node, "lease_token": lease, "progress": 40.0, "detail": "transcribing"}),
    );
    assert_eq!(renew.status().as_u16(), 200);
    let (status, v) = get_json(&cluster, &format!("/v1/api/compute/jobs/{job}"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "processing");
    assert_eq!(v["progress"], 40);

    // Done before the outputs is refused; a sidecar is no transcription's output.
    let early = node_post(
        &cluster,
        &format!("{base}/done"),
        json!({"lease_token": lease}),
    );
    assert_eq!(early.status().as_u16(), 409);
    let output = |kind: &str, body: &str| {
        node_call(
            &cluster,
            reqwest::Method::POST,
            &format!("{base}/outputs/{kind}"),
            Some(&lease),
            Some(body.to_string().into()),
        )
    };
    assert_eq!(output("sidecar", "{}").status().as_u16(), 400);
    let srt = "1\n00:00:00,000 --> 00:00:02,000\nhello there\n";
    let vtt = "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nhello there\n";
    let stored_srt: Value = output("srt", srt).json().unwrap();
    let stored_vtt: Value = output("vtt", vtt).json().unwrap();
    let done = node_post(
        &cluster,
        &format!("{base}/done"),
        json!({"lease_token": lease, "language": "en"}),
    );
    assert_eq!(done.status().as_u16(), 204);
    // The lease is over.
    let late = node_post(
        &cluster,
        &format!("{base}/lease"),
        json!({"node_id": node, "lease_token": lease, "progress": 100.0}),
    );
    assert_eq!(late.status().as_u16(), 410);

    let (status, v) = get_json(&cluster, &format!("/v1/api/compute/jobs/{job}"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "complete");
    assert_eq!(v["progress"], 100);
    assert_eq!(v["language"], "en");
    assert_eq!(v["srt_file_id"], stored_srt["file_id"]);
    assert_eq!(v["vtt_file_id"], stored_vtt["file_id"]);
    // The outputs are served with their content types, and never listed.
    for (url, body, content_type) in [
        (&v["srt_url"], srt, "application/x-subrip"),
        (&v["vtt_url"], vtt, "text/vtt"),
    ] {
        let resp = cluster.http().get(url.as_str().unwrap()).send().unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{url}");
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            content_type
        );
        assert_eq!(resp.text().unwrap(), body);
    }
    let (status, listing) = get_json(&cluster, "/v1/api/storage/video");
    assert_eq!(status, 200, "{listing}");
    assert!(!listing.to_string().contains(".zib"), "{listing}");

    // One transcription.complete, naming the job and both outputs.
    let (status, events) = get_json(&cluster, &format!("/v1/api/webhooks/events?file_id={a}"));
    assert_eq!(status, 200, "{events}");
    let complete: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "transcription.complete")
        .collect();
    assert_eq!(complete.len(), 1, "{events}");
    let payload = &complete[0]["payload"];
    assert_eq!(payload["job_id"], job.as_str(), "{payload}");
    assert_eq!(payload["tier"], "fastest");
    assert_eq!(payload["srt_file_id"], v["srt_file_id"]);
    assert_eq!(payload["vtt_file_id"], v["vtt_file_id"]);

    // The stream now has the subtitles track.
    let master = cluster
        .http()
        .get(format!("{stream}/master.m3u8"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(master.contains("TYPE=SUBTITLES"), "{master}");
    assert!(master.contains("SUBTITLES=\"subs\""), "{master}");
    let subs = cluster
        .http()
        .get(format!("{stream}/subtitles.m3u8"))
        .send()
        .unwrap();
    assert_eq!(subs.status().as_u16(), 200);
    let subs = subs.text().unwrap();
    assert!(subs.contains(v["vtt_url"].as_str().unwrap()), "{subs}");
    assert!(subs.contains("#EXTINF:4.000,"), "{subs}");

    // The pipeline shows it.
    let (status, p) = get_json(&cluster, &format!("/v1/api/pipeline/{a}"));
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["stages"]["transcription"]["status"], "complete", "{p}");
    assert_eq!(
        p["stages"]["transcription"]["vtt_file_id"],
        v["vtt_file_id"]
    );
    assert_eq!(p["stages"]["vision"], Value::Null);
}

#[test]
fn ai_asked_with_an_encode_waits_for_it_and_shows_on_the_encoding_job() {
    let cluster = start();
    let a = upload(&cluster, "clips/a.mp4", 3);
    let node = advertise(&cluster, &["encode", "vision:standard"]);

    let (status, enc) = post(
        &cluster,
        "/v1/api/encoding/request",
        json!({"object_key": a, "vision": "standard"}),
    );
    assert_eq!(status, 200, "{enc}");
    let encoding_id = enc["encoding_id"].as_str().unwrap().to_string();
    let (status, s) = get_json(&cluster, &format!("/v1/api/encoding/jobs/{encoding_id}"));
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["vision"]["status"], "queued", "{s}");
    assert_eq!(s["vision"]["tier"], "standard");
    assert_eq!(s["transcription"], Value::Null);
    assert_eq!(s["sidecar_file_id"], Value::Null);

    // Not claimable before the encode is done.
    let none = node_post(&cluster, "/v1/node/compute/claim", json!({"node_id": node}));
    assert_eq!(none.status().as_u16(), 204);
    let resp = node_post(&cluster, "/v1/node/jobs/claim", json!({"node_id": node}));
    let claimed: zib_proto::jobs::ClaimedJob = resp.json().unwrap();
    finish_encode(&cluster, &node, &claimed.job_id, &claimed.lease_token);

    // The encoder claims it at once by naming its encode.
    let resp = node_post(
        &cluster,
        "/v1/node/compute/claim",
        json!({"node_id": node, "after_encoding_job": encoding_id}),
    );
    assert_eq!(resp.status().as_u16(), 200);
    let job: zib_proto::compute::ClaimedComputeJob = resp.json().unwrap();
    assert_eq!(job.encoding_job_id.as_deref(), Some(encoding_id.as_str()));
    let (_, p) = get_json(&cluster, &format!("/v1/api/pipeline/{a}"));
    assert_eq!(p["stages"]["vision"]["status"], "running", "{p}");
    assert_eq!(p["status"], "ai_processing", "{p}");

    // A permanent failure fails it at once, and the pipeline says so.
    let failed = node_post(
        &cluster,
        &format!("/v1/node/compute/{}/failed", job.job_id),
        json!({"lease_token": job.lease_token, "error_message": "no frames", "permanent": true}),
    );
    assert_eq!(failed.status().as_u16(), 204);
    let (_, s) = get_json(&cluster, &format!("/v1/api/encoding/jobs/{encoding_id}"));
    assert_eq!(s["vision"]["status"], "failed", "{s}");
    assert_eq!(s["vision"]["error_message"], "no frames", "{s}");
    let (_, p) = get_json(&cluster, &format!("/v1/api/pipeline/{a}"));
    assert_eq!(p["status"], "failed", "{p}");
    let (_, c) = get_json(&cluster, &format!("/v1/api/compute/jobs/{}", job.job_id));
    assert_eq!(c["status"], "failed", "{c}");
    assert_eq!(c["encoding_job_id"], encoding_id.as_str());
}
