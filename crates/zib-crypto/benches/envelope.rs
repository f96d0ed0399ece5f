//! Envelope v1 throughput: whole-buffer encrypt/decrypt of 64 MiB at the default
//! chunk size, and sealing of 16 KiB pieces (the block size `openssl speed` uses in
//! `bench/envelope.sh`, so the two figures compare like for like).
//!
//! The 16 KiB seal is measured twice: in wall time, and in this thread's CPU time.
//! `openssl speed` divides by CPU time unless given `-elapsed`, and on a shared
//! machine wall time mostly measures the neighbours, so the CPU-time figure is the
//! one to hold against OpenSSL's default output.

use criterion::measurement::{Measurement, ValueFormatter};
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
    // Same work into a reused buffer: shows what page faults of a fresh 64 MiB cost.
    let mut out = Vec::new();
    group.bench_function("encrypt_into", |b| {
        b.iter(|| envelope::encrypt_into(&key, header, black_box(&plaintext), &mut out).unwrap())
    });
    group.bench_function("decrypt_into", |b| {
        b.iter(|| envelope::decrypt_into(&key, black_box(&sealed), &mut out).unwrap())
    });
    group.finish();
}

fn sealing_pieces<M: Measurement>(c: &mut Criterion<M>, bench_name: &str) {
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
    group.bench_function(bench_name, |b| {
        b.iter(|| {
            piece.truncate(PIECE_LEN);
            // Fresh index each time: a real sealer never reuses a nonce.
            index = (index + 1) & 0xffff_ffff;
            sealer.seal_chunk(index, false, black_box(&mut piece));
        })
    });
    group.finish();
}

fn sealing_pieces_wall(c: &mut Criterion) {
    sealing_pieces(c, "seal_chunk");
}

fn sealing_pieces_cpu(c: &mut Criterion<ThreadCpuTime>) {
    sealing_pieces(c, "seal_chunk_cpu");
}

/// Nanoseconds this thread has spent on a CPU (`CLOCK_THREAD_CPUTIME_ID`), so time
/// spent waiting for a busy core is not counted. Criterion runs iterations on the
/// calling thread, which is what makes this valid.
struct ThreadCpuTime;

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    // From the C library std already links; declared here to avoid a libc
    // dependency for one bench-only call (64-bit Linux layout).
    fn clock_gettime(clock_id: i32, tp: *mut Timespec) -> i32;
}

const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

fn thread_cpu_ns() -> u64 {
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuNanos
    }
}

/// Formats like criterion's wall-time formatter, in CPU nanoseconds.
struct CpuNanos;

impl ValueFormatter for CpuNanos {
    fn scale_values(&self, typical_ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical_ns < 1e3 {
            (1.0, "ns cpu")
        } else if typical_ns < 1e6 {
            (1e-3, "µs cpu")
        } else {
            (1e-6, "ms cpu")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }
    fn scale_throughputs(
        &self,
        typical_ns: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let bytes = match throughput {
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => *b as f64,
            Throughput::Elements(e) => *e as f64,
        };
        let _ = typical_ns;
        // bytes per ns == GB/s
        values.iter_mut().for_each(|v| *v = bytes / *v);
        "GB/s cpu"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

criterion_group!(wall, whole_buffer, sealing_pieces_wall);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = sealing_pieces_cpu
}
criterion_main!(wall, cpu);
