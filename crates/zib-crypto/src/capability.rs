//! Capability tokens: `base64url(claims JSON) "." base64url(Ed25519 signature)`.
//! The server signs; nodes hold only the public key.

use zib_proto::node_rpc::CapabilityClaims;

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
    _private: (),
}

impl CapabilitySigner {
    pub fn generate() -> Self {
        todo!()
    }
    /// 64 hex characters (the 32-byte Ed25519 seed).
    pub fn from_seed_hex(s: &str) -> Result<Self, TokenError> {
        todo!()
    }
    pub fn seed_hex(&self) -> String {
        todo!()
    }
    pub fn public_key_hex(&self) -> String {
        todo!()
    }
    pub fn sign(&self, claims: &CapabilityClaims) -> String {
        todo!()
    }
}

#[derive(Clone)]
pub struct CapabilityVerifier {
    _private: (),
}

impl CapabilityVerifier {
    pub fn from_public_key_hex(s: &str) -> Result<Self, TokenError> {
        todo!()
    }
    /// Checks signature and expiry (`now_unix` in seconds). Scope (node, blob, size,
    /// single use) is the caller's to check against the request.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<CapabilityClaims, TokenError> {
        todo!()
    }
}
