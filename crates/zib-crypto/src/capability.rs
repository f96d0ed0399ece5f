//! Capability tokens: `base64url(claims JSON) "." base64url(Ed25519 signature)`.
//! The server signs; nodes hold only the public key.
//!
//! The signature covers the exact JSON bytes carried in the token, so the verifier
//! never re-serializes claims and field order cannot matter.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use zib_proto::node_rpc::CapabilityClaims;

/// Real tokens are a few hundred bytes; refuse anything absurd before decoding it.
const MAX_TOKEN_LEN: usize = 8 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("capability token is malformed")]
    Malformed,
    #[error("capability token signature is invalid (altered or not issued by this server)")]
    BadSignature,
    #[error("capability token expired")]
    Expired,
}

pub struct CapabilitySigner {
    key: SigningKey,
}

impl std::fmt::Debug for CapabilitySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CapabilitySigner(public {})", self.public_key_hex())
    }
}

impl CapabilitySigner {
    pub fn generate() -> Self {
        Self {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }
    /// 64 hex characters (the 32-byte Ed25519 seed).
    pub fn from_seed_hex(s: &str) -> Result<Self, TokenError> {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut seed).map_err(|_| TokenError::Malformed)?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }
    pub fn seed_hex(&self) -> String {
        hex::encode(self.key.to_bytes())
    }
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }
    pub fn verifier(&self) -> CapabilityVerifier {
        CapabilityVerifier {
            key: self.key.verifying_key(),
        }
    }
    pub fn sign(&self, claims: &CapabilityClaims) -> String {
        // Claims are plain strings, ids and integers: serializing them cannot fail.
        let json = serde_json::to_vec(claims).expect("capability claims serialize to JSON");
        let signature = self.key.sign(&json);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&json),
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

#[derive(Clone, Debug)]
pub struct CapabilityVerifier {
    key: VerifyingKey,
}

impl CapabilityVerifier {
    pub fn from_public_key_hex(s: &str) -> Result<Self, TokenError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut bytes).map_err(|_| TokenError::Malformed)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| TokenError::Malformed)?;
        Ok(Self { key })
    }
    /// Checks signature and expiry (`now_unix` in seconds). Scope (node, blob, size,
    /// single use) is the caller's to check against the request.
    /// A token is still valid during the second named by `expires_at`.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<CapabilityClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (claims_b64, sig_b64) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let json = URL_SAFE_NO_PAD
            .decode(claims_b64)
            .map_err(|_| TokenError::Malformed)?;
        let sig_bytes: [u8; 64] = URL_SAFE_NO_PAD
            .decode(sig_b64)
            .map_err(|_| TokenError::Malformed)?
            .try_into()
            .map_err(|_| TokenError::Malformed)?;
        // Strict: refuses non-canonical and small-order encodings, so one message has
        // one valid signature (tokens are remembered by id once used).
        self.key
            .verify_strict(&json, &Signature::from_bytes(&sig_bytes))
            .map_err(|_| TokenError::BadSignature)?;
        let claims: CapabilityClaims =
            serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if claims.expires_at < now_unix {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zib_proto::node_rpc::CapabilityOp;

    fn claims(expires_at: u64) -> CapabilityClaims {
        serde_json::from_value(serde_json::json!({
            "op": "upload",
            "node_id": "ZB-AB12CD",
            "blob_id": "0b8d1f55-0f3e-4a53-8d0c-4f5e0f1b9e22",
            "size": 1234,
            "expires_at": expires_at,
            "jti": "tok-1",
        }))
        .unwrap()
    }

    #[test]
    fn sign_then_verify() {
        let signer = CapabilitySigner::generate();
        let verifier = CapabilityVerifier::from_public_key_hex(&signer.public_key_hex()).unwrap();
        let token = signer.sign(&claims(1_000));
        let got = verifier.verify(&token, 999).unwrap();
        assert_eq!(got, claims(1_000));
        assert_eq!(got.op, CapabilityOp::Upload);
        assert!(verifier.verify(&token, 1_000).is_ok());
        assert_eq!(verifier.verify(&token, 1_001), Err(TokenError::Expired));
        assert!(!token.contains('=') && !token.contains('+') && !token.contains('/'));
    }

    #[test]
    fn seed_round_trip_is_deterministic() {
        let seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
        let signer = CapabilitySigner::from_seed_hex(seed).unwrap();
        assert_eq!(signer.seed_hex(), seed);
        // RFC 8032 test 1 public key for this seed.
        assert_eq!(
            signer.public_key_hex(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(signer.sign(&claims(5)), signer.sign(&claims(5)));
        assert!(CapabilitySigner::from_seed_hex("00").is_err());
        assert!(CapabilitySigner::from_seed_hex(&"g".repeat(64)).is_err());
    }

    #[test]
    fn altered_or_foreign_tokens_fail() {
        let signer = CapabilitySigner::generate();
        let verifier = signer.verifier();
        let token = signer.sign(&claims(u64::MAX));
        let (body, sig) = token.split_once('.').unwrap();

        // Claims changed (bigger size) but signature kept.
        let mut forged = claims(u64::MAX);
        forged.size = 999_999;
        let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            verifier.verify(&format!("{forged_body}.{sig}"), 0),
            Err(TokenError::BadSignature)
        );
        // Signed by someone else.
        let other = CapabilitySigner::generate().sign(&claims(u64::MAX));
        assert_eq!(verifier.verify(&other, 0), Err(TokenError::BadSignature));
        // Every single-character change is refused.
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            assert!(verifier.verify(&altered, 0).is_err(), "change at {i}");
        }
        // Shape errors.
        for bad in [
            "",
            ".",
            "abc",
            body,
            &format!("{body}.{sig}.x"),
            &format!("{body}.AAAA"),
        ] {
            assert_eq!(
                verifier.verify(bad, 0),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            verifier.verify(&"a".repeat(MAX_TOKEN_LEN + 1), 0),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn signed_garbage_json_is_malformed() {
        let signer = CapabilitySigner::generate();
        let json = b"{\"not\":\"claims\"}";
        let sig = signer.key.sign(json);
        let token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json),
            URL_SAFE_NO_PAD.encode(sig.to_bytes())
        );
        assert_eq!(
            signer.verifier().verify(&token, 0),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn public_key_parsing() {
        assert!(CapabilityVerifier::from_public_key_hex("xyz").is_err());
        assert!(CapabilityVerifier::from_public_key_hex(&"00".repeat(31)).is_err());
    }
}
