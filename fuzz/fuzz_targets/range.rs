//! The `Range: bytes=...` parser (crates/zib-server/src/domain/read/range.rs), as the
//! CDN and S3 GET use it.
//!
//! Properties: any accepted range is non-empty and inside the object; the window the
//! CDN then reads is one the envelope layout accepts, and its sealed bytes lie inside
//! the envelope; a plain `bytes=a-b` is answered as RFC 9110 says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zib_crypto::envelope::Layout;
use zib_server::domain::read::range::{parse, RangeRequest};

fuzz_target!(|data: &[u8]| {
    if data.len() < 12 {
        return;
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&data[..8]);
    // Mostly small objects (so ranges hit them), sometimes up to 1 PiB (the server
    // refuses files over `max_file_size`, 5 TiB by default; past 2^60 bytes the
    // layout's offsets saturate by design).
    let raw_len = u64::from_le_bytes(len_bytes);
    let len = if raw_len & 1 == 0 {
        (raw_len >> 1) % 100_000
    } else {
        (raw_len >> 1) % (1 << 50)
    };
    let chunk_size = 1 + u32::from_le_bytes([data[8], data[9], data[10], data[11]]) % (16 << 20);
    let Ok(header) = std::str::from_utf8(&data[12..]) else {
        return;
    };

    let window = match parse(Some(header), len) {
        RangeRequest::Partial(r) => {
            assert!(r.start < r.end, "empty range {r:?} from {header:?}");
            assert!(
                r.end <= len,
                "range {r:?} outside {len} bytes from {header:?}"
            );
            r
        }
        RangeRequest::Full => 0..len,
        RangeRequest::Unsatisfiable => return,
    };
    assert_eq!(parse(None, len), RangeRequest::Full);

    // What cdn::get and the S3 GET do next with the window (for an empty object,
    // the whole of it is 0..0: that this must be accepted is how this target found
    // empty objects answering 500).
    let layout = Layout { chunk_size };
    let chunks = layout
        .chunks_covering(window.clone(), len)
        .expect("the envelope layout accepts every window the parser yields");
    let span = layout.sealed_range(chunks, len);
    assert!(span.start < span.end && span.end <= layout.ciphertext_len(len));

    // An oracle for the plain form `bytes=<a>-<b>` (digits only, no spaces).
    if let Some((a, b)) = header
        .strip_prefix("bytes=")
        .and_then(|s| s.split_once('-'))
    {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        if digits(a) && digits(b) {
            if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
                let expected = if b < a {
                    RangeRequest::Full
                } else if a >= len {
                    RangeRequest::Unsatisfiable
                } else {
                    RangeRequest::Partial(a..b.saturating_add(1).min(len))
                };
                assert_eq!(parse(Some(header), len), expected, "{header:?} of {len}");
            }
        }
    }
});
