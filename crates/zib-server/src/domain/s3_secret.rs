//! Tenants' S3 secrets, kept so SigV4 can be verified.
//!
//! SigV4 proves possession of the secret by an HMAC the server must recompute, so
//! the one-way `secret_hash` is not enough. The secret is sealed like a file: a fresh
//! data key encrypts it (one envelope chunk) and the master key wraps that data key,
//! bound to the tenant id, so a row copied to another tenant does not open.

use zib_crypto::envelope::{Opener, Sealer, HEADER_LEN};
use zib_crypto::{DataKey, Header, MasterKey};

/// `MasterKey::wrap` output: nonce (12) + key (32) + tag (16).
const WRAPPED_KEY_LEN: usize = 60;
/// Secrets are short; one chunk of this size holds any of them.
const SECRET_CHUNK: u32 = 4096;

fn context(tenant_id: &str) -> Vec<u8> {
    format!("zib-s3-secret:{tenant_id}").into_bytes()
}

/// `wrapped data key || envelope header || sealed secret`.
pub fn seal_secret(master: &MasterKey, tenant_id: &str, secret: &str) -> Option<Vec<u8>> {
    let key = DataKey::generate();
    let header = Header::new_random(SECRET_CHUNK);
    let mut sealed = secret.as_bytes().to_vec();
    Sealer::new(&key, header)
        .try_seal_chunk(0, true, &mut sealed)
        .ok()?;
    let mut out = master.wrap(&key, &context(tenant_id));
    if out.len() != WRAPPED_KEY_LEN {
        return None;
    }
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(&sealed);
    Some(out)
}

pub fn unseal_secret(master: &MasterKey, tenant_id: &str, stored: &[u8]) -> Option<String> {
    if stored.len() < WRAPPED_KEY_LEN + HEADER_LEN as usize {
        return None;
    }
    let (wrapped, rest) = stored.split_at(WRAPPED_KEY_LEN);
    let (header, sealed) = rest.split_at(HEADER_LEN as usize);
    let key = master.unwrap(wrapped, &context(tenant_id)).ok()?;
    let header = Header::decode(header).ok()?;
    let mut sealed = sealed.to_vec();
    let plain = Opener::new(&key, header)
        .open_chunk(0, true, &mut sealed)
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_bound_to_the_tenant() {
        let master = MasterKey::generate();
        let sealed = seal_secret(&master, "ten_a", "zs_secret").unwrap();
        assert!(!sealed.windows(9).any(|w| w == b"zs_secret"));
        assert_eq!(
            unseal_secret(&master, "ten_a", &sealed).as_deref(),
            Some("zs_secret")
        );
        assert_eq!(unseal_secret(&master, "ten_b", &sealed), None);
        assert_eq!(
            unseal_secret(&MasterKey::generate(), "ten_a", &sealed),
            None
        );
        assert_eq!(unseal_secret(&master, "ten_a", &sealed[..20]), None);
    }
}
