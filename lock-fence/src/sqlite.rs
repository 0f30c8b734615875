//! Fencing on SQLite (feature `sqlite`): embedded, no server.
//!
//! The statements are the same text as on PostgreSQL (SQLite ≥ 3.35 has `ON CONFLICT
//! … DO UPDATE … WHERE` and `RETURNING`; the bundled library is newer):
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS fencelock_fences (name TEXT PRIMARY KEY, token BIGINT NOT NULL);
//! BEGIN IMMEDIATE;                         -- begin_immediate
//! INSERT INTO fencelock_fences (name, token) VALUES ($1, $2)
//! ON CONFLICT (name) DO UPDATE SET token = EXCLUDED.token
//! WHERE fencelock_fences.token <= EXCLUDED.token
//! RETURNING token;                         -- no row back => stale: ROLLBACK
//! ```
//!
//! # Why it is race-free
//!
//! SQLite lets one connection write a database file at a time: a write transaction
//! holds the file's write lock (`RESERVED`, or the WAL write lock) from its first
//! write until it commits or rolls back, and it always reads the latest committed
//! state (in WAL mode a writer whose snapshot is old gets `SQLITE_BUSY_SNAPSHOT`
//! instead). The fence statement is a write, so every fenced transaction holds the
//! write lock from `fenced` to its end: fenced transactions run one at a time, each
//! comparing against everything committed before it, whatever the isolation pragmas.
//!
//! Start fenced transactions with [`begin_immediate`] (`BEGIN IMMEDIATE`): it takes
//! the write lock up front and waits for it under the busy timeout (sqlx's default is
//! 5 s). A plain deferred `BEGIN` is as safe, but if the transaction *reads* before
//! `fenced`, upgrading to the write lock can fail at once with `SQLITE_BUSY` (SQLite
//! refuses to wait where waiting could deadlock): an [`Error::Database`] to retry,
//! never a stale write.
//!
//! # Examples
//!
//! ```
//! use lock_core::{FencingToken, LockClient};
//! use lock_fence::sqlite;
//! use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let db = SqliteConnectOptions::new()
//!     .filename(dir.path().join("shop.db"))
//!     .create_if_missing(true);
//! let pool = SqlitePool::connect_with(db).await?;
//! sqlite::create_fences_table(&mut *pool.acquire().await?).await?;
//! sqlx::query("CREATE TABLE charges (order_id INTEGER, token BIGINT)").execute(&pool).await?;
//!
//! let locks = LockClient::new(lock_memory::MemoryBackend::new());
//! let guard = locks.acquire("order/42").await?;
//! let mut tx = sqlite::begin_immediate(&pool).await?;
//! sqlite::fenced(&mut tx, "order/42", guard.token()).await?;
//! sqlx::query("INSERT INTO charges VALUES (42, $1)")
//!     .bind(guard.token().get() as i64)
//!     .execute(&mut *tx)
//!     .await?;
//! tx.commit().await?;
//!
//! // An older token is refused, with both tokens in the error.
//! let mut tx = sqlite::begin_immediate(&pool).await?;
//! let older = FencingToken::new(guard.token().get() - 1);
//! let err = sqlite::fenced(&mut tx, "order/42", older).await.unwrap_err();
//! assert_eq!(err.stale().map(|s| s.highest), Some(guard.token()));
//! drop(tx); // rolled back
//! guard.release().await?;
//! # Ok(()) }
//! ```

crate::driver::fence_functions!(sqlx::Sqlite, sqlx::SqliteConnection, "SQLite");

/// Begins a transaction with `BEGIN IMMEDIATE`: it takes SQLite's write lock now,
/// waiting for it up to the pool's busy timeout, so a later `fenced` cannot fail with
/// an immediate `SQLITE_BUSY`.
///
/// # Errors
///
/// [`Error::Database`] (for example the busy timeout ran out).
///
/// # Cancel safety
///
/// Dropping the future returns the connection to the pool, rolled back.
pub async fn begin_immediate(
    pool: &sqlx::SqlitePool,
) -> Result<Transaction<'static, sqlx::Sqlite>, Error> {
    pool.begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(Error::db("BEGIN IMMEDIATE"))
}
