//! Every loss pattern a segment must survive, and every one it must not.

use proptest::prelude::*;
use zib_erasure::{Codec, ErasureError, Layout};
use zib_proto::ErasureParams;

#[derive(Debug, Clone)]
struct Case {
    params: ErasureParams,
    ciphertext: Vec<u8>,
    ranges: Vec<(u64, u64)>,
}

fn case() -> impl Strategy<Value = Case> {
    (1u8..6, 1u8..4, 1u32..64)
        .prop_flat_map(|(k, m, shard_size)| {
            let segment_size = k as usize * shard_size as usize;
            // Up to four segments, plus often a ragged tail.
            let max_len = 4 * segment_size + segment_size / 2;
            (
                Just(ErasureParams {
                    data_shards: k,
                    parity_shards: m,
                    shard_size,
                }),
                prop::collection::vec(any::<u8>(), 0..=max_len),
            )
        })
        .prop_flat_map(|(params, ciphertext)| {
            // Ranges may run past the end: covering() clips them.
            let bound = ciphertext.len() as u64 + 3;
            let ranges = prop::collection::vec((0..=bound, 0..=bound), 1..8);
            (Just(params), Just(ciphertext), ranges)
        })
        .prop_map(|(params, ciphertext, ranges)| Case {
            params,
            ciphertext,
            ranges,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn segments_survive_every_loss_of_up_to_m_shards(case in case()) {
        let Case { params, ciphertext, ranges } = case;
        let layout = Layout::new(params, ciphertext.len() as u64);
        let codec = Codec::new(params).unwrap();
        let k = params.data_shards as usize;
        let m = params.parity_shards as usize;
        let n = k + m;

        let segment_size = params.segment_size() as usize;
        prop_assert_eq!(layout.segment_count() as usize, ciphertext.len().div_ceil(segment_size));

        // Data shards of every segment, kept to check covering() below.
        let mut stored: Vec<Vec<Vec<u8>>> = Vec::new();
        for s in 0..layout.segment_count() {
            let range = layout.segment_range(s);
            let segment = &ciphertext[range.start as usize..range.end as usize];
            let shard_len = layout.shard_len(s) as usize;
            prop_assert_eq!(shard_len, segment.len().div_ceil(k));

            let shards = codec.encode_segment(segment).unwrap();
            prop_assert_eq!(shards.len(), n);
            for (j, shard) in shards.iter().enumerate() {
                prop_assert_eq!(shard.len(), shard_len);
                if j < k {
                    // Systematic: a data shard is the segment slice, zero-padded.
                    let start = (j * shard_len).min(segment.len());
                    let end = ((j + 1) * shard_len).min(segment.len());
                    let mut expected = segment[start..end].to_vec();
                    expected.resize(shard_len, 0);
                    prop_assert_eq!(shard, &expected);
                }
            }

            for lost_mask in 0u32..(1 << n) {
                let lost = lost_mask.count_ones() as usize;
                let mut partial: Vec<Option<Vec<u8>>> = shards
                    .iter()
                    .enumerate()
                    .map(|(i, shard)| (lost_mask & (1 << i) == 0).then(|| shard.clone()))
                    .collect();
                if lost <= m {
                    let mut full = partial.clone();
                    let rebuilt = codec.reconstruct_segment(s, &mut partial, segment.len());
                    prop_assert_eq!(rebuilt.as_deref(), Ok(segment), "lost mask {:b}", lost_mask);
                    codec.reconstruct(s, &mut full).unwrap();
                    let full: Vec<Vec<u8>> = full.into_iter().map(Option::unwrap).collect();
                    prop_assert_eq!(&full, &shards, "lost mask {:b}", lost_mask);
                } else {
                    let too_few = Err(ErasureError::TooFewShards {
                        segment: s,
                        present: n - lost,
                        needed: k,
                    });
                    prop_assert_eq!(
                        codec.reconstruct_segment(s, &mut partial.clone(), segment.len()),
                        too_few.clone()
                    );
                    prop_assert_eq!(codec.reconstruct(s, &mut partial), too_few.map(|_: Vec<u8>| ()));
                }
            }
            stored.push(shards.into_iter().take(k).collect());
        }

        for (start, end) in ranges {
            let slices = layout.covering(start..end);
            let clipped_end = end.min(ciphertext.len() as u64);
            let mut read = Vec::new();
            let mut next_offset = start;
            for slice in &slices {
                prop_assert_eq!(slice.file_offset, next_offset);
                prop_assert!(slice.range.start < slice.range.end);
                let shard = &stored[slice.segment as usize][slice.index as usize];
                read.extend_from_slice(&shard[slice.range.start as usize..slice.range.end as usize]);
                next_offset += slice.range.end - slice.range.start;
            }
            let expected: &[u8] = if start < clipped_end {
                &ciphertext[start as usize..clipped_end as usize]
            } else {
                &[]
            };
            prop_assert_eq!(read.as_slice(), expected, "range {}..{}", start, end);
        }
    }
}

/// The smallest ciphertext a file has: an empty file's envelope (16-byte header and
/// one 16-byte tag), under the default 4 + 2 layout of 1 MiB shards. It is one short
/// segment of 8-byte shards, and survives every loss of up to two of them as any
/// file does (empty files are stored like others, not special-cased).
#[test]
fn an_empty_files_envelope_is_one_segment_that_survives_two_losses() {
    let params = ErasureParams {
        data_shards: 4,
        parity_shards: 2,
        shard_size: 1 << 20,
    };
    let envelope: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
    let layout = Layout::new(params, envelope.len() as u64);
    assert_eq!(layout.segment_count(), 1);
    assert_eq!(layout.shard_len(0), 8);
    let codec = Codec::new(params).unwrap();
    let shards = codec.encode_segment(&envelope).unwrap();
    for a in 0..6 {
        for b in a..6 {
            let mut partial: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
            partial[a] = None;
            partial[b] = None;
            let rebuilt = codec.reconstruct_segment(0, &mut partial, envelope.len());
            assert_eq!(
                rebuilt.as_deref(),
                Ok(envelope.as_slice()),
                "lost {a} and {b}"
            );
        }
    }
}
