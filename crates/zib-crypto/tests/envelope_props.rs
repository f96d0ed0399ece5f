//! Property tests of envelope v1: round trips, range decryption from only the
//! covering chunks, and refusal of every kind of tampering.

use proptest::prelude::*;
use zib_crypto::envelope::{self, Header, Layout, Opener, HEADER_LEN};
use zib_crypto::DataKey;

fn key(seed: u8) -> DataKey {
    DataKey::from_bytes([seed; 32])
}

/// Plaintext of 0..~5 chunks at a chunk size of 1..300.
fn sized_plaintext() -> impl Strategy<Value = (u32, Vec<u8>)> {
    (1u32..300).prop_flat_map(|chunk_size| {
        let max = 5 * chunk_size as usize + 3;
        (
            Just(chunk_size),
            prop::collection::vec(any::<u8>(), 0..=max),
        )
    })
}

fn seal(chunk_size: u32, prefix: [u8; 7], pt: &[u8]) -> (Header, Vec<u8>) {
    let header = Header {
        chunk_size,
        nonce_prefix: prefix,
    };
    (header, envelope::encrypt(&key(1), header, pt))
}

/// Sealed bytes of chunk `i`.
fn chunk_span(layout: Layout, n: u64, i: u64) -> std::ops::Range<usize> {
    let at = layout.chunk_offset(i) as usize;
    at..at + layout.sealed_chunk_len(i, n) as usize
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip((chunk_size, pt) in sized_plaintext(), prefix in any::<[u8; 7]>()) {
        let (header, env) = seal(chunk_size, prefix, &pt);
        let layout = header.layout();
        prop_assert_eq!(env.len() as u64, layout.ciphertext_len(pt.len() as u64));
        prop_assert_eq!(layout.plaintext_len(env.len() as u64), Ok(pt.len() as u64));
        prop_assert_eq!(envelope::decrypt(&key(1), &env).unwrap(), pt);
    }

    #[test]
    fn range_decrypts_from_covering_chunks_only(
        (chunk_size, pt) in sized_plaintext().prop_filter("non-empty", |(_, p)| !p.is_empty()),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let (header, env) = seal(chunk_size, [9; 7], &pt);
        let layout = header.layout();
        let n = pt.len() as u64;
        let (x, y) = (a.index(pt.len()), b.index(pt.len()));
        let range = x.min(y) as u64..x.max(y) as u64 + 1;
        let chunks = layout.chunks_covering(range.clone(), n).unwrap();

        // By hand: open only the covering chunks with Layout + Opener.
        let opener = Opener::new(&key(1), header);
        let mut joined = Vec::new();
        for i in chunks.clone() {
            let mut sealed = env[chunk_span(layout, n, i)].to_vec();
            joined.extend_from_slice(opener.open_chunk(i, layout.is_final(i, n), &mut sealed).unwrap());
        }
        let first = layout.chunk_plaintext_range(chunks.start, n).start;
        let by_hand = &joined[(range.start - first) as usize..(range.end - first) as usize];
        prop_assert_eq!(by_hand, &pt[range.start as usize..range.end as usize]);

        // The helper, fed the contiguous sealed span.
        let span = layout.sealed_range(chunks, n);
        let got = opener.open_range(range.clone(), n, &env[span.start as usize..span.end as usize]).unwrap();
        prop_assert_eq!(&got[..], &pt[range.start as usize..range.end as usize]);
    }

    #[test]
    fn any_flipped_bit_is_refused(
        (chunk_size, pt) in sized_plaintext(),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let (_, mut env) = seal(chunk_size, [3; 7], &pt);
        let i = at.index(env.len());
        env[i] ^= 1 << bit;
        prop_assert!(envelope::decrypt(&key(1), &env).is_err());
    }

    #[test]
    fn truncation_at_any_chunk_boundary_is_refused(
        (chunk_size, pt) in sized_plaintext(),
        cut in any::<prop::sample::Index>(),
    ) {
        let (header, env) = seal(chunk_size, [4; 7], &pt);
        let layout = header.layout();
        let count = layout.chunk_count(pt.len() as u64);
        // Keep 0..count chunks (count itself would be the whole envelope).
        let keep = cut.index(count as usize) as u64;
        let end = layout.chunk_offset(keep) as usize;
        prop_assert!(envelope::decrypt(&key(1), &env[..end]).is_err());
        // Any byte-level truncation too.
        let short = cut.index(env.len());
        prop_assert!(envelope::decrypt(&key(1), &env[..short]).is_err());
    }

    #[test]
    fn dropped_or_swapped_chunks_are_refused(
        (chunk_size, pt) in sized_plaintext().prop_filter("2+ chunks", |(c, p)| p.len() > *c as usize),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let (header, env) = seal(chunk_size, [5; 7], &pt);
        let layout = header.layout();
        let n = pt.len() as u64;
        let count = layout.chunk_count(n) as usize;
        let chunks: Vec<Vec<u8>> =
            (0..count as u64).map(|i| env[chunk_span(layout, n, i)].to_vec()).collect();
        let rebuild = |order: &[usize]| {
            let mut out = env[..HEADER_LEN as usize].to_vec();
            for &i in order {
                out.extend_from_slice(&chunks[i]);
            }
            out
        };

        let drop = a.index(count);
        let order: Vec<usize> = (0..count).filter(|&i| i != drop).collect();
        prop_assert!(envelope::decrypt(&key(1), &rebuild(&order)).is_err());

        let (x, y) = (a.index(count), b.index(count));
        prop_assume!(x != y && chunks[x] != chunks[y]);
        let mut order: Vec<usize> = (0..count).collect();
        order.swap(x, y);
        prop_assert!(envelope::decrypt(&key(1), &rebuild(&order)).is_err());
    }

    #[test]
    fn chunk_spliced_from_another_envelope_is_refused(
        (chunk_size, pt) in sized_plaintext(),
        at in any::<prop::sample::Index>(),
        other_prefix in any::<[u8; 7]>(),
        same_key in any::<bool>(),
    ) {
        prop_assume!(other_prefix != [6; 7] || !same_key);
        let (header, env) = seal(chunk_size, [6; 7], &pt);
        let other_header = Header { chunk_size, nonce_prefix: other_prefix };
        let other_key = if same_key { key(1) } else { key(2) };
        // Same length plaintext, so chunk i sits at the same place in both.
        let other = envelope::encrypt(&other_key, other_header, &pt);
        let layout = header.layout();
        let n = pt.len() as u64;
        let i = at.index(layout.chunk_count(n) as usize) as u64;
        let span = chunk_span(layout, n, i);
        let mut spliced = env.clone();
        spliced[span.clone()].copy_from_slice(&other[span]);
        prop_assert!(envelope::decrypt(&key(1), &spliced).is_err());
    }

    #[test]
    fn hostile_lengths_never_panic(chunk_size in 0u32..=u32::MAX, len in any::<u64>(), s in any::<u64>(), e in any::<u64>()) {
        let layout = Layout { chunk_size };
        let _ = layout.plaintext_len(len);
        let _ = layout.ciphertext_len(len);
        let _ = layout.chunk_offset(len);
        let _ = layout.sealed_chunk_len(s, len);
        let _ = layout.chunks_covering(s..e, len);
        let _ = layout.sealed_range(s..e, len);
    }
}

/// Regression (found with the `range` fuzz target's model of a CDN read): the whole
/// of an empty file is the window 0..0, which `chunks_covering` refused, so a GET of
/// an empty object (S3 accepts them) answered 500. It now covers the envelope's one
/// empty chunk, which must still authenticate.
#[test]
fn an_empty_file_reads_as_its_one_empty_chunk() {
    let (header, env) = seal(64, [3; 7], b"");
    let layout = header.layout();
    assert_eq!(layout.chunks_covering(0..0, 0), Ok(0..1));
    let span = layout.sealed_range(0..1, 0);
    assert_eq!(span, HEADER_LEN..env.len() as u64);
    let opener = Opener::new(&key(1), header);
    let sealed = &env[span.start as usize..span.end as usize];
    assert_eq!(opener.open_range(0..0, 0, sealed), Ok(Vec::new()));
    let mut tampered = sealed.to_vec();
    tampered[3] ^= 1;
    assert!(opener.open_range(0..0, 0, &tampered).is_err());
    assert!(Opener::new(&key(2), header)
        .open_range(0..0, 0, sealed)
        .is_err());
    // Any other empty window is still refused.
    assert!(layout.chunks_covering(5..5, 10).is_err());
    assert!(layout.chunks_covering(0..0, 10).is_err());
    assert!(layout.chunks_covering(1..1, 0).is_err());
}

/// Regression (found by the `range` fuzz target): `sealed_range` added without
/// saturating, so a huge plaintext length with a small chunk size overflowed (a
/// panic in debug builds, a wrapped range in release) although `Layout` promises
/// that no hostile number makes it panic.
#[test]
fn sealed_range_of_a_huge_plaintext_saturates() {
    let layout = Layout { chunk_size: 1 };
    let len = 0x1580_0000_0b03_e87f_u64;
    let chunks = layout.chunks_covering(0..len, len).unwrap();
    let span = layout.sealed_range(chunks, len);
    assert_eq!(span, HEADER_LEN..u64::MAX);
    assert!(span.end <= layout.ciphertext_len(len));
}
