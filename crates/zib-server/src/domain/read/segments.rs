//! Fetching a segment's ciphertext from its shard holders: data shards first (no
//! decoding), BLAKE3-checked; any missing, slow or corrupt shard makes the read fall
//! back to parity and rebuild. Wrong bytes never leave this module.

use std::io::Read;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::future::join_all;
use reqwest::StatusCode;
use zib_erasure::{Codec, Layout};
use zib_proto::{BlobId, NodeId};

use crate::config::LocalNodes;
use crate::domain::node_client::{NodeCallError, NodeClient};

/// Where one shard lives, and whether its holder is believed online.
#[derive(Clone, Debug)]
pub struct ShardLocation {
    pub node_id: NodeId,
    pub node_url: Option<String>,
    pub online: bool,
    pub blob_id: BlobId,
    pub blake3: [u8; 32],
}

/// Whether data shards are BLAKE3-checked as they arrive or only after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    Lazily,
    Eagerly,
}

/// Everything needed to read one file's ciphertext.
pub struct SegmentSource {
    pub layout: Layout,
    pub codec: Codec,
    /// `[segment][index]`, `None` where no shard row exists.
    pub shards: Vec<Vec<Option<ShardLocation>>>,
    pub nodes: NodeClient,
    /// Corrupt shards found while reading are queued for repair here.
    pub store: zib_meta::Store,
    /// Woken when a corrupt shard is queued, so it is repaired now.
    pub repairer: zib_util::worker::WorkerHandle,
    pub timeout: Duration,
    /// Nodes in this process, read from disk instead of over HTTP.
    pub local_nodes: Arc<LocalNodes>,
    /// The whole envelope of a small file kept in the metadata store: read from
    /// here, never from nodes (its `shards` are empty).
    pub inline: Option<bytes::Bytes>,
}

/// Why one shard did not arrive, as far as it tells about the bytes.
#[derive(Debug)]
enum FetchError {
    /// Its online holder answered without it, or with the wrong length: gone or
    /// truncated, to be rebuilt.
    Lost(String),
    /// Slow, unreachable or failing: says nothing about the stored bytes.
    Unavailable(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Lost(e) | FetchError::Unavailable(e) => f.write_str(e),
        }
    }
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
        if self.inline.is_some() {
            return None;
        }
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
    /// the segment): the file offset of the first byte, and the bytes in one buffer
    /// the caller owns, so it can decrypt them in place.
    ///
    /// `Check::Lazily` skips BLAKE3 on the data shards when they all arrive whole: the
    /// caller decrypts them, and AES-GCM's tags authenticate every byte it serves; only
    /// after a tag fails does it read again with `Check::Eagerly`, where BLAKE3 tells
    /// which shard is corrupt (to read around it and queue its repair).
    pub async fn read(
        &self,
        segment: u32,
        window: Range<u64>,
        check: Check,
    ) -> Result<(u64, BytesMut), SegmentError> {
        if let Some(envelope) = &self.inline {
            let bytes = usize::try_from(window.start)
                .ok()
                .zip(usize::try_from(window.end).ok())
                .and_then(|(from, to)| envelope.get(from..to))
                .ok_or_else(|| SegmentError::Rebuild {
                    segment,
                    reason: format!(
                        "bytes {window:?} are outside the {}-byte inline envelope",
                        envelope.len()
                    ),
                })?;
            return Ok((window.start, BytesMut::from(bytes)));
        }
        let seg_range = self.layout.segment_range(segment);
        let shard_len = self.layout.shard_len(segment);
        let seg_len = seg_range.end - seg_range.start;
        let first = ((window.start - seg_range.start) / shard_len) as usize;
        let last = ((window.end - 1 - seg_range.start) / shard_len) as usize;
        let start_in_seg = first as u64 * shard_len;
        let end_in_seg = ((last as u64 + 1) * shard_len).min(seg_len);

        let wanted: Vec<usize> = (first..=last).collect();
        let fetched = match self.fetch_contiguous(segment, &wanted, check).await {
            Ok(mut joined) => {
                // The last data shard of a segment carries zero padding past its end.
                joined.truncate((end_in_seg - start_in_seg) as usize);
                return Ok((seg_range.start + start_in_seg, joined));
            }
            Err(fetched) => fetched,
        };

        // Read around the failure: keep what arrived, gather the others, rebuild.
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
        let bytes = BytesMut::from(&whole[start_in_seg as usize..end_in_seg as usize]);
        Ok((seg_range.start + start_in_seg, bytes))
    }

    /// Fetches consecutive data shards straight into one allocation (each into its own
    /// region of it, concurrently), so they need no copying together afterwards.
    /// If any is missing, slow or corrupt, what did arrive, shard by shard.
    async fn fetch_contiguous(
        &self,
        segment: u32,
        indices: &[usize],
        check: Check,
    ) -> Result<BytesMut, Vec<Option<BytesMut>>> {
        let expected_len = self.layout.shard_len(segment) as usize;
        let mut whole = BytesMut::with_capacity(expected_len * indices.len());
        let mut regions = Vec::with_capacity(indices.len());
        for _ in 1..indices.len() {
            let rest = whole.split_off(expected_len);
            regions.push(std::mem::replace(&mut whole, rest));
        }
        regions.push(whole);
        let row = &self.shards[segment as usize];
        let filled = join_all(
            indices
                .iter()
                .zip(regions)
                .map(|(&i, mut region)| async move {
                    let loc = row.get(i)?.as_ref()?;
                    self.fetch_checked(segment, i, loc, &mut region, expected_len, check)
                        .await?;
                    Some(region)
                }),
        )
        .await;
        if filled.iter().any(Option::is_none) {
            return Err(filled);
        }
        let mut filled = filled.into_iter().flatten();
        let mut joined = filled.next().unwrap_or_default();
        for region in filled {
            // O(1): the regions were carved from one allocation and each is full.
            joined.unsplit(region);
        }
        Ok(joined)
    }

    /// Fetches shards concurrently; `None` for each one missing, slow or corrupt.
    async fn fetch(&self, segment: u32, indices: &[usize]) -> Vec<Option<BytesMut>> {
        let expected_len = self.layout.shard_len(segment) as usize;
        let row = &self.shards[segment as usize];
        join_all(indices.iter().map(|&i| async move {
            let loc = row.get(i)?.as_ref()?;
            let mut buf = BytesMut::with_capacity(expected_len);
            self.fetch_checked(segment, i, loc, &mut buf, expected_len, Check::Eagerly)
                .await?;
            Some(buf)
        }))
        .await
    }

    /// Appends one shard of `expected_len` bytes to `buf` (empty, with that much
    /// capacity) and checks its length (and BLAKE3, eagerly); `None`, logged, if it is
    /// missing, slow or corrupt (a corrupt one is queued for repair).
    async fn fetch_checked(
        &self,
        segment: u32,
        index: usize,
        loc: &ShardLocation,
        buf: &mut BytesMut,
        expected_len: usize,
        check: Check,
    ) -> Option<()> {
        if !loc.online {
            return None;
        }
        let url = loc.node_url.as_ref()?;
        let fetched = match self.local_nodes.get(&loc.node_id) {
            Some(blob_path) => {
                self.read_local(blob_path(loc.blob_id), buf, expected_len)
                    .await
            }
            None => self.fetch_one(url, loc.blob_id, buf, expected_len).await,
        };
        match fetched {
            Ok(()) if check == Check::Lazily => Some(()),
            Ok(()) if *blake3::hash(buf).as_bytes() == loc.blake3 => Some(()),
            Ok(()) => {
                tracing::warn!(
                    node = %loc.node_id, blob = %loc.blob_id, segment, index,
                    "shard failed its BLAKE3 check; reading around it and queueing its repair"
                );
                self.queue_repair(loc);
                None
            }
            Err(FetchError::Lost(e)) => {
                // The holder is up and answered, but without the shard's bytes: the
                // shard is gone or short, and one more loss could cost the segment.
                tracing::warn!(
                    node = %loc.node_id, blob = %loc.blob_id, segment, index, error = %e,
                    "shard missing or short on a live node; reading around it and queueing its repair"
                );
                self.queue_repair(loc);
                None
            }
            Err(FetchError::Unavailable(e)) => {
                // Slow or unreachable: not evidence about the bytes (heartbeats
                // decide whether the node is lost).
                tracing::warn!(
                    node = %loc.node_id, blob = %loc.blob_id, segment, index, error = %e,
                    "shard unavailable; reading around it"
                );
                None
            }
        }
    }

    /// Marks a shard lost or corrupt and wakes the repairer, so it is rebuilt now
    /// rather than at the next audit.
    fn queue_repair(&self, loc: &ShardLocation) {
        let (store, repairer, blob) = (self.store.clone(), self.repairer.clone(), loc.blob_id);
        // Off the read path: the reader does not wait for the write lock.
        tokio::spawn(async move {
            match store.mark_needs_repair(blob).await {
                Ok(()) => repairer.wake(),
                Err(e) => tracing::error!(error = %e, "could not queue a lost shard for repair"),
            }
        });
    }

    /// Reads one shard of an in-process node from its disk into `buf`: the bytes the
    /// node would serve, without the loopback hop (one copy from the page cache).
    async fn read_local(
        &self,
        path: PathBuf,
        buf: &mut BytesMut,
        expected_len: usize,
    ) -> Result<(), FetchError> {
        let mut region = std::mem::take(buf);
        let read = tokio::task::spawn_blocking(move || {
            let result = (|| {
                let mut file = std::fs::File::open(&path)?;
                let len = file.metadata()?.len();
                if len != expected_len as u64 {
                    return Err(std::io::Error::other(format!(
                        "shard has {len} bytes, not {expected_len}"
                    )));
                }
                region.resize(expected_len, 0);
                file.read_exact(&mut region)
            })();
            (region, result)
        });
        let (region, result) = tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| {
                FetchError::Unavailable(format!("no complete shard within {:?}", self.timeout))
            })?
            .map_err(|e| FetchError::Unavailable(format!("the shard read was interrupted: {e}")))?;
        *buf = region;
        result.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                FetchError::Lost("the node's disk no longer has the shard".to_string())
            }
            // A wrong length (checked above) or a file that ends early.
            std::io::ErrorKind::Other | std::io::ErrorKind::UnexpectedEof => {
                FetchError::Lost(e.to_string())
            }
            _ => FetchError::Unavailable(e.to_string()),
        })
    }

    /// Streams one shard's body into `buf`, refusing a body of any other length.
    async fn fetch_one(
        &self,
        node_url: &str,
        blob: BlobId,
        buf: &mut BytesMut,
        expected_len: usize,
    ) -> Result<(), FetchError> {
        self.nodes
            .read_blob_into(node_url, blob, buf, expected_len, self.timeout)
            .await
            .map_err(|e| match e {
                // The node answered: no such blob (4xx), or a body of the wrong length.
                NodeCallError::Length(_) => FetchError::Lost(e.to_string()),
                // Not any 4xx: a refused credential says nothing about the bytes.
                NodeCallError::Status(StatusCode::NOT_FOUND | StatusCode::GONE) => {
                    FetchError::Lost(e.to_string())
                }
                e => FetchError::Unavailable(e.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zib_proto::ErasureParams;

    const DATA_LEN: usize = 100;

    /// One segment (2 data + 1 parity shards of 50 bytes) whose holders run "in this
    /// process": their shards sit in a temp dir, and their URLs lead nowhere, so only
    /// the local read path can succeed.
    struct LocalSegment {
        dir: tempfile::TempDir,
        data: Vec<u8>,
        source: SegmentSource,
    }

    impl LocalSegment {
        async fn new() -> Self {
            let params = ErasureParams {
                data_shards: 2,
                parity_shards: 1,
                shard_size: 64,
            };
            let codec = Codec::new(params).unwrap();
            let data: Vec<u8> = (0..DATA_LEN as u32).map(|i| (i * 31 + 7) as u8).collect();
            let dir = tempfile::tempdir().unwrap();
            let store = zib_meta::Store::open_sqlite(&dir.path().join("meta.db"))
                .await
                .unwrap();
            let mut local_nodes = LocalNodes::new();
            let mut row = Vec::new();
            for (i, shard) in codec.encode_segment(&data).unwrap().iter().enumerate() {
                let node_id: NodeId = format!("ZB-AAAAA{}", ["A", "B", "C"][i]).parse().unwrap();
                let node_dir = dir.path().join(node_id.as_str());
                std::fs::create_dir_all(&node_dir).unwrap();
                let blob_id = BlobId::new_random();
                std::fs::write(node_dir.join(blob_id.to_string()), shard).unwrap();
                let blob_path: crate::config::LocalBlobPath =
                    Arc::new(move |blob| node_dir.join(blob.to_string()));
                local_nodes.insert(node_id.clone(), blob_path);
                row.push(Some(ShardLocation {
                    node_id,
                    // Nothing listens there: an HTTP fetch would fail.
                    node_url: Some("http://127.0.0.1:9".into()),
                    online: true,
                    blob_id,
                    blake3: *blake3::hash(shard).as_bytes(),
                }));
            }
            let source = SegmentSource {
                layout: Layout::new(params, DATA_LEN as u64),
                codec,
                shards: vec![row],
                nodes: NodeClient::new(reqwest::Client::new(), "unused"),
                store,
                repairer: Default::default(),
                timeout: Duration::from_secs(5),
                local_nodes: Arc::new(local_nodes),
                inline: None,
            };
            Self { dir, data, source }
        }

        fn shard_path(&self, index: usize) -> PathBuf {
            let loc = self.source.shards[0][index].as_ref().unwrap();
            self.dir
                .path()
                .join(loc.node_id.as_str())
                .join(loc.blob_id.to_string())
        }

        async fn read(&self, check: Check) -> Vec<u8> {
            let (offset, bytes) = self
                .source
                .read(0, 0..DATA_LEN as u64, check)
                .await
                .unwrap();
            assert_eq!(offset, 0);
            bytes.to_vec()
        }
    }

    #[tokio::test]
    async fn in_process_nodes_are_read_from_their_disks() {
        let segment = LocalSegment::new().await;
        assert_eq!(segment.read(Check::Lazily).await, segment.data);
        assert_eq!(segment.read(Check::Eagerly).await, segment.data);
    }

    #[tokio::test]
    async fn a_corrupt_local_shard_is_read_around_only_when_checked() {
        let segment = LocalSegment::new().await;
        let path = segment.shard_path(0);
        let mut shard = std::fs::read(&path).unwrap();
        shard[10] ^= 0x01;
        std::fs::write(&path, shard).unwrap();
        // Lazily: the bytes as stored (the caller's AES-GCM tags catch them).
        assert_ne!(segment.read(Check::Lazily).await, segment.data);
        // Eagerly: BLAKE3 names the bad shard and parity rebuilds it.
        assert_eq!(segment.read(Check::Eagerly).await, segment.data);
    }

    #[tokio::test]
    async fn a_short_local_shard_is_lost_and_rebuilt_from_parity() {
        let segment = LocalSegment::new().await;
        let path = segment.shard_path(0);
        let shard = std::fs::read(&path).unwrap();
        std::fs::write(&path, &shard[..shard.len() - 1]).unwrap();
        let mut buf = BytesMut::with_capacity(shard.len());
        let err = segment
            .source
            .read_local(path, &mut buf, shard.len())
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Lost(_)), "{err}");
        assert_eq!(segment.read(Check::Lazily).await, segment.data);
    }

    #[tokio::test]
    async fn a_missing_local_shard_is_rebuilt_from_parity() {
        let segment = LocalSegment::new().await;
        std::fs::remove_file(segment.shard_path(1)).unwrap();
        assert_eq!(segment.read(Check::Lazily).await, segment.data);
    }
}
