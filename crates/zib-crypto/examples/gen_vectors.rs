//! Regenerates `testdata/envelope/vectors.json`, the envelope v1 vectors shared with
//! the JS SDK. Everything is fixed (keys, prefixes, plaintext pattern), so running
//! it again must leave the file byte for byte unchanged.
//!
//! `cargo run -p zib-crypto --example gen_vectors`

use std::path::PathBuf;

use serde::Serialize;
use zib_crypto::envelope::{self, Header, DEFAULT_CHUNK_SIZE};
use zib_crypto::DataKey;

/// Field names and order are a contract with the JS tests: do not rename.
#[derive(Serialize)]
struct Vector {
    name: String,
    key_hex: String,
    nonce_prefix_hex: String,
    chunk_size: u32,
    plaintext_hex: String,
    ciphertext_hex: String,
}

/// Byte `i` of every vector plaintext: simple to reproduce in any language.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

fn vector(name: &str, seed: u8, chunk_size: u32, len: usize) -> Vector {
    let key: [u8; 32] = std::array::from_fn(|i| seed.wrapping_add(i as u8));
    let nonce_prefix: [u8; 7] = std::array::from_fn(|i| seed ^ (0xa0 + i as u8));
    let header = Header {
        chunk_size,
        nonce_prefix,
    };
    let plaintext = pattern(len);
    let ciphertext = envelope::encrypt(&DataKey::from_bytes(key), header, &plaintext);
    Vector {
        name: name.to_string(),
        key_hex: hex::encode(key),
        nonce_prefix_hex: hex::encode(nonce_prefix),
        chunk_size,
        plaintext_hex: hex::encode(plaintext),
        ciphertext_hex: hex::encode(ciphertext),
    }
}

fn cases(chunk_size: u32, seed: u8) -> Vec<Vector> {
    let c = chunk_size as usize;
    [
        ("empty", 0),
        ("one-byte", 1),
        ("chunk-minus-one", c - 1),
        ("exact-chunk", c),
        ("chunk-plus-one", c + 1),
        ("three-chunks-exact", 3 * c),
        ("multi-chunk-partial-tail", 4 * c + c / 2 + 3),
    ]
    .iter()
    .enumerate()
    .map(|(i, (name, len))| {
        vector(
            &format!("cs{chunk_size}-{name}"),
            seed.wrapping_add(i as u8 * 16),
            chunk_size,
            *len,
        )
    })
    .collect()
}

fn main() -> std::io::Result<()> {
    let mut vectors = cases(16, 0x00);
    vectors.extend(cases(64, 0x80));
    // One vector at the production chunk size, kept to two chunks so the file stays
    // under 1.5 MB.
    vectors.push(vector(
        &format!("cs{DEFAULT_CHUNK_SIZE}-chunk-plus-one"),
        0x5a,
        DEFAULT_CHUNK_SIZE,
        DEFAULT_CHUNK_SIZE as usize + 1,
    ));
    let mut json = serde_json::to_string_pretty(&vectors)?;
    json.push('\n');
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/envelope/vectors.json");
    std::fs::write(&path, json)?;
    println!("wrote {} vectors to {}", vectors.len(), path.display());
    Ok(())
}
