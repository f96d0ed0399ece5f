//! Capability tokens (crates/zib-crypto/src/capability.rs), as a node verifies them.
//!
//! Properties: verification never panics; a token modified in any byte (or cut, or
//! extended) never verifies; arbitrary input never verifies unless it is, byte for
//! byte, a token the server signed; a verified token yields exactly the signed claims
//! and respects its expiry.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use zib_crypto::{CapabilitySigner, CapabilityVerifier, TokenError};
use zib_proto::node_rpc::CapabilityClaims;

fn keys() -> &'static (CapabilitySigner, CapabilityVerifier) {
    static KEYS: OnceLock<(CapabilitySigner, CapabilityVerifier)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let signer = CapabilitySigner::from_seed_hex(&"17".repeat(32)).expect("seed hex");
        let verifier =
            CapabilityVerifier::from_public_key_hex(&signer.public_key_hex()).expect("key");
        (signer, verifier)
    })
}

fn claims(data: &[u8]) -> Option<CapabilityClaims> {
    let n = |at: usize| {
        let mut b = [0u8; 8];
        for (i, v) in data.iter().skip(at).take(8).enumerate() {
            b[i] = *v;
        }
        u64::from_le_bytes(b)
    };
    let op = ["upload", "part", "complete"][(n(0) % 3) as usize];
    let jti = String::from_utf8_lossy(data.get(24..).unwrap_or_default()).into_owned();
    let mut json = serde_json::json!({
        "op": op,
        "node_id": "ZB-AB12CD",
        "blob_id": "0b8d1f55-0f3e-4a53-8d0c-4f5e0f1b9e22",
        "size": n(8),
        "expires_at": n(16) >> 1,
        "jti": jti,
    });
    if op != "upload" {
        json["part"] = serde_json::json!(n(2) as u32);
        json["offset"] = serde_json::json!(n(3));
        json["parts"] = serde_json::json!(n(4) as u16);
    }
    Some(serde_json::from_value(json).expect("claims of the shape zib-proto declares"))
}

fuzz_target!(|data: &[u8]| {
    let (signer, verifier) = keys();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        // Raw bytes as the node receives them in its header.
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        match verifier.verify(token, 0) {
            Ok(c) => assert_eq!(
                signer.sign(&c),
                token,
                "a token verified that we never signed"
            ),
            Err(TokenError::Expired) => unreachable!("expiry 0 cannot be in the past"),
            Err(_) => {}
        }
        return;
    }

    // A real token, then one modification.
    if rest.len() < 4 {
        return;
    }
    let (edit, body) = rest.split_at(4);
    let Some(c) = claims(body) else { return };
    let token = signer.sign(&c);
    assert_eq!(verifier.verify(&token, c.expires_at).as_ref(), Ok(&c));
    if let Some(after) = c.expires_at.checked_add(1) {
        assert_eq!(verifier.verify(&token, after), Err(TokenError::Expired));
    }
    let pos = u16::from_le_bytes([edit[0], edit[1]]) as usize % token.len();
    let mut bytes = token.clone().into_bytes();
    match edit[2] % 3 {
        0 => {
            bytes[pos] = if edit[3] == bytes[pos] {
                edit[3] ^ 1
            } else {
                edit[3]
            }
        }
        1 => bytes.truncate(pos),
        _ => bytes.insert(pos, edit[3]),
    }
    if let Ok(modified) = String::from_utf8(bytes) {
        assert_ne!(modified, token);
        assert!(
            verifier.verify(&modified, 0).is_err(),
            "a modified token verified: {modified:?} (from {token:?})"
        );
    }
});
