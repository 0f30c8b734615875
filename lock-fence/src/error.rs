//! The kit's errors: a typed [`StaleToken`] refusal, bad input, and database failures.

use lock_core::{ErrorKind, FencingToken};

/// The database refused a token: a newer holder has already written.
///
/// Carries both tokens, so a holder can log how far behind it was. When `fenced`
/// returns this, the caller must roll its transaction back (dropping it does); any
/// write it makes in the same transaction after the refusal is unprotected.
///
/// # Examples
///
/// ```
/// use lock_core::FencingToken;
/// use lock_fence::StaleToken;
///
/// let stale = StaleToken {
///     name: "order/42".into(),
///     presented: FencingToken::new(33),
///     highest: FencingToken::new(34),
/// };
/// assert_eq!(
///     stale.to_string(),
///     "stale fencing token for \"order/42\": presented 33, the database already accepted 34"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stale fencing token for {name:?}: presented {presented}, the database already accepted {highest}")]
pub struct StaleToken {
    /// The fence name (a row of the fences table, or the key of a fenced row).
    pub name: String,
    /// The token the refused transaction presented.
    pub presented: FencingToken,
    /// The highest token the database had accepted (and committed, or is committing).
    pub highest: FencingToken,
}

/// Everything `fenced` and the schema helpers can fail with.
///
/// Match [`Error::Stale`] to tell "a newer holder wrote" (stop: the lock is lost) from
/// a database failure (retry, or give up). It converts into [`lock_core::Error`] with
/// [`ErrorKind::StaleToken`], [`ErrorKind::InvalidName`], [`ErrorKind::Unavailable`] or
/// [`ErrorKind::Backend`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token is older than the highest the database accepted for this name.
    #[error(transparent)]
    Stale(#[from] StaleToken),
    /// The token does not fit the signed 64-bit `BIGINT` column (above `i64::MAX`).
    #[error("fencing token {token} for {name:?} does not fit a BIGINT column")]
    TokenOutOfRange {
        /// The fence name.
        name: String,
        /// The token presented.
        token: FencingToken,
    },
    /// An empty fence name, or a table or column name that is not a plain SQL
    /// identifier (`[A-Za-z_][A-Za-z0-9_]*`, optionally `schema.table`).
    #[error("invalid {what}: {value:?}")]
    InvalidInput {
        /// What was wrong: `fence name`, `table name`, `column name`.
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// The fenced row of a [`FenceColumn`](crate::FenceColumn) does not exist: the
    /// fence is on a row the caller has to create first.
    #[error("no row with key {key} in {table} to fence")]
    NoRow {
        /// The table.
        table: String,
        /// The key, as text.
        key: String,
    },
    /// The database failed (connection lost, lock timeout, `SQLITE_BUSY`, …).
    #[error("database error{}", if name.is_empty() { String::new() } else { format!(" on fence {name:?}") })]
    Database {
        /// The fence name, the table for a schema helper, or empty when the error came
        /// from the caller's own statement through `?` (`From<sqlx::Error>`).
        name: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

impl Error {
    /// The refusal, if this is one.
    pub fn stale(&self) -> Option<&StaleToken> {
        match self {
            Error::Stale(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is a [`StaleToken`] refusal.
    pub fn is_stale(&self) -> bool {
        self.stale().is_some()
    }

    pub(crate) fn db(name: &str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
        move |source| Error::Database {
            name: name.to_owned(),
            source,
        }
    }
}

/// The caller's own statements in a fenced transaction can use `?` too.
impl From<sqlx::Error> for Error {
    fn from(source: sqlx::Error) -> Self {
        Error::Database {
            name: String::new(),
            source,
        }
    }
}

impl From<Error> for lock_core::Error {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Stale(_) => ErrorKind::StaleToken,
            Error::TokenOutOfRange { .. } | Error::InvalidInput { .. } => ErrorKind::InvalidName,
            Error::Database {
                source: sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed,
                ..
            } => ErrorKind::Unavailable,
            Error::NoRow { .. } | Error::Database { .. } => ErrorKind::Backend,
        };
        lock_core::Error::new(kind, e.to_string()).with_source(e)
    }
}

const _: () = {
    const fn assert_send_sync_static<T: Send + Sync + 'static>() {}
    assert_send_sync_static::<Error>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_into_core_kinds() {
        let stale: lock_core::Error = Error::Stale(StaleToken {
            name: "n".into(),
            presented: FencingToken::new(1),
            highest: FencingToken::new(2),
        })
        .into();
        assert_eq!(stale.kind(), ErrorKind::StaleToken);
        let bad: lock_core::Error = Error::InvalidInput {
            what: "table name",
            value: "a;b".into(),
        }
        .into();
        assert_eq!(bad.kind(), ErrorKind::InvalidName);
        let gone: lock_core::Error = Error::Database {
            name: "n".into(),
            source: sqlx::Error::PoolTimedOut,
        }
        .into();
        assert!(gone.is_retryable());
    }
}
