//! What both drivers share: the fences table's SQL, the `fence_token` column form, and
//! the checks on names and tokens.

use crate::Error;
use lock_core::FencingToken;

/// The table `fenced` (in the `sqlite` and `postgres` modules) writes to: one row per
/// fence name.
pub const FENCES_TABLE: &str = "fencelock_fences";

/// Creates the fences table if it does not exist (PostgreSQL and SQLite alike).
pub(crate) const CREATE_FENCES: &str = "CREATE TABLE IF NOT EXISTS fencelock_fences (
    name TEXT PRIMARY KEY,
    token BIGINT NOT NULL
)";

/// The fence statement: insert the name's first token, or raise the stored token when
/// the presented one is at least as high. A row comes back only when the token passed.
pub(crate) const UPSERT_FENCE: &str = "INSERT INTO fencelock_fences (name, token) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET token = EXCLUDED.token
WHERE fencelock_fences.token <= EXCLUDED.token
RETURNING token";

/// Reads a fence's highest token.
pub(crate) const SELECT_FENCE: &str = "SELECT token FROM fencelock_fences WHERE name = $1";

/// The table `fenced_read` and `fenced_write` write to: one row per read-write fence
/// name, with the highest token accepted (reads and writes) and the highest write's.
pub const RW_FENCES_TABLE: &str = "fencelock_rw_fences";

/// Creates the read-write fences table if it does not exist.
pub(crate) const CREATE_RW_FENCES: &str = "CREATE TABLE IF NOT EXISTS fencelock_rw_fences (
    name TEXT PRIMARY KEY,
    any_token BIGINT NOT NULL,
    write_token BIGINT NOT NULL
)";

/// A write: accepted when its token is at least every token accepted so far (reads
/// included); raises both columns.
pub(crate) const UPSERT_RW_WRITE: &str =
    "INSERT INTO fencelock_rw_fences (name, any_token, write_token) VALUES ($1, $2, $2)
ON CONFLICT (name) DO UPDATE SET any_token = EXCLUDED.any_token, write_token = EXCLUDED.write_token
WHERE fencelock_rw_fences.any_token <= EXCLUDED.any_token
RETURNING any_token";

/// A read: accepted when its token is at least the highest *write*; raises `any_token`
/// (never lowers it: readers are not ordered among themselves), so an older writer is
/// refused afterwards. `CASE` rather than `GREATEST`/`MAX`, which differ between
/// PostgreSQL and SQLite.
pub(crate) const UPSERT_RW_READ: &str =
    "INSERT INTO fencelock_rw_fences (name, any_token, write_token) VALUES ($1, $2, 0)
ON CONFLICT (name) DO UPDATE SET any_token = CASE
    WHEN fencelock_rw_fences.any_token > EXCLUDED.any_token THEN fencelock_rw_fences.any_token
    ELSE EXCLUDED.any_token END
WHERE fencelock_rw_fences.write_token <= EXCLUDED.any_token
RETURNING any_token";

/// Reads a read-write fence's two tokens.
pub(crate) const SELECT_RW_FENCE: &str =
    "SELECT any_token, write_token FROM fencelock_rw_fences WHERE name = $1";

/// A `fence_token` column on the caller's own table: the fence lives on the protected
/// row itself, with no separate table.
///
/// Add the column once ([`add_column_sql`](Self::add_column_sql)), create the row the
/// usual way, then call `fenced_row` (in the `sqlite` or `postgres` module) inside the
/// transaction that updates that row.
/// Table and column names are checked to be plain identifiers and then quoted, so
/// they cannot inject SQL.
///
/// # Examples
///
/// ```
/// use lock_fence::FenceColumn;
///
/// let col = FenceColumn::new("accounts", "id")?;
/// assert_eq!(
///     col.add_column_sql(),
///     r#"ALTER TABLE "accounts" ADD COLUMN "fence_token" BIGINT NOT NULL DEFAULT 0"#
/// );
/// assert!(FenceColumn::new("accounts; DROP TABLE x", "id").is_err());
/// # Ok::<(), lock_fence::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceColumn {
    table: String,
    key: String,
    column: String,
    /// `UPDATE t SET fence_token = $1 WHERE key = $2 AND fence_token <= $1`.
    update: String,
    /// `SELECT fence_token FROM t WHERE key = $1`.
    select: String,
}

impl FenceColumn {
    /// The column `fence_token` on `table`, whose rows are found by `key_column`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when a name is not `[A-Za-z_][A-Za-z0-9_]*` (the table
    /// may be `schema.table`).
    pub fn new(table: &str, key_column: &str) -> Result<Self, Error> {
        Ok(FenceColumn {
            table: quote_path(table, "table name")?,
            key: quote_ident(key_column, "column name")?,
            column: quote_ident("fence_token", "column name")?,
            update: String::new(),
            select: String::new(),
        }
        .with_sql())
    }

    fn with_sql(mut self) -> Self {
        self.update = format!(
            "UPDATE {t} SET {c} = $1 WHERE {k} = $2 AND {c} <= $1",
            t = self.table,
            c = self.column,
            k = self.key
        );
        self.select = format!(
            "SELECT {c} FROM {t} WHERE {k} = $1",
            t = self.table,
            c = self.column,
            k = self.key
        );
        self
    }

    /// Uses `column` instead of `fence_token`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when `column` is not a plain identifier.
    pub fn with_column(mut self, column: &str) -> Result<Self, Error> {
        self.column = quote_ident(column, "column name")?;
        Ok(self.with_sql())
    }

    /// The table, quoted.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// `ALTER TABLE … ADD COLUMN fence_token BIGINT NOT NULL DEFAULT 0`, to run once.
    pub fn add_column_sql(&self) -> String {
        format!(
            "ALTER TABLE {} ADD COLUMN {} BIGINT NOT NULL DEFAULT 0",
            self.table, self.column
        )
    }

    /// `UPDATE t SET fence_token = $1 WHERE key = $2 AND fence_token <= $1`.
    pub(crate) fn update_sql(&self) -> &str {
        &self.update
    }

    /// `SELECT fence_token FROM t WHERE key = $1`.
    pub(crate) fn select_sql(&self) -> &str {
        &self.select
    }
}

fn quote_ident(s: &str, what: &'static str) -> Result<String, Error> {
    let mut chars = s.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 63;
    if ok {
        Ok(format!("\"{s}\""))
    } else {
        Err(Error::InvalidInput {
            what,
            value: s.to_owned(),
        })
    }
}

fn quote_path(s: &str, what: &'static str) -> Result<String, Error> {
    let bad = || Error::InvalidInput {
        what,
        value: s.to_owned(),
    };
    let parts = s
        .split('.')
        .map(|p| quote_ident(p, what).map_err(|_| bad()))
        .collect::<Result<Vec<_>, _>>()?;
    if parts.len() > 2 {
        return Err(bad());
    }
    Ok(parts.join("."))
}

/// The token as a `BIGINT`.
pub(crate) fn to_sql(name: &str, token: FencingToken) -> Result<i64, Error> {
    if name.is_empty() {
        return Err(Error::InvalidInput {
            what: "fence name",
            value: String::new(),
        });
    }
    i64::try_from(token.get()).map_err(|_| Error::TokenOutOfRange {
        name: name.to_owned(),
        token,
    })
}

/// A stored `BIGINT` as a token (a negative value, written by someone else, reads as 0).
pub(crate) fn from_sql(v: i64) -> FencingToken {
    FencingToken::new(u64::try_from(v).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked_and_quoted() {
        let col = FenceColumn::new("app.orders", "order_id")
            .unwrap()
            .with_column("ft")
            .unwrap();
        assert_eq!(
            col.update_sql(),
            r#"UPDATE "app"."orders" SET "ft" = $1 WHERE "order_id" = $2 AND "ft" <= $1"#
        );
        for bad in ["", "1a", "a b", "a\"b", "a.b.c", "a.", "x;--"] {
            assert!(FenceColumn::new(bad, "id").is_err(), "{bad:?}");
            assert!(FenceColumn::new("t", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_above_i64_max_are_refused() {
        assert_eq!(to_sql("n", FencingToken::new(7)).unwrap(), 7);
        assert!(matches!(
            to_sql("n", FencingToken::new(u64::MAX)),
            Err(Error::TokenOutOfRange { .. })
        ));
        assert!(matches!(
            to_sql("", FencingToken::new(1)),
            Err(Error::InvalidInput { .. })
        ));
        assert_eq!(from_sql(-5), FencingToken::new(0));
    }
}
