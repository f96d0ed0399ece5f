//! The HLS segment cipher agrees with OpenSSL's AES-128-CBC (PKCS#7) both ways, so
//! any player that decrypts `METHOD=AES-128` segments reads ours.

use std::io::Write;
use std::process::{Command, Stdio};

use zib_crypto::hls::{decrypt_segment, encrypt_segment, iv_for_sequence};

/// `openssl enc -aes-128-cbc` over stdin; `decrypt` picks `-d`.
fn openssl(decrypt: bool, key: &[u8; 16], iv: &[u8; 16], input: &[u8]) -> Vec<u8> {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "enc",
        "-aes-128-cbc",
        "-K",
        &hex::encode(key),
        "-iv",
        &hex::encode(iv),
    ]);
    if decrypt {
        cmd.arg("-d");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl CLI must be installed for this test");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("openssl output");
    writer
        .join()
        .expect("writer thread")
        .expect("write to openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn openssl_decrypts_what_we_encrypt() {
    let key: [u8; 16] = *b"0123456789abcdef";
    for (seq, len) in [(0u64, 188 * 700), (1, 16), (41, 1), (7, 0)] {
        let iv = iv_for_sequence(seq);
        let plain = sample(len);
        let sealed = encrypt_segment(&key, &iv, &plain);
        assert_eq!(
            openssl(true, &key, &iv, &sealed),
            plain,
            "seq {seq}, {len} bytes"
        );
    }
}

#[test]
fn we_decrypt_what_openssl_encrypts() {
    let key = [0xa5u8; 16];
    let iv = iv_for_sequence(123_456);
    let plain = sample(188 * 333 + 5);
    let sealed = openssl(false, &key, &iv, &plain);
    assert_eq!(
        sealed,
        encrypt_segment(&key, &iv, &plain),
        "same bytes as OpenSSL"
    );
    assert_eq!(decrypt_segment(&key, &iv, &sealed).expect("decrypt"), plain);
}
