//! The resource side of fencing: reject writes that carry an old token.

use crate::{stats::Telemetry, Error, ErrorKind, FencingToken, Result};
use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard},
};

/// Remembers the highest [`FencingToken`] seen per resource key and rejects older ones.
///
/// This is the check a resource must make for a lock to be safe. The seed scenario:
/// holder A takes the lock (token 33), then pauses (a long GC) past its lease; the lock
/// passes to B (token 34), which writes. A wakes up still believing it holds the lock
/// and writes with token 33: the fence has seen 34 and rejects it with
/// [`ErrorKind::StaleToken`].
///
/// A token equal to the highest is accepted (one holder writes many times).
/// Thread-safe; [`apply`](Self::apply) runs the write while holding the fence's own
/// lock, so check and write are atomic within the process.
///
/// # Guarantees
///
/// Accepted tokens per key never decrease.
///
/// # Non-guarantees
///
/// The memory lives in this process: a resource shared by several processes must keep
/// the highest token next to its data and check it in the same atomic step as the
/// write. In a SQL database that is a `fence_token` column and a conditional update:
///
/// ```sql
/// -- once:
/// ALTER TABLE reports ADD COLUMN fence_token BIGINT NOT NULL DEFAULT 0;
/// -- every write, with the guard's token as $1:
/// UPDATE reports SET body = $2, fence_token = $1
///  WHERE id = $3 AND fence_token <= $1;
/// -- 0 rows updated => a newer holder has written: stop, the lock is lost.
/// ```
///
/// For a row that may not exist yet, use
/// `INSERT … ON CONFLICT (id) DO UPDATE SET … WHERE reports.fence_token <= EXCLUDED.fence_token`.
///
/// # Examples
///
/// ```
/// use lock_core::{ErrorKind, Fence, FencingToken};
///
/// let fence = Fence::new();
/// fence.check("report", FencingToken::new(33))?; // A writes
/// fence.check("report", FencingToken::new(34))?; // B took over and writes
/// let err = fence.check("report", FencingToken::new(33)).unwrap_err(); // A wakes up
/// assert_eq!(err.kind(), ErrorKind::StaleToken);
/// assert_eq!(fence.highest("report"), Some(FencingToken::new(34)));
/// # Ok::<(), lock_core::Error>(())
/// ```
///
/// Each rejection counts in `fencelock_fence_rejections_total` (feature `metrics`) and,
/// for a fence from [`LockClient::fence`](crate::LockClient::fence), in that client's
/// [`stats`](crate::LockClient::stats).
#[derive(Default)]
pub struct Fence {
    highest: Mutex<HashMap<String, FencingToken>>,
    tel: Option<Arc<Telemetry>>,
}

impl Fence {
    /// An empty fence, counting its rejections under `backend="none"`.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn with_telemetry(tel: Arc<Telemetry>) -> Self {
        Fence {
            highest: Mutex::default(),
            tel: Some(tel),
        }
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, FencingToken>> {
        // The map holds plain tokens; a panic elsewhere cannot leave it half-updated.
        crate::backend::lock_unpoisoned(&self.highest)
    }

    /// Accepts `token` for `resource` if it is at least the highest seen, and records it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::StaleToken`] when a higher token was already accepted.
    pub fn check(&self, resource: &str, token: FencingToken) -> Result<()> {
        self.apply(resource, token, || ())
    }

    /// Checks `token` as [`check`](Self::check) does and, if accepted, runs `write`
    /// before any other check on this fence can run.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::StaleToken`]; `write` is then not run.
    pub fn apply<T>(
        &self,
        resource: &str,
        token: FencingToken,
        write: impl FnOnce() -> T,
    ) -> Result<T> {
        let mut table = self.table();
        match table.get(resource) {
            Some(&highest) if token < highest => {
                drop(table);
                Telemetry::fence_rejected(self.tel.as_deref());
                Err(Error::new(
                    ErrorKind::StaleToken,
                    format!(
                        "token {token} for {resource:?} is older than {highest}, already accepted"
                    ),
                ))
            }
            _ => {
                table.insert(resource.to_owned(), token);
                Ok(write())
            }
        }
    }

    /// The highest token accepted for `resource`.
    pub fn highest(&self, resource: &str) -> Option<FencingToken> {
        self.table().get(resource).copied()
    }
}

impl fmt::Debug for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fence")
            .field("resources", &self.table().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_token_is_accepted_and_older_rejected_without_running_write() {
        let fence = Fence::new();
        let t = FencingToken::new;
        assert_eq!(fence.apply("r", t(5), || 1).unwrap(), 1);
        assert_eq!(fence.apply("r", t(5), || 2).unwrap(), 2);
        let mut ran = false;
        let err = fence.apply("r", t(4), || ran = true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::StaleToken);
        assert!(!ran);
        assert!(fence.check("other", t(1)).is_ok(), "keys are independent");
    }
}
