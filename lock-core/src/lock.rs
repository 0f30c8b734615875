//! The user-facing lock handle: acquire, try, timeout, critical sections.

use crate::held::Grant;
use crate::stats::{AcquireTimer, Outcome};
use crate::{
    backend::{Claim, WaitMode},
    AcquireOptions, Error, ErrorKind, FencingToken, Lease, LockGuard, LockName, LockState, Result,
};
use std::{future::Future, time::Duration};
use tracing::Instrument;

/// A named lock bound to a [`Lease`].
///
/// Cheap to clone. Acquiring returns a [`LockGuard`]; the entry it creates on the
/// server hangs off the lease, so a crashed holder frees the lock when its lease
/// expires.
///
/// # Guarantees
///
/// - Mutual exclusion among holders whose guards are `Held`, as far as the backend
///   provides it (etcd and ZooKeeper: linearizable; memory: one process).
/// - Waiters are served FIFO where [`Capabilities::fifo`](crate::Capabilities::fifo)
///   says so, and where [`herd_free`](crate::Capabilities::herd_free) says so a
///   release wakes **one waiter**, the one it grants (each waiter watches only the
///   entry just ahead of it): N releases with waiters cost about N wake-ups, where
///   waking every waiter would cost one per waiter queued at each release. The
///   backend counts them ([`LockStats::waiter_wakeups`](crate::LockStats::waiter_wakeups));
///   the conformance suite checks the bound on every herd-free backend.
/// - Every grant carries a [`FencingToken`] higher than every earlier grant's.
/// - A waiter whose lease is lost fails at once with [`ErrorKind::LeaseLost`], and
///   success is never reported on a lease already past its local deadline.
///
/// # Non-guarantees
///
/// A guard that is `Held` may already be lost on the server (process pause, slow
/// network): only a resource that checks fencing tokens is safe from a stale holder.
///
/// # Examples
///
/// ```
/// use lock_core::LockClient;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let client = LockClient::new(lock_memory::MemoryBackend::new());
/// let lock = client.lock("daily-report").await?;
/// let guard = lock.acquire().await?;
/// assert!(lock.try_acquire().await?.is_none(), "held by the guard");
/// let err = lock.acquire_timeout(Duration::from_millis(20)).await.unwrap_err();
/// assert_eq!(err.kind(), lock_core::ErrorKind::Timeout);
/// guard.release().await?;
/// assert!(lock.try_acquire().await?.is_some());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Lock {
    lease: Lease,
    name: LockName,
    claim: Claim,
    options: AcquireOptions,
}

impl Lock {
    pub(crate) fn new(lease: Lease, name: LockName) -> Self {
        Lock {
            lease,
            name,
            claim: Claim::Exclusive,
            options: AcquireOptions::default(),
        }
    }

    /// The same lock acquiring with `claim` instead of [`Claim::Exclusive`]: the engine
    /// the read-write lock and semaphore handles build on. On a backend whose
    /// [`Capabilities::supports`](crate::Capabilities::supports) denies `claim`,
    /// acquiring fails with [`ErrorKind::Unsupported`] and nothing is enqueued.
    ///
    /// # Examples
    ///
    /// ```
    /// use lock_core::{backend::Claim, LockClient};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
    /// let client = LockClient::new(lock_memory::MemoryBackend::new());
    /// let read = client.lock("doc").await?.with_claim(Claim::Read);
    /// let (a, b) = (read.acquire().await?, read.acquire().await?); // readers share
    /// assert_eq!(client.inspect("doc").await?.expect("held").holders.len(), 2);
    /// # drop((a, b)); Ok(()) }
    /// ```
    #[must_use]
    pub fn with_claim(mut self, claim: Claim) -> Self {
        self.claim = claim;
        self
    }

    /// What each acquisition of this lock claims ([`Claim::Exclusive`] unless set with
    /// [`with_claim`](Self::with_claim)).
    pub fn claim(&self) -> Claim {
        self.claim
    }

    /// Stores `holder` (for example `hostname:pid`) with each acquisition, visible to
    /// [`LockClient::inspect`](crate::LockClient::inspect).
    #[must_use]
    pub fn with_holder(mut self, holder: impl Into<String>) -> Self {
        self.options = self.options.with_holder(holder);
        self
    }

    /// The lock's name.
    pub fn name(&self) -> &LockName {
        &self.name
    }

    /// The lease acquisitions hang off.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Waits (FIFO) until the lock is granted.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::LeaseLost`] when the lease is or becomes lost while waiting;
    /// [`ErrorKind::Unavailable`] and other backend errors as they occur.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the strong sense: dropping the future leaves no waiter entry
    /// behind and does not block the queue.
    pub async fn acquire(&self) -> Result<LockGuard> {
        let timer = AcquireTimer::start(self.lease.telemetry());
        let result = self.acquire_waiting().await;
        timer.finish(match &result {
            Ok(_) => Outcome::Granted,
            Err(e) => Outcome::of_error(e),
        });
        result
    }

    async fn acquire_waiting(&self) -> Result<LockGuard> {
        let guard = self.acquire_with(WaitMode::Wait).await?;
        guard.ok_or_else(|| {
            Error::new(
                ErrorKind::Backend,
                format!(
                    "backend answered a waiting acquire of {} with nothing",
                    self.name
                ),
            )
        })
    }

    /// Takes the lock if nobody holds or waits for it; never waits for a holder.
    /// `Ok(None)` means someone else has it.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire), except that a held lock is `Ok(None)`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the strong sense.
    pub async fn try_acquire(&self) -> Result<Option<LockGuard>> {
        let timer = AcquireTimer::start(self.lease.telemetry());
        let result = self.acquire_with(WaitMode::NoWait).await;
        timer.finish(Outcome::of_result(&result));
        result
    }

    /// Waits at most `timeout` for the lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] when the time runs out (the waiter entry is removed);
    /// otherwise as [`acquire`](Self::acquire).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the strong sense.
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard> {
        let timer = AcquireTimer::start(self.lease.telemetry());
        let result = match tokio::time::timeout(timeout, self.acquire_waiting()).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("lock {} not acquired within {timeout:?}", self.name),
            )),
        };
        timer.finish(match &result {
            Ok(_) => Outcome::Granted,
            Err(e) => Outcome::of_error(e),
        });
        result
    }

    /// Acquires the lock, runs `critical(token)` and releases the lock.
    ///
    /// The critical section is **cancelled the moment the lock leaves `Held`** (turns
    /// suspect or lost), and the call then returns [`ErrorKind::LeaseLost`]. If the
    /// section finishes but the lock is no longer `Held` at that instant, the result is
    /// discarded and `LeaseLost` is returned too: `Ok` means the section completed
    /// while the lock was held.
    ///
    /// # Non-guarantees
    ///
    /// Cancellation happens at the section's next await point; side effects already
    /// sent cannot be recalled. Pass the token to the resource so it can reject them.
    ///
    /// # Errors
    ///
    /// Those of [`acquire`](Self::acquire), and `LeaseLost` as described.
    ///
    /// # Examples
    ///
    /// ```
    /// use lock_core::LockClient;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
    /// let client = LockClient::new(lock_memory::MemoryBackend::new());
    /// let lock = client.lock("nightly").await?;
    /// let token = lock.with_lock(|token| async move { token }).await?;
    /// assert!(token.get() > 0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future cancels the section and releases the lock in
    /// the background.
    pub async fn with_lock<F, Fut, T>(&self, critical: F) -> Result<T>
    where
        F: FnOnce(FencingToken) -> Fut,
        Fut: Future<Output = T>,
    {
        let guard = self.acquire().await?;
        let token = guard.token();
        run_critical(guard, critical(token)).await
    }

    async fn acquire_with(&self, mode: WaitMode) -> Result<Option<LockGuard>> {
        self.lease.ensure_not_lost()?;
        let span = tracing::debug_span!(
            "acquire",
            lock = %self.name,
            lease = %self.lease.id(),
            backend = self.lease.telemetry().backend(),
            wait = ?mode,
            token = tracing::field::Empty,
        );
        let this_span = span.clone();
        async move {
            let mut lease_watch = self.lease.watch();
            let backend = self.lease.backend();
            // The grant owns the backend's lock from its first moment: no await
            // between the backend's answer and the wrap.
            let grant = tokio::select! {
                biased;
                held = backend.acquire(&self.name, self.claim, mode, &self.options) => {
                    held?.map(|held| Grant::new(self.name.clone(), held))
                }
                _ = lease_watch.lost() => {
                    return Err(Error::new(
                        ErrorKind::LeaseLost,
                        format!("lease {} was lost while acquiring {}", self.lease.id(), self.name),
                    ));
                }
            };
            let Some(grant) = grant else {
                tracing::debug!("held by another");
                return Ok(None);
            };
            self.lease.telemetry().token_issued();
            let mut guard = LockGuard::new(self.lease.clone(), grant).with_claim(self.claim);
            this_span.record("token", guard.token().get());
            if guard.state().is_lost() {
                return Err(Error::new(
                    ErrorKind::LeaseLost,
                    format!(
                        "lock {} was granted after its lease's local deadline",
                        self.name
                    ),
                ));
            }
            guard.track(self.lease.telemetry());
            tracing::debug!(token = %guard.token(), "acquired");
            Ok(Some(guard))
        }
        .instrument(span)
        .await
    }
}

/// Runs `section` while `guard` stays `Held`, then releases it: the body of
/// [`Lock::with_lock`] and of the read-write lock's and semaphore's helpers.
pub(crate) async fn run_critical<Fut, T>(guard: LockGuard, section: Fut) -> Result<T>
where
    Fut: Future<Output = T>,
{
    let mut watch = guard.watch();
    let outcome = tokio::select! {
        biased;
        state = watch.not_held() => Err(state),
        out = section => match guard.state() {
            LockState::Held => Ok(out),
            state => Err(state),
        },
    };
    match outcome {
        Ok(out) => {
            if let Err(e) = guard.release().await {
                tracing::debug!(error = %e, "release after critical section failed");
            }
            Ok(out)
        }
        Err(state) => {
            let (name, token) = (guard.name().clone(), guard.token());
            drop(guard);
            Err(Error::new(
                ErrorKind::LeaseLost,
                format!("lock {name} became {state} during the critical section (token {token})"),
            ))
        }
    }
}
