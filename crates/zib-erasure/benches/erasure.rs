//! Our wrapper against the bare crate at the production shape: 4+2, 1 MiB shards
//! (4 MiB segments), over 64 MiB of data. Throughput counts segment (data) bytes.
//! `bench/erasure.sh` runs this and prints the ours/raw ratios.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use reed_solomon_erasure::galois_8::ReedSolomon;
use zib_erasure::Codec;
use zib_proto::ErasureParams;

const K: usize = 4;
const M: usize = 2;
const SHARD: usize = 1 << 20;
const SEGMENT: usize = K * SHARD;
const TOTAL: usize = 64 << 20;

fn params() -> ErasureParams {
    ErasureParams {
        data_shards: K as u8,
        parity_shards: M as u8,
        shard_size: SHARD as u32,
    }
}

/// Cheap, non-constant bytes so the GF tables see varied input.
fn ciphertext() -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..TOTAL)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Every segment as `k` data shards plus `m` parity buffers, all preallocated.
fn shard_sets(data: &[u8]) -> Vec<Vec<Vec<u8>>> {
    data.chunks(SEGMENT)
        .map(|segment| {
            let mut shards: Vec<Vec<u8>> = segment.chunks(SHARD).map(<[u8]>::to_vec).collect();
            shards.resize_with(K + M, || vec![0; SHARD]);
            shards
        })
        .collect()
}

fn encode(c: &mut Criterion) {
    let raw = ReedSolomon::new(K, M).unwrap();
    let codec = Codec::new(params()).unwrap();
    let data = ciphertext();
    let mut sets = shard_sets(&data);

    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Bytes(TOTAL as u64));
    group.bench_function("raw_rs_encode", |b| {
        b.iter(|| {
            for shards in sets.iter_mut() {
                raw.encode(black_box(shards)).unwrap();
            }
        })
    });
    group.bench_function("encode_parity", |b| {
        b.iter(|| {
            for shards in sets.iter_mut() {
                codec.encode_parity(black_box(shards)).unwrap();
            }
        })
    });
    group.bench_function("encode_segment", |b| {
        b.iter(|| {
            for segment in data.chunks(SEGMENT) {
                black_box(codec.encode_segment(black_box(segment)).unwrap());
            }
        })
    });
    group.finish();
}

/// Shards 0 and 1 (data) lost in every segment; rebuilt from data 2, 3 and both parity.
fn reconstruct(c: &mut Criterion) {
    let raw = ReedSolomon::new(K, M).unwrap();
    let codec = Codec::new(params()).unwrap();
    let data = ciphertext();
    let mut sets = shard_sets(&data);
    for shards in sets.iter_mut() {
        raw.encode(shards).unwrap();
    }
    let present: Vec<Vec<Option<Vec<u8>>>> = sets
        .iter()
        .map(|shards| shards.iter().cloned().map(Some).collect())
        .collect();
    let lose_two = |sets: &[Vec<Option<Vec<u8>>>]| {
        let mut sets = sets.to_vec();
        for shards in sets.iter_mut() {
            shards[0] = None;
            shards[1] = None;
        }
        sets
    };

    let mut group = c.benchmark_group("reconstruct");
    group.throughput(Throughput::Bytes(TOTAL as u64));
    // Same interface as ours: the crate allocates the missing shards.
    group.bench_function("raw_rs_reconstruct", |b| {
        b.iter_batched(
            || lose_two(&present),
            |mut sets| {
                for shards in sets.iter_mut() {
                    raw.reconstruct(black_box(shards)).unwrap();
                }
                sets
            },
            BatchSize::PerIteration,
        )
    });
    // What our `reconstruct_segment` must deliver, done naively with the bare crate:
    // rebuild the missing data shards, then concatenate into one fresh buffer.
    group.bench_function("raw_rs_reconstruct_concat", |b| {
        b.iter_batched(
            || lose_two(&present),
            |mut sets| {
                for shards in sets.iter_mut() {
                    raw.reconstruct_data(black_box(shards.as_mut_slice()))
                        .unwrap();
                    let mut segment = Vec::with_capacity(SEGMENT);
                    for shard in shards[..K].iter().flatten() {
                        segment.extend_from_slice(shard);
                    }
                    black_box(segment);
                }
                sets
            },
            BatchSize::PerIteration,
        )
    });
    // The crate's best case: missing shards rebuilt into buffers we already own.
    let mut flagged: Vec<Vec<(Vec<u8>, bool)>> = sets
        .iter()
        .map(|shards| shards.iter().cloned().map(|s| (s, true)).collect())
        .collect();
    group.bench_function("raw_rs_reconstruct_prealloc", |b| {
        b.iter(|| {
            for shards in flagged.iter_mut() {
                shards[0].1 = false;
                shards[1].1 = false;
                raw.reconstruct(black_box(shards.as_mut_slice())).unwrap();
            }
        })
    });
    // Ours leaves `shards` as given, so one set of lossy segments serves every round.
    let mut lossy = lose_two(&present);
    group.bench_function("reconstruct_segment", |b| {
        b.iter(|| {
            for (segment, shards) in lossy.iter_mut().enumerate() {
                black_box(
                    codec
                        .reconstruct_segment(segment as u32, black_box(shards), SEGMENT)
                        .unwrap(),
                );
            }
        })
    });
    // What a reader streaming many segments should do: one output buffer, reused.
    let mut out = Vec::new();
    group.bench_function("reconstruct_segment_into", |b| {
        b.iter(|| {
            for (segment, shards) in lossy.iter_mut().enumerate() {
                codec
                    .reconstruct_segment_into(segment as u32, black_box(shards), SEGMENT, &mut out)
                    .unwrap();
                black_box(&out);
            }
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = config();
    targets = encode, reconstruct
}
criterion_main!(benches);
