//! The HLS segment cipher: AES-128-CBC with PKCS#7 padding over a whole MPEG-TS
//! segment, as `#EXT-X-KEY:METHOD=AES-128` players decrypt it (RFC 8216 §5.2).
//!
//! Built on RustCrypto's `aes` + `cbc` (AES-NI chosen by runtime CPU detection)
//! because ring offers no CBC mode; segments are a few MB, so one call per segment
//! in memory is fine.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};

type Enc = cbc::Encryptor<aes::Aes128>;
type Dec = cbc::Decryptor<aes::Aes128>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HlsCipherError {
    /// The ciphertext is empty or not whole 16-byte blocks.
    #[error("an AES-128 segment must be a non-empty multiple of 16 bytes, got {0}")]
    BadLength(usize),
    /// The last block does not end in valid PKCS#7 padding: wrong key or IV, or
    /// damaged bytes.
    #[error("bad padding: wrong key or IV, or a damaged segment")]
    BadPadding,
}

/// Encrypts one segment: AES-128-CBC, PKCS#7 (always 1–16 bytes of padding added).
pub fn encrypt_segment(key: &[u8; 16], iv: &[u8; 16], plain: &[u8]) -> Vec<u8> {
    Enc::new(key.into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plain)
}

/// Decrypts one segment written by [`encrypt_segment`] (or any AES-128 HLS encoder).
pub fn decrypt_segment(
    key: &[u8; 16],
    iv: &[u8; 16],
    cipher: &[u8],
) -> Result<Vec<u8>, HlsCipherError> {
    if cipher.is_empty() || !cipher.len().is_multiple_of(16) {
        return Err(HlsCipherError::BadLength(cipher.len()));
    }
    Dec::new(key.into(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(cipher)
        .map_err(|_| HlsCipherError::BadPadding)
}

/// The IV a player uses when the playlist's `EXT-X-KEY` names none: the segment's
/// media sequence number as a 16-byte big-endian integer (RFC 8216 §5.2).
pub fn iv_for_sequence(seq: u64) -> [u8; 16] {
    u128::from(seq).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_at_every_padding_length() {
        let key = [7u8; 16];
        let iv = iv_for_sequence(3);
        for len in [0usize, 1, 15, 16, 17, 188, 4096] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let sealed = encrypt_segment(&key, &iv, &plain);
            assert_eq!(sealed.len(), (len / 16 + 1) * 16, "PKCS#7 always pads");
            if len > 0 {
                assert_ne!(&sealed[..len.min(16)], &plain[..len.min(16)]);
            }
            assert_eq!(decrypt_segment(&key, &iv, &sealed), Ok(plain));
        }
    }

    #[test]
    fn a_wrong_iv_or_key_does_not_give_the_plaintext_back() {
        let key = [1u8; 16];
        let plain = vec![0x47u8; 188 * 10];
        let sealed = encrypt_segment(&key, &iv_for_sequence(0), &plain);
        assert_ne!(
            decrypt_segment(&key, &iv_for_sequence(1), &sealed).ok(),
            Some(plain.clone())
        );
        assert_ne!(
            decrypt_segment(&[2u8; 16], &iv_for_sequence(0), &sealed).ok(),
            Some(plain)
        );
        assert_eq!(
            decrypt_segment(&key, &iv_for_sequence(0), &sealed[..17]),
            Err(HlsCipherError::BadLength(17))
        );
        assert_eq!(
            decrypt_segment(&key, &iv_for_sequence(0), &[]),
            Err(HlsCipherError::BadLength(0))
        );
    }

    #[test]
    fn iv_is_the_sequence_number_big_endian() {
        assert_eq!(iv_for_sequence(0), [0u8; 16]);
        let iv = iv_for_sequence(0x0102);
        assert_eq!(&iv[..14], &[0u8; 14]);
        assert_eq!(&iv[14..], &[1, 2]);
        assert_eq!(&iv_for_sequence(u64::MAX)[8..], &[0xff; 8]);
    }
}
