//! SQLite: one file in WAL mode, a small pool, and writers serialised by
//! `BEGIN IMMEDIATE`.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqliteLockingMode, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};

use crate::{MetaError, Result};

/// The sqlx driver.
pub(crate) type Db = sqlx::Sqlite;
pub(crate) type DbPool = sqlx::Pool<Db>;
pub(crate) type DbRow = sqlx::sqlite::SqliteRow;
/// One connection, as a transaction derefs to: what helpers that run inside the
/// caller's transaction take.
pub(crate) type DbConn = sqlx::SqliteConnection;
pub(crate) type DbTx = sqlx::Transaction<'static, Db>;

/// SQLite allows one writer at a time; a few connections serve concurrent readers
/// while writers queue on the busy timeout.
const MAX_CONNECTIONS: u32 = 4;
/// Long enough to ride out another connection's write transaction, short enough
/// that a stuck writer surfaces as an error rather than a hung request.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema history. The files' names and bytes are what databases already
/// opened have recorded, so they never change once released: a change is a new
/// file.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Opens (creating if needed) the database file in WAL mode and runs migrations.
pub(crate) async fn open(path: &Path) -> Result<DbPool> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .connect_with(options)
        .await?;
    MIGRATOR.run(&pool).await?;
    tracing::debug!(path = %path.display(), "metadata store open");
    Ok(pool)
}

/// Starts a transaction that holds the write lock from its first statement, so a
/// read-then-write transaction cannot fail on a snapshot another writer moved.
pub(crate) async fn begin_write(pool: &DbPool) -> Result<DbTx> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

/// An online, consistent copy of the whole store at `dest`, which must not exist:
/// `VACUUM INTO` reads one snapshot while writers go on.
pub(crate) async fn backup(pool: &DbPool, dest: &Path) -> Result<()> {
    let target = dest
        .to_str()
        .ok_or_else(|| MetaError::Backup(format!("{} is not a UTF-8 path", dest.display())))?;
    sqlx::query("VACUUM INTO $1")
        .bind(target)
        .execute(pool)
        .await?;
    Ok(())
}

/// What a copy of the store holds, once it checked out.
pub(crate) struct CopyContents {
    pub schema_version: i64,
    pub tenants: i64,
    pub files: i64,
}

/// Opens a copy read-only and checks every page (`PRAGMA integrity_check`), then
/// that its schema history is a prefix of this build's: a damaged file, another
/// database or one from a newer zib is refused before it can replace anything.
pub(crate) async fn check_copy(path: &Path) -> Result<CopyContents> {
    let shown = path.display();
    let not_a_store =
        |e: sqlx::Error| MetaError::Backup(format!("{shown} is not a ZiB metadata store: {e}"));
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false)
        .connect()
        .await
        .map_err(not_a_store)?;
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .map_err(not_a_store)?;
    if verdict != "ok" {
        return Err(MetaError::Backup(format!("{shown} is damaged: {verdict}")));
    }
    let applied: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT version, checksum FROM _sqlx_migrations WHERE success = 1 ORDER BY version",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(not_a_store)?;
    let known: Vec<(i64, &[u8])> = MIGRATOR
        .iter()
        .map(|m| (m.version, m.checksum.as_ref()))
        .collect();
    let Some((schema_version, _)) = applied.last().cloned() else {
        return Err(MetaError::Backup(format!(
            "{shown} is not a ZiB metadata store: no schema history"
        )));
    };
    for (i, (version, checksum)) in applied.iter().enumerate() {
        match known.get(i) {
            Some((v, c)) if v == version && *c == checksum.as_slice() => {}
            Some(_) => {
                return Err(MetaError::Backup(format!(
                    "{shown} has a schema history this zib does not share (at version {version})"
                )))
            }
            None => {
                return Err(MetaError::Backup(format!(
                    "{shown} was made by a newer zib (schema version {schema_version})"
                )))
            }
        }
    }
    let tenants: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenants")
        .fetch_one(&mut conn)
        .await?;
    let files: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM files")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(CopyContents {
        schema_version,
        tenants,
        files,
    })
}

/// Fails if any process has the store at `path` open (a running server keeps
/// connections open, and SQLite then refuses an exclusive lock); else folds the
/// WAL into the file, so the file alone is the whole store.
pub(crate) async fn ensure_unused(path: &Path) -> Result<()> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .locking_mode(SqliteLockingMode::Exclusive)
        .busy_timeout(Duration::from_millis(500))
        .connect()
        .await
        .map_err(|e| in_use(path, e))?;
    let held = async {
        sqlx::query("BEGIN EXCLUSIVE").execute(&mut conn).await?;
        sqlx::query("COMMIT").execute(&mut conn).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await
    }
    .await;
    held.map_err(|e| in_use(path, e))?;
    conn.close().await?;
    Ok(())
}

fn in_use(path: &Path, e: sqlx::Error) -> MetaError {
    MetaError::Backup(format!(
        "{} is in use or unreadable (stop the server first): {e}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::MIGRATOR;

    /// Databases already created record each applied migration's version and
    /// checksum (SHA-384 of the file); if one moved, they would refuse to open.
    /// New migrations come after these and need no entry here.
    #[test]
    fn migration_history_is_unchanged() {
        let expected: [(i64, &str); 4] = [
            (1, "41a402c59708de678dd4953781074c2221a57e3f3faae149635b582ffe59b469c20ea24c4e880129f5ddde56a03231f8"),
            (2, "ca281d44831429c5c0d363d59ea6ae5e258c91e3b723c3a3c5a1101ea9450ddbd71360782973470cbd58ca54bd763914"),
            (3, "d1760e1d16c4cb64f6260da63f4101491a1a17d323b3bfbd10e4f91a5507162fa5d67fa71cbb2ba7c95a1881367d6a8a"),
            (4, "27c99a39ab689e966c0ac4dc31209ea6c247455b44a7e63364b4efe1252f3120b702954dc5e98ddee32bb9548e370c06"),
        ];
        let got: Vec<(i64, String)> = MIGRATOR
            .iter()
            .map(|m| {
                let hex = m.checksum.iter().map(|b| format!("{b:02x}")).collect();
                (m.version, hex)
            })
            .collect();
        assert!(got.len() >= expected.len(), "a released migration is gone");
        for ((version, hex), (want_version, want_hex)) in got.iter().zip(expected) {
            assert_eq!(*version, want_version);
            assert_eq!(hex, want_hex, "migration {version} changed");
        }
    }
}
