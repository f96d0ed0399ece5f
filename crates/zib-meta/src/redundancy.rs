//! How much redundancy each file really has right now: per segment, the distinct
//! online holders of intact shards, against the `k + m` it was written with. Behind
//! the pipeline status, `/metrics`, the collector's inventory check and the
//! repairer's hunt for doubled placements.

use sqlx::Row;
use zib_proto::{FileId, NodeId};

use crate::convert::{from_db, shard_from_row};
use crate::engine::FetchRows;
use crate::{Result, ShardRow, Store};

/// The weakest segment of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redundancy {
    /// Distinct online nodes holding an intact (not needs_repair) shard of the
    /// weakest segment: a second shard on the same node adds nothing, as both go
    /// when that node does.
    pub live_shards: u32,
    /// `data_shards + parity_shards`: what full redundancy means for this file.
    pub target: u32,
    /// Which segment is the weakest (the lowest index among equals).
    pub weakest_segment: u32,
}

impl Redundancy {
    pub fn is_full(&self) -> bool {
        self.live_shards >= self.target
    }
}

/// Per segment of readable files: distinct online holders of intact shards, and the
/// target. `$1`: nodes with a heartbeat at or after this count as online.
macro_rules! live_per_segment {
    () => {
        "SELECT s.file_id, s.segment, \
             COUNT(DISTINCT CASE WHEN s.needs_repair = 0 AND n.last_heartbeat_at >= $1 \
                   THEN s.node_id END) AS live, \
             f.data_shards + f.parity_shards AS target \
         FROM shards s JOIN files f ON f.file_id = s.file_id \
         LEFT JOIN nodes n ON n.node_id = s.node_id \
         WHERE f.phase IN ('distributed', 'safe')"
    };
}

impl Store {
    /// The weakest segment of a distributed or safe file; `None` for any other phase
    /// (or a file without shard rows). `online_since`: a node whose last heartbeat
    /// is older is offline, and its shards are not live.
    pub async fn file_redundancy(
        &self,
        file_id: FileId,
        online_since: i64,
    ) -> Result<Option<Redundancy>> {
        let row = sqlx::query(concat!(
            live_per_segment!(),
            " AND s.file_id = $2 GROUP BY s.file_id, s.segment \
             ORDER BY live, s.segment LIMIT 1"
        ))
        .bind(online_since)
        .bind(file_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Redundancy {
                live_shards: from_db(row.try_get::<i64, _>("live")?, "live shards")?,
                target: from_db(row.try_get::<i64, _>("target")?, "shards per segment")?,
                weakest_segment: from_db(row.try_get::<i64, _>("segment")?, "shards.segment")?,
            })
        })
        .transpose()
    }

    /// Distributed or safe files with at least one segment below full redundancy
    /// (a shard queued for repair, on an offline node, or sharing a node with
    /// another shard of its segment).
    pub async fn count_files_below_full_redundancy(&self, online_since: i64) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(concat!(
            "SELECT COUNT(DISTINCT file_id) FROM (",
            live_per_segment!(),
            " GROUP BY s.file_id, s.segment) WHERE live < target"
        ))
        .bind(online_since)
        .fetch_one(&self.pool)
        .await?;
        from_db(n, "files below full redundancy")
    }

    /// Shards of readable files that share their node with a lower-indexed shard of
    /// the same segment (placed before placement refused to double up): each one is
    /// to move to a node holding nothing of its segment.
    pub async fn doubled_shards(&self, limit: u32) -> Result<Vec<ShardRow>> {
        sqlx::query(
            "SELECT s.file_id, s.segment, s.shard_index, s.node_id, s.blob_id, s.size, s.blake3 \
             FROM shards s JOIN files f ON f.file_id = s.file_id \
             WHERE f.phase IN ('distributed', 'safe') AND s.needs_repair = 0 \
               AND EXISTS (SELECT 1 FROM shards o WHERE o.file_id = s.file_id \
                           AND o.segment = s.segment AND o.node_id = s.node_id \
                           AND o.shard_index < s.shard_index) \
             ORDER BY s.file_id, s.segment, s.shard_index LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_rows(&self.pool, shard_from_row)
        .await
    }

    /// Shards of readable files held by `node` whose row is older than
    /// `created_before`: what an inventory taken after that moment must list.
    pub async fn shards_held_by(
        &self,
        node: &NodeId,
        created_before: i64,
    ) -> Result<Vec<ShardRow>> {
        sqlx::query(
            "SELECT s.file_id, s.segment, s.shard_index, s.node_id, s.blob_id, s.size, s.blake3 \
             FROM shards s JOIN files f ON f.file_id = s.file_id \
             WHERE s.node_id = $1 AND s.created_at < $2 AND s.needs_repair = 0 \
               AND f.phase IN ('distributed', 'safe')",
        )
        .bind(node.as_str())
        .bind(created_before)
        .fetch_rows(&self.pool, shard_from_row)
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use zib_proto::BlobId;

    use super::*;
    use crate::{FilePhase, FileRow, NodeRow};

    fn node(name: &str) -> NodeId {
        NodeId::from_str(name).unwrap()
    }

    async fn online(store: &Store, name: &str, heartbeat: i64) {
        store
            .upsert_node(&NodeRow {
                node_id: node(name),
                public_url: "http://127.0.0.1:1".into(),
                capacity_bytes: 100,
                free_bytes: 100,
                used_bytes: 0,
                zone: None,
                capabilities: vec![],
                last_heartbeat_at: heartbeat,
                registered_at: 0,
                draining_since: None,
            })
            .await
            .unwrap();
    }

    /// A 2+1 file of one segment, distributed to `holders` (one per shard index).
    async fn file_on(store: &Store, key: &str, holders: [&str; 3]) -> (FileRow, Vec<ShardRow>) {
        let tenant = match store.tenant_by_access_key("AK").await.unwrap() {
            Some(t) => t,
            None => store.create_tenant("t", "AK", "x").await.unwrap(),
        };
        let bucket = store.ensure_bucket(&tenant.id, "b").await.unwrap();
        let file = FileRow {
            file_id: FileId::new_random(),
            tenant_id: tenant.id.clone(),
            bucket_id: bucket.id,
            bucket: bucket.name.clone(),
            object_key: key.into(),
            size: 100,
            ciphertext_size: 116,
            content_type: "x".into(),
            phase: FilePhase::Pending,
            cancelled_reason: None,
            wrapped_dek: vec![1],
            chunk_size: 65536,
            nonce_prefix: vec![7; 7],
            data_shards: 2,
            parity_shards: 1,
            shard_size: 1024,
            originator: node("ZB-ORIG01"),
            upload_blob_id: BlobId::new_random(),
            part_count: 1,
            part_size: 0,
            expires_at: 9_000,
            created_at: 1_000,
            distributed_at: None,
        };
        store.insert_file(&file).await.unwrap();
        assert!(store.mark_uploading(file.file_id).await.unwrap());
        let shards: Vec<ShardRow> = holders
            .iter()
            .enumerate()
            .map(|(i, n)| ShardRow {
                file_id: file.file_id,
                segment: 0,
                index: i as u8,
                node_id: node(n),
                blob_id: BlobId::new_random(),
                size: 58,
                blake3: vec![i as u8; 32],
            })
            .collect();
        store
            .complete_distribution(file.file_id, &shards, 2_000, "superseded")
            .await
            .unwrap();
        (file, shards)
    }

    async fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("meta.db"))
            .await
            .unwrap();
        for n in ["ZB-NODE01", "ZB-NODE02", "ZB-NODE03"] {
            online(&store, n, 10_000).await;
        }
        (dir, store)
    }

    #[tokio::test]
    async fn redundancy_counts_distinct_online_holders_of_intact_shards() {
        let (_dir, store) = open().await;
        let (file, shards) = file_on(&store, "a", ["ZB-NODE01", "ZB-NODE02", "ZB-NODE03"]).await;
        let full = store.file_redundancy(file.file_id, 5_000).await.unwrap();
        assert_eq!(
            full,
            Some(Redundancy {
                live_shards: 3,
                target: 3,
                weakest_segment: 0
            })
        );
        assert_eq!(
            store
                .count_files_below_full_redundancy(5_000)
                .await
                .unwrap(),
            0
        );

        // A shard queued for repair is not live.
        store.mark_needs_repair(shards[1].blob_id).await.unwrap();
        let r = store
            .file_redundancy(file.file_id, 5_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((r.live_shards, r.is_full()), (2, false));
        assert_eq!(
            store
                .count_files_below_full_redundancy(5_000)
                .await
                .unwrap(),
            1
        );

        // Nor is a shard on a node silent since before `online_since`.
        let (other, _) = file_on(&store, "b", ["ZB-NODE01", "ZB-NODE02", "ZB-NODE03"]).await;
        let r = store
            .file_redundancy(other.file_id, 20_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.live_shards, 0);
        assert_eq!(
            store
                .count_files_below_full_redundancy(20_000)
                .await
                .unwrap(),
            2
        );
    }

    #[tokio::test]
    async fn doubled_placements_are_found_and_are_not_full_redundancy() {
        let (_dir, store) = open().await;
        let (file, shards) = file_on(&store, "a", ["ZB-NODE01", "ZB-NODE02", "ZB-NODE01"]).await;
        let r = store
            .file_redundancy(file.file_id, 5_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.live_shards, 2, "two shards on one node count once");
        let doubled = store.doubled_shards(10).await.unwrap();
        assert_eq!(doubled.len(), 1);
        assert_eq!(doubled[0].blob_id, shards[2].blob_id);

        // Never safe, even with every shard verified.
        for s in &shards {
            store
                .record_verification(s.blob_id, true, Some("[]"), 3_000)
                .await
                .unwrap();
        }
        assert!(store
            .promote_safe_files(1, 0, 3_000)
            .await
            .unwrap()
            .is_empty());
        // Once the extra shard moves to a free node, it is.
        assert!(store
            .replace_shard(&shards[2], &node("ZB-NODE03"), BlobId::new_random(), 4_000)
            .await
            .unwrap());
        assert!(store.doubled_shards(10).await.unwrap().is_empty());
        let moved = store.shards_for_file(file.file_id).await.unwrap();
        for s in &moved {
            store
                .record_verification(s.blob_id, true, Some("[]"), 5_000)
                .await
                .unwrap();
        }
        // Nor while a holder is silent since before `online_since`.
        assert!(store
            .promote_safe_files(1, 10_001, 5_000)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store
                .promote_safe_files(1, 10_000, 5_000)
                .await
                .unwrap()
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn shards_held_by_a_node_are_those_recorded_before_the_inventory() {
        let (_dir, store) = open().await;
        let (_, shards) = file_on(&store, "a", ["ZB-NODE01", "ZB-NODE02", "ZB-NODE03"]).await;
        let held = store
            .shards_held_by(&node("ZB-NODE02"), 3_000)
            .await
            .unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].blob_id, shards[1].blob_id);
        // Recorded after the inventory started: it may not be listed yet.
        assert!(store
            .shards_held_by(&node("ZB-NODE02"), 2_000)
            .await
            .unwrap()
            .is_empty());
    }
}
