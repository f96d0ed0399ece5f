//! A layout in parts: every part is segmented on its own, so an originator can
//! erasure-code each part as it arrives without any segment crossing into the next.

use proptest::prelude::*;
use zib_erasure::{max_segment_len, Layout, Parts};
use zib_proto::ErasureParams;

fn params(k: u8, m: u8, shard_size: u32) -> ErasureParams {
    ErasureParams {
        data_shards: k,
        parity_shards: m,
        shard_size,
    }
}

#[test]
fn parts_of_a_native_multipart_upload() {
    // 4+2, 10-byte shards: 40-byte segments. Parts of 100 bytes, the first 16 more
    // (the envelope header); 300 bytes = 116 + 100 + 84.
    let layout = Layout::in_parts(
        params(4, 2, 10),
        300,
        Parts {
            first_len: 116,
            stride: 100,
        },
    );
    assert_eq!(layout.part_count(), 3);
    assert_eq!(layout.part_range(0), 0..116);
    assert_eq!(layout.part_range(1), 116..216);
    assert_eq!(layout.part_range(2), 216..300);
    assert_eq!(layout.part_range(3), 300..300);
    // 116 = 40 + 40 + 36; 100 = 40 + 40 + 20; 84 = 40 + 40 + 4.
    assert_eq!(layout.part_segments(0), 0..3);
    assert_eq!(layout.part_segments(1), 3..6);
    assert_eq!(layout.part_segments(2), 6..9);
    assert_eq!(layout.segment_count(), 9);
    assert_eq!(layout.segment_range(2), 80..116);
    assert_eq!(layout.segment_range(3), 116..156);
    assert_eq!(layout.segment_range(5), 196..216);
    assert_eq!(layout.segment_range(8), 296..300);
    assert_eq!(layout.shard_len(5), 5);
    assert_eq!(layout.shard_len(8), 1);
    // Past the end: empty, no panic.
    assert_eq!(layout.segment_range(9), 300..300);
    assert_eq!(layout.part_segments(7), 9..9);
}

#[test]
fn a_small_tail_joins_its_parts_last_segment() {
    // 160-byte segments take in a tail of at most 10 bytes. Parts of 320 bytes, the
    // first 8 more: 800 = 328 + 320 + 152.
    let layout = Layout::in_parts(
        params(4, 2, 40),
        800,
        Parts {
            first_len: 328,
            stride: 320,
        },
    );
    assert_eq!(
        layout.part_segments(0),
        0..2,
        "the 8-byte tail joins segment 1"
    );
    assert_eq!(layout.segment_range(1), 160..328);
    assert_eq!(layout.shard_len(1), 42, "168 bytes over 4 data shards");
    assert_eq!(layout.part_segments(1), 2..4);
    assert_eq!(layout.segment_range(3), 488..648);
    assert_eq!(layout.part_segments(2), 4..5);
    assert_eq!(layout.segment_range(4), 648..800);
    assert_eq!(layout.segment_count(), 5);
    assert_eq!(layout.segment_at(327), Some(1));
    assert_eq!(layout.segment_at(328), Some(2));
    assert_eq!(layout.segment_at(800), None);
    // A longer tail is a segment of its own; a whole-file layout never merges.
    let parted = Layout::in_parts(
        params(4, 2, 40),
        331,
        Parts {
            first_len: 331,
            stride: 320,
        },
    );
    assert_eq!(parted.segment_count(), 3);
    assert_eq!(Layout::new(params(4, 2, 40), 328).segment_count(), 3);
}

#[test]
fn a_zero_stride_is_the_whole_file_layout() {
    let whole = Layout::new(params(4, 2, 10), 95);
    let parted = Layout::in_parts(params(4, 2, 10), 95, Parts::WHOLE);
    assert_eq!(whole, parted);
    assert_eq!(whole.part_count(), 1);
    assert_eq!(whole.part_segments(0), 0..3);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Segments tile the file in order, each inside one part; parts' segment
    /// ranges follow one another; a covering tiles any range exactly.
    #[test]
    fn segments_tile_each_part(
        k in 1u8..6,
        shard in 1u32..40,
        first in 1u64..400,
        stride in 1u64..400,
        total in 0u64..3000,
        a in 0u64..3000,
        len in 0u64..3000,
    ) {
        let layout = Layout::in_parts(params(k, 2, shard), total, Parts { first_len: first, stride });
        let mut pos = 0;
        let mut next_segment = 0;
        for part in 0..layout.part_count() {
            let bounds = layout.part_range(part);
            prop_assert_eq!(bounds.start, pos);
            let segments = layout.part_segments(part);
            prop_assert_eq!(segments.start, next_segment);
            for segment in segments.clone() {
                let range = layout.segment_range(segment);
                prop_assert_eq!(range.start, pos);
                prop_assert!(range.end > range.start && range.end <= bounds.end);
                prop_assert!(range.end - range.start <= max_segment_len(&params(k, 2, shard)));
                pos = range.end;
            }
            prop_assert_eq!(pos, bounds.end);
            // An originator codes a part alone, as a one-part layout of its bytes:
            // the same segments as the server's layout of the whole file.
            let len = bounds.end - bounds.start;
            let alone = Layout::part(params(k, 2, shard), len);
            prop_assert_eq!(alone.segment_count(), segments.end - segments.start);
            for (local, segment) in segments.clone().enumerate() {
                let mine = alone.segment_range(local as u32);
                let theirs = layout.segment_range(segment);
                prop_assert_eq!(mine.start + bounds.start..mine.end + bounds.start, theirs);
            }
            next_segment = segments.end;
        }
        prop_assert_eq!(pos, total);
        prop_assert_eq!(next_segment, layout.segment_count());

        let end = (a + len).min(total);
        let mut at = a;
        for slice in layout.covering(a..a + len) {
            prop_assert_eq!(slice.file_offset, at);
            let segment = layout.segment_range(slice.segment);
            let shard_start = segment.start + u64::from(slice.index) * layout.shard_len(slice.segment);
            prop_assert_eq!(shard_start + slice.range.start, at);
            prop_assert!(shard_start + slice.range.end <= segment.end);
            at += slice.range.end - slice.range.start;
        }
        // Bytes past the file are stored nowhere: the covering stops at its end.
        prop_assert_eq!(at, if a < total { end } else { a });
    }
}
