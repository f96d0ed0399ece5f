//! Envelope v1 parser and decryptor (crates/zib-crypto/src/envelope.rs).
//!
//! Properties: nothing panics on any input; an accepted envelope is exactly the
//! canonical encryption of the plaintext it yields; decryption of an envelope that
//! differs from a sealed one in any byte, length or cut never returns plaintext;
//! range opening returns exactly the requested plaintext; the length arithmetic
//! round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zib_crypto::envelope::{self, Header, Layout, Opener, HEADER_LEN};
use zib_crypto::DataKey;

fn key() -> DataKey {
    DataKey::from_bytes([0x5a; 32])
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, v) in data.iter().skip(at).take(8).enumerate() {
        b[i] = *v;
    }
    u64::from_le_bytes(b)
}

/// Hostile bytes straight into the decryptor, as a node or reader would get them.
fn raw(data: &[u8]) {
    let key = key();
    if let Ok(header) = Header::decode(data) {
        assert_eq!(&header.encode()[..], &data[..HEADER_LEN as usize]);
        let layout = header.layout();
        if let Ok(p) = layout.plaintext_len(data.len() as u64) {
            assert_eq!(layout.ciphertext_len(p), data.len() as u64);
        }
        if let Ok(plain) = envelope::decrypt(&key, data) {
            // Only a canonical envelope authenticates: re-sealing gives the same bytes.
            let again = envelope::try_encrypt(&key, header, &plain).expect("header decoded");
            assert_eq!(again, data, "an accepted envelope is not canonical");
        }
    } else {
        assert!(envelope::decrypt(&key, data).is_err());
    }
    // Arbitrary chunk sizes and lengths: the inverse never disagrees.
    let layout = Layout {
        chunk_size: u64_at(data, 0) as u32,
    };
    let n = u64_at(data, 4);
    if let Ok(p) = layout.plaintext_len(n) {
        assert_eq!(
            layout.ciphertext_len(p),
            n,
            "chunk size {}",
            layout.chunk_size
        );
    }
}

/// A real envelope of fuzzer-chosen plaintext and chunk size, then one modification.
fn sealed(data: &[u8]) {
    if data.len() < 21 {
        return;
    }
    let chunk_size = 1 + u32::from(data[0] % 64);
    let mut nonce_prefix = [0u8; 7];
    nonce_prefix.copy_from_slice(&data[1..8]);
    let header = Header {
        chunk_size,
        nonce_prefix,
    };
    let pos = u16::from_le_bytes([data[8], data[9]]) as usize;
    let xor = if data[10] == 0 { 1 } else { data[10] };
    let kind = data[11];
    let (r1, r2) = (
        u64_at(data, 12) as u32 as u64,
        u64_at(data, 16) as u32 as u64,
    );
    let plain = &data[20..data.len().min(20 + 4096)];
    let key = key();
    let ct = envelope::try_encrypt(&key, header, plain).expect("valid header");
    assert_eq!(
        ct.len() as u64,
        header.layout().ciphertext_len(plain.len() as u64)
    );
    assert_eq!(
        envelope::decrypt(&key, &ct).expect("own envelope opens"),
        plain
    );

    let mut bad = ct.clone();
    match kind % 4 {
        0 => bad[pos % ct.len()] ^= xor,
        1 => bad.truncate(pos % ct.len()),
        2 => bad.push(xor),
        _ => {
            // Swap two chunks' sealed bytes (reordering), when they differ.
            let layout = header.layout();
            let count = layout.chunk_count(plain.len() as u64);
            let (a, b) = (pos as u64 % count, u64::from(xor) % count);
            let (la, lb) = (
                layout.sealed_chunk_len(a, plain.len() as u64),
                layout.sealed_chunk_len(b, plain.len() as u64),
            );
            if la == lb && a != b {
                let (oa, ob) = (
                    layout.chunk_offset(a) as usize,
                    layout.chunk_offset(b) as usize,
                );
                for i in 0..la as usize {
                    bad.swap(oa + i, ob + i);
                }
            }
        }
    }
    if bad != ct {
        assert!(
            envelope::decrypt(&key, &bad).is_err(),
            "a modified envelope decrypted"
        );
        let mut out = vec![1u8; 3];
        assert!(envelope::decrypt_into(&key, &bad, &mut out).is_err());
        assert!(
            out.is_empty(),
            "plaintext left in the buffer after a failure"
        );
    }

    // Range reads: exactly the bytes asked for, from exactly the covering chunks.
    let len = plain.len() as u64;
    let (start, end) = (r1 % (len + 1), r2 % (len + 1));
    let layout = header.layout();
    let opener = Opener::new(&key, header);
    match layout.chunks_covering(start..end, len) {
        Ok(chunks) => {
            // Non-empty, or the whole of an empty plaintext (its one empty chunk).
            assert!((start < end || len == 0) && end <= len);
            let span = layout.sealed_range(chunks, len);
            assert!(span.end <= ct.len() as u64 && span.start >= HEADER_LEN);
            let covering = &ct[span.start as usize..span.end as usize];
            let got = opener
                .open_range(start..end, len, covering)
                .expect("range opens");
            assert_eq!(got, &plain[start as usize..end as usize]);
            let mut tampered = covering.to_vec();
            let at = pos % tampered.len();
            tampered[at] ^= xor;
            assert!(opener.open_range(start..end, len, &tampered).is_err());
            assert!(opener
                .open_range(start..end, len, &covering[..covering.len() - 1])
                .is_err());
        }
        Err(_) => assert!(start >= end && len > 0),
    }
}

fuzz_target!(|data: &[u8]| {
    match data.first() {
        Some(m) if m % 2 == 1 => sealed(&data[1..]),
        Some(_) => raw(&data[1..]),
        None => {}
    }
});
