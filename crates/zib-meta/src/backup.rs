//! Backups of the metadata store and putting one back (docs/operations.md, "Backup
//! and restore"). The engine takes the copy and checks it; here is the file
//! handling around it: a backup never overwrites, a restore never deletes (a store
//! it replaces is moved aside, WAL and all).

use std::path::{Path, PathBuf};

use crate::{engine, MetaError, Result, Store};

/// A checked copy of the store: where, how big, and what it holds.
#[derive(Clone, Debug)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    /// The last migration applied to it.
    pub schema_version: i64,
    pub tenants: i64,
    pub files: i64,
}

/// What [`restore`] did.
#[derive(Clone, Debug)]
pub struct Restored {
    /// The backup now in place.
    pub backup: BackupReport,
    /// Where the store it replaced went, if there was one.
    pub replaced: Option<PathBuf>,
}

/// The store's own file and the two SQLite keeps beside it.
const STORE_FILES: [&str; 3] = ["", "-wal", "-shm"];

impl Store {
    /// An online, consistent copy of the store at `dest` (which must not exist),
    /// taken while the server runs, synced to disk and checked page by page.
    pub async fn backup_to(&self, dest: &Path) -> Result<BackupReport> {
        if dest.exists() {
            return Err(MetaError::Backup(format!(
                "{} exists: a backup never overwrites a file",
                dest.display()
            )));
        }
        engine::backup(&self.pool, dest).await?;
        sync_file(dest)?;
        sync_parent(dest)?;
        report(dest).await
    }
}

/// Puts the backup at `src` in place of the store at `dest`. Refused when `src` is
/// not a sound store this build knows, while any process has the store open (a
/// running server), and, unless `replace`, when a store is there. A replaced store
/// is moved aside with its WAL (`<name>.replaced-<now_ms>`), never deleted.
pub async fn restore(src: &Path, dest: &Path, replace: bool, now_ms: i64) -> Result<Restored> {
    let backup = report(src).await?;
    let present = STORE_FILES
        .iter()
        .any(|suffix| with_suffix(dest, suffix).exists());
    let replaced = if present {
        if !replace {
            return Err(MetaError::Backup(format!(
                "{} holds a store: pass --replace to put the backup in its place (the \
                 store there is kept beside it)",
                dest.display()
            )));
        }
        if dest.exists() {
            engine::ensure_unused(dest).await?;
        }
        Some(move_aside(dest, now_ms)?)
    } else {
        None
    };
    copy_durably(src, dest)?;
    Ok(Restored { backup, replaced })
}

async fn report(path: &Path) -> Result<BackupReport> {
    let contents = engine::check_copy(path).await?;
    let bytes = std::fs::metadata(path)
        .map_err(|e| io_error("reading", path, e))?
        .len();
    Ok(BackupReport {
        path: path.to_path_buf(),
        bytes,
        schema_version: contents.schema_version,
        tenants: contents.tenants,
        files: contents.files,
    })
}

fn move_aside(dest: &Path, now_ms: i64) -> Result<PathBuf> {
    let aside = with_suffix(dest, &format!(".replaced-{now_ms}"));
    for suffix in STORE_FILES {
        let from = with_suffix(dest, suffix);
        if from.exists() {
            std::fs::rename(&from, with_suffix(&aside, suffix))
                .map_err(|e| io_error("moving aside", &from, e))?;
        }
    }
    sync_parent(dest)?;
    Ok(aside)
}

/// Copied beside the target, synced, then renamed over it: a crash leaves the old
/// state or the new one, never half a store under the store's name.
fn copy_durably(src: &Path, dest: &Path) -> Result<()> {
    let partial = with_suffix(dest, ".restoring");
    std::fs::copy(src, &partial).map_err(|e| io_error("copying the backup to", &partial, e))?;
    sync_file(&partial)?;
    std::fs::rename(&partial, dest).map_err(|e| io_error("renaming", &partial, e))?;
    sync_parent(dest)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error("syncing", path, e))
}

fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    sync_file(parent)
}

fn io_error(what: &'static str, path: &Path, source: std::io::Error) -> MetaError {
    MetaError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store_with_tenant(dir: &Path) -> (PathBuf, Store) {
        let path = dir.join("meta.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        store.create_tenant("before", "AK1", "x").await.unwrap();
        (path, store)
    }

    #[tokio::test]
    async fn a_backup_is_a_checked_snapshot_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let (_, store) = store_with_tenant(dir.path()).await;
        let copy = dir.path().join("copy.db");
        let report = store.backup_to(&copy).await.unwrap();
        assert_eq!((report.tenants, report.files), (1, 0));
        assert!(report.bytes > 0 && report.schema_version >= 9);

        store.create_tenant("after", "AK2", "y").await.unwrap();
        let again = store.backup_to(&copy).await.unwrap_err();
        assert!(again.to_string().contains("never overwrites"), "{again}");
        // The first copy is unchanged: still the one tenant.
        assert_eq!(report_of(&copy).await.tenants, 1);
    }

    async fn report_of(path: &Path) -> BackupReport {
        report(path).await.unwrap()
    }

    #[tokio::test]
    async fn a_restore_refuses_what_would_lose_data_and_keeps_what_it_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let (live, store) = store_with_tenant(dir.path()).await;
        let copy = dir.path().join("copy.db");
        store.backup_to(&copy).await.unwrap();
        store.create_tenant("after", "AK2", "y").await.unwrap();

        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![7u8; 8192]).unwrap();
        let refused = restore(&garbage, &live, true, 1).await.unwrap_err();
        assert!(
            refused.to_string().contains("not a ZiB metadata store"),
            "{refused}"
        );

        let refused = restore(&copy, &live, false, 1).await.unwrap_err();
        assert!(refused.to_string().contains("--replace"), "{refused}");

        // The store is open (as by a running server): refused, and left alone.
        let refused = restore(&copy, &live, true, 1).await.unwrap_err();
        assert!(refused.to_string().contains("in use"), "{refused}");
        assert!(store.tenant_by_access_key("AK2").await.unwrap().is_some());

        store.close().await;
        let done = restore(&copy, &live, true, 1234).await.unwrap();
        let aside = done.replaced.unwrap();
        assert!(
            aside.ends_with("meta.db.replaced-1234"),
            "{}",
            aside.display()
        );
        let restored = Store::open_sqlite(&live).await.unwrap();
        assert!(restored
            .tenant_by_access_key("AK1")
            .await
            .unwrap()
            .is_some());
        assert!(restored
            .tenant_by_access_key("AK2")
            .await
            .unwrap()
            .is_none());
        // What it replaced is whole, the later tenant in it.
        let kept = Store::open_sqlite(&aside).await.unwrap();
        assert!(kept.tenant_by_access_key("AK2").await.unwrap().is_some());
    }
}
