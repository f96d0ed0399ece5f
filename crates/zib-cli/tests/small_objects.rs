//! Small objects (issue 17, item 3) on one real `zib dev`: an S3 PutObject of at most
//! `inline_threshold` bytes (16 KiB by default) is sealed and kept in the metadata
//! store, and no node stores anything for it; a byte more and it is sharded as
//! before. Both read back through boto3 (whole and ranged) and the CDN, are `safe`
//! at once with their events, and go with a supersede and a delete.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use common::s3_clients::{endpoint, install_clients, python};
use common::{contains, files_under, rt, wait_for, Cluster};
use serde_json::Value;
use zib_proto::FileId;

const MARKER: &str = "ZIB-SMALL-OBJECT-MARKER-5d1e";
const THRESHOLD: u64 = 16 * 1024;

/// Every shard file on every node (`<node>/blobs/…`), by path.
fn blob_files(cluster: &Cluster) -> BTreeSet<PathBuf> {
    cluster
        .node_dirs()
        .iter()
        .flat_map(|dir| files_under(&dir.join("blobs")))
        .collect()
}

/// The file row, its shard rows and its inline envelope.
fn stored(
    store: &zib_meta::Store,
    file_id: FileId,
) -> (
    Option<zib_meta::FileRow>,
    Vec<zib_meta::ShardRow>,
    Option<Vec<u8>>,
) {
    rt().block_on(async {
        (
            store.file(file_id).await.expect("file row"),
            store.shards_for_file(file_id).await.expect("shard rows"),
            store.inline_envelope(file_id).await.expect("inline row"),
        )
    })
}

fn put_objects(cluster: &Cluster, seed: &str, sizes: &[u64]) -> Vec<Value> {
    let sizes: Vec<String> = sizes.iter().map(u64::to_string).collect();
    let mut args = vec![
        endpoint(cluster),
        "smalls".into(),
        MARKER.into(),
        seed.into(),
    ];
    args.extend(sizes);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = python(cluster, "s3_small.py", &args);
    let seen: Value = serde_json::from_str(&out).expect("JSON from s3_small.py");
    // A body that fails its Content-MD5 is refused and leaves no object behind.
    assert_eq!(seen["bad_md5_put"]["code"], "BadDigest", "{seen}");
    assert_eq!(seen["bad_md5_head"]["status"], 404, "{seen}");
    let objects = seen["objects"].as_array().expect("objects").clone();
    for o in &objects {
        assert_eq!(
            o["put_etag"], o["md5"],
            "the ETag is the plaintext MD5: {o}"
        );
        assert_eq!(o["head_etag"], o["md5"], "{o}");
        assert_eq!(o["head_length"], o["size"], "{o}");
        assert_eq!(o["whole_matches"], true, "{o}");
        if o["size"].as_u64() > Some(10) {
            assert_eq!(o["range_matches"], true, "{o}");
            assert_eq!(o["range_status"], 206, "{o}");
        }
    }
    objects
}

fn file_id_of(o: &Value) -> FileId {
    o["file_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("x-zib-file-id on HEAD: {o}"))
}

fn events_of(cluster: &Cluster, file_id: FileId) -> Vec<String> {
    let resp = cluster
        .http()
        .get(format!(
            "{}/v1/api/webhooks/events?file_id={file_id}",
            cluster.creds.api_url
        ))
        .header("Authorization", cluster.bearer())
        .send()
        .expect("event log");
    assert_eq!(resp.status(), 200);
    let log: Value = resp.json().expect("JSON event log");
    let mut events: Vec<String> = log["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["event"].as_str().map(str::to_string))
        .collect();
    events.sort();
    events
}

#[test]
fn small_s3_objects_are_kept_in_the_store_and_never_reach_a_node() {
    install_clients();
    let cluster = Cluster::start(6);
    let store = cluster.store();
    let before = blob_files(&cluster);
    let objects = put_objects(&cluster, "first", &[1, 4096, THRESHOLD, THRESHOLD + 1]);
    let (small, sharded) = objects.split_at(3);
    // Nor a file row: a small PUT records nothing until its body checks out.
    let unfinished = [
        zib_meta::FilePhase::Pending,
        zib_meta::FilePhase::Uploading,
        zib_meta::FilePhase::Failed,
    ];
    assert_eq!(
        rt().block_on(store.count_files_in_phases(&unfinished))
            .unwrap(),
        0
    );

    // At most the threshold: one sealed envelope in the store, no shard anywhere,
    // `safe` as soon as PutObject answered.
    for o in small {
        let file_id = file_id_of(o);
        let (file, shards, envelope) = stored(&store, file_id);
        let file = file.expect("the file row");
        let envelope = envelope.unwrap_or_else(|| panic!("no inline envelope: {o}"));
        assert!(shards.is_empty(), "{o}: {shards:?}");
        assert_eq!(envelope.len() as u64, file.ciphertext_size, "{o}");
        assert!(!contains(&envelope, MARKER.as_bytes()), "kept sealed: {o}");
        assert_eq!(file.phase, zib_meta::FilePhase::Safe, "{o}");
        assert_eq!(
            events_of(&cluster, file_id),
            ["file.ready", "file.replicated"],
            "{o}"
        );
    }
    // A byte more: erasure-coded on the nodes, as every larger object.
    let big_id = file_id_of(&sharded[0]);
    let (_, shards, envelope) = stored(&store, big_id);
    assert!(envelope.is_none());
    assert_eq!(shards.len(), 6, "one segment of 4 + 2 shards");
    let new_blobs: BTreeSet<String> = blob_files(&cluster)
        .difference(&before)
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .collect();
    let big_blobs: BTreeSet<String> = shards.iter().map(|s| s.blob_id.to_string()).collect();
    assert_eq!(
        new_blobs, big_blobs,
        "nodes stored the large object's shards only"
    );
    for dir in cluster.node_dirs() {
        for f in files_under(&dir) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            assert!(!contains(&bytes, MARKER.as_bytes()), "{}", f.display());
        }
    }

    // The CDN serves the inline bytes like any others: whole, ranged, revalidated.
    let s3_read = |o: &Value| {
        let key = format!("{}/smalls/small/{}", endpoint(&cluster), o["size"]);
        let resp = cluster
            .http()
            .get(key)
            .header("Authorization", cluster.bearer())
            .send()
            .expect("S3 GET");
        (resp.status().as_u16(), resp.bytes().expect("body").to_vec())
    };
    let mid = &small[1];
    let cdn_url = format!("{}/objects/{}", cluster.creds.api_url, file_id_of(mid));
    let whole = cluster.http().get(&cdn_url).send().expect("CDN GET");
    assert_eq!(whole.status(), 200);
    let etag = whole.headers()["etag"].to_str().unwrap().to_string();
    let whole = whole.bytes().unwrap().to_vec();
    assert_eq!(whole.len(), 4096);
    assert!(whole.starts_with(MARKER.as_bytes()));
    let ranged = cluster
        .http()
        .get(&cdn_url)
        .header("Range", "bytes=4000-4095")
        .send()
        .expect("CDN range");
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.bytes().unwrap().as_ref(), &whole[4000..]);
    let revalidated = cluster
        .http()
        .get(&cdn_url)
        .header("If-None-Match", &etag)
        .send()
        .expect("CDN revalidation");
    assert_eq!(revalidated.status(), 304);

    // Superseded (the bucket's overwrite mode): the old envelope goes with the old
    // file, the new one reads.
    let patched = cluster
        .http()
        .patch(format!(
            "{}/v1/api/me/buckets/smalls",
            cluster.creds.api_url
        ))
        .header("Authorization", cluster.bearer())
        .json(&serde_json::json!({"overwrite": "supersede"}))
        .send()
        .expect("PATCH bucket");
    assert_eq!(patched.status(), 200);
    let again = put_objects(&cluster, "second", &[4096]);
    let new_id = file_id_of(&again[0]);
    assert_ne!(new_id, file_id_of(mid));
    let (old, _, old_envelope) = stored(&store, file_id_of(mid));
    assert_eq!(old.map(|f| f.phase), Some(zib_meta::FilePhase::Cancelled));
    assert!(old_envelope.is_none(), "the superseded envelope is gone");
    let (status, body) = s3_read(&again[0]);
    assert_eq!(status, 200);
    assert_ne!(body, whole, "the new bytes are served");

    // Deleted: the row and its envelope go.
    let deleted = cluster
        .http()
        .delete(format!("{}/smalls/small/4096", endpoint(&cluster)))
        .header("Authorization", cluster.bearer())
        .send()
        .expect("S3 DELETE");
    assert_eq!(deleted.status(), 204);
    wait_for(
        "the deleted envelope to go",
        Duration::from_secs(30),
        || stored(&store, new_id).2.is_none(),
    );
    assert_eq!(s3_read(&again[0]).0, 404);
    assert!(blob_files(&cluster).is_superset(&before));
}

#[test]
fn small_native_uploads_are_kept_in_the_store_through_the_originator() {
    let cluster = Cluster::start(6);
    let store = cluster.store();
    let work = tempfile::tempdir().unwrap();
    let before = blob_files(&cluster);

    // `zib upload` (the Rust SDK): the originator checks the envelope, the server's
    // plan says inline, and the envelope goes to the store instead of to shards.
    let mut small = MARKER.as_bytes().to_vec();
    small.extend(common::pattern(3000, 61));
    let path = common::write_file(work.path(), "small.bin", &small);
    let (small_id, small_url) = cluster.upload(&path, "native", "small.bin");
    let empty = common::write_file(work.path(), "empty.bin", b"");
    let (empty_id, empty_url) = cluster.upload(&empty, "native", "empty.bin");
    let large = common::pattern(THRESHOLD + 1, 62);
    let path = common::write_file(work.path(), "large.bin", &large);
    let (large_id, _) = cluster.upload(&path, "native", "large.bin");

    let mut uploads = Vec::new();
    for (id, len) in [(&small_id, small.len()), (&empty_id, 0)] {
        let (file, shards, envelope) = stored(&store, id.parse().unwrap());
        let file = file.expect("file row");
        assert!(shards.is_empty(), "{id}: {shards:?}");
        let envelope = envelope.unwrap_or_else(|| panic!("{id} is not inline"));
        assert_eq!(envelope.len() as u64, file.ciphertext_size);
        assert_eq!(file.size, len as u64);
        assert_eq!(file.phase, zib_meta::FilePhase::Safe);
        uploads.push(file.upload_blob_id.to_string());
    }
    // The originators drop their record of the uploads, as for a file made safe:
    // no file per small object is left on any node.
    wait_for(
        "the originators' upload records to go",
        Duration::from_secs(30),
        || {
            cluster.node_dirs().iter().all(|dir| {
                files_under(dir).iter().all(|f| {
                    let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    !uploads.iter().any(|u| name.starts_with(u.as_str()))
                })
            })
        },
    );
    let (_, shards, envelope) = stored(&store, large_id.parse().unwrap());
    assert!(envelope.is_none());
    assert_eq!(shards.len(), 6);
    let new_blobs = blob_files(&cluster).difference(&before).count();
    assert_eq!(
        new_blobs, 6,
        "only the large file's shards reached the nodes"
    );

    // Read back with `zib get` and the CDN; the pipeline says safe.
    let out = cluster.cli(&["get", &small_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, small);
    let (status, body) = common::get(&cluster.http(), &small_url, Some((0, 27)));
    assert_eq!(status, 206);
    assert_eq!(body, MARKER.as_bytes());
    let (status, body) = common::get(&cluster.http(), &empty_url, None);
    assert_eq!((status, body.len()), (200, 0));
    let out = cluster.cli(&["pipeline", &small_id]);
    let pipeline: Value = serde_json::from_slice(&out.stdout).expect("pipeline JSON");
    assert_eq!(pipeline["stages"]["upload"]["phase"], "safe", "{pipeline}");

    // The API delete takes the envelope with the file.
    let resp = cluster
        .http()
        .delete(format!("{}/v1/api/file/{small_id}", cluster.creds.api_url))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap();
    assert!(resp.status().is_success());
    assert!(stored(&store, small_id.parse().unwrap()).2.is_none());
    assert_eq!(common::get(&cluster.http(), &small_url, None).0, 404);
}

#[test]
fn an_inline_threshold_of_zero_keeps_every_object_on_nodes() {
    let cluster = Cluster::start_with_env(6, &[("ZIB_INLINE_THRESHOLD", "0")]);
    let store = cluster.store();
    let work = tempfile::tempdir().unwrap();
    let path = common::write_file(work.path(), "one.bin", b"x");
    let (file_id, url) = cluster.upload(&path, "off", "one.bin");
    let (_, shards, envelope) = stored(&store, file_id.parse().unwrap());
    assert!(envelope.is_none());
    assert_eq!(shards.len(), 6);
    assert_eq!(common::get(&cluster.http(), &url, None).1, b"x");
}
