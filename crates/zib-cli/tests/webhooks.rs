//! Webhooks as an integrator meets them: a receiver in the test gets signed events
//! for uploads, supersedes and deletes; checks `X-ZiB-Signature` itself and the
//! Standard Webhooks headers with the `standardwebhooks` reference library; survives
//! failures and a server restart; per-request config beats the tenant default;
//! rotated secrets overlap; private targets are refused outside dev mode.

mod common;
#[path = "common/webhook_receiver.rs"]
mod receiver;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::procs::ProcCluster;
use common::*;
use receiver::{verify_standard, zib_primary_signature_ok, zib_signature_ok, Receiver};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(120);

/// A real `zib server` with private targets allowed (the receiver is on loopback)
/// and a short retry schedule.
fn cluster(extra: &[(&str, &str)]) -> ProcCluster {
    let mut env = vec![
        ("ZIB_ALLOW_PRIVATE_WEBHOOK_TARGETS", "true"),
        ("ZIB_WEBHOOK_RETRY_SCHEDULE", "1s,1s,2s,2s,2s"),
        ("ZIB_WEBHOOK_POLL_INTERVAL_MS", "100"),
        ("ZIB_WEBHOOK_TIMEOUT_SECS", "3"),
    ];
    env.extend_from_slice(extra);
    ProcCluster::storage(6, &env)
}

fn api(
    cluster: &ProcCluster,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::blocking::Client::new()
        .request(method, format!("{}{path}", cluster.api_url))
        .header("Authorization", cluster.bearer());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

fn upload(cluster: &ProcCluster, key: &str, data: &[u8]) -> String {
    let work = tempfile::tempdir().unwrap();
    let path = write_file(work.path(), "f", data);
    let r = rt()
        .block_on(cluster.client().upload_path(
            &path,
            "hooks",
            key,
            None,
            &zib_client::UploadOptions::default(),
        ))
        .unwrap();
    r.file_id.to_string()
}

/// Initiates with a per-request webhook in `pipeline`, then uploads.
fn upload_with_pipeline(cluster: &ProcCluster, key: &str, data: &[u8], pipeline: Value) -> String {
    let (status, reg) = api(
        cluster,
        reqwest::Method::POST,
        "/v1/api/upload/initiate",
        Some(json!({"bucket": "hooks", "key": key, "file_size": data.len(), "pipeline": pipeline})),
    );
    assert_eq!(status, 200, "{reg}");
    let reg: zib_proto::api::Registration = serde_json::from_value(reg).unwrap();
    let work = tempfile::tempdir().unwrap();
    let path = write_file(work.path(), "f", data);
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

fn set_tenant_webhook(cluster: &ProcCluster, url: &str) -> String {
    let (status, v) = api(
        cluster,
        reqwest::Method::PATCH,
        "/v1/api/customers/me/webhook",
        Some(json!({"webhook_url": url})),
    );
    assert_eq!(status, 200, "{v}");
    v["webhook_secret"]
        .as_str()
        .expect("the first PATCH returns the generated secret")
        .to_string()
}

fn tenant_id(cluster: &ProcCluster) -> String {
    rt().block_on(async {
        let store = zib_meta::Store::open_sqlite(&cluster.database())
            .await
            .unwrap();
        store
            .tenant_by_access_key(&cluster.access_key)
            .await
            .unwrap()
            .unwrap()
            .id
    })
}

/// Both signature schemes, for every delivery, with `secret`.
fn assert_signed(secret: &str, deliveries: &[&receiver::Received]) {
    for r in deliveries {
        assert!(
            zib_primary_signature_ok(secret, r),
            "X-ZiB-Signature does not verify for {}",
            r.event()
        );
    }
    let items: Vec<(&str, &receiver::Received)> = deliveries.iter().map(|r| (secret, *r)).collect();
    for (r, result) in deliveries.iter().zip(verify_standard(&items)) {
        assert!(
            result.is_ok(),
            "standardwebhooks refuses {}: {result:?}",
            r.event()
        );
    }
}

#[test]
fn an_upload_supersede_and_delete_arrive_signed_in_order_and_per_request_config_wins() {
    let cluster = cluster(&[]);
    let tenant_hook = Receiver::start();
    let request_hook = Receiver::start();
    let secret = set_tenant_webhook(&cluster, &tenant_hook.url("/zib"));
    let customer = tenant_id(&cluster);

    // Upload: file.ready, then file.replicated once the shards are verified.
    let first = upload(&cluster, "doc.txt", &pattern(300_000, 1));
    let ready = tenant_hook.wait_event("file.ready", &first, WAIT);
    let replicated = tenant_hook.wait_event("file.replicated", &first, WAIT);
    let order: Vec<String> = tenant_hook
        .received()
        .iter()
        .filter(|r| r.json()["file_id"] == first.as_str())
        .map(|r| r.event())
        .collect();
    assert_eq!(order, ["file.ready", "file.replicated"]);
    let body = ready.json();
    assert_eq!(body["bucket"], "hooks");
    assert_eq!(body["object_key"], "doc.txt");
    assert_eq!(body["size_bytes"], 300_000);
    assert_eq!(body["customer_id"], customer.as_str());
    assert_eq!(
        body["cdn_url"],
        format!("{}/objects/{first}", cluster.api_url).as_str()
    );
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(ready.header("content-type"), "application/json");
    assert_eq!(ready.header("x-zib-event"), "file.ready");
    assert_eq!(ready.header("x-zib-file-id"), first);
    assert!(ready.header("x-zib-event-id").starts_with("evt_"));
    assert_eq!(ready.header("webhook-id"), ready.header("x-zib-event-id"));
    assert_ne!(ready.header("webhook-id"), replicated.header("webhook-id"));

    // Re-upload of the key: file.failed for the old id, file.ready for the new.
    let second = upload(&cluster, "doc.txt", &pattern(1000, 2));
    let failed = tenant_hook.wait_event("file.failed", &first, WAIT);
    assert!(failed.json()["cancelled_reason"]
        .as_str()
        .unwrap()
        .contains("superseded"));
    let ready2 = tenant_hook.wait_event("file.ready", &second, WAIT);

    // Delete: file.deleted with the contract's `key`.
    let (status, _) = api(
        &cluster,
        reqwest::Method::DELETE,
        &format!("/v1/api/file/{second}"),
        None,
    );
    assert_eq!(status, 200);
    let deleted = tenant_hook.wait_event("file.deleted", &second, WAIT);
    assert_eq!(deleted.json()["key"], "doc.txt");
    assert_eq!(deleted.header("x-zib-file-id"), second);

    assert_signed(&secret, &[&ready, &replicated, &failed, &ready2, &deleted]);
    // The wrong secret verifies nothing.
    assert!(!zib_signature_ok(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &ready
    ));
    assert!(verify_standard(&[("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &ready)])[0].is_err());

    // Per-request config beats the tenant default: only its own receiver hears
    // about that file, signed with its own secret.
    let own_secret = "whsec_cGVyLXJlcXVlc3Qtc2VjcmV0LTMyLWJ5dGVzISE=";
    let third = upload_with_pipeline(
        &cluster,
        "own.txt",
        &pattern(5000, 3),
        json!({"webhook_url": request_hook.url("/per-request"), "webhook_secret": own_secret}),
    );
    let own_ready = request_hook.wait_event("file.ready", &third, WAIT);
    request_hook.wait_event("file.replicated", &third, WAIT);
    assert_signed(own_secret, &[&own_ready]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !tenant_hook
            .received()
            .iter()
            .any(|r| r.json()["file_id"] == third.as_str()),
        "the tenant default must not get events of a file with its own webhook"
    );

    // The event log shows every attempt with its status and latency.
    let event_id = ready.header("webhook-id");
    let (status, attempts) = api(
        &cluster,
        reqwest::Method::GET,
        &format!("/v1/api/webhooks/events/{event_id}/attempts"),
        None,
    );
    assert_eq!(status, 200);
    let attempts = attempts["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["status_code"], 200);
    assert_eq!(attempts[0]["response_snippet"], "ok");
    assert!(attempts[0]["latency_ms"].is_u64());
}

#[test]
fn a_failing_receiver_gets_the_same_event_until_it_succeeds_even_across_a_restart() {
    let mut cluster = cluster(&[]);
    let mut hook = Receiver::start();
    let secret = set_tenant_webhook(&cluster, &hook.url("/flaky"));

    // Fails twice, then succeeds: the same event id three times, nothing lost.
    hook.fail_each_event(2);
    let file_id = upload(&cluster, "flaky.bin", &pattern(50_000, 4));
    let ready = hook.wait_event("file.ready", &file_id, WAIT);
    let replicated = hook.wait_event("file.replicated", &file_id, WAIT);
    for r in [&ready, &replicated] {
        let tries: Vec<u16> = hook
            .received()
            .iter()
            .filter(|x| x.header("webhook-id") == r.header("webhook-id"))
            .map(|x| x.answered)
            .collect();
        assert_eq!(tries, [500, 500, 200], "{}", r.event());
    }
    hook.fail_each_event(0);
    let event_id = ready.header("webhook-id").to_string();
    let same_body: HashSet<Vec<u8>> = hook
        .received()
        .iter()
        .filter(|r| r.header("webhook-id") == event_id)
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(same_body.len(), 1, "retries resend the same body");
    assert_signed(&secret, &[&ready]);
    let (_, attempts) = api(
        &cluster,
        reqwest::Method::GET,
        &format!("/v1/api/webhooks/events/{event_id}/attempts"),
        None,
    );
    let codes: Vec<u64> = attempts["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [500, 500, 200]);
    assert_eq!(
        attempts["attempts"][0]["response_snippet"],
        "receiver says no"
    );

    // The receiver is down when the file is deleted, the server dies, the receiver
    // comes back, the server restarts: the event still arrives.
    hook.take_down();
    let (status, _) = api(
        &cluster,
        reqwest::Method::DELETE,
        &format!("/v1/api/file/{file_id}"),
        None,
    );
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(1500));
    cluster.kill_server();
    hook.bring_up();
    cluster.start_server();
    let deleted = hook.wait_event("file.deleted", &file_id, WAIT);
    assert_signed(&secret, &[&deleted]);
    let (_, attempts) = api(
        &cluster,
        reqwest::Method::GET,
        &format!(
            "/v1/api/webhooks/events/{}/attempts",
            deleted.header("webhook-id")
        ),
        None,
    );
    let attempts = attempts["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert!(attempts[0]["error"].as_str().is_some(), "{attempts:?}");
    assert_eq!(attempts.last().unwrap()["status_code"], 200);

    // Every event of the tenant ended up delivered.
    let (_, events) = api(
        &cluster,
        reqwest::Method::GET,
        "/v1/api/webhooks/events",
        None,
    );
    for e in events["events"].as_array().unwrap() {
        let (_, detail) = api(
            &cluster,
            reqwest::Method::GET,
            &format!("/v1/api/webhooks/events/{}", e["id"].as_str().unwrap()),
            None,
        );
        for d in detail["deliveries"].as_array().unwrap() {
            assert_eq!(d["status"], "succeeded", "{detail}");
        }
    }
}

#[test]
fn after_rotation_both_secrets_verify_during_the_overlap_then_only_the_new_one() {
    const OVERLAP_SECS: u64 = 12;
    let cluster = cluster(&[("ZIB_WEBHOOK_SECRET_OVERLAP_SECS", "12")]);
    let hook = Receiver::start();
    let old = set_tenant_webhook(&cluster, &hook.url("/rotating"));

    let (status, rotated) = api(
        &cluster,
        reqwest::Method::POST,
        "/v1/api/customers/me/webhook/secret",
        None,
    );
    let rotated_at = Instant::now();
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["webhook_secret"].as_str().unwrap().to_string();
    assert!(new.starts_with("whsec_") && new != old);
    assert!(rotated["previous_secret_valid_until"].is_string());

    let during = upload(&cluster, "r1", &pattern(1000, 5));
    let d = hook.wait_event("file.ready", &during, WAIT);
    assert!(
        rotated_at.elapsed() < Duration::from_secs(OVERLAP_SECS),
        "the machine was too slow to test the overlap"
    );
    assert!(zib_primary_signature_ok(&new, &d));
    assert!(
        zib_signature_ok(&old, &d),
        "previous secret during the overlap"
    );
    let results = verify_standard(&[(&new, &d), (&old, &d)]);
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    let wait = Duration::from_secs(OVERLAP_SECS + 1).saturating_sub(rotated_at.elapsed());
    std::thread::sleep(wait);
    let after = upload(&cluster, "r2", &pattern(1000, 6));
    let a = hook.wait_event("file.ready", &after, WAIT);
    assert!(zib_primary_signature_ok(&new, &a));
    assert!(!zib_signature_ok(&old, &a), "old secret after the overlap");
    assert!(a.header("x-zib-signature-previous").is_empty());
    let results = verify_standard(&[(&new, &a), (&old, &a)]);
    assert!(results[0].is_ok(), "{results:?}");
    assert!(results[1].is_err(), "{results:?}");
}

#[test]
fn private_and_metadata_targets_are_refused_outside_dev_mode() {
    // A real `zib server` with the default: private targets not allowed.
    let cluster = ProcCluster::storage(0, &[]);
    let refused = [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://10.0.0.1/hook", "private"),
        ("http://localhost:8080/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://100.64.1.1/hook", "carrier-grade NAT"),
        ("ftp://example.com/hook", "only http and https"),
    ];
    for (url, why) in refused {
        let (status, v) = api(
            &cluster,
            reqwest::Method::PATCH,
            "/v1/api/customers/me/webhook",
            Some(json!({"webhook_url": url})),
        );
        assert_eq!(status, 400, "{url}: {v}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(why), "{url}: {msg}");
        assert!(v["request_id"].is_string());

        let (status, v) = api(
            &cluster,
            reqwest::Method::POST,
            "/v1/api/webhooks/endpoints",
            Some(json!({"url": url})),
        );
        assert_eq!(status, 400, "{url}: {v}");

        let (status, v) = api(
            &cluster,
            reqwest::Method::POST,
            "/v1/api/upload/initiate",
            Some(json!({"bucket": "hooks", "key": "k", "file_size": 10,
                        "pipeline": {"webhook_url": url}})),
        );
        assert_eq!(status, 400, "{url}: {v}");
        assert!(v["error"]
            .as_str()
            .unwrap()
            .contains("pipeline.webhook_url"));
    }

    // Another customer's webhook is not ours to see or change.
    let (status, _) = api(
        &cluster,
        reqwest::Method::PATCH,
        "/v1/api/customers/ten_someoneelse000000/webhook",
        Some(json!({"webhook_url": "https://example.com/hook"})),
    );
    assert_eq!(status, 403);
    let (status, _) = api(
        &cluster,
        reqwest::Method::POST,
        "/v1/api/customers/ten_someoneelse000000/webhook/secret",
        None,
    );
    assert_eq!(status, 403);
}

/// `zib dev` allows loopback receivers; the CLI manages endpoints end to end.
#[test]
fn the_cli_manages_endpoints_on_zib_dev() {
    let cluster = Cluster::start(6);
    let hook = Receiver::start();
    let out = cluster.cli(&[
        "webhooks",
        "create",
        &hook.url("/ep"),
        "--events",
        "file.ready,file.deleted",
        "--description",
        "search index",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ep: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = ep["id"].as_str().unwrap().to_string();
    let secret = ep["secret"].as_str().unwrap().to_string();
    assert!(id.starts_with("ep_") && secret.starts_with("whsec_"));

    let out = cluster.cli(&["webhooks", "list"]);
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(listing.contains(&id) && listing.contains("file.ready,file.deleted"));

    // --format picks the payload vocabulary, and --events are checked in it.
    let out = cluster.cli(&[
        "webhooks",
        "create",
        &hook.url("/lifecycle"),
        "--format",
        "lifecycle",
        "--events",
        "video.ready,video.deleted",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let life: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(life["format"], "lifecycle");
    let out = cluster.cli(&[
        "webhooks",
        "create",
        &hook.url("/lifecycle"),
        "--format",
        "lifecycle",
        "--events",
        "file.ready",
    ]);
    assert!(!out.status.success(), "file.ready is not a lifecycle type");
    assert!(String::from_utf8_lossy(&out.stderr).contains("event_types"));
    let out = cluster.cli(&["webhooks", "list"]);
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(listing.contains("lifecycle") && listing.contains("video.ready,video.deleted"));
    let life_id = life["id"].as_str().unwrap_or_default();
    assert!(cluster
        .cli(&["webhooks", "delete", life_id])
        .status
        .success());

    // Subscribed to file.ready and file.deleted only.
    let work = tempfile::tempdir().unwrap();
    let path = write_file(work.path(), "a.txt", b"hello webhooks");
    let (file_id, _) = cluster.upload(&path, "hooks", "a.txt");
    let ready = hook.wait_event("file.ready", &file_id, WAIT);
    let resp = cluster
        .http()
        .delete(format!("{}/v1/api/file/{file_id}", cluster.creds.api_url))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap();
    assert!(resp.status().is_success());
    hook.wait_event("file.deleted", &file_id, WAIT);
    assert!(!hook
        .received()
        .iter()
        .any(|r| r.event() == "file.replicated"));
    let first = hook.received().len();

    // Test send.
    let out = cluster.cli(&["webhooks", "test", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = hook.wait_until("webhook.test", WAIT, |all| {
        all.iter().any(|r| r.event() == "webhook.test")
    });
    let test = got.iter().find(|r| r.event() == "webhook.test").unwrap();
    assert_signed(&secret, &[&ready, test]);

    // Delivery log, then a manual redelivery of file.ready: the same event id again.
    let out = cluster.cli(&["webhooks", "deliveries", &id]);
    let log = String::from_utf8(out.stdout).unwrap();
    assert!(
        log.contains("file.ready") && log.contains("succeeded"),
        "{log}"
    );
    let event_id = ready.header("webhook-id").to_string();
    let out = cluster.cli(&["webhooks", "redeliver", &event_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    hook.wait_until("the redelivery", WAIT, |all| {
        all.iter()
            .filter(|r| r.header("webhook-id") == event_id)
            .count()
            == 2
    });
    assert!(hook.received().len() > first);
    let out = cluster.cli(&["webhooks", "attempts", &event_id]);
    let attempts = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        attempts.lines().filter(|l| l.contains(" 200 ")).count(),
        2,
        "{attempts}"
    );
    let out = cluster.cli(&["webhooks", "events", "--file-id", &file_id]);
    let events = String::from_utf8(out.stdout).unwrap();
    assert!(
        events.contains("file.ready") && events.contains("file.deleted"),
        "{events}"
    );

    let out = cluster.cli(&["webhooks", "delete", &id]);
    assert!(out.status.success());
    let out = cluster.cli(&["webhooks", "list", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["endpoints"].as_array().unwrap().len(), 0);
    let out = cluster.cli(&["webhooks", "test", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}
