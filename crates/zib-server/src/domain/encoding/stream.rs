//! What the CDN serves of an encoded video (docs/video.md, "Serving"): the master
//! playlist of the live job's published rungs, a rung's VOD media playlist whose
//! segment URLs point at online holders (the CDN's proxy when none is), the job's
//! AES-128 key, and the proxy itself, which checks a segment's BLAKE3 before it
//! serves it. Every URL a playlist writes names the job, so a player that loaded one
//! job's playlists keeps getting that job's key and segments while a forced
//! re-encode replaces the live job.

use std::fmt::Write as _;

use bytes::Bytes;
use zib_meta::{EncodingJobRow, RenditionRow, ReplicaRow, SegmentHolders};
use zib_proto::{BlobId, FileId, NodeId};

use super::hls_key::{unwrap_hls_key, HLS_KEY_LEN};
use crate::domain::directory::NodeDirectory;
use crate::error::{ApiError, ApiResult};
use crate::state::Inner;

/// The worker that replaces lost or corrupt segment copies; the proxy wakes it when
/// it finds a bad one.
pub const SEGMENT_REPAIRER_WORKER: &str = "segment-repairer";

fn stream_not_found(file_id: FileId) -> ApiError {
    ApiError::NotFound(format!(
        "no stream for file {file_id}: it is not encoded yet (no rendition published), or it was deleted"
    ))
}

/// The job whose output a request reads: the one it names (it must belong to the
/// file and still have its output), or the file's live job.
async fn resolve_job(
    state: &Inner,
    file_id: FileId,
    job_id: Option<&str>,
) -> ApiResult<EncodingJobRow> {
    let job = match job_id {
        Some(id) => state.store.stream_job(file_id, id).await?,
        None => state.store.live_stream_job(file_id).await?,
    };
    job.ok_or_else(|| match job_id {
        Some(id) => ApiError::NotFound(format!(
            "encoding {id} of file {file_id} not found (or its output was evicted)"
        )),
        None => stream_not_found(file_id),
    })
}

fn cdn_base(state: &Inner) -> &str {
    state.config.cdn_base_url.trim_end_matches('/')
}

/// `GET /stream/{file_id}/master.m3u8`: the live job's published rungs, lowest
/// first; 404 until one is published.
pub async fn master_playlist(state: &Inner, file_id: FileId) -> ApiResult<String> {
    let job = resolve_job(state, file_id, None).await?;
    let renditions = state.store.published_renditions(&job.id).await?;
    if renditions.is_empty() {
        return Err(stream_not_found(file_id));
    }
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for r in &renditions {
        let (peak, average) = bandwidths(state, r).await?;
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={average},RESOLUTION={}x{},CODECS=\"{}\"",
            r.width, r.height, r.codecs
        );
        if let Some(fps) = r.frame_rate.filter(|f| f.is_finite() && *f > 0.0) {
            let _ = write!(out, ",FRAME-RATE={fps:.3}");
        }
        let _ = write!(out, "\n{}.m3u8?job={}\n", r.name, job.id);
    }
    Ok(out)
}

/// A rung's peak and mean bits/s: as the node measured them, or from its segments
/// when it did not say.
async fn bandwidths(state: &Inner, r: &RenditionRow) -> ApiResult<(u64, u64)> {
    if let (Some(peak), Some(avg)) = (r.bandwidth, r.average_bandwidth) {
        return Ok((peak, avg));
    }
    let segments = state.store.rendition_segments(&r.job_id, &r.name).await?;
    let (measured_peak, measured_avg) = measure(&segments);
    Ok((
        r.bandwidth.unwrap_or(measured_peak),
        r.average_bandwidth.unwrap_or(measured_avg),
    ))
}

/// Peak (over segments) and mean bits/s of a rendition's segments.
fn measure(segments: &[SegmentHolders]) -> (u64, u64) {
    let mut peak = 0u64;
    let (mut bits, mut ms) = (0u64, 0u64);
    for s in segments {
        let seg_bits = s.segment.size.saturating_mul(8);
        let seg_ms = s.segment.duration_ms.max(1);
        peak = peak.max(seg_bits.saturating_mul(1000) / seg_ms);
        bits = bits.saturating_add(seg_bits);
        ms = ms.saturating_add(seg_ms);
    }
    let avg = bits.saturating_mul(1000).checked_div(ms).unwrap_or(0);
    (peak, avg)
}

/// `GET /stream/{file_id}/{rendition}.m3u8[?job=]`: a published rung's VOD playlist.
/// Segment URLs end their path in `.ts` (`{node}/v1/segments/{blob_id}.ts?node=…`):
/// ffmpeg's HLS demuxer refuses segment URLs without a media extension.
pub async fn media_playlist(
    state: &Inner,
    file_id: FileId,
    rendition: &str,
    job_id: Option<&str>,
) -> ApiResult<String> {
    let job = resolve_job(state, file_id, job_id).await?;
    let published = state.store.published_renditions(&job.id).await?;
    if !published.iter().any(|r| r.name == rendition) {
        return Err(ApiError::NotFound(format!(
            "rendition {rendition:?} of file {file_id} is not published"
        )));
    }
    let segments = state.store.rendition_segments(&job.id, rendition).await?;
    let nodes = NodeDirectory::load(state).await?;
    let base = cdn_base(state);
    let target = segments
        .iter()
        .map(|s| s.segment.duration_ms.div_ceil(1000))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n\
         #EXT-X-KEY:METHOD=AES-128,URI=\"{base}/stream/{file_id}/key?job={}\"\n",
        job.id
    );
    for s in &segments {
        let url = match holders_in_order(&nodes, &job, s).first() {
            Some((node_id, node_url)) => format!(
                "{}/v1/segments/{}.ts?node={node_id}",
                node_url.trim_end_matches('/'),
                s.segment.blob_id
            ),
            None => format!("{base}/stream/{file_id}/segments/{}.ts", s.segment.blob_id),
        };
        let secs = s.segment.duration_ms as f64 / 1000.0;
        let _ = write!(out, "#EXTINF:{secs:.3},\n{url}\n");
    }
    out.push_str("#EXT-X-ENDLIST\n");
    Ok(out)
}

/// Online holders of a segment, best first: verified copies on other nodes (spread
/// over them by sequence number), then the encoding node, then copies not verified
/// yet. Copies awaiting repair are left out. The encoding node counts as a holder
/// even before its replica row is written: it stores every segment first.
fn holders_in_order(
    nodes: &NodeDirectory,
    job: &EncodingJobRow,
    s: &SegmentHolders,
) -> Vec<(NodeId, String)> {
    let usable: Vec<&ReplicaRow> = s.replicas.iter().filter(|r| !r.needs_repair).collect();
    let mut verified: Vec<&ReplicaRow> = usable
        .iter()
        .copied()
        .filter(|r| !r.is_origin && r.verified_at.is_some())
        .collect();
    if !verified.is_empty() {
        let shift = s.segment.seq as usize % verified.len();
        verified.rotate_left(shift);
    }
    let mut ids: Vec<NodeId> = verified.iter().map(|r| r.node_id.clone()).collect();
    let origin_lost = s.replicas.iter().any(|r| r.is_origin && r.needs_repair);
    let origin = usable
        .iter()
        .find(|r| r.is_origin)
        .map(|r| r.node_id.clone())
        .or_else(|| job.node_id.clone().filter(|_| !origin_lost));
    ids.extend(origin);
    ids.extend(
        usable
            .iter()
            .filter(|r| !r.is_origin && r.verified_at.is_none())
            .map(|r| r.node_id.clone()),
    );
    let mut seen = std::collections::HashSet::new();
    ids.into_iter()
        .filter(|id| seen.insert(id.clone()))
        .filter_map(|id| {
            nodes
                .online_node(&id)
                .map(|n| (id.clone(), n.public_url.clone()))
        })
        .collect()
}

/// `GET /stream/{file_id}/key[?job=]`: the job's 16 key bytes.
pub async fn key(
    state: &Inner,
    file_id: FileId,
    job_id: Option<&str>,
) -> ApiResult<[u8; HLS_KEY_LEN]> {
    let job = resolve_job(state, file_id, job_id).await?;
    unwrap_hls_key(state, &job.id, &job.wrapped_hls_key)
}

/// `GET /stream/{file_id}/segments/{blob_id}.ts`: a segment read from the first
/// holder whose copy matches its BLAKE3. A copy that does not is marked for repair
/// and the next holder tried.
pub async fn proxied_segment(state: &Inner, file_id: FileId, blob_id: BlobId) -> ApiResult<Bytes> {
    let not_found = || ApiError::NotFound(format!("segment {blob_id} of file {file_id} not found"));
    let holders = state
        .store
        .file_segment(file_id, blob_id)
        .await?
        .ok_or_else(not_found)?;
    let job = state
        .store
        .encoding_job(&holders.segment.job_id)
        .await?
        .ok_or_else(not_found)?;
    let nodes = NodeDirectory::load(state).await?;
    let mut found_bad = false;
    for (node_id, url) in holders_in_order(&nodes, &job, &holders) {
        match state
            .nodes
            .fetch_blob(&url, blob_id, state.config.shard_fetch_timeout)
            .await
        {
            Ok(Some(bytes))
                if bytes.len() as u64 == holders.segment.size
                    && blake3::hash(&bytes).as_bytes().as_slice()
                        == holders.segment.blake3.as_slice() =>
            {
                if found_bad {
                    state.workers.wake(SEGMENT_REPAIRER_WORKER);
                }
                return Ok(bytes);
            }
            Ok(_) => {
                tracing::warn!(node = %node_id, blob = %blob_id, "segment copy missing or corrupt; queued for repair");
                state
                    .store
                    .mark_segment_replica_lost(blob_id, &node_id)
                    .await?;
                found_bad = true;
            }
            Err(e) => {
                tracing::debug!(node = %node_id, blob = %blob_id, error = %e, "segment holder did not answer");
            }
        }
    }
    if found_bad {
        state.workers.wake(SEGMENT_REPAIRER_WORKER);
    }
    Err(ApiError::Upstream(format!(
        "no holder of segment {blob_id} answered with an intact copy"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zib_meta::SegmentRow;

    fn seg(seq: u32, size: u64, duration_ms: u64) -> SegmentHolders {
        SegmentHolders {
            segment: SegmentRow {
                job_id: "j".into(),
                rendition: "360p".into(),
                seq,
                duration_ms,
                size,
                blake3: vec![0; 32],
                blob_id: BlobId::new_random(),
                challenges: None,
            },
            replicas: vec![],
        }
    }

    #[test]
    fn bandwidth_is_the_peak_segment_and_the_mean_over_the_duration() {
        // 1 MB over 4 s = 2 Mbit/s; 500 kB over 2 s = 2 Mbit/s; 250 kB over 4 s = 0.5.
        let segments = [
            seg(0, 1_000_000, 4000),
            seg(1, 250_000, 4000),
            seg(2, 500_000, 2000),
        ];
        let (peak, avg) = measure(&segments);
        assert_eq!(peak, 2_000_000);
        assert_eq!(avg, 1_750_000 * 8 * 1000 / 10_000);
        assert_eq!(measure(&[]), (0, 0));
    }
}
