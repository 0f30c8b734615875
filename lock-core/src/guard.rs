//! Proof of holding a lock.

use crate::held::Grant;
use crate::stats::{End, GrantTel, Scope, Telemetry};
use crate::{
    backend::{Claim, HeldLock},
    state::Event,
    Error, ErrorKind, FencingToken, Lease, LockName, LockState, LossCause, Result, StateWatch,
};
use std::{any::Any, fmt, future::Future, sync::Arc};
use tracing::Instrument;

/// Proof that a lock was granted: its [`FencingToken`], its live state, and the means to
/// release it.
///
/// Owned and `'static`, so it can move into spawned tasks. Not `Clone`: exactly one
/// guard exists per grant, and the lock is released at most once.
///
/// # Guarantees
///
/// - [`state`](Self::state) leaves `Held` as soon as the lease is suspect or lost, the
///   local deadline passes, or (where the backend detects it) the lock entry is deleted
///   by someone else; [`lost_signal`](Self::lost_signal) resolves at that moment.
/// - [`release`](Self::release) deletes only this grant's entry, never a newer
///   holder's.
/// - Dropping the guard releases in the background on the current tokio runtime
///   (retrying through an outage); with no runtime, the entry is left to expire with
///   its lease. A backend that can release without I/O (memory) releases at once,
///   runtime or not.
///
/// # Non-guarantees
///
/// `Held` is a belief with a deadline, not a proof; pass [`token`](Self::token) to the
/// resource and let it reject stale tokens (see [`Fence`](crate::Fence)).
///
/// # Examples
///
/// ```
/// use lock_core::{LockClient, LockState};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let client = LockClient::new(lock_memory::MemoryBackend::new());
/// let guard = client.acquire("daily-report").await?;
/// assert_eq!(guard.name().as_str(), "daily-report");
/// assert_eq!(guard.state(), LockState::Held);
/// let token = guard.token();
/// let next = { guard.release().await?; client.acquire("daily-report").await? };
/// assert!(next.token() > token);
/// # Ok(()) }
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    name: LockName,
    token: FencingToken,
    lease: Lease,
    watch: StateWatch,
    /// The one owner of the backend's lock: its drop is the release on drop.
    grant: Option<Grant>,
    tracking: Option<Tracking>,
    claim: Claim,
    slot: Option<u32>,
}

/// A tracked grant's accounting and its hook on the lease's liveness.
struct Tracking {
    grant: Arc<GrantTel>,
    lease_hook: u64,
}

impl LockGuard {
    pub(crate) fn new(lease: Lease, grant: Grant) -> Self {
        let held = grant.held();
        let watch = held.liveness().watch().and(lease.backend().liveness());
        let (token, slot) = (held.token(), held.slot());
        LockGuard {
            name: grant.name().clone(),
            token,
            slot,
            lease,
            watch,
            grant: Some(grant),
            tracking: None,
            claim: Claim::Exclusive,
        }
    }

    pub(crate) fn with_claim(mut self, claim: Claim) -> Self {
        self.claim = claim;
        self
    }

    /// What the grant claimed: [`Claim::Exclusive`] for a mutex, `Read` or `Write` for
    /// the sides of an [`RwLock`](crate::RwLock), `Shared` for a
    /// [`Semaphore`](crate::Semaphore) permit.
    pub fn claim(&self) -> Claim {
        self.claim
    }

    /// The permit's slot in `0..limit` for a semaphore permit (see
    /// [`Permit::slot`](crate::Permit::slot)); `None` for every other grant.
    pub fn slot(&self) -> Option<u32> {
        self.slot
    }

    /// Starts the grant's accounting in `tel`: held from now until released, dropped
    /// or lost (whichever comes first).
    pub(crate) fn track(&mut self, tel: &Arc<Telemetry>) {
        let Some(held) = self.held() else {
            return;
        };
        let grant = GrantTel::new(tel, self.name.clone(), self.token, self.lease.id());
        let on_entry = {
            let grant = grant.clone();
            Arc::new(move |event| {
                let Event::Transition { from, to, cause } = event else {
                    return;
                };
                if grant.is_releasing() {
                    return;
                }
                grant.telemetry().transition(Scope::Lock, from, to);
                if to == LockState::Lost {
                    grant.end(End::Lost(cause.unwrap_or(LossCause::Unknown)));
                }
            })
        };
        held.liveness().subscribe(on_entry);
        let on_lease = {
            let grant = grant.clone();
            Arc::new(move |event| {
                if let Event::Transition {
                    to: LockState::Lost,
                    cause,
                    ..
                } = event
                {
                    if !grant.is_releasing() {
                        grant.end(End::Lost(cause.unwrap_or(LossCause::Unknown)));
                    }
                }
            })
        };
        let lease_hook = self.lease.backend().liveness().subscribe(on_lease);
        // Lost between the grant and the subscriptions: no hook saw it.
        if self.state().is_lost() {
            grant.end(self.lost_end());
        }
        self.tracking = Some(Tracking { grant, lease_hook });
    }

    /// The end of a grant found lost, with its cause.
    fn lost_end(&self) -> End {
        End::Lost(self.loss_cause().unwrap_or(LossCause::Unknown))
    }

    /// Stops watching for a loss before the guard itself frees the entry, ending the
    /// accounting now if lost or dropped; a release ends it after the backend answers.
    fn untrack(&mut self, cause: End) -> Option<Arc<GrantTel>> {
        let tracking = self.tracking.take()?;
        let lost = self.state().is_lost();
        tracking.grant.start_releasing();
        self.lease
            .backend()
            .liveness()
            .unsubscribe(tracking.lease_hook);
        if lost {
            tracking.grant.end(self.lost_end());
        } else if cause == End::Dropped {
            tracking.grant.end(End::Dropped);
        }
        Some(tracking.grant)
    }

    /// The grant's fencing token.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// The lock's name.
    pub fn name(&self) -> &LockName {
        &self.name
    }

    /// The lease the grant hangs off.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The current state: the worst of the lease's and the entry's, local deadline
    /// included.
    pub fn state(&self) -> LockState {
        self.watch.state()
    }

    /// Why the lock is `Lost` (its entry's cause first, then its lease's); `None`
    /// while it is not.
    ///
    /// # Examples
    ///
    /// ```
    /// use lock_core::{LockClient, LossCause};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
    /// let backend = lock_memory::MemoryBackend::new();
    /// let client = LockClient::new(backend.clone());
    /// let guard = client.acquire("daily-report").await?;
    /// assert_eq!(guard.loss_cause(), None);
    /// backend.delete_holder(guard.name()); // an operator deletes the entry
    /// assert_eq!(guard.loss_cause(), Some(LossCause::EntryDeleted));
    /// assert_eq!(guard.ensure_held().unwrap_err().loss_cause(), Some(LossCause::EntryDeleted));
    /// # Ok(()) }
    /// ```
    pub fn loss_cause(&self) -> Option<LossCause> {
        self.watch.loss_cause()
    }

    /// `true` while [`state`](Self::state) is `Held`.
    pub fn is_held(&self) -> bool {
        self.state().is_held()
    }

    /// `Ok(())` while held, [`ErrorKind::LeaseLost`] otherwise: a check to put right
    /// before a side effect.
    ///
    /// # Errors
    ///
    /// `LeaseLost` when the state is `Suspect` or `Lost`; a lost lock's error carries
    /// its [`Error::loss_cause`].
    pub fn ensure_held(&self) -> Result<()> {
        match self.state() {
            LockState::Held => Ok(()),
            LockState::Lost => {
                let cause = self.loss_cause().unwrap_or(LossCause::Unknown);
                Err(Error::new(
                    ErrorKind::LeaseLost,
                    format!("lock {} is lost: {cause} (token {})", self.name, self.token),
                )
                .with_loss_cause(cause))
            }
            state => Err(Error::new(
                ErrorKind::LeaseLost,
                format!("lock {} is {state} (token {})", self.name, self.token),
            )),
        }
    }

    /// A watch of the state, for waiting on changes.
    pub fn watch(&self) -> StateWatch {
        self.watch.clone()
    }

    /// A future that resolves with the new state as soon as the lock leaves `Held`.
    /// It does not borrow the guard.
    pub fn lost_signal(&self) -> impl Future<Output = LockState> + Send + 'static {
        let mut watch = self.watch();
        async move { watch.not_held().await }
    }

    /// The backend's grant itself (`None` once released).
    pub(crate) fn held(&self) -> Option<&dyn HeldLock> {
        self.grant.as_ref().map(Grant::held)
    }

    /// The backend's grant, for backend-specific extensions (for example etcd's fenced
    /// transactions); `None` if it is not a `T`.
    pub fn backend_lock<T: Any>(&self) -> Option<&T> {
        self.held()?.as_any().downcast_ref()
    }

    /// Releases the lock and reports how it went.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotHeld`] when the lock had already been lost (its entry was gone:
    /// expired lease, deleted by an operator); the critical section may have
    /// overlapped with another holder and the fencing token is what protected the
    /// resource. Backend errors (for example [`ErrorKind::Unavailable`]) when the
    /// release could not be confirmed: the entry then expires with its lease.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a dropped release may or may not have deleted the entry; it
    /// expires with its lease otherwise.
    pub async fn release(mut self) -> Result<()> {
        let Some(mut owned) = self.grant.take() else {
            return Ok(());
        };
        let grant = self.untrack(End::Released);
        // What the guard knew before the backend's release marks the entry its own way.
        let known = self.loss_cause();
        let span = tracing::debug_span!(
            "release",
            lock = %self.name,
            token = %self.token,
            lease = %self.lease.id(),
            backend = self.lease.telemetry().backend(),
        );
        // Unconfirmed (or cancelled), the grant's drop retries in the background.
        let result = owned.release().instrument(span).await;
        if let Some(grant) = grant {
            let gone = matches!(&result, Err(e) if e.kind() == ErrorKind::NotHeld);
            grant.end(if gone {
                End::Lost(known.unwrap_or(LossCause::EntryDeleted))
            } else {
                End::Released
            });
        }
        tracing::debug!(lock = %self.name, token = %self.token, ok = result.is_ok(), "released");
        result
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Ends the accounting; the grant, dropped right after, releases.
        if self.grant.is_some() {
            self.untrack(End::Dropped);
        }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.name)
            .field("token", &self.token)
            .field("lease", &self.lease.id())
            .field("state", &self.state())
            .finish()
    }
}
