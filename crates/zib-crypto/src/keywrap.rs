//! Per-file data keys (DEKs) and their wrapping under the server's master key.

/// A 256-bit per-file data key. Never logged (no Debug of the bytes).
#[derive(Clone)]
pub struct DataKey(pub(crate) [u8; 32]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    pub fn generate() -> Self {
        todo!()
    }
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Standard base64 with padding, as the registration carries it.
    pub fn to_base64(&self) -> String {
        todo!()
    }
    pub fn from_base64(s: &str) -> Result<Self, KeyWrapError> {
        todo!()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyWrapError {
    #[error("a key must be 32 bytes encoded as {0}")]
    BadEncoding(&'static str),
    #[error("wrapped key failed to unwrap (wrong master key or tampered)")]
    Unwrap,
}

/// The server's key-encryption key.
#[derive(Clone)]
pub struct MasterKey(pub(crate) [u8; 32]);

impl MasterKey {
    pub fn generate() -> Self {
        todo!()
    }
    /// 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, KeyWrapError> {
        todo!()
    }
    pub fn to_hex(&self) -> String {
        todo!()
    }
    /// AES-256-GCM under the master key, bound to `context` (the file id) as AAD.
    pub fn wrap(&self, dek: &DataKey, context: &[u8]) -> Vec<u8> {
        todo!()
    }
    pub fn unwrap(&self, wrapped: &[u8], context: &[u8]) -> Result<DataKey, KeyWrapError> {
        todo!()
    }
}
