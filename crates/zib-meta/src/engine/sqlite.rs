//! SQLite: one file in WAL mode, a small pool, and writers serialised by
//! `BEGIN IMMEDIATE`.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::Result;

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
