//! The fence functions, written once for both drivers: the SQL is the same text on
//! PostgreSQL and SQLite (`$N` parameters, `ON CONFLICT … DO UPDATE … WHERE`,
//! `RETURNING`); only the driver types differ, so each driver module expands this macro.

/// Expands the fence functions for one sqlx driver: `$db` is the database type,
/// `$conn` its connection type, `$doc` its name for the docs.
macro_rules! fence_functions {
    ($db:ty, $conn:ty, $doc:literal) => {
        use crate::{schema, Error, FenceColumn, StaleToken};
        use lock_core::FencingToken;
        use sqlx::Transaction;
        use std::fmt::Display;

        #[doc = concat!("Creates the `fencelock_fences(name TEXT PRIMARY KEY, token BIGINT NOT NULL)` table on ", $doc, " if it does not exist.")]
        ///
        /// Run it once, at start-up or in a migration.
        ///
        /// # Errors
        ///
        /// [`Error::Database`].
        pub async fn create_fences_table(conn: &mut $conn) -> Result<(), Error> {
            create_table(conn, schema::CREATE_FENCES, schema::FENCES_TABLE).await
        }

        async fn create_table(conn: &mut $conn, sql: &'static str, table: &'static str) -> Result<(), Error> {
            sqlx::query(sql)
                .execute(&mut *conn)
                .await
                .map_err(Error::db(table))?;
            Ok(())
        }

        /// Runs one fence upsert; whether it passed (a row came back).
        async fn passes(
            tx: &mut Transaction<'_, $db>,
            statement: &'static str,
            name: &str,
            token: FencingToken,
        ) -> Result<bool, Error> {
            let value = schema::to_sql(name, token)?;
            let passed = sqlx::query_scalar::<_, i64>(statement)
                .bind(name)
                .bind(value)
                .fetch_optional(&mut **tx)
                .await
                .map_err(Error::db(name))?;
            Ok(passed.is_some())
        }

        /// Accepts `token` for the fence `name` inside the caller's transaction, or
        /// refuses it with [`StaleToken`].
        ///
        /// Runs one statement on `fencelock_fences` (see the module docs for why it is
        /// race-free):
        ///
        /// ```sql
        /// INSERT INTO fencelock_fences (name, token) VALUES ($1, $2)
        /// ON CONFLICT (name) DO UPDATE SET token = EXCLUDED.token
        /// WHERE fencelock_fences.token <= EXCLUDED.token
        /// RETURNING token
        /// ```
        ///
        /// Call it before the transaction's own writes and commit only when it
        /// returned `Ok`: the writes then commit together with the raised fence, or
        /// not at all. A token equal to the highest is accepted (one holder writes many
        /// times).
        ///
        /// # Guarantees
        ///
        /// Among the transactions that passed `fenced` for one `name` and committed,
        /// commit order is token order: none commits with a token lower than one
        /// committed before it. A transaction that rolls back leaves the fence as it
        /// was.
        ///
        /// # Non-guarantees
        ///
        /// Writes made *after* a refusal in the same transaction are not stopped: roll
        /// back on `Err`. The fence row stays locked until the transaction ends, so
        /// keep fenced transactions short.
        ///
        /// # Errors
        ///
        /// [`Error::Stale`] when a higher token was accepted; [`Error::TokenOutOfRange`]
        /// above `i64::MAX`; [`Error::InvalidInput`] for an empty name;
        /// [`Error::Database`], including a missing `fencelock_fences` table.
        ///
        /// # Cancel safety
        ///
        /// Dropping the future may leave the statement applied inside the
        /// transaction; dropping the transaction then rolls it back.
        pub async fn fenced(
            tx: &mut Transaction<'_, $db>,
            name: &str,
            token: FencingToken,
        ) -> Result<(), Error> {
            if passes(tx, schema::UPSERT_FENCE, name, token).await? {
                return Ok(());
            }
            let highest = highest(&mut **tx, name).await?;
            Err(stale(name, token, highest))
        }

        /// The highest token accepted for `name` in `fencelock_fences`, as this
        /// connection sees it; `None` before the first.
        ///
        /// # Errors
        ///
        /// [`Error::Database`].
        pub async fn highest(conn: &mut $conn, name: &str) -> Result<Option<FencingToken>, Error> {
            let found = sqlx::query_scalar::<_, i64>(schema::SELECT_FENCE)
                .bind(name)
                .fetch_optional(&mut *conn)
                .await
                .map_err(Error::db(name))?;
            Ok(found.map(schema::from_sql))
        }

        /// Accepts `token` on the row `key` of a table with a fence column (see
        /// [`FenceColumn`]) inside the caller's transaction, or refuses it with
        /// [`StaleToken`] (whose `name` is the key).
        ///
        /// Runs `UPDATE t SET fence_token = $1 WHERE key = $2 AND fence_token <= $1`;
        /// the row stays locked for the rest of the transaction, so update it next and
        /// commit. Same guarantees as [`fenced`], per row.
        ///
        /// # Errors
        ///
        /// [`Error::Stale`]; [`Error::NoRow`] when no row has that key;
        /// [`Error::TokenOutOfRange`]; [`Error::Database`].
        ///
        /// # Cancel safety
        ///
        /// As [`fenced`].
        pub async fn fenced_row<'c, K>(
            tx: &mut Transaction<'_, $db>,
            col: &'c FenceColumn,
            key: K,
            token: FencingToken,
        ) -> Result<(), Error>
        where
            K: 'c + sqlx::Encode<'c, $db> + sqlx::Type<$db> + Clone + Display + Send,
        {
            let name = key.to_string();
            let value = schema::to_sql(&name, token)?;
            let updated = sqlx::query(col.update_sql())
                .bind(value)
                .bind(key.clone())
                .execute(&mut **tx)
                .await
                .map_err(Error::db(&name))?;
            if updated.rows_affected() > 0 {
                return Ok(());
            }
            let found = sqlx::query_scalar::<_, i64>(col.select_sql())
                .bind(key)
                .fetch_optional(&mut **tx)
                .await
                .map_err(Error::db(&name))?;
            match found {
                Some(highest) => Err(stale(&name, token, Some(schema::from_sql(highest)))),
                None => Err(Error::NoRow {
                    table: col.table().to_owned(),
                    key: name,
                }),
            }
        }

        #[doc = concat!("Creates the `fencelock_rw_fences(name TEXT PRIMARY KEY, any_token BIGINT NOT NULL, write_token BIGINT NOT NULL)` table on ", $doc, " if it does not exist: the fences of [`fenced_read`] and [`fenced_write`].")]
        ///
        /// # Errors
        ///
        /// [`Error::Database`].
        pub async fn create_rw_fences_table(conn: &mut $conn) -> Result<(), Error> {
            create_table(conn, schema::CREATE_RW_FENCES, schema::RW_FENCES_TABLE).await
        }

        /// The write side of a read-write lock's fence: accepts the token of a
        /// [`RwLock`](lock_core::RwLock) *write* guard inside the caller's transaction
        /// when it is at least every token accepted so far for `name`, reads
        /// included, or refuses it with [`StaleToken`] (whose `highest` is the highest
        /// token accepted).
        ///
        /// ```sql
        /// INSERT INTO fencelock_rw_fences (name, any_token, write_token) VALUES ($1, $2, $2)
        /// ON CONFLICT (name) DO UPDATE SET any_token = EXCLUDED.any_token, write_token = EXCLUDED.write_token
        /// WHERE fencelock_rw_fences.any_token <= EXCLUDED.any_token
        /// RETURNING any_token
        /// ```
        ///
        /// The same mode-aware rule as [`lock_core::Fence::check_write`], in the
        /// database, race-free for the same reason as [`fenced`] (one upsert that locks
        /// the name's row until the transaction ends). A name fenced here is a
        /// different fence from the same name in [`fenced`]'s table: use one form per
        /// resource.
        ///
        /// # Errors
        ///
        /// As [`fenced`], with `fencelock_rw_fences` for the table.
        ///
        /// # Cancel safety
        ///
        /// As [`fenced`].
        pub async fn fenced_write(
            tx: &mut Transaction<'_, $db>,
            name: &str,
            token: FencingToken,
        ) -> Result<(), Error> {
            rw_fence(tx, schema::UPSERT_RW_WRITE, name, token, |(any, _)| any).await
        }

        /// The read side of a read-write lock's fence: accepts the token of a
        /// [`RwLock`](lock_core::RwLock) *read* guard when it is at least the highest
        /// *write* token accepted for `name` (readers are not ordered among
        /// themselves), and raises the name's highest token to it, so a writer older
        /// than this reader is refused afterwards; or refuses it with [`StaleToken`]
        /// (whose `highest` is the highest write token).
        ///
        /// ```sql
        /// INSERT INTO fencelock_rw_fences (name, any_token, write_token) VALUES ($1, $2, 0)
        /// ON CONFLICT (name) DO UPDATE SET any_token = CASE
        ///     WHEN fencelock_rw_fences.any_token > EXCLUDED.any_token THEN fencelock_rw_fences.any_token
        ///     ELSE EXCLUDED.any_token END
        /// WHERE fencelock_rw_fences.write_token <= EXCLUDED.any_token
        /// RETURNING any_token
        /// ```
        ///
        /// The same rule as [`lock_core::Fence::check_read`]. Call it in the
        /// transaction that reads the protected data, before the reads: the row lock
        /// it takes orders the read after every committed write of an older or equal
        /// token, and before any write that would be refused.
        ///
        /// # Non-guarantees
        ///
        /// The row lock serializes readers of one name for the rest of their
        /// transactions (a database row lock has no shared mode here): keep fenced
        /// read transactions short.
        ///
        /// # Errors
        ///
        /// As [`fenced_write`].
        ///
        /// # Cancel safety
        ///
        /// As [`fenced`].
        pub async fn fenced_read(
            tx: &mut Transaction<'_, $db>,
            name: &str,
            token: FencingToken,
        ) -> Result<(), Error> {
            rw_fence(tx, schema::UPSERT_RW_READ, name, token, |(_, write)| write).await
        }

        /// The highest token accepted for `name` in `fencelock_rw_fences` (reads and
        /// writes) and the highest write token; `None` before the first.
        ///
        /// # Errors
        ///
        /// [`Error::Database`].
        pub async fn highest_rw(
            conn: &mut $conn,
            name: &str,
        ) -> Result<Option<(FencingToken, FencingToken)>, Error> {
            let found = sqlx::query_as::<_, (i64, i64)>(schema::SELECT_RW_FENCE)
                .bind(name)
                .fetch_optional(&mut *conn)
                .await
                .map_err(Error::db(name))?;
            Ok(found.map(|(any, write)| (schema::from_sql(any), schema::from_sql(write))))
        }

        /// Runs one read-write fence statement; on refusal reads the row and reports
        /// the token that `refused_by` picks from (highest, highest write).
        async fn rw_fence(
            tx: &mut Transaction<'_, $db>,
            statement: &'static str,
            name: &str,
            token: FencingToken,
            refused_by: fn((FencingToken, FencingToken)) -> FencingToken,
        ) -> Result<(), Error> {
            if passes(tx, statement, name, token).await? {
                return Ok(());
            }
            let highest = highest_rw(&mut **tx, name).await?.map(refused_by);
            Err(stale(name, token, highest))
        }

        fn stale(name: &str, presented: FencingToken, highest: Option<FencingToken>) -> Error {
            Error::Stale(StaleToken {
                name: name.to_owned(),
                presented,
                // The statement refused, so the stored token was higher and tokens
                // never decrease: `None` is unreachable unless the row was deleted.
                highest: highest.unwrap_or(presented),
            })
        }
    };
}

pub(crate) use fence_functions;
