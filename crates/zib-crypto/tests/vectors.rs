//! The shared envelope v1 vectors (`testdata/envelope/vectors.json`): our encryption
//! must reproduce each byte for byte, and decryption must give the plaintext back.
//! The JS SDK runs the same file.

use serde::Deserialize;
use zib_crypto::envelope::{self, Header, Layout, Opener};
use zib_crypto::DataKey;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    name: String,
    key_hex: String,
    nonce_prefix_hex: String,
    chunk_size: u32,
    plaintext_hex: String,
    ciphertext_hex: String,
}

fn load() -> Vec<Vector> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/envelope/vectors.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    assert_eq!(s, s.to_lowercase(), "hex must be lower case");
    hex::decode(s).unwrap()
}

#[test]
fn vectors_encrypt_byte_for_byte_and_decrypt() {
    let vectors = load();
    assert!(vectors.len() >= 14);
    for v in &vectors {
        let key = DataKey::from_bytes(unhex(&v.key_hex).try_into().unwrap());
        let header = Header {
            chunk_size: v.chunk_size,
            nonce_prefix: unhex(&v.nonce_prefix_hex).try_into().unwrap(),
        };
        let plaintext = unhex(&v.plaintext_hex);
        let ciphertext = unhex(&v.ciphertext_hex);

        assert_eq!(
            envelope::encrypt(&key, header, &plaintext),
            ciphertext,
            "{}",
            v.name
        );
        assert_eq!(
            envelope::decrypt(&key, &ciphertext).unwrap(),
            plaintext,
            "{}",
            v.name
        );
        assert_eq!(Header::decode(&ciphertext).unwrap(), header, "{}", v.name);

        let layout = Layout {
            chunk_size: v.chunk_size,
        };
        assert_eq!(
            layout.ciphertext_len(plaintext.len() as u64),
            ciphertext.len() as u64
        );
        assert_eq!(
            layout.plaintext_len(ciphertext.len() as u64),
            Ok(plaintext.len() as u64)
        );

        // Every chunk opens alone at its computed offset.
        let n = plaintext.len() as u64;
        let opener = Opener::new(&key, header);
        for index in 0..layout.chunk_count(n) {
            let at = layout.chunk_offset(index) as usize;
            let len = layout.sealed_chunk_len(index, n) as usize;
            let mut sealed = ciphertext[at..at + len].to_vec();
            let plain = opener
                .open_chunk(index, layout.is_final(index, n), &mut sealed)
                .unwrap();
            let want = layout.chunk_plaintext_range(index, n);
            assert_eq!(plain, &plaintext[want.start as usize..want.end as usize]);
        }
    }
}

#[test]
fn vectors_are_distinct_and_cover_the_edges() {
    let vectors = load();
    let mut names: Vec<&str> = vectors.iter().map(|v| v.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), vectors.len(), "names must be unique");
    for case in [
        "empty",
        "one-byte",
        "chunk-minus-one",
        "exact-chunk",
        "chunk-plus-one",
        "three-chunks-exact",
        "multi-chunk-partial-tail",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(case)),
            "missing case {case}"
        );
    }
}
