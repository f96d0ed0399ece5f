//! The database engine under the store. Everything that differs between engines
//! lives behind this module: the driver types, how a pool is opened and tuned, the
//! migration set, and how a write transaction takes its lock. Query modules name
//! only what is exported here ([`DbPool`], [`DbRow`], [`DbConn`], [`DbTx`],
//! [`open`], [`begin_write`]), so another engine is one more file beside
//! `sqlite.rs` plus its migrations; docs/metadata-store.md says how.
//!
//! The SQL the query modules write is the common subset the engines share:
//! numbered placeholders (`$1`), `RETURNING`, `ON CONFLICT … DO UPDATE`, and no
//! engine-only functions.

mod sqlite;

pub(crate) use sqlite::{
    backup, begin_write, check_copy, ensure_unused, open, Db, DbConn, DbPool, DbRow, DbTx,
};

use crate::Result;

/// What a query runs on: the pool, or a connection or transaction the caller holds.
pub(crate) trait Executor<'c>: sqlx::Executor<'c, Database = Db> {}
impl<'c, E: sqlx::Executor<'c, Database = Db>> Executor<'c> for E {}

/// A statement with its arguments bound, not yet run.
pub(crate) type DbQuery<'q> = sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments>;

/// Runs a query and reads its rows with one of the modules' `*_from_row`
/// functions: the tail every list and lookup query shares, so a row that does not
/// read is an error the same way everywhere.
pub(crate) trait FetchRows<'q>: Sized {
    fn into_query(self) -> DbQuery<'q>;

    /// Every row, each read by `from_row`.
    async fn fetch_rows<'c, T>(
        self,
        conn: impl Executor<'c>,
        from_row: RowReader<T>,
    ) -> Result<Vec<T>> {
        let rows = self.into_query().fetch_all(conn).await?;
        rows.iter().map(from_row).collect()
    }

    /// The row, if the query returned one, read by `from_row`.
    async fn fetch_row<'c, T>(
        self,
        conn: impl Executor<'c>,
        from_row: RowReader<T>,
    ) -> Result<Option<T>> {
        let row = self.into_query().fetch_optional(conn).await?;
        row.as_ref().map(from_row).transpose()
    }
}

impl<'q> FetchRows<'q> for DbQuery<'q> {
    fn into_query(self) -> DbQuery<'q> {
        self
    }
}

/// One of the `*_from_row` functions.
type RowReader<T> = fn(&DbRow) -> Result<T>;
