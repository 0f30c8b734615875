//! Fencing on PostgreSQL (feature `postgres`).
//!
//! ```sql
//! -- once (create_fences_table):
//! CREATE TABLE IF NOT EXISTS fencelock_fences (name TEXT PRIMARY KEY, token BIGINT NOT NULL);
//! -- first statement of every fenced transaction (fenced), $1 = name, $2 = the guard's token:
//! INSERT INTO fencelock_fences (name, token) VALUES ($1, $2)
//! ON CONFLICT (name) DO UPDATE SET token = EXCLUDED.token
//! WHERE fencelock_fences.token <= EXCLUDED.token
//! RETURNING token;          -- no row back => stale: roll back
//! ```
//!
//! # Why it is race-free at READ COMMITTED
//!
//! PostgreSQL's default isolation is enough; no `SERIALIZABLE`, no retry loop:
//!
//! - **The row exists.** `ON CONFLICT DO UPDATE` locks the conflicting row before it
//!   evaluates the `WHERE`, and it evaluates it on the *latest committed version* of
//!   the row, not on the statement's snapshot. A transaction that has fenced the same
//!   name and not yet ended holds that lock, so a second one waits, then compares its
//!   token with what the first committed (or with the old value if the first rolled
//!   back). The lock is taken whether or not the `WHERE` passes (PostgreSQL's `INSERT`
//!   reference: "only rows for which this expression returns true will be updated,
//!   although all rows will be locked when the ON CONFLICT DO UPDATE action is taken")
//!   and is held until commit or rollback: fenced transactions of one name run their
//!   fenced part one at a time, in an order where the stored token never decreases.
//! - **The row does not exist yet.** Two first inserts race on the primary key: the
//!   second waits for the first transaction to end (speculative insertion), then takes
//!   the conflict path above if it committed, or inserts if it rolled back.
//!
//! So a write made after `fenced` in the same transaction can commit only while no
//! higher token has been committed for the name, and commits before any later-fenced
//! write of that name. A rolled-back transaction undoes its raise of the fence.
//!
//! The column form ([`fenced_row`]) runs `UPDATE t SET fence_token = $1 WHERE key = $2
//! AND fence_token <= $1`: an `UPDATE` at READ COMMITTED also waits for a concurrent
//! writer of the row and re-checks its `WHERE` on the newest version (EvalPlanQual),
//! and keeps the row locked until the transaction ends.
//!
//! # Examples
//!
//! ```no_run
//! use lock_core::FencingToken;
//! use lock_fence::postgres;
//!
//! # async fn charge(pool: sqlx::PgPool, token: FencingToken) -> Result<(), lock_fence::Error> {
//! let mut tx = pool.begin().await?;
//! postgres::fenced(&mut tx, "order/42", token).await?; // Err(Stale) => tx dropped: rolled back
//! sqlx::query("INSERT INTO charges (order_id, amount) VALUES (42, 999)")
//!     .execute(&mut *tx)
//!     .await?;
//! tx.commit().await?;
//! # Ok(()) }
//! ```
//!
//! (`no_run`: it needs a PostgreSQL server; the integration tests start one.)

crate::driver::fence_functions!(sqlx::Postgres, sqlx::PgConnection, "PostgreSQL");
