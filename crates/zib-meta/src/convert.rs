//! Conversions between Rust values and columns. SQL integers are signed 64-bit and
//! ids are text, so everything read back is checked: a bad value is
//! [`MetaError::Corrupt`], never a panic.

use std::fmt::Display;
use std::str::FromStr;

use sqlx::Row;
use zib_proto::{BlobId, FileId, NodeId};

use crate::engine::DbRow;
use crate::{FilePhase, FileRow, MetaError, NodeRow, Result, ShardRow};

/// An unsigned value about to be stored in a signed 64-bit column.
pub(crate) fn to_db(value: u64, what: &'static str) -> Result<i64> {
    i64::try_from(value).map_err(|_| MetaError::Corrupt {
        what,
        detail: format!("{value} does not fit a signed 64-bit column"),
    })
}

/// A signed column read back into the unsigned type the API promises.
pub(crate) fn from_db<T: TryFrom<i64>>(value: i64, what: &'static str) -> Result<T> {
    T::try_from(value).map_err(|_| MetaError::Corrupt {
        what,
        detail: format!("{value} is out of range"),
    })
}

pub(crate) fn parse<T>(text: &str, what: &'static str) -> Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    text.parse().map_err(|e: T::Err| MetaError::Corrupt {
        what,
        detail: format!("{text:?}: {e}"),
    })
}

fn int<T: TryFrom<i64>>(row: &DbRow, column: &'static str) -> Result<T> {
    from_db(row.try_get::<i64, _>(column)?, column)
}

fn text(row: &DbRow, column: &'static str) -> Result<String> {
    Ok(row.try_get::<String, _>(column)?)
}

/// The columns [`file_from_row`] reads, from `files f JOIN buckets b`.
macro_rules! file_columns {
    () => {
        "f.file_id, f.tenant_id, f.bucket_id, b.name AS bucket, f.object_key, f.size, \
         f.ciphertext_size, f.content_type, f.phase, f.cancelled_reason, f.wrapped_dek, \
         f.chunk_size, f.nonce_prefix, f.data_shards, f.parity_shards, f.shard_size, \
         f.originator, f.upload_blob_id, f.part_count, f.part_size, f.expires_at, \
         f.created_at, f.distributed_at"
    };
}
pub(crate) use file_columns;

/// `SELECT` of whole file rows; append a `WHERE` clause with `concat!`.
macro_rules! file_select {
    () => {
        concat!(
            "SELECT ",
            $crate::convert::file_columns!(),
            " FROM files f JOIN buckets b ON b.id = f.bucket_id"
        )
    };
}
pub(crate) use file_select;

pub(crate) fn file_from_row(row: &DbRow) -> Result<FileRow> {
    let phase_text = text(row, "phase")?;
    let phase = FilePhase::parse(&phase_text).ok_or_else(|| MetaError::Corrupt {
        what: "phase",
        detail: format!("unknown phase {phase_text:?}"),
    })?;
    Ok(FileRow {
        file_id: parse::<FileId>(&text(row, "file_id")?, "file_id")?,
        tenant_id: text(row, "tenant_id")?,
        bucket_id: row.try_get("bucket_id")?,
        bucket: text(row, "bucket")?,
        object_key: text(row, "object_key")?,
        size: int(row, "size")?,
        ciphertext_size: int(row, "ciphertext_size")?,
        content_type: text(row, "content_type")?,
        phase,
        cancelled_reason: row.try_get("cancelled_reason")?,
        wrapped_dek: row.try_get("wrapped_dek")?,
        chunk_size: int(row, "chunk_size")?,
        nonce_prefix: row.try_get("nonce_prefix")?,
        data_shards: int(row, "data_shards")?,
        parity_shards: int(row, "parity_shards")?,
        shard_size: int(row, "shard_size")?,
        originator: parse::<NodeId>(&text(row, "originator")?, "originator")?,
        upload_blob_id: parse::<BlobId>(&text(row, "upload_blob_id")?, "upload_blob_id")?,
        part_count: int(row, "part_count")?,
        part_size: int(row, "part_size")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        distributed_at: row.try_get("distributed_at")?,
    })
}

pub(crate) fn shard_from_row(row: &DbRow) -> Result<ShardRow> {
    Ok(ShardRow {
        file_id: parse::<FileId>(&text(row, "file_id")?, "shards.file_id")?,
        segment: int(row, "segment")?,
        index: int(row, "shard_index")?,
        node_id: parse::<NodeId>(&text(row, "node_id")?, "shards.node_id")?,
        blob_id: parse::<BlobId>(&text(row, "blob_id")?, "shards.blob_id")?,
        size: int(row, "size")?,
        blake3: row.try_get("blake3")?,
    })
}

pub(crate) fn node_from_row(row: &DbRow) -> Result<NodeRow> {
    let capabilities_json = text(row, "capabilities")?;
    let capabilities =
        serde_json::from_str(&capabilities_json).map_err(|e| MetaError::Corrupt {
            what: "nodes.capabilities",
            detail: e.to_string(),
        })?;
    Ok(NodeRow {
        node_id: parse::<NodeId>(&text(row, "node_id")?, "nodes.node_id")?,
        public_url: text(row, "public_url")?,
        capacity_bytes: int(row, "capacity_bytes")?,
        free_bytes: int(row, "free_bytes")?,
        used_bytes: int(row, "used_bytes")?,
        zone: row.try_get("zone")?,
        capabilities,
        last_heartbeat_at: row.try_get("last_heartbeat_at")?,
        registered_at: row.try_get("registered_at")?,
        draining_since: row.try_get("draining_since")?,
    })
}

/// Maps a unique-constraint violation to [`MetaError::Conflict`] with `what`.
pub(crate) fn conflict_on_unique(err: sqlx::Error, what: &'static str) -> MetaError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => MetaError::Conflict(what),
        _ => MetaError::Db(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_values_are_corrupt_not_panics() {
        assert!(matches!(
            from_db::<u64>(-1, "size"),
            Err(MetaError::Corrupt { .. })
        ));
        assert!(matches!(
            from_db::<u8>(256, "data_shards"),
            Err(MetaError::Corrupt { .. })
        ));
        assert_eq!(from_db::<u32>(7, "chunk_size").unwrap(), 7);
        assert!(matches!(
            to_db(u64::MAX, "size"),
            Err(MetaError::Corrupt { .. })
        ));
        assert!(matches!(
            parse::<NodeId>("nope", "node"),
            Err(MetaError::Corrupt { .. })
        ));
    }
}
