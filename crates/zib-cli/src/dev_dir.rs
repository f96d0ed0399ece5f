//! The layout of a `zib dev` data directory: `meta.db`, `secrets.json` (generated
//! once) and private files. `zib dev` creates it; `zib tenant create --data-dir`
//! reads it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use zib_crypto::{CapabilitySigner, MasterKey};

use crate::keys::random_token;

/// Generated once per data directory.
#[derive(Serialize, Deserialize)]
pub struct DevSecrets {
    pub master_key: String,
    pub capability_key: String,
    pub cluster_token: String,
}

/// The metadata store of a dev directory.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("meta.db")
}

/// The master key of an existing dev directory (for `zib tenant create --data-dir`).
pub fn stored_master_key(dir: &Path) -> Result<MasterKey> {
    let path = dir.join("secrets.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let secrets: DevSecrets =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    MasterKey::from_hex(&secrets.master_key).context("secrets.json: master_key")
}

/// Writes `contents` readable by the owner only (secrets and credentials).
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The directory's secrets, generated and written on first use.
pub fn load_or_create_secrets(dir: &Path) -> Result<DevSecrets> {
    let path = dir.join("secrets.json");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()));
    }
    let secrets = DevSecrets {
        master_key: MasterKey::generate().to_hex(),
        capability_key: CapabilitySigner::generate().seed_hex(),
        cluster_token: random_token(),
    };
    write_private(&path, &serde_json::to_string_pretty(&secrets)?)?;
    Ok(secrets)
}
