//! Node loss, corruption, misuse and isolation on a real `zib dev` cluster.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;

/// Removes everything a node stores, as if its disk were lost.
fn wipe(node_dir: &std::path::Path) {
    for entry in std::fs::read_dir(node_dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else if p.file_name().is_some_and(|n| n != "node.json") {
            std::fs::remove_file(&p).unwrap();
        }
    }
}

#[test]
fn files_survive_losing_m_nodes_and_fail_cleanly_past_that() {
    let cluster = Cluster::start(6);
    let work = tempfile::tempdir().unwrap();
    let http = cluster.http();
    let mut files = Vec::new();
    for (i, size) in [1, 700_000, 6 * MIB + 5].into_iter().enumerate() {
        let data = pattern(size, 40 + i as u64);
        let path = write_file(work.path(), &format!("f{i}"), &data);
        let (_, url) = cluster.upload(&path, "durable", &format!("f{i}"));
        files.push((url, data));
    }
    let nodes = cluster.node_dirs();
    assert_eq!(nodes.len(), 6);

    // m = 2 data directories gone: everything still reads back identical.
    wipe(&nodes[0]);
    wipe(&nodes[3]);
    for (url, data) in &files {
        let (status, body) = get(&http, url, None);
        assert_eq!(status, 200);
        assert!(&body == data, "file differs after losing two nodes");
        let (status, body) = get(&http, url, Some((0, 0)));
        assert_eq!(status, 206);
        assert_eq!(body, data[..1]);
    }

    // m + 1: a clear JSON 5xx, never wrong bytes.
    wipe(&nodes[5]);
    for (url, data) in &files {
        let resp = http.get(url).send().unwrap();
        let status = resp.status().as_u16();
        if status == 200 {
            // A segment may still be whole by luck of placement; then the bytes
            // must be right or the stream must break off.
            if let Ok(body) = resp.bytes() {
                assert!(body.len() < data.len() || body.as_ref() == data.as_slice());
            }
            continue;
        }
        assert!(status >= 500, "status {status}");
        let body: serde_json::Value = resp.json().unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("shards"),
            "error names the cause: {body}"
        );
    }
}

#[test]
fn a_flipped_byte_in_a_stored_shard_is_read_around() {
    let cluster = Cluster::start(6);
    let work = tempfile::tempdir().unwrap();
    let data = pattern(5 * MIB, 11);
    let path = write_file(work.path(), "f", &data);
    let (_, url) = cluster.upload(&path, "bitrot", "f");

    // Flip one byte in every shard (<= 1 MiB) on two nodes; whole-upload blobs are
    // larger and left alone so only shards are corrupt.
    let mut flipped = 0;
    for node in &cluster.node_dirs()[..2] {
        for f in files_under(node) {
            let mut bytes = std::fs::read(&f).unwrap();
            if f.file_name().is_some_and(|n| n == "node.json")
                || bytes.is_empty()
                || bytes.len() as u64 > MIB
            {
                continue;
            }
            let at = bytes.len() / 2;
            bytes[at] ^= 0x40;
            std::fs::write(&f, &bytes).unwrap();
            flipped += 1;
        }
    }
    assert!(flipped > 0, "found shards to corrupt");
    let (status, body) = get(&cluster.http(), &url, None);
    assert_eq!(status, 200);
    assert!(body == data, "corrupt shards leaked into the response");
}

#[test]
fn node_disks_hold_no_plaintext_keys_object_keys_or_file_ids() {
    let cluster = Cluster::start(6);
    let work = tempfile::tempdir().unwrap();
    let marker = b"ZIB-MARKER-7d1f3c-this-must-never-be-on-a-node-disk";
    let client = cluster.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut secrets: Vec<Vec<u8>> = vec![marker.to_vec()];
    for (i, size) in [200u64, 3 * MIB].into_iter().enumerate() {
        let mut data = pattern(size, 5 + i as u64);
        for at in (0..data.len().saturating_sub(marker.len())).step_by(50_000) {
            data[at..at + marker.len()].copy_from_slice(marker);
        }
        let path = write_file(work.path(), &format!("m{i}"), &data);
        let key = format!("secret-object-key-{i}/holiday.jpg");
        let reg = rt
            .block_on(client.initiate("private-bucket", &key, size, None))
            .unwrap();
        let opts = zib_client::UploadOptions {
            concurrency: 2,
            part_retries: 2,
            progress: None,
            resume: false,
        };
        let http = reqwest::Client::new();
        rt.block_on(zib_client::upload_with_registration(
            &http, &reg, &path, &opts,
        ))
        .unwrap();
        let dek = base64::engine::general_purpose::STANDARD
            .decode(&reg.encryption_key)
            .unwrap();
        secrets.push(dek.clone());
        secrets.push(reg.encryption_key.as_bytes().to_vec());
        secrets.push(hex_lower(&dek).into_bytes());
        secrets.push(key.into_bytes());
        secrets.push(b"private-bucket".to_vec());
        secrets.push(reg.file_id.to_string().into_bytes());
        secrets.push(reg.file_id.0.simple().to_string().into_bytes());
        secrets.push(reg.file_id.0.as_bytes().to_vec());
    }
    let files = files_under(&cluster.data_dir().join("nodes"));
    assert!(files.len() > 12, "nodes hold shards");
    for f in files {
        // A file removed since the listing (the originator's copy once the file is
        // safe, a temp file renamed into place) holds nothing at rest any more.
        let bytes = match std::fs::read(&f) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("reading {}: {e}", f.display()),
        };
        for s in &secrets {
            assert!(
                !contains(&bytes, s),
                "{} contains a secret ({} bytes)",
                f.display(),
                s.len()
            );
        }
    }
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn registrations_are_single_use_node_scoped_and_size_bound() {
    let cluster = Cluster::start(6);
    let work = tempfile::tempdir().unwrap();
    let client = cluster.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = cluster.http();
    let data = pattern(4000, 21);
    let path = write_file(work.path(), "one", &data);
    let opts = zib_client::UploadOptions {
        concurrency: 1,
        part_retries: 0,
        progress: None,
        resume: false,
    };

    // Used once: fine. Used twice: refused, and the file is still the first upload.
    let reg = rt
        .block_on(client.initiate("misuse", "one", 4000, None))
        .unwrap();
    let async_http = reqwest::Client::new();
    rt.block_on(zib_client::upload_with_registration(
        &async_http,
        &reg,
        &path,
        &opts,
    ))
    .unwrap();
    let replay = rt.block_on(zib_client::upload_with_registration(
        &async_http,
        &reg,
        &path,
        &opts,
    ));
    let err = replay
        .expect_err("replayed registration must fail")
        .to_string();
    assert!(err.contains("409") || err.contains("already"), "{err}");
    assert_eq!(get(&http, &reg.cdn_url, None).1, data);

    // Another node: find a registration on node A and replay its URL against node B.
    let first = rt
        .block_on(client.initiate("misuse", "two", 4000, None))
        .unwrap();
    let mut other_url = None;
    for i in 0..40 {
        let r = rt
            .block_on(client.initiate("misuse", &format!("probe{i}"), 10, None))
            .unwrap();
        if r.node_url != first.node_url {
            other_url = Some(r.node_url);
            break;
        }
    }
    let other_url = other_url.expect("a second node");
    let upload_url = first.upload_url.clone().unwrap();
    let moved = upload_url.replace(&first.node_url, &other_url);
    let resp = http
        .put(&moved)
        .body(vec![0u8; first.ciphertext_size as usize])
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403, "token used on another node");
    let body: serde_json::Value = resp.json().unwrap();
    assert!(body["error"].as_str().unwrap().contains("node"), "{body}");

    // More bytes than declared: refused, nothing readable.
    let resp = http
        .put(&upload_url)
        .body(vec![7u8; first.ciphertext_size as usize + 1])
        .send()
        .unwrap();
    assert!(
        resp.status().as_u16() == 400 || resp.status().as_u16() == 413,
        "oversize body got {}",
        resp.status()
    );
    assert_eq!(get(&http, &first.cdn_url, None).0, 404);

    // An altered token is refused.
    let tampered = format!("{}x", upload_url);
    let resp = http
        .put(&tampered)
        .body(vec![0u8; first.ciphertext_size as usize])
        .send()
        .unwrap();
    assert!(
        resp.status().is_client_error(),
        "altered token got {}",
        resp.status()
    );
    assert_eq!(get(&http, &first.cdn_url, None).0, 404);
}

#[test]
fn tenants_are_isolated_and_credentials_are_checked() {
    let cluster = Cluster::start(6);
    let work = tempfile::tempdir().unwrap();
    let http = cluster.http();
    let data = pattern(1000, 8);
    let path = write_file(work.path(), "mine", &data);
    let (file_id, cdn_url) = cluster.upload(&path, "alice-bucket", "mine.bin");

    let mallory = cluster.create_tenant("mallory");
    let api = &cluster.creds.api_url;

    let r = http
        .get(format!("{api}/v1/api/file/{file_id}"))
        .header("Authorization", &mallory)
        .send()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        404,
        "another tenant cannot read metadata"
    );
    let r = http
        .delete(format!("{api}/v1/api/file/{file_id}"))
        .header("Authorization", &mallory)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(
        body["already_deleted"], true,
        "looks exactly like a missing id: {body}"
    );
    let r = http
        .get(format!("{api}/v1/api/storage/alice-bucket"))
        .header("Authorization", &mallory)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(
        get(&http, &cdn_url, None).1,
        data,
        "the owner's file is untouched"
    );

    let r = http
        .get(format!("{api}/v1/api/file/{file_id}"))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let info: serde_json::Value = r.json().unwrap();
    assert_eq!(info["key"], "mine.bin");
    // A small file is safe at once (kept inline), a larger one distributed first.
    assert!(
        ["distributed", "safe"].contains(&info["phase"].as_str().unwrap_or_default()),
        "{info}"
    );

    // Credentials: missing, malformed, wrong — 401 with a JSON error.
    let wrong = format!("Bearer {}:not-the-secret", cluster.creds.access_key);
    for auth in [
        None,
        Some("Basic abc"),
        Some("Bearer no-colon"),
        Some(wrong.as_str()),
    ] {
        let mut req = http.get(format!("{api}/v1/api/me/buckets"));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let r = req.send().unwrap();
        assert_eq!(r.status().as_u16(), 401, "auth {auth:?}");
        let body: serde_json::Value = r.json().unwrap();
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
        assert!(body["request_id"].is_string());
    }

    // The owner deletes: CDN 404 afterwards, and the second delete is idempotent.
    let r = http
        .delete(format!("{api}/v1/api/file/{file_id}"))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap();
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["success"], true);
    assert!(body["node_cleanup"].is_object(), "{body}");
    assert_eq!(get(&http, &cdn_url, None).0, 404);
    let r = http
        .delete(format!("{api}/v1/api/file/{file_id}"))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap();
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["already_deleted"], true);
}

#[test]
fn initiate_validates_every_field_by_name() {
    let cluster = Cluster::start(6);
    let http = cluster.http();
    let url = format!("{}/v1/api/upload/initiate", cluster.creds.api_url);
    let cases = [
        (
            serde_json::json!({"bucket": "Bad_Bucket", "key": "k", "file_size": 5}),
            "bucket",
        ),
        (serde_json::json!({"key": "k", "file_size": 5}), "bucket"),
        (serde_json::json!({"bucket": "okay", "file_size": 5}), "key"),
        (
            serde_json::json!({"bucket": "okay", "key": "k", "file_size": 1.5}),
            "file_size",
        ),
        (
            serde_json::json!({"bucket": "okay", "key": "k"}),
            "file_size",
        ),
        (
            serde_json::json!({"bucket": "okay", "key": "k", "file_size": -3}),
            "file_size",
        ),
        (
            serde_json::json!({"bucket": "okay", "key": "k", "file_size": 1u64 << 60}),
            "file_size",
        ),
        (
            serde_json::json!({"bucket": "okay", "key": "k", "file_size": 5, "content_type": "nope"}),
            "content_type",
        ),
    ];
    for (body, field) in cases {
        let r = http
            .post(&url)
            .header("Authorization", cluster.bearer())
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{body}");
        let err: serde_json::Value = r.json().unwrap();
        assert!(
            err["error"].as_str().unwrap().starts_with(field),
            "error for {body} names {field}: {err}"
        );
    }
    let r = http
        .post(&url)
        .header("Authorization", cluster.bearer())
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // The registration carries no tenant credential.
    let r = http
        .post(&url)
        .header("Authorization", cluster.bearer())
        .json(&serde_json::json!({"bucket": "okay", "key": "k", "file_size": 5}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().unwrap();
    assert!(!text.contains(&cluster.creds.secret_key) && !text.contains(&cluster.creds.access_key));
}

#[test]
fn restarting_zib_dev_on_the_same_directory_keeps_every_file() {
    let mut cluster = Cluster::start(6);
    let work = tempfile::tempdir().unwrap();
    let data = pattern(3 * MIB + 1, 77);
    let path = write_file(work.path(), "keep", &data);
    let (file_id, _) = cluster.upload(&path, "keep", "keep.bin");
    let keys_before = (
        cluster.creds.access_key.clone(),
        cluster.creds.secret_key.clone(),
    );
    cluster.restart();
    assert_eq!(
        keys_before,
        (
            cluster.creds.access_key.clone(),
            cluster.creds.secret_key.clone()
        ),
        "the dev tenant survives a restart"
    );
    // Nodes re-register on new ports; the file is served from them.
    std::thread::sleep(Duration::from_millis(500));
    let url = format!("{}/objects/{file_id}", cluster.creds.api_url);
    let (status, body) = get(&cluster.http(), &url, None);
    assert_eq!(status, 200);
    assert!(body == data);
    let ls = cluster.cli(&["ls", "keep"]);
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains("keep.bin"),
        "ls after restart: {} {}",
        String::from_utf8_lossy(&ls.stdout),
        String::from_utf8_lossy(&ls.stderr)
    );
}

/// A machine that stood still (a paused VM, here SIGSTOP) misses every node's
/// heartbeats for the pause: a request sent meanwhile is served as soon as it
/// resumes, not refused because no storage node looks online.
#[test]
fn a_request_sent_while_the_cluster_is_paused_is_served_when_it_resumes() {
    let cluster = Cluster::start(6);
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &cluster.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig}");
    };
    let initiate = || {
        cluster
            .http()
            .post(format!("{}/v1/api/upload/initiate", cluster.creds.api_url))
            .header("authorization", cluster.bearer())
            .json(&serde_json::json!({"bucket": "pause", "key": "p.bin", "file_size": 1000}))
            .send()
            .expect("initiate answered")
    };
    assert_eq!(initiate().status(), 200, "before the pause");
    signal("-STOP");
    std::thread::scope(|s| {
        // Sent while paused: answered right after the resume, by one try.
        let waiting = s.spawn(initiate);
        // Longer than `zib dev`'s node_offline_after (6 s).
        std::thread::sleep(Duration::from_secs(8));
        signal("-CONT");
        let res = waiting.join().expect("initiate thread");
        let status = res.status();
        assert_eq!(
            status,
            200,
            "after the pause: {}",
            res.text().unwrap_or_default()
        );
    });
    // And the cluster works on: a whole upload reads back.
    let work = tempfile::tempdir().unwrap();
    let data = pattern(MIB + 3, 5);
    let (file_id, _) = cluster.upload(&write_file(work.path(), "p", &data), "pause", "after.bin");
    let url = format!("{}/objects/{file_id}", cluster.creds.api_url);
    let (status, body) = get(&cluster.http(), &url, None);
    assert_eq!(status, 200);
    assert!(body == data, "the file reads back whole");
}

/// The reference's pipeline declaration is read whole: a stage no online node runs
/// is a 503 naming it (this cluster's nodes find no working ffmpeg, so none
/// advertises `encode`, and none has AI models), a bad tier or an unknown field is a
/// 400 naming the field.
#[test]
fn pipeline_declarations_are_routed_or_refused_by_name() {
    let cluster = Cluster::start_with_env(6, &[("ZIB_FFMPEG", "/bin/false")]);
    let http = cluster.http();
    let initiate = |extra: serde_json::Value| {
        let mut body = serde_json::json!({"bucket": "pipes", "key": "v.mp4", "file_size": 10});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let resp = http
            .post(format!("{}/v1/api/upload/initiate", cluster.creds.api_url))
            .header("Authorization", cluster.bearer())
            .json(&body)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let v: serde_json::Value = resp.json().unwrap();
        (status, v["error"].as_str().unwrap_or_default().to_string())
    };

    let refused = [
        (
            serde_json::json!({"pipeline": {"encode": true}}),
            503,
            "\"encode\"",
        ),
        (
            serde_json::json!({"pipeline": {"transcription": "recommended"}}),
            503,
            "\"transcription:recommended\"",
        ),
        (
            serde_json::json!({"capabilities": ["vision:hq"]}),
            503,
            "\"vision:hq\"",
        ),
        (
            serde_json::json!({"pipeline": {"aspect_variants": ["9:16"]}}),
            503,
            "\"encode\"",
        ),
        (
            serde_json::json!({"pipeline": {"transcription": "ultra"}}),
            400,
            "pipeline.transcription",
        ),
        (
            serde_json::json!({"pipeline": {"aspect_variants": ["4:3"]}}),
            400,
            "pipeline.aspect_variants",
        ),
        (
            serde_json::json!({"pipeline": {"thumbnails": {"sprite": {"width": 4}}}}),
            400,
            "pipeline.thumbnails",
        ),
        (
            serde_json::json!({"pipeline": {"stages": []}}),
            400,
            "pipeline",
        ),
    ];
    for (extra, want_status, names) in refused {
        let (status, error) = initiate(extra.clone());
        assert_eq!(status, want_status, "{extra}: {error}");
        assert!(
            error.contains(names),
            "{extra}: {error:?} should name {names}"
        );
    }

    // Declarations that need no stage runner are accepted as before.
    for extra in [
        serde_json::json!({}),
        serde_json::json!({"pipeline": null}),
        serde_json::json!({"pipeline": {"encode": false, "thumbnails": false}}),
    ] {
        let (status, error) = initiate(extra.clone());
        assert_eq!(status, 200, "{extra}: {error}");
    }
}
