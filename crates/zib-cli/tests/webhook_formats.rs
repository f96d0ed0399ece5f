//! Webhook formats as a tenant moving from another video platform meets them
//! (docs/webhooks.md, "Formats"): three endpoints of one tenant, one per format
//! (`zib`, `lifecycle`, `media`), each get the documented sequence for a real upload →
//! encode (real `zib node`s, real ffmpeg) → repeated encoding request → delete → second
//! delete (`already_deleted`), every delivery verified with the Standard Webhooks reference library, no
//! duplicate. Plus the endpoint API: `format` validated, `event_types` checked in the
//! format's vocabulary, `PUT` as a full update.

mod common;
#[path = "common/webhook_receiver.rs"]
mod receiver;
#[path = "common/video.rs"]
mod video;

use std::collections::HashSet;
use std::time::Duration;

use common::procs::ProcCluster;
use common::*;
use receiver::{verify_standard, Received, Receiver};
use serde_json::{json, Value};
use video::*;

const ENCODE: Duration = Duration::from_secs(600);
const WAIT: Duration = Duration::from_secs(60);

fn cluster(nodes: usize) -> ProcCluster {
    ProcCluster::start(
        nodes,
        &[
            ("ZIB_ALLOW_PRIVATE_WEBHOOK_TARGETS", "true"),
            ("ZIB_WEBHOOK_POLL_INTERVAL_MS", "100"),
            ("ZIB_WEBHOOK_RETRY_SCHEDULE", "1s,1s,2s,2s,2s"),
        ],
    )
}

fn tenant_of(cluster: &ProcCluster) -> Tenant {
    Tenant {
        api_url: cluster.api_url.clone(),
        bearer: cluster.bearer(),
    }
}

/// Creates an endpoint; returns (id, secret).
fn endpoint(tenant: &Tenant, body: Value) -> (String, String) {
    let (status, ep) = tenant.call(
        reqwest::Method::POST,
        "/v1/api/webhooks/endpoints",
        Some(body),
    );
    assert_eq!(status, 201, "{ep}");
    (
        ep["id"].as_str().unwrap_or_default().to_string(),
        ep["secret"].as_str().unwrap_or_default().to_string(),
    )
}

/// The successfully answered deliveries, each event once (a retry of one event id
/// answered twice would still be one event), in event-id order: ids are UUIDv7, so
/// that is the order the events happened in.
fn delivered(rx: &Receiver) -> Vec<Received> {
    let mut out: Vec<Received> = rx
        .received()
        .into_iter()
        .filter(|r| r.answered < 300)
        .collect();
    out.sort_by(|a, b| a.header("webhook-id").cmp(b.header("webhook-id")));
    out
}

fn type_of(r: &Received) -> String {
    let body = r.json();
    body["type"]
        .as_str()
        .or(body["event"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn types(all: &[Received]) -> Vec<String> {
    all.iter().map(type_of).collect()
}

fn assert_verified(secret: &str, all: &[Received]) {
    let items: Vec<(&str, &Received)> = all.iter().map(|r| (secret, r)).collect();
    for (r, verdict) in all.iter().zip(verify_standard(&items)) {
        assert!(
            verdict.is_ok(),
            "{} failed Standard Webhooks verification: {verdict:?}",
            type_of(r)
        );
    }
}

fn assert_no_duplicate(all: &[Received]) {
    let mut ids = HashSet::new();
    for r in all {
        assert!(
            ids.insert(r.header("webhook-id").to_string()),
            "event {} ({}) delivered twice",
            r.header("webhook-id"),
            type_of(r)
        );
    }
}

#[test]
fn each_format_gets_its_documented_sequence_for_upload_encode_and_delete() {
    ensure_media();
    let work = tempfile::tempdir().unwrap();
    let clip = Clip::new(1280, 720, 3);
    let path = make_clip(work.path(), "clip.mp4", &clip);
    let data = std::fs::read(&path).unwrap();

    let cluster = cluster(6);
    let tenant = tenant_of(&cluster);
    let (_, me) = tenant.call(reqwest::Method::GET, "/v1/api/customers/me/webhook", None);
    let tenant_id = me["customer_id"].as_str().unwrap_or_default().to_string();
    assert!(tenant_id.starts_with("ten_"), "{me}");

    let zib_rx = Receiver::start();
    let life_rx = Receiver::start();
    let media_rx = Receiver::start();
    let (_, zib_secret) = endpoint(&tenant, json!({"url": zib_rx.url("/zib")}));
    let (_, life_secret) = endpoint(
        &tenant,
        json!({"url": life_rx.url("/lifecycle"), "format": "lifecycle"}),
    );
    let (_, media_secret) = endpoint(
        &tenant,
        json!({"url": media_rx.url("/media"), "format": "media"}),
    );

    // Upload with an encode declared.
    let key = "shows/s01/Episode one.mp4";
    let (status, reg) = tenant.call(
        reqwest::Method::POST,
        "/v1/api/upload/initiate",
        Some(json!({
            "bucket": "library", "key": key, "file_size": data.len(),
            "content_type": "video/mp4", "pipeline": {"encode": true},
        })),
    );
    assert_eq!(status, 200, "{reg}");
    let reg: zib_proto::api::Registration = serde_json::from_value(reg).unwrap();
    let file_id = reg.file_id.to_string();
    let client = cluster.client();
    rt().block_on(zib_client::upload_with_registration(
        client.http(),
        &reg,
        &path,
        &zib_client::UploadOptions::default(),
    ))
    .expect("upload");

    // The encode finishes: every format hears of it.
    let complete = zib_rx.wait_until("encoding.complete", ENCODE, |all| {
        all.iter()
            .any(|r| r.answered < 300 && r.event() == "encoding.complete")
    });
    let job_id = complete
        .iter()
        .find(|r| r.event() == "encoding.complete")
        .map(|r| r.json()["job_id"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    tenant.wait_job(&job_id, ENCODE, playable_complete);
    // The ladder as the CDN serves it; rungs are named by their short side.
    let master_url = tenant.master_url(&file_id);
    let (status, master) = fetch_text(&master_url);
    assert_eq!(status, 200, "{master}");
    let mut rungs: Vec<(u32, u32)> = variants(&master, &master_url)
        .iter()
        .map(|v| v.resolution())
        .collect();
    rungs.sort_by_key(|&(w, h)| (h, w));
    let rung_names: Vec<String> = rungs
        .iter()
        .map(|&(w, h)| format!("{}p", w.min(h)))
        .collect();
    assert!(!rung_names.is_empty(), "no rung in the master: {master}");
    life_rx.wait_until("video.published", WAIT, |all| {
        all.iter().any(|r| type_of(r) == "video.published")
    });
    media_rx.wait_until("encoding.finished", WAIT, |all| {
        all.iter().any(|r| type_of(r) == "encoding.finished")
    });

    // A repeated request is answered from the finished job, and says nothing new.
    let (status, again) = tenant.request_encode(&file_id, json!({}));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["status"], "already_encoded", "{again}");

    // Delete, then delete again (`already_deleted`): one deletion event.
    let (status, body) = tenant.call(
        reqwest::Method::DELETE,
        &format!("/v1/api/file/{file_id}"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (status, again) = tenant.call(
        reqwest::Method::DELETE,
        &format!("/v1/api/file/{file_id}"),
        None,
    );
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["already_deleted"], true, "{again}");
    life_rx.wait_until("video.deleted", WAIT, |all| {
        all.iter().any(|r| type_of(r) == "video.deleted")
    });
    zib_rx.wait_until("file.deleted", WAIT, |all| {
        all.iter().any(|r| r.event() == "file.deleted")
    });
    // Anything a repeat leaked would be sent by now (the dispatcher polls at 100 ms).
    std::thread::sleep(Duration::from_secs(3));

    // --- lifecycle ---
    let life = delivered(&life_rx);
    assert_no_duplicate(&life);
    assert_verified(&life_secret, &life);
    let without_progress: Vec<String> = types(&life)
        .into_iter()
        .filter(|t| t != "video.encoding.progress")
        .collect();
    let mut expected = vec![
        "video.upload.started".to_string(),
        "video.upload.completed".into(),
        "video.encoding.started".into(),
    ];
    expected.extend(
        rung_names
            .iter()
            .map(|_| "video.encoding.completed".to_string()),
    );
    expected.extend([
        "video.ready".into(),
        "video.published".into(),
        "video.deleted".into(),
    ]);
    assert_eq!(without_progress, expected, "lifecycle sequence");
    let all_types = types(&life);
    let started = all_types
        .iter()
        .position(|t| t == "video.encoding.started")
        .unwrap_or(0);
    let ready = all_types
        .iter()
        .position(|t| t == "video.ready")
        .unwrap_or(0);
    for (i, t) in all_types.iter().enumerate() {
        if t == "video.encoding.progress" {
            assert!(
                started < i && i < ready,
                "progress outside the encode: {all_types:?}"
            );
        }
    }
    for r in &life {
        let body = r.json();
        let t = type_of(r);
        assert_eq!(body["id"], r.header("webhook-id"), "{body}");
        assert!(body["id"].as_str().unwrap_or_default().starts_with("evt_"));
        assert_eq!(body["organization_id"], tenant_id.as_str(), "{body}");
        assert!(body["created_at"]
            .as_str()
            .unwrap_or_default()
            .ends_with('Z'));
        let v = &body["data"]["video"];
        assert_eq!(v["id"], file_id.as_str(), "{body}");
        if t == "video.deleted" {
            assert_eq!(v, &json!({"id": file_id}), "deleted carries the id only");
            continue;
        }
        assert_eq!(v["external_id"], key, "{body}");
        assert_eq!(v["title"], "Episode one.mp4", "{body}");
        assert_eq!(v["collection_id"], "library", "{body}");
        let status = match t.as_str() {
            "video.upload.started" => "pending_upload",
            "video.upload.completed" => "created",
            "video.encoding.started" | "video.encoding.progress" => "processing",
            "video.encoding.completed" => "resolution_finished",
            _ => "complete",
        };
        assert_eq!(v["status"], status, "{body}");
        if t == "video.encoding.progress" {
            let p = body["data"]["progress"].as_u64().expect("data.progress");
            assert!(p <= 100, "{body}");
        } else {
            assert!(body["data"].get("progress").is_none(), "{body}");
        }
        if t.starts_with("video.upload.") {
            assert!(v.get("duration_ms").is_none(), "not probed yet: {body}");
        }
        if t == "video.ready" || t == "video.published" || t == "video.encoding.completed" {
            let ms = v["duration_ms"].as_u64().expect("duration_ms once probed");
            assert!((2_500..=3_500).contains(&ms), "a 3 s clip: {body}");
            assert_eq!(v["width"], clip.width, "{body}");
            assert_eq!(v["height"], clip.height, "{body}");
        }
    }

    // --- media ---
    let media = delivered(&media_rx);
    assert_no_duplicate(&media);
    assert_verified(&media_secret, &media);
    let mut expected = vec!["file.received".to_string(), "encoding.started".into()];
    expected.extend(rung_names.iter().map(|_| "partial.finished".to_string()));
    expected.push("encoding.finished".into());
    assert_eq!(types(&media), expected, "media sequence");
    let partial: Vec<String> = media
        .iter()
        .filter(|r| type_of(r) == "partial.finished")
        .map(|r| {
            r.json()["qualities"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let mut partial_sorted = partial.clone();
    partial_sorted.sort();
    let mut names_sorted = rung_names.clone();
    names_sorted.sort();
    assert_eq!(
        partial_sorted, names_sorted,
        "one partial.finished per rung"
    );
    for r in &media {
        let body = r.json();
        let t = type_of(r);
        assert_eq!(body["media_id"], file_id.as_str(), "{body}");
        assert_eq!(body["media_type"], "video", "{body}");
        assert_eq!(body["title"], "Episode one.mp4", "{body}");
        assert_eq!(body["user_id"], tenant_id.as_str(), "{body}");
        assert!(body["emitted_at"]
            .as_str()
            .unwrap_or_default()
            .ends_with('Z'));
        assert!(
            body.get("event").is_none(),
            "a media body is not a zib body"
        );
        let status = if t == "encoding.finished" {
            "done"
        } else {
            "transcoding"
        };
        assert_eq!(body["status"], status, "{body}");
        if t == "encoding.finished" {
            assert_eq!(body["qualities"], rung_names.join(","), "{body}");
        }
    }

    // --- zib: today's events, nothing of the other formats ---
    let zib = delivered(&zib_rx);
    assert_no_duplicate(&zib);
    assert_verified(&zib_secret, &zib);
    let zib_types = types(&zib);
    for t in &zib_types {
        assert!(
            zib_proto::events::EVENT_TYPES.contains(&t.as_str()),
            "{t} is not a zib event: {zib_types:?}"
        );
    }
    for once in ["file.ready", "encoding.complete", "file.deleted"] {
        assert_eq!(
            zib_types.iter().filter(|t| *t == once).count(),
            1,
            "{once}: {zib_types:?}"
        );
    }
    assert!(zib.iter().all(|r| r.json().get("event").is_some()));

    // The event log tells the formats apart (both zib and media have encoding.started).
    let (status, log) = tenant.call(
        reqwest::Method::GET,
        &format!("/v1/api/webhooks/events?file_id={file_id}&limit=500"),
        None,
    );
    assert_eq!(status, 200, "{log}");
    let mut started: Vec<&str> = log["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["event"] == "encoding.started")
                .filter_map(|e| e["format"].as_str())
                .collect()
        })
        .unwrap_or_default();
    started.sort();
    assert_eq!(started, vec!["media", "zib"], "{log}");
}

#[test]
fn endpoint_format_is_validated_and_put_replaces_the_whole_endpoint() {
    let cluster = cluster(0);
    let tenant = tenant_of(&cluster);
    let rx = Receiver::start();
    let post = |body: Value| {
        tenant.call(
            reqwest::Method::POST,
            "/v1/api/webhooks/endpoints",
            Some(body),
        )
    };

    // Unknown format: a 400 naming the field.
    let (status, err) = post(json!({"url": rx.url("/a"), "format": "mux"}));
    assert_eq!(status, 400, "{err}");
    assert!(err.to_string().contains("format"), "{err}");
    // Event types belong to the format's vocabulary.
    let (status, err) = post(json!({
        "url": rx.url("/a"), "format": "lifecycle", "event_types": ["file.ready"],
    }));
    assert_eq!(status, 400, "{err}");
    assert!(err.to_string().contains("event_types"), "{err}");
    let (status, err) = post(json!({"url": rx.url("/a"), "event_types": ["video.ready"]}));
    assert_eq!(
        status, 400,
        "a zib endpoint cannot subscribe to video.ready: {err}"
    );
    let (status, err) = post(json!({
        "url": rx.url("/a"), "format": "media", "event_types": ["video.ready"],
    }));
    assert_eq!(status, 400, "{err}");

    // Default zib; a lifecycle endpoint subscribes to lifecycle types.
    let (status, plain) = post(json!({"url": rx.url("/plain")}));
    assert_eq!(status, 201, "{plain}");
    assert_eq!(plain["format"], "zib");
    let (status, life) = post(json!({
        "url": rx.url("/life"), "format": "lifecycle",
        "event_types": ["video.ready", "video.deleted"], "description": "moviie",
        "enabled": false,
    }));
    assert_eq!(status, 201, "{life}");
    assert_eq!(life["format"], "lifecycle");
    let id = life["id"].as_str().unwrap_or_default().to_string();
    let secret = life["secret"].as_str().unwrap_or_default().to_string();
    let path = format!("/v1/api/webhooks/endpoints/{id}");
    let (_, got) = tenant.call(reqwest::Method::GET, &path, None);
    assert_eq!(got["format"], "lifecycle");
    assert!(got.get("secret").is_none());
    let (_, list) = tenant.call(reqwest::Method::GET, "/v1/api/webhooks/endpoints", None);
    let formats: Vec<&str> = list["endpoints"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["format"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(formats, vec!["zib", "lifecycle"], "{list}");

    // PATCH to another format with types of the old one: refused, nothing changes.
    let (status, err) = tenant.call(
        reqwest::Method::PATCH,
        &path,
        Some(json!({"format": "media"})),
    );
    assert_eq!(status, 400, "video.ready is not a media type: {err}");
    let (status, err) = tenant.call(reqwest::Method::PATCH, &path, Some(json!({"format": 7})));
    assert_eq!(status, 400, "{err}");
    let (status, patched) = tenant.call(
        reqwest::Method::PATCH,
        &path,
        Some(json!({"format": "media", "event_types": ["partial.finished"]})),
    );
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["format"], "media");
    assert_eq!(patched["event_types"], json!(["partial.finished"]));
    assert_eq!(
        patched["description"], "moviie",
        "PATCH keeps what it does not name"
    );

    // PUT: every field; the omitted ones take their create defaults.
    let (status, put) = tenant.call(
        reqwest::Method::PUT,
        &path,
        Some(json!({"url": rx.url("/moved")})),
    );
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["url"], rx.url("/moved"));
    assert_eq!(put["format"], "zib");
    assert_eq!(put["description"], "");
    assert_eq!(put["event_types"], Value::Null);
    assert_eq!(put["enabled"], true);
    assert!(put.get("secret").is_none());
    let (status, put) = tenant.call(
        reqwest::Method::PUT,
        &path,
        Some(json!({
            "url": rx.url("/life2"), "format": "lifecycle", "description": "again",
            "event_types": ["video.published"], "enabled": true,
        })),
    );
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["format"], "lifecycle");
    assert_eq!(put["event_types"], json!(["video.published"]));
    // PUT validates like create.
    let (status, err) = tenant.call(reqwest::Method::PUT, &path, Some(json!({"format": "zib"})));
    assert_eq!(status, 400, "url is required: {err}");
    let (status, err) = tenant.call(
        reqwest::Method::PUT,
        &path,
        Some(json!({"url": rx.url("/x"), "event_types": ["video.ready"]})),
    );
    assert_eq!(
        status, 400,
        "zib by default, and video.ready is not zib: {err}"
    );

    // The secret survives a PUT without one: a test event still verifies with it.
    let (status, sent) = tenant.call(reqwest::Method::POST, &format!("{path}/test"), None);
    assert_eq!(status, 202, "{sent}");
    let got = rx.wait_until("webhook.test", WAIT, |all| {
        all.iter().any(|r| r.event() == "webhook.test")
    });
    let test = got.iter().find(|r| r.event() == "webhook.test").cloned();
    let test = test.expect("the test event");
    assert_eq!(verify_standard(&[(secret.as_str(), &test)]), vec![Ok(())]);

    // Another tenant's endpoint is a 404 on PUT, as on GET.
    let other = Tenant {
        api_url: cluster.api_url.clone(),
        bearer: cluster.create_tenant("other"),
    };
    let (status, _) = other.call(
        reqwest::Method::PUT,
        &path,
        Some(json!({"url": rx.url("/steal")})),
    );
    assert_eq!(status, 404);
    let (status, _) = other.call(reqwest::Method::GET, &path, None);
    assert_eq!(status, 404);
    let (_, still) = tenant.call(reqwest::Method::GET, &path, None);
    assert_eq!(still["url"], rx.url("/life2"));
}
