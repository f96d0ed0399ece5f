//! Storage nodes and the commands queued for their next heartbeat.

use std::collections::BTreeMap;

use sqlx::Row;
use zib_proto::node_rpc::NodeAction;
use zib_proto::{BlobId, NodeId};

use crate::convert::{from_db, node_from_row, parse, to_db};
use crate::engine::{DbConn, FetchRows};
use crate::{CommandRow, MetaError, NodeHoldings, NodeRow, Result, Store};

/// Serialises a delete command and queues it inside `tx`.
pub(crate) async fn queue_delete(
    tx: &mut DbConn,
    node: &NodeId,
    blob_ids: Vec<BlobId>,
    now: i64,
) -> Result<()> {
    let action = serde_json::to_string(&NodeAction::DeleteBlobs { blob_ids }).map_err(|e| {
        MetaError::Corrupt {
            what: "node_commands.action",
            detail: e.to_string(),
        }
    })?;
    sqlx::query("INSERT INTO node_commands (node_id, action, created_at) VALUES ($1, $2, $3)")
        .bind(node.as_str())
        .bind(action)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Queues one delete command per holder for `blobs`, inside `tx`.
pub(crate) async fn queue_deletes(
    tx: &mut DbConn,
    blobs: &[(NodeId, BlobId)],
    now: i64,
) -> Result<()> {
    let mut by_holder: BTreeMap<&NodeId, Vec<BlobId>> = BTreeMap::new();
    for (node, blob) in blobs {
        by_holder.entry(node).or_default().push(*blob);
    }
    for (node, ids) in by_holder {
        queue_delete(tx, node, ids, now).await?;
    }
    Ok(())
}

impl Store {
    /// Inserts or refreshes a node (registration counts as a heartbeat).
    ///
    /// A returning node keeps its first `registered_at`.
    pub async fn upsert_node(&self, node: &NodeRow) -> Result<()> {
        let capabilities =
            serde_json::to_string(&node.capabilities).map_err(|e| MetaError::Corrupt {
                what: "nodes.capabilities",
                detail: e.to_string(),
            })?;
        sqlx::query(
            "INSERT INTO nodes (node_id, public_url, capacity_bytes, free_bytes, used_bytes, \
                 zone, capabilities, last_heartbeat_at, registered_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (node_id) DO UPDATE SET \
                 public_url = excluded.public_url, \
                 capacity_bytes = excluded.capacity_bytes, \
                 free_bytes = excluded.free_bytes, \
                 used_bytes = excluded.used_bytes, \
                 zone = excluded.zone, \
                 capabilities = excluded.capabilities, \
                 last_heartbeat_at = excluded.last_heartbeat_at",
        )
        .bind(node.node_id.as_str())
        .bind(&node.public_url)
        .bind(to_db(node.capacity_bytes, "nodes.capacity_bytes")?)
        .bind(to_db(node.free_bytes, "nodes.free_bytes")?)
        .bind(to_db(node.used_bytes, "nodes.used_bytes")?)
        .bind(&node.zone)
        .bind(capabilities)
        .bind(node.last_heartbeat_at)
        .bind(node.registered_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a heartbeat; false if the node is unknown (it must register).
    pub async fn heartbeat(
        &self,
        node_id: &NodeId,
        free_bytes: u64,
        used_bytes: u64,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE nodes SET free_bytes = $1, used_bytes = $2, last_heartbeat_at = $3 \
             WHERE node_id = $4",
        )
        .bind(to_db(free_bytes, "nodes.free_bytes")?)
        .bind(to_db(used_bytes, "nodes.used_bytes")?)
        .bind(now)
        .bind(node_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn node(&self, node_id: &NodeId) -> Result<Option<NodeRow>> {
        sqlx::query(
            "SELECT node_id, public_url, capacity_bytes, free_bytes, used_bytes, zone, \
                 capabilities, last_heartbeat_at, registered_at, draining_since \
             FROM nodes WHERE node_id = $1",
        )
        .bind(node_id.as_str())
        .fetch_row(&self.pool, node_from_row)
        .await
    }

    /// Every node ever registered, by id; the caller judges liveness from
    /// `last_heartbeat_at`.
    pub async fn list_nodes(&self) -> Result<Vec<NodeRow>> {
        sqlx::query(
            "SELECT node_id, public_url, capacity_bytes, free_bytes, used_bytes, zone, \
                 capabilities, last_heartbeat_at, registered_at, draining_since \
             FROM nodes ORDER BY node_id",
        )
        .fetch_rows(&self.pool, node_from_row)
        .await
    }

    /// Starts (`Some(now)`) or ends (`None`) the node's drain; false for an unknown
    /// node. Starting an ongoing drain keeps its first time.
    pub async fn set_node_draining(&self, node_id: &NodeId, since: Option<i64>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE nodes SET draining_since = CASE WHEN $1 IS NULL THEN NULL \
                 ELSE COALESCE(draining_since, $1) END \
             WHERE node_id = $2",
        )
        .bind(since)
        .bind(node_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// What the node still holds that the store knows of: shards of files, and
    /// copies of HLS segments.
    pub async fn node_holdings(&self, node_id: &NodeId) -> Result<NodeHoldings> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM shards WHERE node_id = $1) AS shards, \
                 (SELECT COUNT(*) FROM segment_replicas WHERE node_id = $1) AS segment_copies",
        )
        .bind(node_id.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(NodeHoldings {
            shards: from_db(row.try_get::<i64, _>("shards")?, "shard count")?,
            segment_copies: from_db(
                row.try_get::<i64, _>("segment_copies")?,
                "segment copy count",
            )?,
        })
    }

    /// Queues a command for the node's next heartbeat and returns its id. The node
    /// need not be registered yet.
    pub async fn enqueue_command(
        &self,
        node_id: &NodeId,
        action: &serde_json::Value,
        now: i64,
    ) -> Result<i64> {
        let id = sqlx::query_scalar(
            "INSERT INTO node_commands (node_id, action, created_at) VALUES ($1, $2, $3) \
             RETURNING id",
        )
        .bind(node_id.as_str())
        .bind(action.to_string())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Commands not yet acknowledged, oldest first.
    pub async fn pending_commands(&self, node_id: &NodeId) -> Result<Vec<CommandRow>> {
        let rows = sqlx::query(
            "SELECT id, node_id, action, created_at FROM node_commands \
             WHERE node_id = $1 AND acked_at IS NULL ORDER BY id",
        )
        .bind(node_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let action_text: String = row.try_get("action")?;
                let action =
                    serde_json::from_str(&action_text).map_err(|e| MetaError::Corrupt {
                        what: "node_commands.action",
                        detail: e.to_string(),
                    })?;
                let node_text: String = row.try_get("node_id")?;
                Ok(CommandRow {
                    id: row.try_get("id")?,
                    node_id: parse(&node_text, "node_commands.node_id")?,
                    action,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Marks the node's own commands done. Ids of other nodes' commands, unknown
    /// ids and repeats are ignored, so a replayed heartbeat is harmless.
    pub async fn ack_commands(&self, node_id: &NodeId, ids: &[i64], now: i64) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for id in ids {
            sqlx::query(
                "UPDATE node_commands SET acked_at = $1 \
                 WHERE id = $2 AND node_id = $3 AND acked_at IS NULL",
            )
            .bind(now)
            .bind(id)
            .bind(node_id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
