//! The user-facing lease handle.

use crate::{
    backend::LeaseBackend,
    state::Event,
    stats::{Scope, Telemetry},
    Error, ErrorKind, IntoLockName, LeaseId, Lock, LockState, LossCause, Result, RwLock, Semaphore,
    StateWatch,
};
use std::{
    fmt,
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::time::Instant;

/// The shortest TTL accepted.
pub const MIN_TTL: Duration = Duration::from_millis(10);
/// The longest TTL accepted: a crashed holder blocks its locks for up to this long.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// Checks that `ttl` lies within [`MIN_TTL`]..=[`MAX_TTL`].
///
/// # Errors
///
/// [`ErrorKind::InvalidConfig`] for a zero, tiny or absurd TTL.
///
/// # Examples
///
/// ```
/// use lock_core::{validate_ttl, ErrorKind};
/// use std::time::Duration;
///
/// assert!(validate_ttl(Duration::from_secs(10)).is_ok());
/// assert_eq!(validate_ttl(Duration::ZERO).unwrap_err().kind(), ErrorKind::InvalidConfig);
/// assert_eq!(validate_ttl(Duration::from_secs(86_400 * 365)).unwrap_err().kind(), ErrorKind::InvalidConfig);
/// ```
pub fn validate_ttl(ttl: Duration) -> Result<Duration> {
    if ttl < MIN_TTL || ttl > MAX_TTL {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("ttl {ttl:?} is outside {MIN_TTL:?}..={MAX_TTL:?}"),
        ));
    }
    Ok(ttl)
}

struct Inner {
    backend: Arc<dyn LeaseBackend>,
    closed: AtomicBool,
    /// Set when the lease is closed or dropped: its own `…→lost` is then deliberate.
    ending: Arc<AtomicBool>,
    tel: Arc<Telemetry>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ending.store(true, Ordering::Release);
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let backend = self.backend.clone();
        let id = backend.id();
        crate::backend::spawn_or_expire(format_args!("lease {id}, dropped open"), async move {
            if let Err(e) = backend.revoke().await {
                tracing::debug!(lease = %backend.id(), error = %e, "background revoke failed; the lease will expire");
            }
        });
    }
}

/// A liveness unit with a TTL that the backend keeps alive in the background: an etcd
/// lease, a ZooKeeper session, a memory lease. One lease serves many locks.
///
/// Every lock entry hangs off a lease, so when the process dies the lease expires and
/// its locks free themselves after at most the granted TTL.
///
/// Cheap to clone; clones share the lease. When the last clone (and every guard and
/// [`Lock`] made from it) is dropped, the lease is revoked in the background.
///
/// # Guarantees
///
/// - [`state`](Self::state) turns `Suspect` when the backend cannot confirm the lease
///   (missed keep-alive, disconnected session) and `Lost` when it is certainly gone or
///   its *local deadline* passed: the time the last successful keep-alive was *sent*
///   plus the *granted* TTL, minus a tenth. `Lost` is final.
/// - [`close`](Self::close) revokes promptly; every guard on the lease turns `Lost`.
///
/// # Non-guarantees
///
/// A `Held` lease may already have expired on the server (a pause, a slow network).
/// Protect resources with [fencing tokens](crate::Fence).
///
/// # Examples
///
/// ```
/// use lock_core::{LockClient, LockState};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let client = LockClient::new(lock_memory::MemoryBackend::new());
/// let lease = client.lease_with_ttl(Duration::from_secs(5)).await?;
/// assert_eq!(lease.ttl(), Duration::from_secs(5));
/// let a = lease.lock("orders/1")?.acquire().await?;
/// let b = lease.lock("orders/2")?.acquire().await?;
/// lease.close().await?;
/// assert_eq!(a.state(), LockState::Lost);
/// assert_eq!(b.state(), LockState::Lost);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Lease {
    inner: Arc<Inner>,
}

impl Lease {
    /// Wraps a backend lease. Backends and tests use this; applications get leases
    /// from [`LockClient`](crate::LockClient).
    ///
    /// Its [stats](crate::stats) go to a counter set of its own, labelled
    /// `backend="unknown"`.
    pub fn from_backend(backend: Arc<dyn LeaseBackend>) -> Self {
        Self::with_telemetry(backend, Telemetry::new("unknown"))
    }

    pub(crate) fn with_telemetry(backend: Arc<dyn LeaseBackend>, tel: Arc<Telemetry>) -> Self {
        let ending = Arc::new(AtomicBool::new(false));
        let hook = {
            let (tel, ending) = (tel.clone(), ending.clone());
            Arc::new(move |event| match event {
                Event::Transition { from, to, .. } => {
                    if !(to == LockState::Lost && ending.load(Ordering::Acquire)) {
                        tel.transition(Scope::Lease, from, to);
                    }
                }
                Event::KeepAlive { rtt, margin } => tel.keep_alive(rtt, margin),
                Event::KeepAliveFailed => tel.keep_alive_failed(),
            })
        };
        backend.liveness().subscribe(hook);
        Lease {
            inner: Arc::new(Inner {
                backend,
                closed: AtomicBool::new(false),
                ending,
                tel,
            }),
        }
    }

    pub(crate) fn telemetry(&self) -> &Arc<Telemetry> {
        &self.inner.tel
    }

    /// The backend's id of the lease.
    pub fn id(&self) -> LeaseId {
        self.inner.backend.id()
    }

    /// The TTL the server granted (etcd rounds up to whole seconds and its minimum,
    /// ZooKeeper clamps the session timeout).
    pub fn ttl(&self) -> Duration {
        self.inner.backend.granted_ttl()
    }

    /// The current state, local deadline included.
    pub fn state(&self) -> LockState {
        self.inner.backend.liveness().state()
    }

    /// Why the lease is `Lost`; `None` while it is not.
    pub fn loss_cause(&self) -> Option<LossCause> {
        self.inner.backend.liveness().loss_cause()
    }

    /// `true` while the state is [`LockState::Held`].
    pub fn is_alive(&self) -> bool {
        self.state().is_held()
    }

    /// The local deadline after which the lease counts as lost unless renewed.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.backend.liveness().deadline()
    }

    /// A watch of the lease's state.
    pub fn watch(&self) -> StateWatch {
        self.inner.backend.liveness().watch()
    }

    /// A future that resolves with the state as soon as the lease may be gone (it
    /// leaves [`LockState::Held`]).
    pub fn lost_signal(&self) -> impl Future<Output = LockState> + Send + 'static {
        let mut watch = self.watch();
        async move { watch.not_held().await }
    }

    /// A lock named `name` bound to this lease.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidName`] for an invalid name.
    pub fn lock<N>(&self, name: N) -> Result<Lock>
    where
        N: IntoLockName,
    {
        Ok(Lock::new(self.clone(), name.into_lock_name()?))
    }

    /// A read-write lock named `name` bound to this lease. See [`RwLock`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidName`]. On a backend without read-write claims every
    /// acquire fails with [`ErrorKind::Unsupported`].
    pub fn rw_lock<N>(&self, name: N) -> Result<RwLock>
    where
        N: IntoLockName,
    {
        Ok(RwLock::new(self.clone(), name.into_lock_name()?))
    }

    /// A counting semaphore named `name` with `limit` permits bound to this lease. See
    /// [`Semaphore`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidName`]; [`ErrorKind::InvalidConfig`] for a `limit` outside
    /// `1..=`[`MAX_PERMITS`](crate::MAX_PERMITS). On a backend without permits every
    /// acquire fails with [`ErrorKind::Unsupported`].
    pub fn semaphore<N>(&self, name: N, limit: u32) -> Result<Semaphore>
    where
        N: IntoLockName,
    {
        Semaphore::new(self.clone(), name.into_lock_name()?, limit)
    }

    /// Revokes the lease now: every lock on it is released on the server and every
    /// guard on it turns `Lost`.
    ///
    /// # Errors
    ///
    /// The backend's error if the revoke could not be confirmed (the lease then expires
    /// after its TTL).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a dropped close may or may not have revoked; the lease then
    /// expires after its TTL.
    pub async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.ending.store(true, Ordering::Release);
        let result = self.inner.backend.revoke().await;
        self.inner
            .backend
            .liveness()
            .lose_with(LossCause::LeaseRevoked);
        tracing::debug!(lease = %self.id(), ok = result.is_ok(), "lease closed");
        result
    }

    /// The backend's lease, for backend-specific extensions and test harnesses;
    /// `None` if it is not a `T`.
    ///
    /// ```
    /// use lock_core::LockClient;
    /// use lock_memory::MemoryLease;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
    /// let lease = LockClient::new(lock_memory::MemoryBackend::new()).lease().await?;
    /// assert!(lease.backend_lease::<MemoryLease>().is_some());
    /// # Ok(()) }
    /// ```
    pub fn backend_lease<T: std::any::Any>(&self) -> Option<&T> {
        self.inner.backend.as_any().downcast_ref()
    }

    pub(crate) fn backend(&self) -> &Arc<dyn LeaseBackend> {
        &self.inner.backend
    }

    pub(crate) fn ensure_not_lost(&self) -> Result<()> {
        match self.state() {
            LockState::Lost => {
                let cause = self.loss_cause().unwrap_or(LossCause::Unknown);
                Err(
                    Error::lease_lost(format_args!("lease {} is lost: {cause}", self.id()))
                        .with_loss_cause(cause),
                )
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("id", &self.id())
            .field("ttl", &self.ttl())
            .field("state", &self.state())
            .finish()
    }
}
