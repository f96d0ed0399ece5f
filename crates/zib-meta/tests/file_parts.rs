//! Files stored as one envelope per part (S3 multipart), on real SQLite: parts
//! recorded as they are stored, in any order and sent again; completion keeps the
//! listed ones, drops the others, and writes only rows.

use std::str::FromStr;

use tempfile::TempDir;
use zib_meta::{
    Checksums, Distribution, FilePart, FilePhase, FileRow, ListedCompletion, MetaError, S3Content,
    ShardRow, Store,
};
use zib_proto::node_rpc::NodeAction;
use zib_proto::{BlobId, FileId, NodeId};

async fn open() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("meta.db"))
        .await
        .unwrap();
    (dir, store)
}

fn node(name: &str) -> NodeId {
    NodeId::from_str(name).unwrap()
}

async fn new_listed_file(store: &Store) -> FileRow {
    let tenant = store
        .create_tenant("Acme", "AK1", "deadbeef")
        .await
        .unwrap();
    let bucket = store.ensure_bucket(&tenant.id, "media").await.unwrap();
    let file = FileRow {
        file_id: FileId::new_random(),
        tenant_id: tenant.id.clone(),
        bucket_id: bucket.id,
        bucket: bucket.name.clone(),
        object_key: "big.bin".to_string(),
        size: 0,
        ciphertext_size: 0,
        content_type: "video/mp4".to_string(),
        phase: FilePhase::Pending,
        cancelled_reason: None,
        wrapped_dek: vec![1, 2, 3, 4],
        chunk_size: 65536,
        nonce_prefix: vec![],
        data_shards: 2,
        parity_shards: 1,
        shard_size: 1024,
        originator: node("ZB-ORIG01"),
        upload_blob_id: BlobId::new_random(),
        part_count: 0,
        part_size: 0,
        expires_at: 9_000,
        created_at: 1_000,
        distributed_at: None,
    };
    store.insert_file(&file).await.unwrap();
    file
}

/// Part `number`: `segments` segments from `number << 16`, 100 bytes each.
fn part(number: u32, segments: u32, md5: &str) -> FilePart {
    FilePart {
        number,
        first_segment: number << 16,
        segment_count: segments,
        size: 100 * u64::from(segments),
        ciphertext_size: 100 * u64::from(segments) + 40,
        nonce_prefix: vec![number as u8; 7],
        md5: md5.to_string(),
        checksums: Checksums::from([("crc32".to_string(), format!("c{number}"))]),
        created_at: 0,
    }
}

/// Every shard (2+1) of the part's segments, on fresh blob ids.
fn shards_of(file_id: FileId, part: &FilePart) -> Vec<ShardRow> {
    (part.first_segment..part.first_segment + part.segment_count)
        .flat_map(|segment| {
            ["ZB-NODE01", "ZB-NODE02", "ZB-NODE03"]
                .iter()
                .enumerate()
                .map(move |(i, n)| ShardRow {
                    file_id,
                    segment,
                    index: i as u8,
                    node_id: node(n),
                    blob_id: BlobId::new_random(),
                    size: 50,
                    blake3: vec![i as u8; 32],
                })
        })
        .collect()
}

async fn deletes_queued(store: &Store, on: &str) -> Vec<BlobId> {
    store
        .pending_commands(&node(on))
        .await
        .unwrap()
        .iter()
        .filter_map(|c| serde_json::from_value(c.action.clone()).ok())
        .flat_map(|action: NodeAction| {
            let NodeAction::DeleteBlobs { blob_ids } = action;
            blob_ids
        })
        .collect()
}

fn content<'a>(md5: &'a str, sums: &'a Checksums) -> S3Content<'a> {
    static HEADERS: std::sync::LazyLock<zib_meta::ObjectHeaders> =
        std::sync::LazyLock::new(Default::default);
    static TAGS: std::sync::LazyLock<zib_meta::Tags> = std::sync::LazyLock::new(Default::default);
    S3Content {
        md5_hex: md5,
        checksums: sums,
        headers: &HEADERS,
        tags: &TAGS,
    }
}

#[tokio::test]
async fn parts_in_any_order_and_sent_again_complete_to_the_listed_ones() {
    let (_dir, store) = open().await;
    let file = new_listed_file(&store).await;
    assert!(file.in_listed_parts());
    let id = file.file_id;

    // Part 3 first, then 1, then 2 twice (the first answer was lost).
    let p3 = part(3, 1, "33");
    let p1 = part(1, 2, "11");
    let p2_first = part(2, 3, "22");
    let p2 = part(2, 1, "2b");
    for p in [&p3, &p1, &p2_first] {
        store
            .record_file_part(id, p, &shards_of(id, p), 1_000, 9_000)
            .await
            .unwrap();
    }
    let before = store.shards_for_file(id).await.unwrap();
    let replaced = store
        .record_file_part(id, &p2, &shards_of(id, &p2), 1_100, 9_000)
        .await
        .unwrap();
    assert_eq!(replaced.len(), 9, "every shard of the earlier attempt");
    let gone: Vec<BlobId> = before
        .iter()
        .filter(|s| s.segment >= 2 << 16 && s.segment < (2 << 16) + 3)
        .map(|s| s.blob_id)
        .collect();
    assert_eq!(gone.len(), 9);
    assert!(deletes_queued(&store, "ZB-NODE01")
        .await
        .iter()
        .all(|b| gone.contains(b)));

    let parts = store.file_parts(id).await.unwrap();
    assert_eq!(
        parts
            .iter()
            .map(|p| (p.number, p.md5.as_str()))
            .collect::<Vec<_>>(),
        vec![(1, "11"), (2, "2b"), (3, "33")]
    );
    assert_eq!(parts[0].checksums["crc32"], "c1");
    assert_eq!(
        store
            .shards_in_segments(id, 1 << 16..2 << 16)
            .await
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        store.file(id).await.unwrap().unwrap().phase,
        FilePhase::Uploading
    );

    // Complete with parts 1 and 2 only: 3 goes, with its shards.
    let sums = Checksums::new();
    let listed = [(1, "11"), (2, "2b")];
    let p3_blobs: Vec<BlobId> = store
        .shards_in_segments(id, 3 << 16..4 << 16)
        .await
        .unwrap()
        .iter()
        .map(|s| s.blob_id)
        .collect();
    // A part listed with another MD5 than it holds (sent again since) is refused.
    let sent_again = store
        .complete_file_parts(
            id,
            ListedCompletion {
                parts: &[(1, "11"), (2, "22")],
                s3: content("ab-2", &sums),
            },
            1_800,
            "superseded",
        )
        .await;
    assert!(matches!(sent_again, Err(MetaError::Conflict(_))));
    // A part missing shards of its segments (its row names two segments, one
    // segment's shards are recorded) changes nothing.
    let short = part(1, 2, "11");
    let one_segment = FilePart {
        segment_count: 1,
        ..short.clone()
    };
    store
        .record_file_part(id, &short, &shards_of(id, &one_segment), 1_850, 9_000)
        .await
        .unwrap();
    let wrong = store
        .complete_file_parts(
            id,
            ListedCompletion {
                parts: &listed,
                s3: content("ab-2", &sums),
            },
            1_900,
            "superseded",
        )
        .await;
    assert!(matches!(wrong, Err(MetaError::Conflict(_))));
    assert_eq!(store.file_parts(id).await.unwrap().len(), 3, "rolled back");
    store
        .record_file_part(id, &p1, &shards_of(id, &p1), 1_950, 9_000)
        .await
        .unwrap();

    let outcome = store
        .complete_file_parts(
            id,
            ListedCompletion {
                parts: &listed,
                s3: content("ab-2", &sums),
            },
            2_000,
            "superseded",
        )
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        Distribution::Current { superseded: None }
    ));
    let row = store.file(id).await.unwrap().unwrap();
    assert_eq!(row.phase, FilePhase::Distributed);
    assert_eq!(
        (row.size, row.ciphertext_size, row.part_count),
        (300, 380, 2)
    );
    assert_eq!(store.file_parts(id).await.unwrap().len(), 2);
    assert_eq!(store.shards_for_file(id).await.unwrap().len(), 9);
    let queued = deletes_queued(&store, "ZB-NODE02").await;
    assert_eq!(
        p3_blobs.iter().filter(|b| queued.contains(b)).count(),
        1,
        "the dropped part's shard on this node is queued for deletion"
    );
    let object = store
        .object(&row.tenant_id, "media", "big.bin")
        .await
        .unwrap();
    assert!(object.is_some());
    assert_eq!(
        store.plaintext_md5(id).await.unwrap().as_deref(),
        Some("ab-2")
    );

    // Completed: no more parts.
    assert!(matches!(
        store
            .record_file_part(id, &p3, &shards_of(id, &p3), 3_000, 9_000)
            .await,
        Err(MetaError::Conflict(_))
    ));
}

#[tokio::test]
async fn an_aborted_upload_drops_every_part_and_a_listed_part_must_be_stored() {
    let (_dir, store) = open().await;
    let file = new_listed_file(&store).await;
    let id = file.file_id;
    let p1 = part(1, 1, "11");
    store
        .record_file_part(id, &p1, &shards_of(id, &p1), 1_000, 9_000)
        .await
        .unwrap();
    let sums = Checksums::new();
    // Part 2 was never stored.
    assert!(matches!(
        store
            .complete_file_parts(
                id,
                ListedCompletion {
                    parts: &[(1, "11"), (2, "x")],
                    s3: content("x-2", &sums),
                },
                2_000,
                "superseded",
            )
            .await,
        Err(MetaError::Conflict(_))
    ));
    // A part arriving late in the upload's life pushes its expiry back.
    let p3 = part(3, 1, "33");
    store
        .record_file_part(id, &p3, &shards_of(id, &p3), 1_500, 50_000)
        .await
        .unwrap();
    assert_eq!(store.file(id).await.unwrap().unwrap().expires_at, 50_000);
    assert_eq!(
        store.drop_file_parts(id, "aborted", 2_100).await.unwrap(),
        6
    );
    let row = store.file(id).await.unwrap().unwrap();
    assert_eq!(row.phase, FilePhase::Failed);
    assert_eq!(row.cancelled_reason.as_deref(), Some("aborted"));
    // Aborted already: a second abort, or a late part, is refused.
    assert!(matches!(
        store.drop_file_parts(id, "aborted", 2_200).await,
        Err(MetaError::Conflict(_))
    ));
    assert!(store.file_parts(id).await.unwrap().is_empty());
    assert!(store.shards_for_file(id).await.unwrap().is_empty());
    assert_eq!(deletes_queued(&store, "ZB-NODE03").await.len(), 2);
    // Deleting the bucket's files takes the rows with them (no foreign-key error).
    assert!(store
        .delete_file(&file.tenant_id, id, 3_000)
        .await
        .unwrap()
        .is_some());
}
