//! `zib backup` and `zib restore`: the metadata store copied while the server runs,
//! and put back while it is stopped (docs/operations.md, "Backup and restore").

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use zib_server::config::ServerSettings;

use crate::{config, dev_dir};

/// Which metadata store: a server's (its config) or a `zib dev` directory's.
#[derive(Args)]
pub struct StoreArgs {
    /// The server's config file (its `database` key names the store).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// A `zib dev` data directory instead of a config file.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl StoreArgs {
    fn database(&self) -> Result<PathBuf> {
        Ok(match &self.data_dir {
            Some(dir) => dev_dir::database_path(dir),
            None => config::load::<ServerSettings>(self.config.as_deref())?.database_path,
        })
    }
}

#[derive(Args)]
pub struct BackupArgs {
    /// Where the copy goes; must not exist.
    dest: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The backup to put in place (made by `zib backup`).
    backup: PathBuf,
    /// Replace the store that is there (it is moved aside, never deleted).
    #[arg(long)]
    replace: bool,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn backup(args: BackupArgs) -> Result<()> {
    let database = args.store.database()?;
    // Opening would create an empty store where none is: say so instead.
    if !database.exists() {
        bail!("no metadata store at {}", database.display());
    }
    let store = zib_meta::Store::open_sqlite(&database)
        .await
        .with_context(|| format!("opening metadata store {}", database.display()))?;
    let report = store
        .backup_to(&args.dest)
        .await
        .with_context(|| format!("backing up {}", database.display()))?;
    println!(
        "{}",
        serde_json::json!({
            "backup": report.path,
            "bytes": report.bytes,
            "schema_version": report.schema_version,
            "tenants": report.tenants,
            "files": report.files,
        })
    );
    eprintln!(
        "The backup holds wrapped keys only: keep the server's master_key (zib dev: \
         secrets.json) with it, or no file in it can be read."
    );
    Ok(())
}

/// Names the replaced store apart from any earlier one.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub async fn restore(args: RestoreArgs) -> Result<()> {
    let database = args.store.database()?;
    let restored = zib_meta::restore(&args.backup, &database, args.replace, now_ms())
        .await
        .with_context(|| format!("restoring {}", database.display()))?;
    println!(
        "{}",
        serde_json::json!({
            "restored": database,
            "from": restored.backup.path,
            "replaced": restored.replaced,
            "schema_version": restored.backup.schema_version,
            "tenants": restored.backup.tenants,
            "files": restored.backup.files,
        })
    );
    eprintln!(
        "Start the server. Files stored after the backup are unknown to it: their \
         shards are collected as orphans after garbage_grace."
    );
    Ok(())
}
