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

pub(crate) use sqlite::{begin_write, open, DbConn, DbPool, DbRow, DbTx};
