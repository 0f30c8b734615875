//! Fencing where the data lives: accept a lock's [`FencingToken`] inside your own SQL
//! transaction, so the transaction's writes commit only if no newer holder has written.
//!
//! A lock alone cannot stop a holder that paused (GC, swap, a stopped VM) past its
//! lease from writing after the lock passed on; only the resource can, by refusing
//! tokens older than the highest it has accepted. [`lock_core::Fence`] does this in
//! memory, for one process; this crate does it in the database, in the **same
//! transaction** as the write it protects, on SQLite (embedded) and PostgreSQL,
//! through [`sqlx`].
//!
//! Two forms, per driver module ([`sqlite`], [`postgres`]):
//!
//! | form | schema | call |
//! | --- | --- | --- |
//! | a fences table | `fencelock_fences(name TEXT PRIMARY KEY, token BIGINT)`, made by `create_fences_table` | `fenced(&mut tx, name, token)` |
//! | a column on your table | `fence_token BIGINT NOT NULL DEFAULT 0` ([`FenceColumn::add_column_sql`]) | `fenced_row(&mut tx, &col, key, token)` |
//! | a read-write lock's fence | `fencelock_rw_fences(name TEXT PRIMARY KEY, any_token BIGINT, write_token BIGINT)`, made by `create_rw_fences_table` | `fenced_write(&mut tx, name, token)` / `fenced_read(&mut tx, name, token)` |
//!
//! The fences table fits any write (inserts of new rows, several tables, a row that
//! may not exist yet); the column needs no extra table but fences one existing row.
//!
//! **Read-write locks** ([`RwLock`](lock_core::RwLock)): a writer's token must be ≥
//! every token accepted so far, readers' included; a reader's ≥ the highest *write*
//! token, and an accepted reader raises the name's highest token so an older writer is
//! refused after it (the rule of [`lock_core::Fence::check_write`] and
//! [`check_read`](lock_core::Fence::check_read)). **Semaphores**
//! ([`Semaphore`](lock_core::Semaphore)): a permit's bare token fences nothing (up to
//! `limit` holders are valid at once); fence per slot instead, with the ordinary
//! `fenced(&mut tx, &permit.fence_key(), permit.token())` (the name is `name#slot`, and
//! successive holders of one slot have increasing tokens). That refuses a paused
//! former holder of the *same slot* once the slot's next holder has written; it does
//! not bound how many holders act at once.
//!
//! # Guarantees
//!
//! - Per fence name, fenced transactions that commit do so in non-decreasing token
//!   order, at the database's **default isolation** (READ COMMITTED on PostgreSQL;
//!   SQLite's single writer): each driver module says why its statement is race-free.
//! - A token lower than the highest committed is refused with [`StaleToken`], carrying
//!   both tokens; an equal token is accepted (one holder, many writes).
//! - A transaction that rolls back does not advance the fence.
//!
//! # Non-guarantees
//!
//! - The fence protects only writes made in the same transaction after `fenced`
//!   succeeded; roll back on any error.
//! - Tokens of different backends, or of different stores of one backend, are not
//!   comparable: fence a name with tokens from one lock service only.
//! - Tokens above `i64::MAX` do not fit `BIGINT` and are refused
//!   ([`Error::TokenOutOfRange`]); no backend hands such tokens out today.
//!
//! # Features
//!
//! | feature | driver | default |
//! | --- | --- | --- |
//! | `sqlite` | `sqlx-sqlite` (compiles a bundled libsqlite3) | no |
//! | `postgres` | `sqlx-postgres` (pure Rust, no TLS) | no |
//!
//! The facade `fencelock` re-exports this crate as `fencelock::fence` with its features
//! `fence-sqlite` and `fence-postgres`. The [`sqlx`] version is part of this crate's
//! API (you pass its transactions in); it is re-exported as `lock_fence::sqlx`.
//!
//! # Quick start
//!
//! See [`sqlite`] for a runnable example, and `examples/payment.rs` in the repository.
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without a driver only the shared schema and error types remain.
#![cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod driver;
mod error;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
mod schema;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

pub use error::{Error, StaleToken};
pub use lock_core::FencingToken;
pub use schema::{FenceColumn, FENCES_TABLE, RW_FENCES_TABLE};
pub use sqlx;
