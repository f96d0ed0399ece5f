//! Per-file data keys (DEKs) and their wrapping under the server's master key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

const KEY_LEN: usize = 32;
const WRAP_TAG_LEN: usize = 16;
/// `nonce || sealed key || tag`: the only length a wrapped key can have.
pub const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + WRAP_TAG_LEN;

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
        Self(random_key())
    }
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Standard base64 with padding, as the registration carries it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
    /// Strict: padded standard alphabet, exactly 32 bytes, so two spellings of one
    /// key cannot exist.
    pub fn from_base64(s: &str) -> Result<Self, KeyWrapError> {
        let bytes = STANDARD
            .decode(s.trim())
            .map_err(|_| KeyWrapError::BadEncoding("padded standard base64"))?;
        let key: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| KeyWrapError::BadEncoding("padded standard base64"))?;
        Ok(Self(key))
    }

    /// ring's key handle for this DEK (AES-256-GCM).
    pub(crate) fn aead_key(&self) -> LessSafeKey {
        aes_key(&self.0)
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

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        Self(random_key())
    }
    /// 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, KeyWrapError> {
        let mut key = [0u8; KEY_LEN];
        hex::decode_to_slice(s.trim(), &mut key)
            .map_err(|_| KeyWrapError::BadEncoding("64 hex characters"))?;
        Ok(Self(key))
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// AES-256-GCM under the master key, bound to `context` (the file id) as AAD.
    /// Output: `nonce(12) || ciphertext(32) || tag(16)`. The nonce is random: one
    /// master key wraps far fewer than 2^32 keys, so collisions are not a concern.
    pub fn wrap(&self, dek: &DataKey, context: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&dek.0);
        let tag = aes_key(&self.0)
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut out[NONCE_LEN..],
            )
            // ring refuses only inputs beyond GCM's ~64 GiB limit; this one is 32 bytes.
            .expect("AES-GCM seals 32 bytes");
        out.extend_from_slice(tag.as_ref());
        out
    }
    pub fn unwrap(&self, wrapped: &[u8], context: &[u8]) -> Result<DataKey, KeyWrapError> {
        if wrapped.len() != WRAPPED_LEN {
            return Err(KeyWrapError::Unwrap);
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyWrapError::Unwrap)?;
        let mut buf = sealed.to_vec();
        let plain = aes_key(&self.0)
            .open_in_place(nonce, Aad::from(context), &mut buf)
            .map_err(|_| KeyWrapError::Unwrap)?;
        let key: [u8; KEY_LEN] = (&*plain).try_into().map_err(|_| KeyWrapError::Unwrap)?;
        Ok(DataKey(key))
    }
}

fn random_key() -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    OsRng.fill_bytes(&mut key);
    key
}

fn aes_key(bytes: &[u8; KEY_LEN]) -> LessSafeKey {
    // AES_256_GCM accepts every 32-byte key; ring fails only on a wrong length.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("32-byte AES-256 key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_key_base64_round_trip() {
        let key = DataKey::generate();
        let text = key.to_base64();
        assert_eq!(text.len(), 44);
        assert!(text.ends_with('='));
        assert_eq!(
            DataKey::from_base64(&text).unwrap().as_bytes(),
            key.as_bytes()
        );
    }

    #[test]
    fn data_key_base64_rejects_wrong_lengths_and_alphabets() {
        assert!(DataKey::from_base64("").is_err());
        assert!(DataKey::from_base64("AAAA").is_err());
        let text = DataKey::from_bytes([0xfb; 32]).to_base64();
        assert!(DataKey::from_base64(text.trim_end_matches('=')).is_err());
        let url_safe = text.replace('+', "-").replace('/', "_");
        assert_ne!(url_safe, text);
        assert!(DataKey::from_base64(&url_safe).is_err());
    }

    #[test]
    fn data_key_debug_hides_bytes() {
        assert_eq!(format!("{:?}", DataKey::from_bytes([7; 32])), "DataKey(..)");
    }

    #[test]
    fn master_key_hex_round_trip() {
        let master = MasterKey::generate();
        let again = MasterKey::from_hex(&master.to_hex()).unwrap();
        assert_eq!(again.0, master.0);
        assert!(MasterKey::from_hex("abcd").is_err());
        assert!(MasterKey::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn wrap_round_trip_and_binding() {
        let master = MasterKey::generate();
        let dek = DataKey::generate();
        let wrapped = master.wrap(&dek, b"file-1");
        assert_eq!(wrapped.len(), WRAPPED_LEN);
        assert_eq!(
            master.unwrap(&wrapped, b"file-1").unwrap().as_bytes(),
            dek.as_bytes()
        );

        // Fresh nonce per wrap.
        assert_ne!(master.wrap(&dek, b"file-1"), wrapped);
        // Other context, other master key, any flipped bit, wrong length: refused.
        assert!(master.unwrap(&wrapped, b"file-2").is_err());
        assert!(MasterKey::generate().unwrap(&wrapped, b"file-1").is_err());
        for i in 0..wrapped.len() {
            let mut bad = wrapped.clone();
            bad[i] ^= 0x01;
            assert!(master.unwrap(&bad, b"file-1").is_err(), "flip at {i}");
        }
        assert!(master
            .unwrap(&wrapped[..WRAPPED_LEN - 1], b"file-1")
            .is_err());
        assert!(master.unwrap(&[], b"file-1").is_err());
    }
}
