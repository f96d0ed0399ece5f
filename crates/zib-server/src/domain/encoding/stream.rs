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
/// first; 404 until one is published. Once the uploaded file (a variant stream's
/// source) has a complete transcription, its WebVTT is the `subs` group.
pub async fn master_playlist(state: &Inner, file_id: FileId) -> ApiResult<String> {
    let job = resolve_job(state, file_id, None).await?;
    let renditions = state.store.published_renditions(&job.id).await?;
    if renditions.is_empty() {
        return Err(stream_not_found(file_id));
    }
    let mut entries = Vec::with_capacity(renditions.len());
    for r in &renditions {
        let (peak, average) = bandwidths(state, r).await?;
        entries.push(MasterEntry {
            peak,
            average,
            width: r.width,
            height: r.height,
            codecs: r.codecs.clone(),
            frame_rate: r.frame_rate,
            uri: format!("{}.m3u8?job={}", r.name, job.id),
        });
    }
    let subtitles = state
        .store
        .latest_transcription(job.source_file())
        .await?
        .is_some_and(|t| t.vtt_file_id.is_some());
    Ok(render_master(&entries, subtitles))
}

/// One `EXT-X-STREAM-INF` of the master playlist.
struct MasterEntry {
    peak: u64,
    average: u64,
    width: u32,
    height: u32,
    codecs: String,
    frame_rate: Option<f64>,
    uri: String,
}

/// The subtitle rendition every variant names when the file has subtitles.
const SUBTITLES_MEDIA: &str = "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"English\",\
LANGUAGE=\"en\",DEFAULT=NO,AUTOSELECT=YES,URI=\"subtitles.m3u8\"\n";

fn render_master(entries: &[MasterEntry], subtitles: bool) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    if subtitles {
        out.push_str(SUBTITLES_MEDIA);
    }
    for e in entries {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},RESOLUTION={}x{},CODECS=\"{}\"",
            e.peak, e.average, e.width, e.height, e.codecs
        );
        if let Some(fps) = e.frame_rate.filter(|f| f.is_finite() && *f > 0.0) {
            let _ = write!(out, ",FRAME-RATE={fps:.3}");
        }
        if subtitles {
            out.push_str(",SUBTITLES=\"subs\"");
        }
        let _ = write!(out, "\n{}\n", e.uri);
    }
    out
}

/// `GET /stream/{file_id}/subtitles.m3u8`: a VOD playlist of the one WebVTT file of
/// the newest complete transcription, lasting the video. 404 without one.
pub async fn subtitles_playlist(state: &Inner, file_id: FileId) -> ApiResult<String> {
    let job = resolve_job(state, file_id, None).await?;
    let vtt = state
        .store
        .latest_transcription(job.source_file())
        .await?
        .and_then(|t| t.vtt_file_id)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "file {file_id} has no subtitles: no transcription of it is complete"
            ))
        })?;
    let duration = job
        .probe
        .as_ref()
        .and_then(|p| p.get("duration_secs"))
        .and_then(serde_json::Value::as_f64)
        .filter(|d| d.is_finite() && *d > 0.0)
        .unwrap_or(1.0);
    Ok(render_subtitles(
        duration,
        &format!("{}/objects/{vtt}", cdn_base(state)),
    ))
}

fn render_subtitles(duration_secs: f64, vtt_url: &str) -> String {
    let target = duration_secs.ceil().max(1.0) as u64;
    format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:{duration_secs:.3},\n{vtt_url}\n#EXT-X-ENDLIST\n"
    )
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

    fn entry(name: &str) -> MasterEntry {
        MasterEntry {
            peak: 800_000,
            average: 600_000,
            width: 640,
            height: 360,
            codecs: "avc1.64001e,mp4a.40.2".into(),
            frame_rate: Some(30.0),
            uri: format!("{name}.m3u8?job=j"),
        }
    }

    #[test]
    fn a_master_with_subtitles_names_the_group_on_every_variant() {
        let text = render_master(&[entry("360p"), entry("720p")], true);
        let media: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("#EXT-X-MEDIA:"))
            .collect();
        assert_eq!(media.len(), 1);
        for attr in [
            "TYPE=SUBTITLES",
            "GROUP-ID=\"subs\"",
            "LANGUAGE=\"en\"",
            "DEFAULT=NO",
            "AUTOSELECT=YES",
            "URI=\"subtitles.m3u8\"",
        ] {
            assert!(media[0].contains(attr), "{attr} missing from {}", media[0]);
        }
        let infs: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
            .collect();
        assert_eq!(infs.len(), 2);
        assert!(infs.iter().all(|l| l.ends_with(",SUBTITLES=\"subs\"")));
        // The media line comes before the variants that name it.
        assert!(text.find("#EXT-X-MEDIA").unwrap() < text.find("#EXT-X-STREAM-INF").unwrap());
    }

    #[test]
    fn a_master_without_subtitles_has_no_group() {
        let text = render_master(&[entry("360p")], false);
        assert!(!text.contains("SUBTITLES"));
        assert!(text.contains("360p.m3u8?job=j"));
    }

    #[test]
    fn the_subtitles_playlist_is_one_vtt_segment_lasting_the_video() {
        let text = render_subtitles(12.4, "https://cdn/objects/v");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#EXTM3U");
        assert!(lines.contains(&"#EXT-X-TARGETDURATION:13"));
        assert!(lines.contains(&"#EXT-X-PLAYLIST-TYPE:VOD"));
        assert!(lines.contains(&"#EXTINF:12.400,"));
        assert!(lines.contains(&"https://cdn/objects/v"));
        assert_eq!(lines.last(), Some(&"#EXT-X-ENDLIST"));
        assert_eq!(lines.iter().filter(|l| l.starts_with("#EXTINF")).count(), 1);
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
