//! Empty (0-byte) files through every path, on one real `zib dev` (issue 12, item 1):
//! uploaded with `zib upload`, S3 PUT (single and multipart) and `aws s3 cp`; read
//! back with `zib get`, the CDN (`GET`, `HEAD`, `Range`), boto3 (header-signed and
//! presigned) and `aws s3 cp`. With `inline_threshold = 0` an empty file is stored as
//! any other (the envelope's one empty chunk, erasure-coded), so it also reads around
//! lost shards and is repaired.

mod common;

use std::time::Duration;

use common::s3_clients::{aws, endpoint, install_clients, python};
use common::{files_under, rt, wait_for, write_file, Cluster};
use serde_json::Value;

/// MD5 of nothing: the S3 ETag of an empty object.
const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

fn pipeline(cluster: &Cluster, file_id: &str) -> Value {
    let out = cluster.cli(&["pipeline", file_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from zib pipeline")
}

/// Status, headers and body of a CDN request.
fn cdn(
    cluster: &Cluster,
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = cluster.http().request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().expect("CDN request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().expect("body").to_vec())
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The blob files on node disks holding `file_id`'s shards (None where missing),
/// by shard index.
fn shard_files(cluster: &Cluster, file_id: &str) -> Vec<(u8, Option<std::path::PathBuf>)> {
    let db = cluster.data_dir().join("meta.db");
    let mut shards = rt()
        .block_on(async {
            let store = zib_meta::Store::open_sqlite(&db).await?;
            store
                .shards_for_file(file_id.parse().expect("file id"))
                .await
        })
        .expect("shard rows from the cluster's store");
    shards.sort_by_key(|s| s.index);
    shards
        .iter()
        .map(|s| {
            let blob = s.blob_id.to_string();
            let dir = cluster.data_dir().join("nodes").join(s.node_id.to_string());
            let found = files_under(&dir)
                .into_iter()
                .find(|p| p.file_name().and_then(|n| n.to_str()) == Some(blob.as_str()));
            (s.index, found)
        })
        .collect()
}

#[test]
fn an_empty_file_uploads_and_reads_back_through_every_path() {
    install_clients();
    // With small objects on nodes, as `inline_threshold = 0` keeps them: the empty
    // envelope is erasure-coded like any other (small_objects.rs covers the default,
    // where it stays in the metadata store).
    let cluster = Cluster::start_with_env(6, &[("ZIB_INLINE_THRESHOLD", "0")]);
    let work = tempfile::tempdir().unwrap();
    let empty = write_file(work.path(), "empty.bin", b"");

    // `zib upload`: initiate accepts file_size 0; the file is placed like any other.
    let (file_id, cdn_url) = cluster.upload(&empty, "empties", "cli/empty.bin");
    wait_for("the empty file to be safe", Duration::from_secs(60), || {
        let upload = &pipeline(&cluster, &file_id)["stages"]["upload"];
        upload["phase"] == "safe" && upload["redundancy"]["live_shards"] == 6
    });
    let shards = shard_files(&cluster, &file_id);
    assert_eq!(shards.len(), 6, "one segment of 4 + 2 shards: {shards:?}");
    assert!(shards.iter().all(|(_, f)| f.is_some()), "{shards:?}");

    // `zib get`: the whole file is nothing; a byte range of nothing is refused.
    let got = work.path().join("got.bin");
    let out = cluster.cli(&["get", &file_id, "-o", got.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&got).unwrap(), b"");
    let out = cluster.cli(&["get", &file_id, "--range", "0-0"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("416"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The CDN: GET and HEAD are an empty 200; a range with a first byte is 416 naming
    // the size; a suffix range is the empty whole (RFC 9110, S3); ETag revalidates.
    let (status, headers, body) = cdn(&cluster, reqwest::Method::GET, &cdn_url, &[]);
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(header(&headers, "content-length"), "0");
    let etag = header(&headers, "etag").to_string();
    let (status, headers, _) = cdn(&cluster, reqwest::Method::HEAD, &cdn_url, &[]);
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-length"), "0");
    for range in ["bytes=0-0", "bytes=0-", "bytes=5-9"] {
        let (status, headers, _) = cdn(
            &cluster,
            reqwest::Method::GET,
            &cdn_url,
            &[("Range", range)],
        );
        assert_eq!(status, 416, "{range}");
        assert_eq!(header(&headers, "content-range"), "bytes */0", "{range}");
    }
    let (status, _, body) = cdn(
        &cluster,
        reqwest::Method::GET,
        &cdn_url,
        &[("Range", "bytes=-1")],
    );
    assert_eq!((status, body.len()), (200, 0));
    let (status, _, _) = cdn(
        &cluster,
        reqwest::Method::GET,
        &cdn_url,
        &[("If-None-Match", &etag)],
    );
    assert_eq!(status, 304);

    // Two data shards lost: the read goes around them (the envelope's one chunk still
    // authenticates) and the read queues their repair.
    for (_, file) in shards.iter().take(2) {
        std::fs::remove_file(file.as_ref().unwrap()).unwrap();
    }
    let (status, _, body) = cdn(&cluster, reqwest::Method::GET, &cdn_url, &[]);
    assert_eq!((status, body.len()), (200, 0));
    wait_for(
        "the lost shards of the empty file to be rebuilt",
        Duration::from_secs(60),
        || {
            shard_files(&cluster, &file_id)
                .iter()
                .all(|(_, f)| f.is_some())
        },
    );

    // boto3: PUT, HEAD, GET (whole, ranged), presigned GET, a multipart upload of
    // nothing, and the file `zib upload` stored.
    let out = python(
        &cluster,
        "s3_empty.py",
        &[&endpoint(&cluster), "empties", "cli/empty.bin"],
    );
    let seen: Value = serde_json::from_str(&out).expect("JSON from s3_empty.py");
    let empty_read = |v: &Value, etag: &str| {
        v["status"] == 200 && v["length"] == 0 && v["body"] == "" && v["etag"] == etag
    };
    assert_eq!(seen["put_etag"], EMPTY_MD5, "{seen}");
    assert_eq!(seen["head"]["length"], 0, "{seen}");
    assert_eq!(seen["head"]["etag"], EMPTY_MD5, "{seen}");
    assert!(empty_read(&seen["get"], EMPTY_MD5), "{seen}");
    for range in ["range_first_byte", "range_open"] {
        assert_eq!(seen[range]["code"], "InvalidRange", "{seen}");
        assert_eq!(seen[range]["status"], 416, "{seen}");
    }
    assert!(empty_read(&seen["range_suffix"], EMPTY_MD5), "{seen}");
    let put_id = seen["head"]["file_id"].as_str().expect("x-zib-file-id");
    assert_eq!(seen["presigned"]["status"], 200, "{seen}");
    assert_eq!(seen["presigned"]["body"], "", "{seen}");
    assert_eq!(
        seen["presigned"]["final_url"],
        cdn_url.replace(&file_id, put_id),
        "{seen}"
    );
    // S3's multipart ETag: the MD5 of the parts' MD5s, then the part count.
    let multipart_etag = {
        use md5::Digest;
        let digest = md5::Md5::digest(hex::decode(EMPTY_MD5).unwrap());
        format!("{}-1", hex::encode(digest))
    };
    assert_eq!(seen["multipart_etag"], multipart_etag.as_str(), "{seen}");
    assert!(
        empty_read(&seen["multipart_get"], &multipart_etag),
        "{seen}"
    );
    let cli_etag = file_id.replace('-', "");
    assert_eq!(seen["cli_head"]["length"], 0, "{seen}");
    assert_eq!(seen["cli_head"]["file_id"], file_id.as_str(), "{seen}");
    assert!(empty_read(&seen["cli_get"], &cli_etag), "{seen}");
    assert_eq!(
        seen["listed"],
        serde_json::json!({"cli/empty.bin": 0, "s3/multipart-empty": 0, "s3/put-empty": 0}),
        "{seen}"
    );

    // What S3 stored, `zib get` reads too.
    let out = cluster.cli(&["get", put_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());

    // The AWS CLI: an empty file up and down again, and the others down.
    aws(
        &cluster,
        &[
            "s3",
            "cp",
            empty.to_str().unwrap(),
            "s3://empties/aws/up.bin",
        ],
    );
    for key in ["aws/up.bin", "s3/put-empty", "cli/empty.bin"] {
        let down = work.path().join("down.bin");
        std::fs::write(&down, b"not empty").unwrap();
        aws(
            &cluster,
            &[
                "s3",
                "cp",
                &format!("s3://empties/{key}"),
                down.to_str().unwrap(),
            ],
        );
        assert_eq!(std::fs::read(&down).unwrap(), b"", "{key}");
    }
}
