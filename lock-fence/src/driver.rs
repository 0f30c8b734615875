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
            sqlx::query(schema::CREATE_FENCES)
                .execute(&mut *conn)
                .await
                .map_err(Error::db(schema::FENCES_TABLE))?;
            Ok(())
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
            let value = schema::to_sql(name, token)?;
            let passed = sqlx::query_scalar::<_, i64>(schema::UPSERT_FENCE)
                .bind(name)
                .bind(value)
                .fetch_optional(&mut **tx)
                .await
                .map_err(Error::db(name))?;
            if passed.is_some() {
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
