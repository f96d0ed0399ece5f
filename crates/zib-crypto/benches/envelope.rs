//! Envelope v1 throughput: whole-buffer encrypt/decrypt of 64 MiB at the default
//! chunk size, and sealing of 16 KiB pieces (the block size `openssl speed` uses in
//! `bench/envelope.sh`, so the two figures compare like for like).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use zib_crypto::envelope::{self, Header, Sealer, DEFAULT_CHUNK_SIZE};
use zib_crypto::DataKey;

const BUFFER_LEN: usize = 64 << 20;
const PIECE_LEN: usize = 16 << 10;

fn whole_buffer(c: &mut Criterion) {
    let key = DataKey::from_bytes([7; 32]);
    let header = Header {
        chunk_size: DEFAULT_CHUNK_SIZE,
        nonce_prefix: [1; 7],
    };
    let plaintext: Vec<u8> = (0..BUFFER_LEN).map(|i| (i * 31) as u8).collect();
    let sealed = envelope::encrypt(&key, header, &plaintext);

    let mut group = c.benchmark_group("envelope_64MiB");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(BUFFER_LEN as u64));
    group.bench_function("encrypt", |b| {
        b.iter(|| envelope::encrypt(&key, header, black_box(&plaintext)))
    });
    group.bench_function("decrypt", |b| {
        b.iter(|| envelope::decrypt(&key, black_box(&sealed)).unwrap())
    });
    group.finish();
}

fn sealing_pieces(c: &mut Criterion) {
    let key = DataKey::from_bytes([7; 32]);
    let sealer = Sealer::new(
        &key,
        Header {
            chunk_size: PIECE_LEN as u32,
            nonce_prefix: [1; 7],
        },
    );
    let mut piece = vec![0x5a_u8; PIECE_LEN];
    piece.reserve(16);
    let mut index = 0u64;

    let mut group = c.benchmark_group("seal_16KiB");
    group.throughput(Throughput::Bytes(PIECE_LEN as u64));
    group.bench_function("seal_chunk", |b| {
        b.iter(|| {
            piece.truncate(PIECE_LEN);
            // Fresh index each time: a real sealer never reuses a nonce.
            index = (index + 1) & 0xffff_ffff;
            sealer.seal_chunk(index, false, black_box(&mut piece));
        })
    });
    group.finish();
}

criterion_group!(benches, whole_buffer, sealing_pieces);
criterion_main!(benches);
