//! The answer to a storage audit challenge (`zib_proto::node_rpc::ChallengeRequest`).
//!
//! It lives here, not in `zib-proto`, because it is computation rather than a wire
//! shape: `zib-proto` stays plain data without a hash dependency, and this crate
//! already carries BLAKE3 and is used by both parties that need the answer — the
//! server, which prepares challenges from bytes it has verified, and the node (whose
//! streaming hasher must agree with it) and its tests.

/// Hex of BLAKE3 keyed by `nonce` over `range_bytes`: what a node holding the bytes
/// answers, and what the server expects.
pub fn challenge_answer(nonce: &[u8; 32], range_bytes: &[u8]) -> String {
    blake3::keyed_hash(nonce, range_bytes).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nonce_keys_the_answer() {
        let bytes = b"shard bytes";
        let a = challenge_answer(&[1; 32], bytes);
        assert_eq!(a.len(), 64);
        assert_eq!(a, challenge_answer(&[1; 32], bytes));
        assert_ne!(a, challenge_answer(&[2; 32], bytes));
        assert_ne!(a, challenge_answer(&[1; 32], b"other bytes"));
    }
}
