//! Webhook signatures: ZiB's own `X-ZiB-Signature: sha256=<hex>` (HMAC-SHA256 of the
//! raw body, keyed by the secret's text as given) and the Standard Webhooks
//! `webhook-signature: v1,<base64>` (HMAC-SHA256 of `{id}.{timestamp}.{body}`, keyed
//! by the base64-decoded part of a `whsec_` secret), so receivers can use either the
//! contract's snippet or a Standard Webhooks library.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use ring::hmac;

/// Prefix of every secret ZiB generates, as Standard Webhooks expects.
pub const SECRET_PREFIX: &str = "whsec_";

/// Random bytes in a generated secret: 32, the size of the HMAC-SHA256 output, is
/// inside the 24–64 bytes Standard Webhooks asks for.
const SECRET_BYTES: usize = 32;

/// A fresh `whsec_<base64 of 32 random bytes>` secret.
pub fn generate_secret() -> String {
    let mut key = [0u8; SECRET_BYTES];
    rand::thread_rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    ctx.sign().as_ref().to_vec()
}

/// `sha256=<hex>` of the raw body, keyed by the secret's UTF-8 text (prefix and all),
/// exactly what the contract's verification snippet computes.
pub fn zib_signature(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), &[body]))
    )
}

/// Constant-time check of an `X-ZiB-Signature` value against one secret.
pub fn verify_zib_signature(secret: &str, body: &[u8], header: &str) -> bool {
    let expected = zib_signature(secret, body);
    ct_eq(expected.as_bytes(), header.trim().as_bytes())
}

/// Equality whose time depends only on the lengths, never on where bytes differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The HMAC key Standard Webhooks derives from a secret: the base64 after `whsec_`.
/// A secret that is not `whsec_<base64>` (tenants may bring their own) is used as
/// raw bytes instead, which a receiver reproduces by passing the same bytes.
pub fn standard_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|b64| STANDARD.decode(b64).ok())
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// One `v1,<base64>` value of the `webhook-signature` header.
pub fn standard_signature(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac_sha256(
        &standard_key(secret),
        &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body],
    );
    format!("v1,{}", STANDARD.encode(mac))
}

/// Checks a (space-separated) `webhook-signature` header: true if any `v1` value
/// matches. Replay windows are the receiver's business, not this function's.
pub fn verify_standard_signature(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let expected = standard_signature(secret, msg_id, timestamp, body);
    header
        .split_whitespace()
        .any(|candidate| ct_eq(expected.as_bytes(), candidate.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zib_signature_is_hmac_sha256_hex_of_the_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            zib_signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify_zib_signature(
            "Jefe",
            b"what do ya want for nothing?",
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        ));
        assert!(!verify_zib_signature("Jefe", b"other", "sha256=5bdc"));
    }

    #[test]
    fn standard_signature_matches_the_specs_example() {
        // The example of the Standard Webhooks specification and its libraries' tests.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let sig = standard_signature(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify_standard_signature(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
            &format!("v1,bogus {sig}"),
        ));
    }

    #[test]
    fn generated_secrets_are_prefixed_and_decode_to_32_bytes() {
        let s = generate_secret();
        assert!(s.starts_with("whsec_"));
        assert_eq!(standard_key(&s).len(), 32);
        assert_ne!(s, generate_secret());
    }

    #[test]
    fn a_secret_that_is_not_base64_signs_with_its_bytes() {
        assert_eq!(
            standard_key("whsec_not base64!"),
            b"whsec_not base64!".to_vec()
        );
        assert_eq!(standard_key("plain"), b"plain".to_vec());
    }
}
