//! S3 multipart uploads coded as their parts arrive (issue 17, item 2): each
//! UploadPart is sealed as an envelope of its own and erasure-coded onto the nodes
//! while it streams in, so the server keeps no part on its disk and Complete writes
//! rows only. Parts of any size, in any order, sent again or never listed; reads
//! cross part boundaries and go around lost shards; the ETag is S3's `md5-N`.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::s3_raw::{between, RawS3};
use common::*;
use md5::Digest;
use zib_proto::FileId;

/// 1 MiB segments (4 x 256 KiB shards), so a part spans several.
const ENV: [(&str, &str); 1] = [("ZIB_SHARD_SIZE", "262144")];
const MARKER: &[u8] = b"PLAINTEXT-MARKER-OF-AN-S3-PART";

/// The file an upload's parts are coded into, from its record on the server.
fn file_of(cluster: &Cluster, upload: &str) -> FileId {
    let record = cluster
        .data_dir()
        .join("s3-multipart")
        .join(upload)
        .join("upload.json");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    record["file_id"].as_str().unwrap().parse().unwrap()
}

fn node_blobs(cluster: &Cluster) -> Vec<std::path::PathBuf> {
    cluster
        .node_dirs()
        .iter()
        .flat_map(|d| files_under(d))
        .filter(|p| p.components().any(|c| c.as_os_str() == "blobs"))
        .collect()
}

fn blob_names(cluster: &Cluster) -> HashSet<String> {
    node_blobs(cluster)
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .collect()
}

#[test]
fn s3_parts_are_coded_as_they_arrive_and_complete_writes_rows_only() {
    let cluster = Cluster::start_with_env(6, &ENV);
    let s3 = RawS3::new(&cluster.creds.api_url, cluster.bearer(), "coded");
    let written = || cluster.written_bytes();
    let mut p1 = pattern(3 * MIB + 11, 1);
    p1[MIB as usize..MIB as usize + MARKER.len()].copy_from_slice(MARKER);
    let p2_first = pattern(2 * MIB, 2);
    let p2 = pattern(2 * MIB + 7, 3);
    let p3 = pattern(MIB / 2 + 1, 4);
    let p4 = pattern(MIB, 5);

    let upload = s3.create("big.bin");
    let file_id = file_of(&cluster, &upload);
    let before = written();
    // Out of order, part 2 twice (its first answer "lost"), part 4 never listed.
    let e3 = s3.part("big.bin", &upload, 3, &p3);
    let e1 = s3.part("big.bin", &upload, 1, &p1);
    s3.part("big.bin", &upload, 2, &p2_first);
    let rt = rt();
    let store = cluster.store();
    let first_attempt: Vec<String> = rt
        .block_on(store.shards_in_segments(file_id, 1 << 16..2 << 16))
        .unwrap()
        .iter()
        .map(|s| s.blob_id.to_string())
        .collect();
    assert!(!first_attempt.is_empty());
    let e2 = s3.part("big.bin", &upload, 2, &p2);
    s3.part("big.bin", &upload, 4, &p4);
    let sent = [&p1, &p2_first, &p2, &p3, &p4]
        .iter()
        .map(|p| p.len() as u64)
        .sum::<u64>();
    let after_parts = written();

    // Nothing of the parts is on the server's disk: the upload's record only.
    let spool = cluster.data_dir().join("s3-multipart").join(&upload);
    assert_eq!(files_under(&spool), [spool.join("upload.json")]);
    // Each byte went to disk once, as shards (1.5x at 4+2, a little more for the
    // envelopes' tags and the store's rows): nothing written whole and coded later.
    let per_byte = (after_parts - before) as f64 / sent as f64;
    eprintln!("parts: {per_byte:.2} bytes written per byte sent");
    assert!(per_byte < 1.8, "{per_byte:.2} bytes written per byte sent");

    let parts = rt.block_on(store.file_parts(file_id)).unwrap();
    let md5_hex = |b: &[u8]| hex::encode(md5::Md5::digest(b));
    assert_eq!(
        parts
            .iter()
            .map(|p| (p.number, p.md5.clone()))
            .collect::<Vec<_>>(),
        vec![
            (1, md5_hex(&p1)),
            (2, md5_hex(&p2)),
            (3, md5_hex(&p3)),
            (4, md5_hex(&p4))
        ],
        "the second part 2 replaced the first"
    );
    let prefixes: HashSet<Vec<u8>> = parts.iter().map(|p| p.nonce_prefix.clone()).collect();
    assert_eq!(
        prefixes.len(),
        4,
        "every part is sealed under a nonce of its own"
    );
    let part4: Vec<String> = rt
        .block_on(store.shards_in_segments(file_id, 3 << 16..4 << 16))
        .unwrap()
        .iter()
        .map(|s| s.blob_id.to_string())
        .collect();

    // Complete: rows only.
    let before_complete = written();
    let (status, text) = s3.complete("big.bin", &upload, &[(1, &e1), (2, &e2), (3, &e3)]);
    assert_eq!(status, 200, "{text}");
    let complete_wrote = written() - before_complete;
    eprintln!("complete: {complete_wrote} bytes written");
    // Re-coding the object would write 1.5 times its size; rows are a few pages (a
    // store checkpoint landing here may add some: half the object is the bound).
    let object = (p1.len() + p2.len() + p3.len()) as u64;
    assert!(
        complete_wrote < object / 2,
        "Complete wrote {complete_wrote} bytes for a {object} byte object"
    );
    let mut digests = Vec::new();
    for p in [&p1, &p2, &p3] {
        digests.extend_from_slice(&md5::Md5::digest(p));
    }
    let etag = format!("\"{}-3\"", hex::encode(md5::Md5::digest(&digests)));
    assert_eq!(
        between(&text, "<ETag>", "</ETag>"),
        etag,
        "S3's multipart ETag"
    );
    assert!(!spool.exists(), "the record goes with the completion");

    let data: Vec<u8> = [&p1, &p2, &p3]
        .iter()
        .flat_map(|p| p.iter().copied())
        .collect();
    let row = rt.block_on(store.file(file_id)).unwrap().unwrap();
    assert!(row.in_listed_parts());
    assert_eq!((row.size, row.part_count), (data.len() as u64, 3));
    assert_eq!(
        row.phase.as_str(),
        "distributed",
        "the file is current once Complete answers"
    );
    let head = s3
        .http
        .head(format!("{}/big.bin", s3.base))
        .header("Authorization", &s3.bearer)
        .send()
        .unwrap();
    assert_eq!(head.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        data.len().to_string()
    );

    // Whole, and ranges across both part boundaries.
    let cdn_url = format!("{}/{file_id}", cluster.creds.cdn_url);
    let http = cluster.http();
    let (status, body) = get(&http, &cdn_url, None);
    assert_eq!(status, 200);
    assert!(body == data, "the object came back different");
    for boundary in [p1.len() as u64, (p1.len() + p2.len()) as u64] {
        assert_ranges(
            &http,
            &cdn_url,
            &data,
            &[
                (boundary - 1, boundary),
                (boundary - CHUNK - 3, boundary + CHUNK + 5),
                (boundary - MIB, boundary + 300_000),
                (0, boundary),
            ],
        );
    }

    // The replaced attempt and the part never listed are deleted from the nodes.
    wait_for(
        "the shards of the replaced and unlisted parts to be deleted",
        Duration::from_secs(60),
        || {
            let names = blob_names(&cluster);
            first_attempt
                .iter()
                .chain(&part4)
                .all(|b| !names.contains(b))
        },
    );
    // Nodes only ever hold ciphertext.
    for blob in node_blobs(&cluster) {
        assert!(
            !contains(&std::fs::read(&blob).unwrap(), MARKER),
            "{} holds plaintext",
            blob.display()
        );
    }

    // Two shards of a segment of part 2 lost: the read goes around them.
    let part2 = rt
        .block_on(store.shards_in_segments(file_id, 1 << 16..2 << 16))
        .unwrap();
    let lost: Vec<String> = part2
        .iter()
        .filter(|s| s.segment == (1 << 16) + 1)
        .take(2)
        .map(|s| s.blob_id.to_string())
        .collect();
    assert_eq!(lost.len(), 2);
    for blob in node_blobs(&cluster) {
        if lost
            .iter()
            .any(|l| blob.file_name().and_then(|n| n.to_str()) == Some(l))
        {
            std::fs::remove_file(blob).unwrap();
        }
    }
    let (status, body) = get(&http, &cdn_url, None);
    assert_eq!(status, 200);
    assert!(body == data, "the object read around lost shards differs");

    // An aborted upload's parts go from the nodes too.
    let aborted = s3.create("gone.bin");
    let gone_file = file_of(&cluster, &aborted);
    s3.part("gone.bin", &aborted, 1, &p3);
    let gone: Vec<String> = rt
        .block_on(store.shards_for_file(gone_file))
        .unwrap()
        .iter()
        .map(|s| s.blob_id.to_string())
        .collect();
    assert_eq!(gone.len(), 6);
    let r = s3
        .http
        .delete(format!("{}/gone.bin?uploadId={aborted}", s3.base))
        .header("Authorization", &s3.bearer)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(rt
        .block_on(store.shards_for_file(gone_file))
        .unwrap()
        .is_empty());
    wait_for(
        "the aborted upload's shards to be deleted",
        Duration::from_secs(60),
        || {
            let names = blob_names(&cluster);
            gone.iter().all(|b| !names.contains(b))
        },
    );
    let (status, text) = s3.complete("gone.bin", &aborted, &[(1, "\"x\"")]);
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("NoSuchUpload"), "{text}");
}

/// An upload created before parts were coded (its record names no file, its parts
/// wait sealed in its directory) still lists and completes after the upgrade: its
/// parts are re-read and stored as one object, and nothing of it is lost.
#[test]
fn a_multipart_upload_spooled_before_the_upgrade_still_completes() {
    use zib_crypto::envelope::{encrypt, DEFAULT_CHUNK_SIZE};
    use zib_crypto::{DataKey, Header, MasterKey};

    let cluster = Cluster::start(6);
    let secrets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cluster.data_dir().join("secrets.json")).unwrap())
            .unwrap();
    let master = MasterKey::from_hex(secrets["master_key"].as_str().unwrap()).unwrap();
    let rt = rt();
    let tenant = rt
        .block_on(
            cluster
                .store()
                .tenant_by_access_key(&cluster.creds.access_key),
        )
        .unwrap()
        .unwrap();

    // What the server wrote before: the record with the upload's wrapped key, and each
    // part as its size and MD5, then its sealed envelope.
    let upload = "5".repeat(32);
    let dir = cluster.data_dir().join("s3-multipart").join(&upload);
    std::fs::create_dir_all(&dir).unwrap();
    let key = DataKey::generate();
    let context = format!("zib-s3-multipart:{upload}:{}", tenant.id);
    let record = serde_json::json!({
        "tenant_id": tenant.id,
        "bucket": "legacy",
        "key": "old.bin",
        "content_type": "application/octet-stream",
        "created_ms": 1,
        "wrapped_key": hex::encode(master.wrap(&key, context.as_bytes())),
    });
    std::fs::write(dir.join("upload.json"), record.to_string()).unwrap();
    let parts = [pattern(3 * MIB + 5, 8), pattern(MIB + 1, 9)];
    let mut etags = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let md5 = md5::Md5::digest(part);
        let mut file = (part.len() as u64).to_be_bytes().to_vec();
        file.extend_from_slice(&md5);
        file.extend_from_slice(&encrypt(&key, Header::new_random(DEFAULT_CHUNK_SIZE), part));
        std::fs::write(dir.join(format!("part-{:05}", i + 1)), file).unwrap();
        etags.push(format!("\"{}\"", hex::encode(md5)));
    }

    let s3 = RawS3::new(&cluster.creds.api_url, cluster.bearer(), "legacy");
    let listed = s3
        .http
        .get(format!("{}/old.bin?uploadId={upload}", s3.base))
        .header("Authorization", &s3.bearer)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(listed.contains(&etags[1]), "{listed}");
    let (status, text) = s3.complete("old.bin", &upload, &[(1, &etags[0]), (2, &etags[1])]);
    assert_eq!(status, 200, "{text}");
    let data: Vec<u8> = parts.concat();
    // Re-sealed whole, as before: the ETag is the object's MD5.
    assert_eq!(
        between(&text, "<ETag>", "</ETag>"),
        format!("\"{}\"", hex::encode(md5::Md5::digest(&data)))
    );
    assert!(!dir.exists(), "the spool goes with the completion");
    let file_id = s3.file_id("old.bin");
    let (status, body) = get(
        &cluster.http(),
        &format!("{}/{file_id}", cluster.creds.cdn_url),
        None,
    );
    assert_eq!(status, 200);
    assert!(body == data, "the spooled upload came back different");
}
