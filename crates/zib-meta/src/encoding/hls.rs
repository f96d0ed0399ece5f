//! HLS renditions, segments and their replicas: what the CDN serves (this file) and
//! what the workers keep durable (`replicas.rs`).

use std::collections::BTreeMap;

use sqlx::Row;
use zib_proto::{BlobId, FileId, NodeId};

use super::{job_from_row, job_select, EncodingJobRow};
use crate::convert::{from_db, parse};
use crate::engine::{DbRow, FetchRows};
use crate::{Result, Store};

/// One rung of a job's ladder (`hls_renditions`).
#[derive(Clone, Debug, PartialEq)]
pub struct RenditionRow {
    pub job_id: String,
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// Peak bits/s over segments; `None` until the node reported it.
    pub bandwidth: Option<u64>,
    pub average_bandwidth: Option<u64>,
    pub codecs: String,
    pub frame_rate: Option<f64>,
    pub segment_count: u32,
    /// Set once every segment is stored: it joins the master playlist.
    pub published_at: Option<i64>,
}

/// One encrypted TS segment (`hls_segments`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRow {
    pub job_id: String,
    pub rendition: String,
    pub seq: u32,
    pub duration_ms: u64,
    pub size: u64,
    /// BLAKE3 of the encrypted bytes (32 bytes).
    pub blake3: Vec<u8>,
    pub blob_id: BlobId,
    /// Prepared audit challenges (JSON, the server's format); shared by every copy,
    /// as the copies are the same bytes.
    pub challenges: Option<String>,
}

/// One whole copy of a segment on one node (`segment_replicas`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaRow {
    pub blob_id: BlobId,
    pub node_id: NodeId,
    /// The node that encoded it: not counted toward `safe`.
    pub is_origin: bool,
    pub verified_at: Option<i64>,
    pub needs_repair: bool,
    pub last_audit_at: Option<i64>,
}

/// A segment and every copy of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentHolders {
    pub segment: SegmentRow,
    pub replicas: Vec<ReplicaRow>,
}

/// Columns read by [`rendition_from_row`], from `hls_renditions r`.
macro_rules! rendition_columns {
    () => {
        "r.job_id, r.name, r.width, r.height, r.bandwidth, r.average_bandwidth, r.codecs, \
         r.frame_rate, r.segment_count, r.published_at"
    };
}

/// Columns read by [`segment_from_row`], from `hls_segments s`.
macro_rules! segment_columns {
    () => {
        "s.job_id, s.rendition, s.seq, s.duration_ms, s.size, s.blake3, s.blob_id, s.challenges"
    };
}
pub(crate) use segment_columns;

/// Columns read by [`replica_from_row`], from `segment_replicas p`.
macro_rules! replica_columns {
    () => {
        "p.blob_id AS replica_blob_id, p.node_id AS replica_node_id, p.is_origin, \
         p.verified_at, p.needs_repair, p.last_audit_at"
    };
}
pub(crate) use replica_columns;

fn rendition_from_row(row: &DbRow) -> Result<RenditionRow> {
    let opt_u64 = |column: &'static str| -> Result<Option<u64>> {
        row.try_get::<Option<i64>, _>(column)?
            .map(|v| from_db(v, column))
            .transpose()
    };
    Ok(RenditionRow {
        job_id: row.try_get("job_id")?,
        name: row.try_get("name")?,
        width: from_db(row.try_get("width")?, "hls_renditions.width")?,
        height: from_db(row.try_get("height")?, "hls_renditions.height")?,
        bandwidth: opt_u64("bandwidth")?,
        average_bandwidth: opt_u64("average_bandwidth")?,
        codecs: row.try_get("codecs")?,
        frame_rate: row.try_get("frame_rate")?,
        segment_count: from_db(
            row.try_get("segment_count")?,
            "hls_renditions.segment_count",
        )?,
        published_at: row.try_get("published_at")?,
    })
}

pub(crate) fn segment_from_row(row: &DbRow) -> Result<SegmentRow> {
    Ok(SegmentRow {
        job_id: row.try_get("job_id")?,
        rendition: row.try_get("rendition")?,
        seq: from_db(row.try_get("seq")?, "hls_segments.seq")?,
        duration_ms: from_db(row.try_get("duration_ms")?, "hls_segments.duration_ms")?,
        size: from_db(row.try_get("size")?, "hls_segments.size")?,
        blake3: row.try_get("blake3")?,
        blob_id: parse(
            &row.try_get::<String, _>("blob_id")?,
            "hls_segments.blob_id",
        )?,
        challenges: row.try_get("challenges")?,
    })
}

pub(crate) fn replica_from_row(row: &DbRow) -> Result<ReplicaRow> {
    Ok(ReplicaRow {
        blob_id: parse(
            &row.try_get::<String, _>("replica_blob_id")?,
            "segment_replicas.blob_id",
        )?,
        node_id: parse(
            &row.try_get::<String, _>("replica_node_id")?,
            "segment_replicas.node_id",
        )?,
        is_origin: row.try_get::<i64, _>("is_origin")? != 0,
        verified_at: row.try_get("verified_at")?,
        needs_repair: row.try_get::<i64, _>("needs_repair")? != 0,
        last_audit_at: row.try_get("last_audit_at")?,
    })
}

impl Store {
    /// The job the CDN serves for `file_id` (`live_encodings`), while the file is
    /// readable. `None`: never encoded, or the file is gone.
    pub async fn live_stream_job(&self, file_id: FileId) -> Result<Option<EncodingJobRow>> {
        sqlx::query(concat!(
            job_select!(),
            " WHERE id = (SELECT job_id FROM live_encodings WHERE file_id = $1) AND ",
            "EXISTS (SELECT 1 FROM files f WHERE f.file_id = encoding_jobs.file_id \
               AND f.phase IN ('distributed', 'safe'))"
        ))
        .bind(file_id.to_string())
        .fetch_row(&self.pool, job_from_row)
        .await
    }

    /// A named job of `file_id` whose output still exists (not evicted: it has
    /// renditions), while the file is readable. Another file's job is `None`.
    pub async fn stream_job(
        &self,
        file_id: FileId,
        job_id: &str,
    ) -> Result<Option<EncodingJobRow>> {
        sqlx::query(concat!(
            job_select!(),
            " WHERE id = $1 AND file_id = $2 \
               AND EXISTS (SELECT 1 FROM hls_renditions r WHERE r.job_id = encoding_jobs.id) AND ",
            "EXISTS (SELECT 1 FROM files f WHERE f.file_id = encoding_jobs.file_id \
               AND f.phase IN ('distributed', 'safe'))"
        ))
        .bind(job_id)
        .bind(file_id.to_string())
        .fetch_row(&self.pool, job_from_row)
        .await
    }

    /// Every rung of a job, published or not, lowest first.
    pub async fn renditions(&self, job_id: &str) -> Result<Vec<RenditionRow>> {
        sqlx::query(concat!(
            "SELECT ",
            rendition_columns!(),
            " FROM hls_renditions r WHERE r.job_id = $1 \
             ORDER BY r.width * r.height, COALESCE(r.bandwidth, 0), r.name"
        ))
        .bind(job_id)
        .fetch_rows(&self.pool, rendition_from_row)
        .await
    }

    /// The published rungs of a job, lowest first: the master playlist's variants.
    pub async fn published_renditions(&self, job_id: &str) -> Result<Vec<RenditionRow>> {
        Ok(self
            .renditions(job_id)
            .await?
            .into_iter()
            .filter(|r| r.published_at.is_some())
            .collect())
    }

    /// A segment's copies, keyed by blob id, for the segments `WHERE` selects.
    async fn replicas_where(
        &self,
        where_clause: &'static str,
        bind1: &str,
        bind2: &str,
    ) -> Result<BTreeMap<BlobId, Vec<ReplicaRow>>> {
        let q = format!(
            "SELECT {} FROM segment_replicas p JOIN hls_segments s ON s.blob_id = p.blob_id \
             WHERE {where_clause} ORDER BY p.blob_id, p.is_origin, p.node_id",
            replica_columns!()
        );
        // Only a fixed clause from this module is spliced in; values are bound.
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(bind1.to_string())
            .bind(bind2.to_string())
            .fetch_rows(&self.pool, replica_from_row)
            .await?;
        let mut out: BTreeMap<BlobId, Vec<ReplicaRow>> = BTreeMap::new();
        for r in rows {
            out.entry(r.blob_id).or_default().push(r);
        }
        Ok(out)
    }

    /// A rendition's segments in media-sequence order, each with its copies.
    pub async fn rendition_segments(
        &self,
        job_id: &str,
        rendition: &str,
    ) -> Result<Vec<SegmentHolders>> {
        let segments = sqlx::query(concat!(
            "SELECT ",
            segment_columns!(),
            " FROM hls_segments s WHERE s.job_id = $1 AND s.rendition = $2 ORDER BY s.seq"
        ))
        .bind(job_id)
        .bind(rendition)
        .fetch_rows(&self.pool, segment_from_row)
        .await?;
        let mut replicas = self
            .replicas_where("s.job_id = $1 AND s.rendition = $2", job_id, rendition)
            .await?;
        Ok(segments
            .into_iter()
            .map(|segment| SegmentHolders {
                replicas: replicas.remove(&segment.blob_id).unwrap_or_default(),
                segment,
            })
            .collect())
    }

    /// A segment by its blob id, with its copies, whatever file it belongs to (the
    /// repairer).
    pub async fn segment_holders(&self, blob_id: BlobId) -> Result<Option<SegmentHolders>> {
        let segment = sqlx::query(concat!(
            "SELECT ",
            segment_columns!(),
            " FROM hls_segments s WHERE s.blob_id = $1"
        ))
        .bind(blob_id.to_string())
        .fetch_row(&self.pool, segment_from_row)
        .await?;
        let Some(segment) = segment else {
            return Ok(None);
        };
        let blob = blob_id.to_string();
        let mut replicas = self
            .replicas_where("s.blob_id = $1 AND $2 = $2", &blob, &blob)
            .await?;
        Ok(Some(SegmentHolders {
            replicas: replicas.remove(&segment.blob_id).unwrap_or_default(),
            segment,
        }))
    }

    /// A segment of one of `file_id`'s jobs by its blob id, with its copies (the
    /// CDN's proxy: the file id is the capability, so another file's segment is
    /// `None`).
    pub async fn file_segment(
        &self,
        file_id: FileId,
        blob_id: BlobId,
    ) -> Result<Option<SegmentHolders>> {
        let segment = sqlx::query(concat!(
            "SELECT ",
            segment_columns!(),
            " FROM hls_segments s JOIN encoding_jobs j ON j.id = s.job_id \
             JOIN files f ON f.file_id = j.file_id \
             WHERE s.blob_id = $1 AND j.file_id = $2 AND f.phase IN ('distributed', 'safe')"
        ))
        .bind(blob_id.to_string())
        .bind(file_id.to_string())
        .fetch_row(&self.pool, segment_from_row)
        .await?;
        let Some(segment) = segment else {
            return Ok(None);
        };
        let mut replicas = self
            .replicas_where(
                "s.blob_id = $1 AND $2 = $2",
                &blob_id.to_string(),
                &file_id.to_string(),
            )
            .await?;
        Ok(Some(SegmentHolders {
            replicas: replicas.remove(&segment.blob_id).unwrap_or_default(),
            segment,
        }))
    }
}
