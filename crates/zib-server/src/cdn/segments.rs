//! Fetching a segment's ciphertext from its shard holders: data shards first (no
//! decoding), BLAKE3-checked; any missing, slow or corrupt shard makes the read fall
//! back to parity and rebuild. Wrong bytes never leave this module.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use zib_erasure::{Codec, Layout};
use zib_proto::{BlobId, NodeId};

/// Where one shard lives, and whether its holder is believed online.
#[derive(Clone, Debug)]
pub struct ShardLocation {
    pub node_id: NodeId,
    pub node_url: Option<String>,
    pub online: bool,
    pub blob_id: BlobId,
    pub blake3: [u8; 32],
}

/// Everything needed to read one file's ciphertext.
pub struct SegmentSource {
    pub layout: Layout,
    pub codec: Codec,
    /// `[segment][index]`, `None` where no shard row exists.
    pub shards: Vec<Vec<Option<ShardLocation>>>,
    pub http: reqwest::Client,
    /// Corrupt shards found while reading are queued for repair here.
    pub store: zib_meta::Store,
    pub cluster_token: String,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("segment {segment} is unreadable: only {good} of the {needed} shards needed are available and intact")]
    TooFewShards {
        segment: u32,
        good: usize,
        needed: usize,
    },
    #[error("segment {segment} could not be rebuilt: {reason}")]
    Rebuild { segment: u32, reason: String },
}

impl SegmentSource {
    /// Segments whose holders, by heartbeat, cannot supply `k` shards.
    pub fn unavailable_segment(&self, segments: Range<u32>) -> Option<SegmentError> {
        let needed = self.layout.params.data_shards as usize;
        segments.into_iter().find_map(|s| {
            let good = self.shards[s as usize]
                .iter()
                .flatten()
                .filter(|l| l.online && l.node_url.is_some())
                .count();
            (good < needed).then_some(SegmentError::TooFewShards {
                segment: s,
                good,
                needed,
            })
        })
    }

    /// Ciphertext bytes of `segment` covering at least `window` (file offsets, within
    /// the segment): the file offset of the first byte, and contiguous pieces (the
    /// data shards as fetched, without copying them together).
    pub async fn read(
        self: Arc<Self>,
        segment: u32,
        window: Range<u64>,
    ) -> Result<(u64, Vec<Bytes>), SegmentError> {
        let seg_range = self.layout.segment_range(segment);
        let shard_len = self.layout.shard_len(segment);
        let seg_len = seg_range.end - seg_range.start;
        let first = ((window.start - seg_range.start) / shard_len) as usize;
        let last = ((window.end - 1 - seg_range.start) / shard_len) as usize;
        let start_in_seg = first as u64 * shard_len;
        let end_in_seg = ((last as u64 + 1) * shard_len).min(seg_len);

        let wanted: Vec<usize> = (first..=last).collect();
        let fetched = self.fetch(segment, &wanted).await;
        if fetched.iter().all(Option::is_some) {
            // The last data shard of a segment carries zero padding past its end.
            let mut remaining = (end_in_seg - start_in_seg) as usize;
            let pieces = fetched
                .into_iter()
                .flatten()
                .map(|shard| {
                    let take = shard.len().min(remaining);
                    remaining -= take;
                    shard.slice(..take)
                })
                .collect();
            return Ok((seg_range.start + start_in_seg, pieces));
        }

        // Read around the failure: gather every shard we can, then rebuild.
        let width = self.layout.params.total_shards();
        let mut slots: Vec<Option<Vec<u8>>> = vec![None; width];
        for (i, shard) in wanted.iter().zip(fetched) {
            slots[*i] = shard.map(Vec::from);
        }
        let others: Vec<usize> = (0..width).filter(|i| !wanted.contains(i)).collect();
        for (i, shard) in others.iter().zip(self.fetch(segment, &others).await) {
            slots[*i] = shard.map(Vec::from);
        }
        let good = slots.iter().filter(|s| s.is_some()).count();
        let needed = self.layout.params.data_shards as usize;
        if good < needed {
            return Err(SegmentError::TooFewShards {
                segment,
                good,
                needed,
            });
        }
        let whole = self
            .codec
            .reconstruct_segment(segment, &mut slots, seg_len as usize)
            .map_err(|e| SegmentError::Rebuild {
                segment,
                reason: e.to_string(),
            })?;
        let bytes = Bytes::from(whole).slice(start_in_seg as usize..end_in_seg as usize);
        Ok((seg_range.start + start_in_seg, vec![bytes]))
    }

    /// Fetches shards concurrently; `None` for each one missing, slow or corrupt.
    async fn fetch(&self, segment: u32, indices: &[usize]) -> Vec<Option<Bytes>> {
        let expected_len = self.layout.shard_len(segment) as usize;
        let row = &self.shards[segment as usize];
        join_all(indices.iter().map(|&i| async move {
            let loc = row.get(i)?.as_ref()?;
            if !loc.online {
                return None;
            }
            let url = loc.node_url.as_ref()?;
            match self.fetch_one(url, loc.blob_id).await {
                Ok(bytes) if bytes.len() == expected_len && *blake3::hash(&bytes).as_bytes() == loc.blake3 => {
                    Some(bytes)
                }
                Ok(bytes) => {
                    tracing::warn!(
                        node = %loc.node_id, blob = %loc.blob_id, segment, index = i, len = bytes.len(),
                        "shard failed its BLAKE3 check; reading around it and queueing its repair"
                    );
                    if let Err(e) = self.store.mark_needs_repair(loc.blob_id).await {
                        tracing::error!(error = %e, "could not queue a corrupt shard for repair");
                    }
                    None
                }
                Err(e) => {
                    tracing::warn!(
                        node = %loc.node_id, blob = %loc.blob_id, segment, index = i, error = %e,
                        "shard unavailable; reading around it"
                    );
                    None
                }
            }
        }))
        .await
    }

    async fn fetch_one(&self, node_url: &str, blob: BlobId) -> Result<Bytes, String> {
        let response = self
            .http
            .get(format!("{node_url}/v1/shards/{blob}"))
            .bearer_auth(&self.cluster_token)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        response.bytes().await.map_err(|e| e.to_string())
    }
}
