//! The registration of an upload in progress, kept on disk so that running the same
//! `zib upload` again after a crash (or a lost network) resumes it: the node is asked
//! which parts it already holds and only the others are sent.
//!
//! One file per (API, tenant, bucket, key, file path) under the user's cache dir
//! (`$ZIB_UPLOAD_STATE_DIR`, else `$XDG_CACHE_HOME/zib/uploads`, else
//! `~/.cache/zib/uploads`), mode 0600 in a 0700 directory: it holds the file's data
//! key. It is written before the first byte goes out and removed once the upload
//! succeeded or was refused for good.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zib_proto::api::Registration;

/// What a saved registration is for: a different file (size or modification time)
/// under the same path is a new upload, never a resume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ident {
    pub api_url: String,
    pub access_key: String,
    pub bucket: String,
    pub key: String,
    pub path: String,
    pub size: u64,
    pub modified_ns: u128,
}

impl Ident {
    pub fn new(
        api_url: &str,
        access_key: &str,
        bucket: &str,
        key: &str,
        path: &Path,
    ) -> Result<Self> {
        let canonical =
            std::fs::canonicalize(path).with_context(|| format!("resolving {}", path.display()))?;
        let metadata = std::fs::metadata(&canonical)
            .with_context(|| format!("reading {}", canonical.display()))?;
        let modified_ns = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Ok(Self {
            api_url: api_url.to_string(),
            access_key: access_key.to_string(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            path: canonical.to_string_lossy().into_owned(),
            size: metadata.len(),
            modified_ns,
        })
    }

    /// The state file's name: the same upload target always maps to the same file.
    fn slot(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            &self.api_url,
            &self.access_key,
            &self.bucket,
            &self.key,
            &self.path,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        format!("{}.json", &hex::encode(h.finalize())[..32])
    }
}

#[derive(Serialize, Deserialize)]
struct Saved {
    ident: Ident,
    registration: Registration,
}

/// A saved upload slot.
pub struct Slot {
    path: PathBuf,
}

/// What was found in a slot.
pub enum Found {
    Nothing,
    /// The same file, to the same place: resume it.
    Resume(Box<Registration>),
    /// A registration for an older version of the file (or an unreadable slot):
    /// abandoned, its pending file id (if any) for the caller to delete.
    Stale(Option<zib_proto::FileId>),
}

/// `$ZIB_UPLOAD_STATE_DIR`, `$XDG_CACHE_HOME/zib/uploads` or `~/.cache/zib/uploads`.
pub fn state_dir() -> Option<PathBuf> {
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("ZIB_UPLOAD_STATE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("zib").join("uploads")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("zib").join("uploads")))
}

impl Slot {
    pub fn new(dir: &Path, ident: &Ident) -> Self {
        Self {
            path: dir.join(ident.slot()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self, ident: &Ident) -> Result<Found> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Nothing),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        Ok(match serde_json::from_str::<Saved>(&text) {
            Ok(saved) if saved.ident == *ident => Found::Resume(Box::new(saved.registration)),
            Ok(saved) => Found::Stale(Some(saved.registration.file_id)),
            Err(_) => Found::Stale(None),
        })
    }

    /// Written before any byte is sent: from then on a crash leaves something to resume.
    pub fn save(&self, ident: &Ident, registration: &Registration) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        if let Some(dir) = self.path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let json = serde_json::to_string(&Saved {
            ident: ident.clone(),
            registration: registration.clone(),
        })?;
        let tmp = self.path.with_extension("tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        file.write_all(json.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    pub fn remove(&self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove the saved upload");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration() -> Registration {
        serde_json::from_value(serde_json::json!({
            "type": "single", "file_id": "5f0c2f34-8c1b-4d6e-9a57-0f6f2b1c3d4e",
            "bucket": "b", "key": "k", "file_size": 3, "content_type": "text/plain",
            "node_id": "ZB-ABC123", "node_url": "http://n",
            "upload_url": "http://n/v1/upload/x?token=t", "encryption_key": "a2V5",
            "envelope": {"version": 1, "chunk_size": 1024, "nonce_prefix": "00"},
            "ciphertext_size": 40, "cdn_url": "http://c", "expires_at": "2030-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn a_saved_registration_resumes_only_the_same_file_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.txt");
        std::fs::write(&file, b"abc").unwrap();
        let state = dir.path().join("state");
        let ident = Ident::new("http://api", "ak", "b", "k", &file).unwrap();
        let slot = Slot::new(&state, &ident);
        assert!(matches!(slot.load(&ident).unwrap(), Found::Nothing));
        slot.save(&ident, &registration()).unwrap();
        let mode = std::fs::metadata(slot.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(slot.load(&ident).unwrap(), Found::Resume(_)));

        // The file changed: the saved registration is for other bytes.
        std::fs::write(&file, b"abcd").unwrap();
        let changed = Ident::new("http://api", "ak", "b", "k", &file).unwrap();
        assert_eq!(Slot::new(&state, &changed).path(), slot.path());
        assert!(matches!(
            slot.load(&changed).unwrap(),
            Found::Stale(Some(_))
        ));
        slot.remove();
        assert!(matches!(slot.load(&changed).unwrap(), Found::Nothing));
    }
}
