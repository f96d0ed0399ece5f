//! The storage core as a user meets it: a real `zib dev` cluster (server + 6 nodes,
//! RS 4+2) on loopback, files uploaded with `zib upload`, read back through the CDN.

mod common;

use common::*;

#[test]
fn round_trips_are_byte_identical_for_edge_sizes() {
    let cluster = Cluster::start(6);
    let work = tempfile::tempdir().unwrap();
    let http = cluster.http();
    for (i, size) in [1, CHUNK - 1, CHUNK, CHUNK + 1, 10 * MIB]
        .into_iter()
        .enumerate()
    {
        let data = pattern(size, i as u64 + 1);
        let path = write_file(work.path(), &format!("f{i}"), &data);
        let (_, cdn_url) = cluster.upload(&path, "round-trip", &format!("sizes/{size}.bin"));
        let (status, body) = get(&http, &cdn_url, None);
        assert_eq!(status, 200, "GET {cdn_url}");
        assert_eq!(body.len() as u64, size);
        assert!(body == data, "{size}-byte file came back different");
    }
}

#[test]
fn multipart_upload_of_a_large_file_round_trips() {
    let cluster = Cluster::start(6);
    let work = tempfile::tempdir().unwrap();
    let size = 100 * MIB + 12_345;
    let data = pattern(size, 99);
    let path = write_file(work.path(), "big.bin", &data);

    // The server makes this a multipart registration with several parts.
    let client = cluster.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let reg = rt
        .block_on(client.initiate("big", "probe.bin", size, None))
        .unwrap();
    assert_eq!(reg.upload_type, zib_proto::api::UploadType::Multipart);
    assert!(reg.parts.len() >= 4, "parts: {}", reg.parts.len());

    let (_, cdn_url) = cluster.upload(&path, "big", "big.bin");
    let out = work.path().join("back.bin");
    let got = cluster.cli(&["get", &cdn_url, "-o", out.to_str().unwrap()]);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let back = std::fs::read(&out).unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "100 MiB multipart file came back different");
}

#[test]
fn ranges_at_chunk_shard_and_segment_boundaries_match_the_original() {
    let cluster = Cluster::start(6);
    let work = tempfile::tempdir().unwrap();
    let size = 9 * MIB + 777;
    let data = pattern(size, 7);
    let path = write_file(work.path(), "r.bin", &data);
    let (_, cdn_url) = cluster.upload(&path, "ranges", "r.bin");
    let http = cluster.http();

    // Plaintext offsets where ciphertext offset c lands: c = 16 + p + 16 * (p / CHUNK).
    let plain_at = |c: u64| {
        let per_chunk = CHUNK + 16;
        let body = c - 16;
        (body / per_chunk) * CHUNK + (body % per_chunk).min(CHUNK)
    };
    let mut starts = vec![0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, size - 1];
    for c in [MIB, 2 * MIB, 4 * MIB, 8 * MIB] {
        let p = plain_at(c);
        starts.extend([p.saturating_sub(1), p, p + 1]);
    }
    for &a in &starts {
        for len in [1, 17, CHUNK, MIB + 3, 5 * MIB] {
            let b = (a + len).min(size) - 1;
            let (status, body) = get(&http, &cdn_url, Some((a, b)));
            assert_eq!(status, 206, "range {a}-{b}");
            assert!(
                body == data[a as usize..=b as usize],
                "range {a}-{b} differs from the original"
            );
        }
    }
    // Suffix and open-ended forms, and an unsatisfiable one.
    let resp = http
        .get(&cdn_url)
        .header("Range", "bytes=-100")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 206);
    assert_eq!(resp.bytes().unwrap().as_ref(), &data[data.len() - 100..]);
    let resp = http
        .get(&cdn_url)
        .header("Range", format!("bytes={size}-"))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 416);
    assert_eq!(
        resp.headers()["content-range"].to_str().unwrap(),
        format!("bytes */{size}")
    );
}

#[test]
fn cdn_headers_follow_the_tenant_content_type() {
    let cluster = Cluster::start(6);
    let work = tempfile::tempdir().unwrap();
    let path = write_file(work.path(), "pic.png", &pattern(5000, 3));
    let out = cluster.cli(&[
        "upload",
        "--bucket",
        "media",
        "--key",
        "pic.png",
        "--content-type",
        "image/png",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cdn_url = v["cdn_url"].as_str().unwrap();
    let http = cluster.http();
    let head = http.head(cdn_url).send().unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(head.headers()["content-type"], "image/png");
    assert_eq!(head.headers()["content-length"], "5000");
    let etag = head.headers()["etag"].to_str().unwrap().to_string();
    assert!(etag.contains(v["file_id"].as_str().unwrap()));
    let again = http
        .get(cdn_url)
        .header("If-None-Match", &etag)
        .send()
        .unwrap();
    assert_eq!(again.status().as_u16(), 304);

    // Without a content type the CDN says octet-stream.
    let plain = write_file(work.path(), "blob.xyz", b"no type here");
    let (_, url) = cluster.upload(&plain, "media", "blob.xyz");
    let head = http.head(&url).send().unwrap();
    assert_eq!(head.headers()["content-type"], "application/octet-stream");

    // Unknown and malformed ids are 404 JSON.
    for id in ["6f9619ff-8b86-d011-b42d-00cf4fc964ff", "not-a-uuid"] {
        let r = http
            .get(format!("{}/objects/{id}", cluster.creds.api_url))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 404);
        let body: serde_json::Value = r.json().unwrap();
        assert!(body["error"].is_string());
    }
}

#[test]
fn cli_verbs_list_show_and_remove() {
    let cluster = Cluster::start(6);
    let work = tempfile::tempdir().unwrap();
    let data = pattern(2000, 4);
    let path = write_file(work.path(), "a.bin", &data);
    let (file_id, cdn_url) = cluster.upload(&path, "verbs", "dir/a.bin");
    let (other_id, _) = cluster.upload(&path, "verbs", "dir/b.bin");

    let out = cluster.cli(&["buckets", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["buckets"][0]["name"], "verbs");
    assert_eq!(v["buckets"][0]["object_count"], 2);

    let out = cluster.cli(&["pipeline", &file_id]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["file_id"], file_id.as_str());
    assert!(["distributed", "safe"].contains(&v["stages"]["upload"]["phase"].as_str().unwrap()));

    let out = cluster.cli(&["rm", "--bucket", "verbs", "--key", "dir/a.bin"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["file_id"], file_id.as_str());
    assert_eq!(get(&cluster.http(), &cdn_url, None).0, 404);
    let out = cluster.cli(&["rm", &other_id]);
    assert!(out.status.success());
    let out = cluster.cli(&["rm", &other_id]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["already_deleted"], true);

    // A mistake says what is wrong, on one line, and fails.
    let out = cluster.cli(&["pipeline", "not-an-id"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("not a file id"),
        "{err}"
    );
}
