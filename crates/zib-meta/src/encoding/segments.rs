//! What the encoding node reports while it produces the ladder: the rungs it plans
//! (`/probed`), each encrypted segment and its origin copy, the peers that stored a
//! replica, and a rung published once all its segments are stored. Every write
//! checks the lease in its own transaction, so a lapsed or cancelled job records
//! nothing more.

use zib_proto::{BlobId, NodeId};

use super::jobs::{held_lease, set_live};
use super::EncodingJobRow;
use crate::convert::to_db;
use crate::{MetaError, Result, Store};

/// One rung of the planned ladder (`hls_renditions` before any segment exists).
#[derive(Clone, Debug, PartialEq)]
pub struct NewRendition {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub codecs: String,
    pub frame_rate: f64,
}

/// One encrypted segment stored on the encoding node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSegment {
    pub rendition: String,
    pub seq: u32,
    pub duration_ms: u64,
    pub size: u64,
    /// 32 bytes.
    pub blake3: Vec<u8>,
    /// 16 bytes.
    pub iv: Vec<u8>,
    pub blob_id: BlobId,
}

/// A rung just published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    /// Peak over segments of size·8 / duration, bits/s (HLS `BANDWIDTH`).
    pub bandwidth: u64,
    /// Total bits / total duration, bits/s (HLS `AVERAGE-BANDWIDTH`).
    pub average_bandwidth: u64,
    /// The file had no live job: this one is live now.
    pub made_live: bool,
}

/// `(peak, average)` bits/s over segments of `(size bytes, duration ms)`. A segment
/// reported with no duration counts as 1 ms rather than dividing by zero.
pub fn bandwidth_figures(segments: &[(u64, u64)]) -> (u64, u64) {
    let bits_per_sec = |size: u64, ms: u64| -> u64 {
        let rate = u128::from(size) * 8 * 1000 / u128::from(ms.max(1));
        u64::try_from(rate).unwrap_or(u64::MAX)
    };
    let peak = segments
        .iter()
        .map(|&(size, ms)| bits_per_sec(size, ms))
        .max()
        .unwrap_or(0);
    let size: u64 = segments.iter().map(|s| s.0).fold(0, u64::saturating_add);
    let ms: u64 = segments.iter().map(|s| s.1).fold(0, u64::saturating_add);
    let average = if segments.is_empty() {
        0
    } else {
        bits_per_sec(size, ms)
    };
    (peak, average)
}

impl Store {
    /// Stores what ffprobe found and the ladder (a retry's plan replaces the last
    /// attempt's, unpublished). `false`: the lease is gone.
    pub async fn record_job_probe(
        &self,
        job_id: &str,
        token_hash: &str,
        probe: &serde_json::Value,
        renditions: &[NewRendition],
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        if held_lease(&mut tx, job_id, None, token_hash, now)
            .await?
            .is_none()
        {
            return Ok(false);
        }
        sqlx::query("UPDATE encoding_jobs SET probe = $1 WHERE id = $2")
            .bind(probe.to_string())
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        for r in renditions {
            sqlx::query(
                "INSERT INTO hls_renditions (job_id, name, width, height, codecs, frame_rate) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (job_id, name) DO UPDATE SET width = excluded.width, \
                     height = excluded.height, codecs = excluded.codecs, \
                     frame_rate = excluded.frame_rate, bandwidth = NULL, \
                     average_bandwidth = NULL, segment_count = 0, published_at = NULL",
            )
            .bind(job_id)
            .bind(&r.name)
            .bind(i64::from(r.width))
            .bind(i64::from(r.height))
            .bind(&r.codecs)
            .bind(r.frame_rate)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Records a segment and its copy on the encoding node (`is_origin`). A segment
    /// of the same place from an earlier attempt is replaced, its replica rows with
    /// it. `None`: the lease is gone. A rung `/probed` did not plan is a conflict.
    pub async fn record_segment(
        &self,
        job_id: &str,
        node: &NodeId,
        token_hash: &str,
        segment: &NewSegment,
        now: i64,
    ) -> Result<Option<EncodingJobRow>> {
        let mut tx = self.begin_write().await?;
        let Some(job) = held_lease(&mut tx, job_id, Some(node), token_hash, now).await? else {
            return Ok(None);
        };
        let planned: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM hls_renditions WHERE job_id = $1 AND name = $2")
                .bind(job_id)
                .bind(&segment.rendition)
                .fetch_optional(&mut *tx)
                .await?;
        if planned.is_none() {
            return Err(MetaError::Conflict(
                "the segment's rendition was not planned",
            ));
        }
        let earlier: Option<String> = sqlx::query_scalar(
            "SELECT blob_id FROM hls_segments WHERE job_id = $1 AND rendition = $2 AND seq = $3",
        )
        .bind(job_id)
        .bind(&segment.rendition)
        .bind(i64::from(segment.seq))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(old) = earlier {
            sqlx::query("DELETE FROM segment_replicas WHERE blob_id = $1")
                .bind(&old)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM hls_segments WHERE blob_id = $1")
                .bind(&old)
                .execute(&mut *tx)
                .await?;
        }
        let blob = segment.blob_id.to_string();
        sqlx::query(
            "INSERT INTO hls_segments (job_id, rendition, seq, duration_ms, size, blake3, iv, \
                 blob_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(job_id)
        .bind(&segment.rendition)
        .bind(i64::from(segment.seq))
        .bind(to_db(segment.duration_ms, "hls_segments.duration_ms")?)
        .bind(to_db(segment.size, "hls_segments.size")?)
        .bind(&segment.blake3)
        .bind(&segment.iv)
        .bind(&blob)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| crate::convert::conflict_on_unique(e, "segment blob id already exists"))?;
        sqlx::query(
            "INSERT INTO segment_replicas (blob_id, node_id, is_origin, created_at) \
             VALUES ($1, $2, 1, $3)",
        )
        .bind(&blob)
        .bind(node.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(job))
    }

    /// Records the peers that stored a copy of one of the job's segments (unverified:
    /// the verifier challenges them). The encoder and peers already recorded are
    /// skipped. `false`: the lease is gone. A blob not of this job is a conflict.
    pub async fn record_segment_replicas(
        &self,
        job_id: &str,
        token_hash: &str,
        blob_id: BlobId,
        nodes: &[NodeId],
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        if held_lease(&mut tx, job_id, None, token_hash, now)
            .await?
            .is_none()
        {
            return Ok(false);
        }
        let blob = blob_id.to_string();
        let owned: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM hls_segments WHERE blob_id = $1 AND job_id = $2")
                .bind(&blob)
                .bind(job_id)
                .fetch_optional(&mut *tx)
                .await?;
        if owned.is_none() {
            return Err(MetaError::Conflict("the blob is not a segment of this job"));
        }
        for node in nodes {
            sqlx::query(
                "INSERT INTO segment_replicas (blob_id, node_id, is_origin, created_at) \
                 VALUES ($1, $2, 0, $3) ON CONFLICT (blob_id, node_id) DO NOTHING",
            )
            .bind(&blob)
            .bind(node.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Publishes a rung whose `segment_count` segments are all recorded: computes its
    /// bandwidth figures and, if the file has no live job, makes this job live (the
    /// CDN serves the master from its first rung). `None`: the lease is gone. A count
    /// that disagrees with the recorded segments is a conflict.
    pub async fn publish_rendition(
        &self,
        job_id: &str,
        token_hash: &str,
        name: &str,
        segment_count: u32,
        now: i64,
    ) -> Result<Option<Published>> {
        let mut tx = self.begin_write().await?;
        let Some(job) = held_lease(&mut tx, job_id, None, token_hash, now).await? else {
            return Ok(None);
        };
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT seq, size, duration_ms FROM hls_segments \
             WHERE job_id = $1 AND rendition = $2 ORDER BY seq",
        )
        .bind(job_id)
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        let contiguous = rows
            .iter()
            .enumerate()
            .all(|(i, r)| i64::try_from(i).is_ok_and(|i| i == r.0));
        if segment_count == 0 || rows.len() != segment_count as usize || !contiguous {
            return Err(MetaError::Conflict(
                "the rendition's recorded segments do not match the count reported",
            ));
        }
        let figures: Vec<(u64, u64)> = rows
            .iter()
            .map(|&(_, size, ms)| (size.max(0) as u64, ms.max(0) as u64))
            .collect();
        let (bandwidth, average_bandwidth) = bandwidth_figures(&figures);
        let updated = sqlx::query(
            "UPDATE hls_renditions SET bandwidth = $1, average_bandwidth = $2, \
                 segment_count = $3, published_at = $4 WHERE job_id = $5 AND name = $6",
        )
        .bind(to_db(bandwidth, "hls_renditions.bandwidth")?)
        .bind(to_db(
            average_bandwidth,
            "hls_renditions.average_bandwidth",
        )?)
        .bind(i64::from(segment_count))
        .bind(now)
        .bind(job_id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(MetaError::Conflict("the rendition was not planned"));
        }
        let live: Option<String> =
            sqlx::query_scalar("SELECT job_id FROM live_encodings WHERE file_id = $1")
                .bind(job.file_id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let made_live = live.is_none();
        if made_live {
            set_live(&mut tx, job.file_id, job_id, now).await?;
        }
        crate::webhooks::rendition_published(&mut tx, &job, name, now).await?;
        tx.commit().await?;
        Ok(Some(Published {
            bandwidth,
            average_bandwidth,
            made_live,
        }))
    }
}
