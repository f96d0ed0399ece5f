//! Multipart uploads coded as their parts arrive (issue 17, item 2): the originator
//! erasure-codes each part on its own and pushes its shards while the body streams
//! in, so no node ever holds the whole envelope and `complete` only writes
//! metadata. Reads cross part boundaries as before, and read around lost shards.

mod common;

use common::*;
use zib_proto::FileId;

/// Parts of 2 MiB (8 chunks) with 1 MiB segments (4 x 256 KiB shards): each part is
/// three segments, the last one a few tag bytes long.
const ENV: [(&str, &str); 3] = [
    ("ZIB_PART_SIZE", "2097152"),
    ("ZIB_MULTIPART_THRESHOLD", "2097152"),
    ("ZIB_SHARD_SIZE", "262144"),
];
const PART: u64 = 2 * MIB;

#[test]
fn parts_are_coded_as_they_arrive_and_read_back_across_part_boundaries() {
    let cluster = Cluster::start_with_env(6, &ENV);
    let work = tempfile::tempdir().unwrap();
    let size = 9 * MIB + 777;
    let data = pattern(size, 17);
    let path = write_file(work.path(), "parts.bin", &data);
    let written = || cluster.written_bytes();
    let before = written();
    let (file_id, cdn_url) = cluster.upload(&path, "parts", "parts.bin");
    let during = written() - before;

    let rt = rt();
    let store = cluster.store();
    let id: FileId = file_id.parse().unwrap();
    let row = rt.block_on(store.file(id)).unwrap().unwrap();
    assert_eq!(row.part_count, 5, "9 MiB in 2 MiB parts");
    assert_eq!(row.part_size, PART, "the parts are coded on their own");
    let shards = rt.block_on(store.shards_for_file(id)).unwrap();
    // Four parts of two segments, the last part (1 MiB + 777 B + tags) of one.
    let segments: std::collections::BTreeSet<u32> = shards.iter().map(|s| s.segment).collect();
    assert_eq!(segments.len(), 9, "segments: {segments:?}");
    assert_eq!(shards.len(), 9 * 6);
    // A part's last segment took in its tail (part 1: 144 bytes of header and tags):
    // its shards are a little longer than the shard size, never a segment of their own.
    let tail = shards.iter().find(|s| s.segment == 1).unwrap();
    assert_eq!(tail.size, (MIB + 144) / 4, "part 1's last segment");

    // Nothing but the shards is on the nodes' disks: no whole envelope, no partial
    // file, no part left behind on the originator.
    let on_disk: Vec<_> = cluster
        .node_dirs()
        .iter()
        .flat_map(|d| files_under(d))
        .filter(|p| p.components().any(|c| c.as_os_str() == "blobs"))
        .collect();
    let blob_names: std::collections::HashSet<String> = on_disk
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .collect();
    for shard in &shards {
        assert!(
            blob_names.contains(&shard.blob_id.to_string()),
            "shard {} stored",
            shard.blob_id
        );
    }
    assert!(
        !blob_names.contains(&row.upload_blob_id.to_string()),
        "the originator stored the whole envelope"
    );
    let partials: Vec<_> = cluster
        .node_dirs()
        .iter()
        .flat_map(|d| files_under(d))
        .filter(|p| {
            p.to_string_lossy()
                .contains(&row.upload_blob_id.to_string())
        })
        .filter(|p| !p.to_string_lossy().contains("distributed"))
        .collect();
    assert!(
        partials.is_empty(),
        "upload bytes kept on the originator: {partials:?}"
    );
    let stored: u64 = on_disk
        .iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| shards.iter().any(|s| s.blob_id.to_string() == n))
        })
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let ratio = stored as f64 / row.ciphertext_size as f64;
    assert!(
        ratio < 1.6,
        "{stored} bytes stored for {} of ciphertext",
        row.ciphertext_size
    );
    // Each byte went to disk once, as shards: no part was written whole first and
    // coded afterwards (that is 2.5 bytes per byte).
    let per_byte = during as f64 / row.ciphertext_size as f64;
    assert!(
        per_byte < 1.8,
        "{per_byte:.2} bytes written per byte uploaded"
    );

    // Whole, and ranges across every part boundary (plaintext k * 2 MiB).
    let http = cluster.http();
    let (status, body) = get(&http, &cdn_url, None);
    assert_eq!(status, 200);
    assert!(body == data, "the file came back different");
    for k in 1..=4u64 {
        let boundary = k * PART;
        assert_ranges(
            &http,
            &cdn_url,
            &data,
            &[
                (boundary - 1, boundary),
                (boundary - CHUNK - 3, boundary + CHUNK + 5),
                (boundary - MIB, boundary + MIB + 1),
            ],
        );
    }

    // Two data shards of part 2's last segment (with its tail) lost: reads go
    // around them.
    let lost: Vec<_> = shards.iter().filter(|s| s.segment == 3).take(2).collect();
    for shard in &lost {
        let path = on_disk
            .iter()
            .find(|p| p.file_name().unwrap().to_str() == Some(&shard.blob_id.to_string()))
            .unwrap();
        std::fs::remove_file(path).unwrap();
    }
    let (status, body) = get(&http, &cdn_url, None);
    assert_eq!(status, 200);
    assert!(
        body == data,
        "the file read around two lost shards came back different"
    );
}
