//! The counting semaphore handle: the [`Lock`] engine with [`Claim::Shared`], and the
//! permit guard with its slot.

use crate::{backend::Claim, lock::run_critical, FencingToken, Lease, Lock, LockGuard, LockName};
use crate::{Capabilities, Error, ErrorKind, LockState, Result};
use std::{fmt, future::Future, ops::Deref, time::Duration};

/// The largest `limit` a [`Semaphore`] accepts.
pub const MAX_PERMITS: u32 = 1024;

/// A named counting semaphore bound to a [`Lease`]: at most `limit` permits held at
/// once, FIFO among waiters.
///
/// # Guarantees
///
/// - At most `limit` [`Permit`]s of one name are granted at any time (as strong as the
///   backend: etcd and ZooKeeper linearizable, memory one process).
/// - FIFO: permits are granted in the order they were asked for. Where
///   [`Capabilities::herd_free`] says so, a release wakes **one waiter**, the first
///   (memory: exactly one wake-up per permit granted); on etcd and ZooKeeper the new
///   holder's grant signal (below) also wakes the one waiter behind it, so a hand-off
///   costs at most **two wake-ups**, where waking every waiter would cost one per
///   waiter queued. Counted in
///   [`LockStats::waiter_wakeups`](crate::LockStats::waiter_wakeups) and checked by
///   the conformance suite on every herd-free backend.
/// - **No idle permit while someone waits**: whichever permit is released first, in
///   or out of queue order, goes to the first waiter at once (on etcd and ZooKeeper
///   the first waiter watches every permit ahead of it, and a permit granted after
///   waiting signals the waiter behind it; see [`decide`](crate::backend::decide)).
///   If a holder dies between its grant and that signal, the waiter behind it moves
///   up when the dead holder's lease expires. The first waiter's watches cost one
///   watch per permit (etcd: on the client's one shared watch stream; ZooKeeper: one
///   `getData` watch each), so a very large `limit` makes that one waiter's wait
///   dearer, not anyone else's.
/// - A crashed holder's permit comes back when its lease expires; nothing is stuck.
/// - Every live permit has a distinct [`slot`](Permit::slot) in `0..limit`.
/// - **Clients that disagree on `limit`** for one name never over-grant: the later one
///   gets [`ErrorKind::InvalidConfig`] while an entry with another limit is queued.
/// - A mutex or read-write lock on the same name is a barrier, never shared with.
///
/// # Non-guarantees
///
/// - **A permit's bare token is not a mutual-exclusion fence**: up to `limit` holders
///   are valid at once, with unrelated tokens. What *is* fenced is a slot: the tokens
///   of successive holders of one slot increase, so a resource that keeps per-slot
///   state (a worker id, a connection, a shard) checks the ordinary
///   [`Fence`](crate::Fence) on [`Permit::fence_key`] (`name#slot`). That rejects a
///   paused former holder of the *same slot* once the slot's next holder has written;
///   it says nothing about the total count of holders acting at once, which a
///   resource cannot check from tokens.
///
/// # Examples
///
/// ```
/// use lock_core::{Fence, LockClient};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let client = LockClient::new(lock_memory::MemoryBackend::new());
/// let sem = client.semaphore("gpu", 2).await?;
/// let (a, b) = (sem.acquire().await?, sem.acquire().await?);
/// assert_ne!(a.slot(), b.slot());
/// assert!(sem.try_acquire().await?.is_none(), "2 of 2 permits held");
/// Fence::new().check(&a.fence_key(), a.token())?; // per-slot fencing
/// a.release().await?;
/// let c = sem.try_acquire().await?.expect("a permit came back");
/// # drop((b, c)); Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Semaphore {
    lock: Lock,
    limit: u32,
}

impl Semaphore {
    /// A semaphore named `name` with `limit` permits on `lease`.
    pub(crate) fn new(lease: Lease, name: LockName, limit: u32) -> Result<Self> {
        if limit == 0 || limit > MAX_PERMITS {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("semaphore {name}: limit {limit} is outside 1..={MAX_PERMITS}"),
            ));
        }
        let lock = Lock::new(lease, name).with_claim(Claim::Shared { limit });
        Ok(Semaphore { lock, limit })
    }

    /// Checks that the backend grants permits.
    pub(crate) fn ensure_supported(self, caps: &Capabilities) -> Result<Self> {
        if caps.supports(self.lock.claim()) {
            return Ok(self);
        }
        Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "the {} backend has no semaphore (lock {})",
                self.lock.lease().telemetry().backend(),
                self.name()
            ),
        ))
    }

    /// Stores `holder` with each permit, visible to
    /// [`LockClient::inspect`](crate::LockClient::inspect).
    #[must_use]
    pub fn with_holder(mut self, holder: impl Into<String>) -> Self {
        self.lock = self.lock.with_holder(holder);
        self
    }

    /// The semaphore's name.
    pub fn name(&self) -> &LockName {
        self.lock.name()
    }

    /// How many permits may be held at once.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The lease permits hang off.
    pub fn lease(&self) -> &Lease {
        self.lock.lease()
    }

    /// The underlying [`Lock`] (claim [`Claim::Shared`]).
    pub fn as_lock(&self) -> &Lock {
        &self.lock
    }

    /// Waits (FIFO) for a permit.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] when a queued permit of this name has another
    /// limit; [`ErrorKind::Unsupported`] on a backend without semaphores; otherwise as
    /// [`Lock::acquire`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the strong sense: a dropped call leaves no entry behind.
    pub async fn acquire(&self) -> Result<Permit> {
        self.lock.acquire().await.map(Permit)
    }

    /// Takes a permit if one is free and nobody waits; `Ok(None)` otherwise.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire), except that no free permit is `Ok(None)`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the strong sense.
    pub async fn try_acquire(&self) -> Result<Option<Permit>> {
        Ok(self.lock.try_acquire().await?.map(Permit))
    }

    /// Waits at most `timeout` for a permit.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] (the entry is removed); otherwise as
    /// [`acquire`](Self::acquire).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the strong sense.
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<Permit> {
        self.lock.acquire_timeout(timeout).await.map(Permit)
    }

    /// Takes a permit, runs `critical(token, slot)` and releases; cancelled the moment
    /// the permit leaves `Held`, as [`Lock::with_lock`].
    ///
    /// # Errors
    ///
    /// As [`Lock::with_lock`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future cancels the section and releases in the
    /// background.
    ///
    /// # Examples
    ///
    /// ```
    /// use lock_core::LockClient;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
    /// let client = LockClient::new(lock_memory::MemoryBackend::new());
    /// let sem = client.semaphore("workers", 3).await?;
    /// let slot = sem.with_permit(|_token, slot| async move { slot }).await?;
    /// assert!(slot < 3);
    /// # Ok(()) }
    /// ```
    pub async fn with_permit<F, Fut, T>(&self, critical: F) -> Result<T>
    where
        F: FnOnce(FencingToken, u32) -> Fut,
        Fut: Future<Output = T>,
    {
        let permit = self.acquire().await?;
        let (token, slot) = (permit.token(), permit.slot());
        run_critical(permit.0, critical(token, slot)).await
    }
}

/// One granted semaphore permit: a [`LockGuard`] (it derefs to one: token, state,
/// lost signal) plus its [`slot`](Self::slot).
///
/// Owned and `'static`; not `Clone`; released at most once, in the background when
/// dropped.
///
/// # Guarantees
///
/// No other live permit of the same semaphore has the same slot, and the tokens of
/// successive holders of one slot increase: fence per-slot state on
/// [`fence_key`](Self::fence_key). See [`Semaphore`] for what that protects and what
/// it does not.
///
/// # Examples
///
/// ```
/// use lock_core::LockClient;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let client = LockClient::new(lock_memory::MemoryBackend::new());
/// let permit = client.semaphore("gpu", 4).await?.acquire().await?;
/// assert_eq!(permit.fence_key(), format!("gpu#{}", permit.slot()));
/// assert!(permit.is_held());
/// permit.release().await?;
/// # Ok(()) }
/// ```
#[must_use = "the permit is returned as soon as it is dropped"]
pub struct Permit(LockGuard);

impl Permit {
    /// The permit's slot in `0..limit`.
    pub fn slot(&self) -> u32 {
        // Every backend that grants Shared claims reports a slot; 0 keeps a
        // misbehaving one from panicking here (its fence key is then shared).
        self.0.slot().unwrap_or(0)
    }

    /// The key to fence per-slot state on with the plain [`Fence`](crate::Fence):
    /// `"{name}#{slot}"`.
    pub fn fence_key(&self) -> String {
        format!("{}#{}", self.0.name(), self.slot())
    }

    /// Returns the permit and reports how it went. See [`LockGuard::release`].
    ///
    /// # Errors
    ///
    /// As [`LockGuard::release`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`LockGuard::release`].
    pub async fn release(self) -> Result<()> {
        self.0.release().await
    }

    /// The guard underneath.
    pub fn into_guard(self) -> LockGuard {
        self.0
    }
}

impl Deref for Permit {
    type Target = LockGuard;

    fn deref(&self) -> &LockGuard {
        &self.0
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state: LockState = self.0.state();
        f.debug_struct("Permit")
            .field("name", self.0.name())
            .field("slot", &self.slot())
            .field("token", &self.0.token())
            .field("state", &state)
            .finish()
    }
}
