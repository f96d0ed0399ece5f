//! Fresh secrets: `zib keygen` prints them for a config file, `zib dev` keeps them in
//! its data directory.

use rand::RngCore;
use zib_crypto::{CapabilitySigner, MasterKey};

/// 32 random bytes as hex: a cluster token.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// `zib keygen`: the three secret keys of a server config, as TOML lines.
pub fn keygen() {
    println!("master_key = \"{}\"", MasterKey::generate().to_hex());
    println!(
        "capability_key = \"{}\"",
        CapabilitySigner::generate().seed_hex()
    );
    println!("cluster_token = \"{}\"", random_token());
}
