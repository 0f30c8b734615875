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
/// # Read-write locks
///
/// For an [`RwLock`](crate::RwLock) the check is mode-aware:
/// [`check_write`](Self::check_write) accepts a token ≥ every token accepted so far
/// (reads included), [`check_read`](Self::check_read) a token ≥ the highest *write*
/// token accepted. Readers hold together and are not ordered among themselves, but
/// every reader and writer that conflict are granted in token order, so this rejects a
/// stale writer after a newer reader has read, and a stale reader after a newer writer
/// has written. [`check`](Self::check) is `check_write`. The shared-resource form keeps
/// two columns:
///
/// ```sql
/// ALTER TABLE docs ADD COLUMN fence_any   BIGINT NOT NULL DEFAULT 0,
///                  ADD COLUMN fence_write BIGINT NOT NULL DEFAULT 0;
/// -- a write with token $1: newer than every read and write accepted so far
/// UPDATE docs SET body = $2, fence_any = $1, fence_write = $1
///  WHERE id = $3 AND fence_any <= $1;
/// -- a validated read with token $1: newer than every write; raises fence_any so
/// -- that an older writer is refused afterwards
/// UPDATE docs SET fence_any = GREATEST(fence_any, $1)
///  WHERE id = $2 AND fence_write <= $1 RETURNING body;
/// -- 0 rows => a newer conflicting holder got there first: the lock is lost.
/// ```
#[derive(Default)]
pub struct Fence {
    highest: Mutex<HashMap<String, Marks>>,
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

    fn table(&self) -> MutexGuard<'_, HashMap<String, Marks>> {
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
        self.accept(resource, token, Mode::Write, write)
    }

    /// The read check of an [`RwLock`](crate::RwLock): accepts `token` for `resource`
    /// if it is at least the highest *write* token accepted, and records it (so an
    /// older writer is refused afterwards).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::StaleToken`] when a higher write token was already accepted.
    ///
    /// # Examples
    ///
    /// ```
    /// use lock_core::{ErrorKind, Fence, FencingToken};
    ///
    /// let (fence, t) = (Fence::new(), FencingToken::new);
    /// fence.check_read("doc", t(5))?;
    /// fence.check_read("doc", t(4))?; // readers are not ordered among themselves
    /// fence.check_write("doc", t(7))?;
    /// assert_eq!(fence.check_read("doc", t(6)).unwrap_err().kind(), ErrorKind::StaleToken);
    /// fence.check_read("doc", t(9))?;
    /// assert_eq!(fence.check_write("doc", t(8)).unwrap_err().kind(), ErrorKind::StaleToken);
    /// # Ok::<(), lock_core::Error>(())
    /// ```
    pub fn check_read(&self, resource: &str, token: FencingToken) -> Result<()> {
        self.accept(resource, token, Mode::Read, || ())
    }

    /// The write check of an [`RwLock`](crate::RwLock): accepts `token` if it is at
    /// least every token accepted for `resource`, reads included. The same as
    /// [`check`](Self::check).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::StaleToken`] when a higher token was already accepted.
    pub fn check_write(&self, resource: &str, token: FencingToken) -> Result<()> {
        self.accept(resource, token, Mode::Write, || ())
    }

    fn accept<T>(
        &self,
        resource: &str,
        token: FencingToken,
        mode: Mode,
        effect: impl FnOnce() -> T,
    ) -> Result<T> {
        let mut table = self.table();
        let marks = table.get(resource).copied().unwrap_or_default();
        let (bar, what) = match mode {
            Mode::Write => (marks.any, "already accepted"),
            Mode::Read => (marks.write, "already accepted for a write"),
        };
        match bar {
            Some(highest) if token < highest => {
                drop(table);
                Telemetry::fence_rejected(self.tel.as_deref());
                Err(Error::new(
                    ErrorKind::StaleToken,
                    format!("token {token} for {resource:?} is older than {highest}, {what}"),
                ))
            }
            _ => {
                let any = marks.any.map_or(token, |a| a.max(token));
                let write = match mode {
                    Mode::Write => Some(token),
                    Mode::Read => marks.write,
                };
                table.insert(
                    resource.to_owned(),
                    Marks {
                        any: Some(any),
                        write,
                    },
                );
                Ok(effect())
            }
        }
    }

    /// The highest token accepted for `resource` (reads and writes).
    pub fn highest(&self, resource: &str) -> Option<FencingToken> {
        self.table().get(resource).and_then(|m| m.any)
    }

    /// The highest write token accepted for `resource` (by [`check`](Self::check),
    /// [`apply`](Self::apply) or [`check_write`](Self::check_write)).
    pub fn highest_write(&self, resource: &str) -> Option<FencingToken> {
        self.table().get(resource).and_then(|m| m.write)
    }
}

/// The highest tokens accepted for one resource.
#[derive(Debug, Default, Clone, Copy)]
struct Marks {
    any: Option<FencingToken>,
    write: Option<FencingToken>,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Read,
    Write,
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

    #[test]
    fn reads_check_against_writes_and_writes_against_everything() {
        let (fence, t) = (Fence::new(), FencingToken::new);
        fence.check_write("d", t(10)).unwrap();
        fence.check_read("d", t(12)).unwrap();
        fence.check_read("d", t(11)).unwrap();
        assert_eq!(fence.highest("d"), Some(t(12)));
        assert_eq!(fence.highest_write("d"), Some(t(10)));
        assert!(fence.check_read("d", t(9)).is_err(), "older than a write");
        assert!(fence.check_write("d", t(11)).is_err(), "older than a read");
        fence.check_write("d", t(12)).unwrap();
        assert!(fence.check_read("d", t(11)).is_err());
        assert!(fence.check("d", t(11)).is_err(), "check is check_write");
    }
}
