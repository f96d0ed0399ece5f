//! A file's ciphertext is cut into segments of `k * shard_size` bytes (the last one
//! shorter). Each segment becomes `k` data shards — contiguous slices of it, the last
//! zero-padded to the segment's shard length — plus `m` parity shards. Reading with
//! every data shard present needs no decoding.
//!
//! Hot path: the node reads the file straight into `k` data-shard buffers and calls
//! [`Codec::encode_parity`]; [`Codec::encode_segment`] is the convenience form that
//! pays one extra copy of the segment and fresh shard allocations.
//!
//! Reuse buffers across segments (the same shard `Vec`s for `encode_parity`,
//! [`Codec::reconstruct_segment_into`] for reads): glibc hands multi-MiB blocks back
//! to the OS on free, and faulting them in again costs more than the coding itself
//! (`bench/erasure.sh`: `encode_segment` runs ~7x faster once glibc keeps freed memory).

use std::ops::Range;

use reed_solomon_erasure::galois_8::ReedSolomon;
use zib_proto::ErasureParams;

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ErasureError {
    #[error("invalid erasure parameters: {0}")]
    BadParams(String),
    #[error("segment {segment} has only {present} of the {needed} shards needed to rebuild it")]
    TooFewShards {
        segment: u32,
        present: usize,
        needed: usize,
    },
    #[error("shard length mismatch: expected {expected}, got {got}")]
    ShardLength { expected: usize, got: usize },
    #[error("expected {expected} shards (data then parity), got {got}")]
    ShardCount { expected: usize, got: usize },
    #[error("segment of {got} bytes; a segment holds 1..={max}")]
    SegmentLength { max: usize, got: usize },
}

/// Rejects parameter sets no codec can serve, so a bad config fails at start-up rather
/// than on the first upload. GF(2^8) allows at most 255 shards per segment (shard
/// indices must also fit in a `u8`).
pub fn check_params(params: &ErasureParams) -> Result<(), ErasureError> {
    let bad = |why: &str| Err(ErasureError::BadParams(format!("{why} (got {params:?})")));
    if params.data_shards == 0 {
        return bad("data_shards must be at least 1");
    }
    if params.parity_shards == 0 {
        return bad("parity_shards must be at least 1");
    }
    if params.total_shards() > 255 {
        return bad("data_shards + parity_shards must be at most 255");
    }
    if params.shard_size == 0 {
        return bad("shard_size must be at least 1");
    }
    Ok(())
}

/// Where bytes of a file's ciphertext live among segments and shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub params: ErasureParams,
    /// Total ciphertext bytes.
    pub total_len: u64,
    /// How the ciphertext is cut into parts, each segmented on its own.
    pub parts: Parts,
}

/// Parts segmented on their own, so each can be erasure-coded as it arrives: the
/// first part holds `first_len` ciphertext bytes, every later one `stride` (the last
/// one the rest). No segment crosses a part boundary, and a part's last segment
/// takes in a tail of at most `segment_size / TAIL_DIVISOR` bytes rather than
/// leaving it a segment of its own (a 16 MiB part is 16 MiB + 1 KiB of ciphertext:
/// four segments, not four and a 1 KiB one). `stride == 0`: one part, the whole
/// file, cut as before (single uploads, and multipart files stored before parts
/// were coded on their own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parts {
    pub first_len: u64,
    pub stride: u64,
}

impl Parts {
    pub const WHOLE: Parts = Parts {
        first_len: 0,
        stride: 0,
    };
}

/// A part's tail of at most `segment_size / TAIL_DIVISOR` bytes joins its last
/// segment, whose shards are then that much longer than `shard_size`.
pub const TAIL_DIVISOR: u64 = 16;

/// The longest segment any layout makes: a full one plus a part's tail.
pub fn max_segment_len(params: &ErasureParams) -> u64 {
    let size = params.segment_size();
    size + size / TAIL_DIVISOR
}

/// A piece of one data shard: `range` is within the shard, `file_offset` is where
/// its first byte sits in the ciphertext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardSlice {
    pub segment: u32,
    pub index: u8,
    pub range: Range<u64>,
    pub file_offset: u64,
}

/// Layout methods never panic: params that [`check_params`] rejects describe no
/// segments at all, and segments past the end are empty.
impl Layout {
    pub fn new(params: ErasureParams, total_len: u64) -> Self {
        Self {
            params,
            total_len,
            parts: Parts::WHOLE,
        }
    }

    /// A file whose parts are segmented on their own (see [`Parts`]).
    pub fn in_parts(params: ErasureParams, total_len: u64, parts: Parts) -> Self {
        let parts = if parts.stride == 0 || parts.first_len == 0 {
            Parts::WHOLE
        } else {
            parts
        };
        Self {
            params,
            total_len,
            parts,
        }
    }

    /// One part of `len` bytes, cut as a part of a file in parts is: what an
    /// originator codes as the part arrives, without knowing the rest of the file.
    pub fn part(params: ErasureParams, len: u64) -> Self {
        Self::in_parts(
            params,
            len,
            Parts {
                first_len: len,
                stride: len,
            },
        )
    }

    /// How many parts the ciphertext is cut into (1 for a whole-file layout).
    pub fn part_count(&self) -> u32 {
        let Parts { first_len, stride } = self.parts;
        if stride == 0 || self.total_len <= first_len {
            return 1;
        }
        let rest = (self.total_len - first_len).div_ceil(stride);
        u32::try_from(rest.saturating_add(1)).unwrap_or(u32::MAX)
    }

    /// Ciphertext range of part `p` (0-based); empty past the end.
    pub fn part_range(&self, part: u32) -> Range<u64> {
        let Parts { first_len, stride } = self.parts;
        let (start, len) = match (stride, part) {
            (0, 0) => (0, self.total_len),
            (0, _) => (self.total_len, 0),
            (_, 0) => (0, first_len),
            (_, p) => (
                first_len.saturating_add((u64::from(p) - 1).saturating_mul(stride)),
                stride,
            ),
        };
        let start = start.min(self.total_len);
        start..start.saturating_add(len).min(self.total_len)
    }

    /// The segments of part `p` (0-based), numbered across the whole file.
    pub fn part_segments(&self, part: u32) -> Range<u32> {
        if part >= self.part_count() {
            let count = self.segment_count();
            return count..count;
        }
        let first = self.segments_before(part);
        let range = self.part_range(part);
        let own = self.segments_in(range.end - range.start);
        first..first.saturating_add(own)
    }

    /// Saturates at `u32::MAX`; no valid upload gets near it.
    pub fn segment_count(&self) -> u32 {
        let last = self.part_count().saturating_sub(1);
        let range = self.part_range(last);
        self.segments_before(last)
            .saturating_add(self.segments_in(range.end - range.start))
    }

    /// Ciphertext range of segment `s`.
    pub fn segment_range(&self, segment: u32) -> Range<u64> {
        let segment_size = self.segment_size();
        let Some((part, local)) = self.part_of_segment(segment) else {
            return self.total_len..self.total_len;
        };
        let bounds = self.part_range(part);
        let in_part = self.segments_in(bounds.end - bounds.start);
        if local >= in_part {
            return self.total_len..self.total_len;
        }
        let start = bounds
            .start
            .saturating_add(u64::from(local).saturating_mul(segment_size))
            .min(bounds.end);
        if local + 1 == in_part {
            // The part's last segment: up to the part's end, a merged tail included.
            return start..bounds.end;
        }
        start..start.saturating_add(segment_size).min(bounds.end)
    }

    /// Length of every shard (data and parity) of segment `s`.
    pub fn shard_len(&self, segment: u32) -> u64 {
        let range = self.segment_range(segment);
        match self.params.data_shards {
            0 => 0,
            k => (range.end - range.start).div_ceil(u64::from(k)),
        }
    }

    /// The data-shard pieces that hold ciphertext `range`, in file order. Bytes past
    /// `total_len` are not stored anywhere, so the range is clipped to the file.
    pub fn covering(&self, range: Range<u64>) -> Vec<ShardSlice> {
        let end = range.end.min(self.total_len);
        let mut slices = Vec::new();
        if self.segment_size() == 0 {
            return slices;
        }
        let mut pos = range.start;
        while pos < end {
            let Some(segment) = self.segment_at(pos) else {
                break;
            };
            let segment_range = self.segment_range(segment);
            let shard_len = self.shard_len(segment);
            if shard_len == 0 {
                break;
            }
            let index = (pos - segment_range.start) / shard_len;
            let Ok(index_u8) = u8::try_from(index) else {
                break;
            };
            // A shard never reaches past its segment, which never reaches past its
            // part; `end <= total_len` clips the last one.
            let shard_start = segment_range.start + index * shard_len;
            let piece_end = (shard_start + shard_len).min(segment_range.end).min(end);
            slices.push(ShardSlice {
                segment,
                index: index_u8,
                range: (pos - shard_start)..(piece_end - shard_start),
                file_offset: pos,
            });
            pos = piece_end;
        }
        slices
    }

    /// The segment holding ciphertext byte `pos` (`None` past the end).
    pub fn segment_at(&self, pos: u64) -> Option<u32> {
        let segment_size = self.segment_size();
        if segment_size == 0 || pos >= self.total_len {
            return None;
        }
        let Parts { first_len, stride } = self.parts;
        let part = if stride == 0 || pos < first_len {
            0
        } else {
            u32::try_from((pos - first_len) / stride + 1).ok()?
        };
        let bounds = self.part_range(part);
        let in_part = self.segments_in(bounds.end - bounds.start);
        // A merged tail belongs to the part's last segment.
        let local = u32::try_from((pos - bounds.start) / segment_size)
            .ok()?
            .min(in_part.checked_sub(1)?);
        self.segments_before(part).checked_add(local)
    }

    /// The part a segment belongs to, and its place within that part.
    fn part_of_segment(&self, segment: u32) -> Option<(u32, u32)> {
        let Parts { first_len, stride } = self.parts;
        if stride == 0 {
            return Some((0, segment));
        }
        let in_first = self.segments_in(first_len);
        if segment < in_first {
            return Some((0, segment));
        }
        let per_part = self.segments_in(stride);
        if per_part == 0 {
            return None;
        }
        let later = segment - in_first;
        Some((1 + later / per_part, later % per_part))
    }

    /// Segments in the parts before part `p`.
    fn segments_before(&self, part: u32) -> u32 {
        if part == 0 {
            return 0;
        }
        let Parts { first_len, stride } = self.parts;
        self.segments_in(first_len)
            .saturating_add((part - 1).saturating_mul(self.segments_in(stride)))
    }

    /// Segments that `len` bytes of one part make: a small tail joins the last full
    /// segment in a layout in parts (see [`Parts`]).
    fn segments_in(&self, len: u64) -> u32 {
        let size = self.segment_size();
        if size == 0 {
            return 0;
        }
        let count = if self.parts.stride == 0 || len < size {
            len.div_ceil(size)
        } else {
            let tail = len % size;
            len / size + u64::from(tail > size / TAIL_DIVISOR)
        };
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    fn segment_size(&self) -> u64 {
        if self.params.shard_size == 0 {
            0
        } else {
            self.params.segment_size()
        }
    }
}

/// Reed-Solomon over one parameter set. Cheap to share (`&Codec` across threads); it
/// caches decode matrices for recent loss patterns.
pub struct Codec {
    params: ErasureParams,
    rs: ReedSolomon,
}

impl Codec {
    pub fn new(params: ErasureParams) -> Result<Self, ErasureError> {
        check_params(&params)?;
        let rs = ReedSolomon::new(
            usize::from(params.data_shards),
            usize::from(params.parity_shards),
        )
        .map_err(|e| ErasureError::BadParams(e.to_string()))?;
        Ok(Self { params, rs })
    }

    pub fn params(&self) -> ErasureParams {
        self.params
    }

    fn data_shards(&self) -> usize {
        usize::from(self.params.data_shards)
    }

    fn total_shards(&self) -> usize {
        self.params.total_shards()
    }

    /// Cuts one segment into `k + m` shards of equal length (data, then parity).
    /// Costs one copy of the segment on top of [`Codec::encode_parity`].
    pub fn encode_segment(&self, segment: &[u8]) -> Result<Vec<Vec<u8>>, ErasureError> {
        let max = usize::try_from(max_segment_len(&self.params)).unwrap_or(usize::MAX);
        if segment.is_empty() || segment.len() > max {
            return Err(ErasureError::SegmentLength {
                max,
                got: segment.len(),
            });
        }
        let shard_len = segment.len().div_ceil(self.data_shards());
        let mut shards = Vec::with_capacity(self.total_shards());
        for index in 0..self.data_shards() {
            let start = (index * shard_len).min(segment.len());
            let end = (start + shard_len).min(segment.len());
            let mut shard = Vec::with_capacity(shard_len);
            shard.extend_from_slice(&segment[start..end]);
            shard.resize(shard_len, 0);
            shards.push(shard);
        }
        shards.resize_with(self.total_shards(), Vec::new);
        self.encode_parity(&mut shards)?;
        Ok(shards)
    }

    /// Fills parity shards in place; `shards[..k]` hold data, all of one length.
    /// Parity buffers are resized to that length, so they may be passed empty.
    pub fn encode_parity(&self, shards: &mut [Vec<u8>]) -> Result<(), ErasureError> {
        self.check_count(shards.len())?;
        let (data, parity) = shards.split_at_mut(self.data_shards());
        let shard_len = data[0].len();
        if shard_len == 0 {
            return Err(ErasureError::ShardLength {
                expected: 1,
                got: 0,
            });
        }
        if let Some(bad) = data.iter().find(|shard| shard.len() != shard_len) {
            return Err(ErasureError::ShardLength {
                expected: shard_len,
                got: bad.len(),
            });
        }
        for shard in parity.iter_mut() {
            shard.resize(shard_len, 0);
        }
        self.rs
            .encode_sep(data, parity)
            .map_err(|e| map_rs_error(e, 0, 0, self.data_shards()))
    }

    /// Rebuilds missing shards in place (`None` = missing) from any `k` present.
    pub fn reconstruct(
        &self,
        segment: u32,
        shards: &mut [Option<Vec<u8>>],
    ) -> Result<(), ErasureError> {
        self.check_count(shards.len())?;
        let expected = match shards.iter().flatten().next() {
            Some(first) => first.len(),
            None => 0,
        };
        let present = self.check_present(segment, shards, expected)?;
        self.rs
            .reconstruct(shards)
            .map_err(|e| map_rs_error(e, segment, present, self.data_shards()))
    }

    /// Rebuilds only the data shards and returns the segment's `segment_len` bytes.
    /// Present shards must be `ceil(segment_len / k)` long, as [`Layout::shard_len`]
    /// gives. Missing data is decoded straight into the returned buffer (no per-shard
    /// allocation, no second copy), so `shards` is left as given; use
    /// [`Codec::reconstruct`] to refill shards for repair. With every data shard
    /// present nothing is decoded.
    pub fn reconstruct_segment(
        &self,
        segment: u32,
        shards: &mut [Option<Vec<u8>>],
        segment_len: usize,
    ) -> Result<Vec<u8>, ErasureError> {
        let mut out = Vec::new();
        self.reconstruct_segment_into(segment, shards, segment_len, &mut out)?;
        Ok(out)
    }

    /// [`Codec::reconstruct_segment`] into a buffer the caller reuses across
    /// segments: a fresh multi-MiB `Vec` per segment costs page faults that can
    /// outweigh the decoding itself. `out` is replaced, not appended to.
    pub fn reconstruct_segment_into(
        &self,
        segment: u32,
        shards: &mut [Option<Vec<u8>>],
        segment_len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ErasureError> {
        out.clear();
        self.check_count(shards.len())?;
        let max = usize::try_from(max_segment_len(&self.params)).unwrap_or(usize::MAX);
        if segment_len == 0 || segment_len > max {
            return Err(ErasureError::SegmentLength {
                max,
                got: segment_len,
            });
        }
        let k = self.data_shards();
        let shard_len = segment_len.div_ceil(k);
        let present = self.check_present(segment, shards, shard_len)?;

        let (data, parity) = shards.split_at_mut(k);
        out.reserve(k * shard_len);
        for shard in data.iter() {
            match shard {
                Some(bytes) => out.extend_from_slice(bytes),
                None => out.resize(out.len() + shard_len, 0),
            }
        }
        if data.iter().any(Option::is_none) {
            let mut views: Vec<(&mut [u8], bool)> = Vec::with_capacity(k + parity.len());
            for (buffer, shard) in out.chunks_mut(shard_len).zip(data.iter()) {
                views.push((buffer, shard.is_some()));
            }
            for shard in parity.iter_mut() {
                match shard {
                    Some(bytes) => views.push((bytes.as_mut_slice(), true)),
                    None => views.push((&mut [], false)),
                }
            }
            if let Err(e) = self.rs.reconstruct_data(&mut views) {
                out.clear();
                return Err(map_rs_error(e, segment, present, k));
            }
        }
        out.truncate(segment_len);
        Ok(())
    }

    fn check_count(&self, got: usize) -> Result<(), ErasureError> {
        if got != self.total_shards() {
            return Err(ErasureError::ShardCount {
                expected: self.total_shards(),
                got,
            });
        }
        Ok(())
    }

    /// Counts present shards and checks they all have `expected` (non-zero) bytes.
    fn check_present(
        &self,
        segment: u32,
        shards: &[Option<Vec<u8>>],
        expected: usize,
    ) -> Result<usize, ErasureError> {
        let mut present = 0;
        for shard in shards.iter().flatten() {
            if shard.len() != expected || shard.is_empty() {
                return Err(ErasureError::ShardLength {
                    expected: expected.max(1),
                    got: shard.len(),
                });
            }
            present += 1;
        }
        if present < self.data_shards() {
            return Err(ErasureError::TooFewShards {
                segment,
                present,
                needed: self.data_shards(),
            });
        }
        Ok(present)
    }
}

/// Our own checks run first, so these only fire if the library's rules drift.
fn map_rs_error(
    err: reed_solomon_erasure::Error,
    segment: u32,
    present: usize,
    needed: usize,
) -> ErasureError {
    use reed_solomon_erasure::Error as Rs;
    match err {
        Rs::TooFewShardsPresent => ErasureError::TooFewShards {
            segment,
            present,
            needed,
        },
        other => ErasureError::BadParams(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(k: u8, m: u8, shard_size: u32) -> ErasureParams {
        ErasureParams {
            data_shards: k,
            parity_shards: m,
            shard_size,
        }
    }

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    #[test]
    fn rejects_bad_params() {
        for bad in [
            params(0, 2, 16),
            params(4, 0, 16),
            params(4, 2, 0),
            params(200, 56, 16),
        ] {
            assert!(matches!(Codec::new(bad), Err(ErasureError::BadParams(_))));
        }
        assert!(Codec::new(params(200, 55, 1)).is_ok());
    }

    #[test]
    fn layout_of_a_short_last_segment() {
        // 4+2 with 10-byte shards: segments of 40 bytes; 95 bytes = 40 + 40 + 15.
        let layout = Layout::new(params(4, 2, 10), 95);
        assert_eq!(layout.segment_count(), 3);
        assert_eq!(layout.segment_range(0), 0..40);
        assert_eq!(layout.segment_range(2), 80..95);
        assert_eq!(layout.shard_len(1), 10);
        assert_eq!(layout.shard_len(2), 4);
        // Past the end: empty, no panic.
        assert_eq!(layout.segment_range(7), 95..95);
        assert_eq!(layout.shard_len(7), 0);
    }

    #[test]
    fn empty_file_has_no_segments() {
        let layout = Layout::new(params(4, 2, 10), 0);
        assert_eq!(layout.segment_count(), 0);
        assert!(layout.covering(0..10).is_empty());
    }

    #[test]
    fn invalid_layout_params_do_not_panic() {
        for bad in [params(0, 2, 10), params(4, 2, 0)] {
            let layout = Layout::new(bad, 100);
            assert_eq!(layout.segment_count(), 0);
            assert_eq!(layout.shard_len(0), 0);
            assert!(layout.covering(0..100).is_empty());
        }
    }

    #[test]
    fn covering_crosses_shards_and_segments() {
        let layout = Layout::new(params(4, 2, 10), 95);
        let slices = layout.covering(35..87);
        let expected = vec![
            ShardSlice {
                segment: 0,
                index: 3,
                range: 5..10,
                file_offset: 35,
            },
            ShardSlice {
                segment: 1,
                index: 0,
                range: 0..10,
                file_offset: 40,
            },
            ShardSlice {
                segment: 1,
                index: 1,
                range: 0..10,
                file_offset: 50,
            },
            ShardSlice {
                segment: 1,
                index: 2,
                range: 0..10,
                file_offset: 60,
            },
            ShardSlice {
                segment: 1,
                index: 3,
                range: 0..10,
                file_offset: 70,
            },
            ShardSlice {
                segment: 2,
                index: 0,
                range: 0..4,
                file_offset: 80,
            },
            ShardSlice {
                segment: 2,
                index: 1,
                range: 0..3,
                file_offset: 84,
            },
        ];
        assert_eq!(slices, expected);
        assert!(layout.covering(50..50).is_empty());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 60..40;
        assert!(layout.covering(reversed).is_empty());
        // Clipped to the file.
        assert_eq!(
            layout.covering(93..200),
            vec![ShardSlice {
                segment: 2,
                index: 3,
                range: 1..3,
                file_offset: 93
            }]
        );
    }

    #[test]
    fn encode_pads_the_last_data_shard() {
        let codec = Codec::new(params(4, 2, 10)).unwrap();
        let segment = bytes(15);
        let shards = codec.encode_segment(&segment).unwrap();
        assert_eq!(shards.len(), 6);
        assert!(shards.iter().all(|s| s.len() == 4));
        assert_eq!(shards[3], vec![segment[12], segment[13], segment[14], 0]);
        assert_eq!(shards[0], segment[..4]);
    }

    #[test]
    fn encode_segment_rejects_bad_lengths() {
        let codec = Codec::new(params(4, 2, 10)).unwrap();
        // A full segment (40) plus the longest tail a part's last one takes in (2).
        assert_eq!(
            codec.encode_segment(&[]),
            Err(ErasureError::SegmentLength { max: 42, got: 0 })
        );
        assert!(codec.encode_segment(&bytes(42)).is_ok());
        assert_eq!(
            codec.encode_segment(&bytes(43)),
            Err(ErasureError::SegmentLength { max: 42, got: 43 })
        );
    }

    #[test]
    fn encode_parity_fills_empty_parity_buffers() {
        let codec = Codec::new(params(4, 2, 10)).unwrap();
        let segment = bytes(40);
        let expected = codec.encode_segment(&segment).unwrap();
        let mut shards: Vec<Vec<u8>> = segment.chunks(10).map(<[u8]>::to_vec).collect();
        shards.extend([Vec::new(), Vec::new()]);
        codec.encode_parity(&mut shards).unwrap();
        assert_eq!(shards, expected);
    }

    #[test]
    fn encode_parity_rejects_ragged_or_miscounted_shards() {
        let codec = Codec::new(params(2, 1, 10)).unwrap();
        let mut ragged = vec![vec![1; 10], vec![2; 9], vec![]];
        assert_eq!(
            codec.encode_parity(&mut ragged),
            Err(ErasureError::ShardLength {
                expected: 10,
                got: 9
            })
        );
        let mut short = vec![vec![1; 10], vec![2; 10]];
        assert_eq!(
            codec.encode_parity(&mut short),
            Err(ErasureError::ShardCount {
                expected: 3,
                got: 2
            })
        );
        let mut empty = vec![vec![], vec![], vec![]];
        assert!(matches!(
            codec.encode_parity(&mut empty),
            Err(ErasureError::ShardLength { .. })
        ));
    }

    #[test]
    fn reconstruct_rebuilds_data_and_parity() {
        let codec = Codec::new(params(4, 2, 10)).unwrap();
        let original = codec.encode_segment(&bytes(40)).unwrap();
        let mut shards: Vec<Option<Vec<u8>>> = original.iter().cloned().map(Some).collect();
        shards[1] = None;
        shards[5] = None;
        codec.reconstruct(3, &mut shards).unwrap();
        let rebuilt: Vec<Vec<u8>> = shards.into_iter().map(Option::unwrap).collect();
        assert_eq!(rebuilt, original);
    }

    #[test]
    fn reconstruct_segment_trims_padding() {
        let codec = Codec::new(params(4, 2, 10)).unwrap();
        let segment = bytes(15);
        let encoded = codec.encode_segment(&segment).unwrap();
        let mut shards: Vec<Option<Vec<u8>>> = encoded.into_iter().map(Some).collect();
        shards[0] = None;
        shards[3] = None;
        let given = shards.clone();
        assert_eq!(
            codec.reconstruct_segment(2, &mut shards, 15).unwrap(),
            segment
        );
        assert_eq!(shards, given);
    }

    #[test]
    fn reconstruct_segment_into_replaces_the_buffer() {
        let codec = Codec::new(params(3, 1, 8)).unwrap();
        let segment = bytes(20);
        let mut shards: Vec<Option<Vec<u8>>> = codec
            .encode_segment(&segment)
            .unwrap()
            .into_iter()
            .map(Some)
            .collect();
        shards[2] = None;
        let mut out = vec![0xff; 100];
        codec
            .reconstruct_segment_into(0, &mut shards, 20, &mut out)
            .unwrap();
        assert_eq!(out, segment);
        shards[1] = None;
        let err = codec.reconstruct_segment_into(0, &mut shards, 20, &mut out);
        assert!(matches!(err, Err(ErasureError::TooFewShards { .. })));
        assert!(out.is_empty());
    }

    #[test]
    fn too_few_shards_is_an_error() {
        let codec = Codec::new(params(4, 2, 10)).unwrap();
        let encoded = codec.encode_segment(&bytes(40)).unwrap();
        let mut shards: Vec<Option<Vec<u8>>> = encoded.into_iter().map(Some).collect();
        shards[0] = None;
        shards[2] = None;
        shards[4] = None;
        let err = ErasureError::TooFewShards {
            segment: 9,
            present: 3,
            needed: 4,
        };
        assert_eq!(codec.reconstruct(9, &mut shards.clone()), Err(err.clone()));
        assert_eq!(codec.reconstruct_segment(9, &mut shards, 40), Err(err));
    }

    #[test]
    fn mismatched_shard_lengths_are_an_error() {
        let codec = Codec::new(params(4, 2, 10)).unwrap();
        let encoded = codec.encode_segment(&bytes(40)).unwrap();
        let mut shards: Vec<Option<Vec<u8>>> = encoded.into_iter().map(Some).collect();
        shards[0] = None;
        shards[5].as_mut().unwrap().pop();
        assert_eq!(
            codec.reconstruct(0, &mut shards.clone()),
            Err(ErasureError::ShardLength {
                expected: 10,
                got: 9
            })
        );
        // reconstruct_segment checks against the length the segment implies.
        shards[5] = None;
        assert_eq!(
            codec.reconstruct_segment(0, &mut shards, 30),
            Err(ErasureError::ShardLength {
                expected: 8,
                got: 10
            })
        );
        assert_eq!(
            codec.reconstruct(0, &mut vec![None; 5]),
            Err(ErasureError::ShardCount {
                expected: 6,
                got: 5
            })
        );
    }
}
