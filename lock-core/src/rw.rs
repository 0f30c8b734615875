//! The read-write lock handle: the [`Lock`] engine with [`Claim::Read`] and
//! [`Claim::Write`].

use crate::{backend::Claim, lock::run_critical, FencingToken, Lease, Lock, LockGuard, LockName};
use crate::{Capabilities, Error, ErrorKind, Result};
use std::{future::Future, time::Duration};

/// A named read-write lock bound to a [`Lease`]: many readers, or one writer.
///
/// Readers and writers share one FIFO queue per name. A writer is granted when it is
/// first in the queue; a reader when no writer is ahead of it. Each side returns an
/// ordinary [`LockGuard`] (owned, `'static`, same state, loss and release API as the
/// mutex's), whose [`claim`](LockGuard::claim) says which side it holds.
///
/// # Guarantees
///
/// - A writer holds alone; readers hold only together with readers (as strong as the
///   backend: etcd and ZooKeeper linearizable, memory one process).
/// - FIFO, no writer starvation: a reader that arrives behind a queued writer waits
///   for it, so a steady stream of readers cannot pass a writer.
/// - Herd-free where [`Capabilities::herd_free`] says so: every waiter watches one
///   entry (the nearest earlier writer for a reader, the immediate predecessor for a
///   writer) plus its own entry and lease; a release wakes only the waiters it grants.
///   A writer's release grants the run of readers behind it, all at once, at **one
///   wake-up per reader granted**, not one per waiter queued (readers behind the next
///   writer wait for that writer and stay asleep); a reader's release wakes nobody
///   unless it was the entry just ahead of a writer, which then wakes once. Counted
///   in [`LockStats::waiter_wakeups`](crate::LockStats::waiter_wakeups) and checked by
///   the conformance suite on every herd-free backend.
/// - A plain mutex ([`Lock`], [`Claim::Exclusive`]) on the same name is an exclusive
///   holder: it excludes readers and writers, and a write lock excludes it.
/// - **Fencing:** every grant's token comes from the same source as the mutex's (etcd
///   create revision, ZooKeeper `czxid`, memory counter). For every conflicting pair
///   (a writer and anyone) token order equals grant order, so a resource checks writes
///   with [`Fence::check_write`](crate::Fence::check_write) and reads with
///   [`Fence::check_read`](crate::Fence::check_read).
///
/// # Non-guarantees
///
/// - No upgrade or downgrade: a reader that asks for the write side of the same name
///   waits behind itself forever (release the read guard first).
/// - Readers are not ordered among themselves by token.
///
/// # Examples
///
/// ```
/// use lock_core::{backend::Claim, LockClient};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let client = LockClient::new(lock_memory::MemoryBackend::new());
/// let rw = client.rw_lock("catalog").await?;
/// let (a, b) = (rw.read().await?, rw.read().await?); // readers share
/// assert_eq!(a.claim(), Claim::Read);
/// assert!(rw.try_write().await?.is_none(), "readers hold");
/// drop((a, b));
/// let w = rw.write_timeout(Duration::from_secs(1)).await?;
/// assert!(rw.try_read().await?.is_none(), "the writer holds");
/// w.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RwLock {
    read: Lock,
    write: Lock,
}

impl RwLock {
    /// A read-write lock named `name` on `lease`.
    pub(crate) fn new(lease: Lease, name: LockName) -> Self {
        let lock = Lock::new(lease, name);
        RwLock {
            read: lock.clone().with_claim(Claim::Read),
            write: lock.with_claim(Claim::Write),
        }
    }

    /// Checks that the backend grants both sides, so a missing capability is a typed
    /// error at creation instead of at the first acquire.
    pub(crate) fn ensure_supported(self, caps: &Capabilities) -> Result<Self> {
        if caps.supports(Claim::Read) && caps.supports(Claim::Write) {
            return Ok(self);
        }
        Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "the {} backend has no read-write lock (lock {})",
                self.read.lease().telemetry().backend(),
                self.name()
            ),
        ))
    }

    /// Stores `holder` (for example `hostname:pid`) with each acquisition, visible to
    /// [`LockClient::inspect`](crate::LockClient::inspect).
    #[must_use]
    pub fn with_holder(self, holder: impl Into<String>) -> Self {
        let holder = holder.into();
        RwLock {
            read: self.read.with_holder(holder.clone()),
            write: self.write.with_holder(holder),
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &LockName {
        self.read.name()
    }

    /// The lease acquisitions hang off.
    pub fn lease(&self) -> &Lease {
        self.read.lease()
    }

    /// The read side as a plain [`Lock`] (claim [`Claim::Read`]).
    pub fn read_lock(&self) -> &Lock {
        &self.read
    }

    /// The write side as a plain [`Lock`] (claim [`Claim::Write`]).
    pub fn write_lock(&self) -> &Lock {
        &self.write
    }

    /// Waits (FIFO) for a read grant: until no writer is ahead in the queue.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`]; [`ErrorKind::Unsupported`] on a backend without
    /// read-write claims.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the strong sense: a dropped call leaves no entry behind.
    pub async fn read(&self) -> Result<LockGuard> {
        self.read.acquire().await
    }

    /// Waits (FIFO) for the write grant: until first in the queue.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the strong sense.
    pub async fn write(&self) -> Result<LockGuard> {
        self.write.acquire().await
    }

    /// Takes a read grant if it can be had at once (no writer holds or waits);
    /// `Ok(None)` otherwise.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read), except that a busy lock is `Ok(None)`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the strong sense.
    pub async fn try_read(&self) -> Result<Option<LockGuard>> {
        self.read.try_acquire().await
    }

    /// Takes the write grant if nobody holds or waits; `Ok(None)` otherwise.
    ///
    /// # Errors
    ///
    /// As [`try_read`](Self::try_read).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the strong sense.
    pub async fn try_write(&self) -> Result<Option<LockGuard>> {
        self.write.try_acquire().await
    }

    /// Waits at most `timeout` for a read grant.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] (the entry is removed); otherwise as [`read`](Self::read).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the strong sense.
    pub async fn read_timeout(&self, timeout: Duration) -> Result<LockGuard> {
        self.read.acquire_timeout(timeout).await
    }

    /// Waits at most `timeout` for the write grant.
    ///
    /// # Errors
    ///
    /// As [`read_timeout`](Self::read_timeout).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the strong sense.
    pub async fn write_timeout(&self, timeout: Duration) -> Result<LockGuard> {
        self.write.acquire_timeout(timeout).await
    }

    /// Takes a read grant, runs `critical(token)` and releases; cancelled the moment the
    /// grant leaves `Held`, exactly as [`Lock::with_lock`].
    ///
    /// # Errors
    ///
    /// As [`Lock::with_lock`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future cancels the section and releases in the
    /// background.
    pub async fn with_read<F, Fut, T>(&self, critical: F) -> Result<T>
    where
        F: FnOnce(FencingToken) -> Fut,
        Fut: Future<Output = T>,
    {
        let guard = self.read().await?;
        let token = guard.token();
        run_critical(guard, critical(token)).await
    }

    /// Takes the write grant, runs `critical(token)` and releases, as
    /// [`with_read`](Self::with_read).
    ///
    /// # Errors
    ///
    /// As [`Lock::with_lock`].
    ///
    /// # Cancel safety
    ///
    /// As [`with_read`](Self::with_read).
    ///
    /// # Examples
    ///
    /// ```
    /// use lock_core::{Fence, LockClient};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
    /// let client = LockClient::new(lock_memory::MemoryBackend::new());
    /// let (rw, fence) = (client.rw_lock("catalog").await?, &Fence::new());
    /// rw.with_write(|t| async move { fence.check_write("catalog", t) }).await??;
    /// rw.with_read(|t| async move { fence.check_read("catalog", t) }).await??;
    /// # Ok(()) }
    /// ```
    pub async fn with_write<F, Fut, T>(&self, critical: F) -> Result<T>
    where
        F: FnOnce(FencingToken) -> Fut,
        Fut: Future<Output = T>,
    {
        let guard = self.write().await?;
        let token = guard.token();
        run_critical(guard, critical(token)).await
    }
}
