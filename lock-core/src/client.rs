//! The handle applications hold: a backend behind an `Arc<dyn Backend>`.

use crate::{
    backend::Backend,
    stats::{LockStats, Telemetry},
    validate_ttl, Capabilities, Fence, FencingToken, IntoLockName, Lease, Lock, LockGuard,
    LockInfo, Result, RwLock, Semaphore,
};
use std::{any::Any, fmt, future::Future, sync::Arc, time::Duration};
use tokio::sync::Mutex;

struct Inner {
    tel: Arc<Telemetry>,
    backend: Arc<dyn Backend>,
    session: Mutex<Option<Lease>>,
}

/// A connection to a lock service, whatever the backend. Cheap to clone.
///
/// Applications hold this type (usually from `fencelock::connect(url)`) and never name
/// a backend, so switching from `memory://` to `etcd://…` or `zk://…` changes no code.
///
/// The simple calls ([`acquire`](Self::acquire), [`lock`](Self::lock), …) use a shared
/// *session*: one lease with the backend's default TTL, created on first use and
/// replaced by a fresh one on the next call after it is lost (a ZooKeeper session that
/// expired is dead for good; this is how the client gets a new one). Use
/// [`lease_with_ttl`](Self::lease_with_ttl) to manage leases yourself.
///
/// # Examples
///
/// ```
/// use lock_core::LockClient;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let client = LockClient::new(lock_memory::MemoryBackend::new());
/// let guard = client.acquire("daily-report").await?;
/// println!("running the report with fencing token {}", guard.token());
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LockClient {
    inner: Arc<Inner>,
}

impl LockClient {
    /// A client over `backend`.
    pub fn new(backend: impl Backend) -> Self {
        Self::from_arc(Arc::new(backend))
    }

    pub(crate) fn backend_arc(&self) -> Arc<dyn Backend> {
        self.inner.backend.clone()
    }

    /// A client over an already shared backend.
    pub fn from_arc(backend: Arc<dyn Backend>) -> Self {
        LockClient {
            inner: Arc::new(Inner {
                tel: Telemetry::new(backend.scheme()),
                backend,
                session: Mutex::new(None),
            }),
        }
    }

    /// What the backend promises.
    pub fn capabilities(&self) -> Capabilities {
        self.inner.backend.capabilities()
    }

    /// The backend, for backend-specific extensions; `None` if it is not a `T`.
    ///
    /// ```
    /// use lock_core::LockClient;
    /// use lock_memory::MemoryBackend;
    ///
    /// let client = LockClient::new(MemoryBackend::new());
    /// assert!(client.backend::<MemoryBackend>().is_some());
    /// ```
    pub fn backend<T: Any>(&self) -> Option<&T> {
        self.inner.backend.as_any().downcast_ref()
    }

    /// A snapshot of this client's counters: acquire outcomes, releases, losses, locks
    /// held now, acquires in flight, tokens issued and the rejections of fences from
    /// [`fence`](Self::fence), plus the backend's waiter wake-ups
    /// ([`LockStats::waiter_wakeups`]). Shared by all clones of the client and everything made
    /// from it; needs no cargo feature. See [`stats`](crate::stats) for what each
    /// count means, and for the same numbers as metrics.
    ///
    /// # Examples
    ///
    /// ```
    /// use lock_core::{LockClient, ErrorKind};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
    /// let client = LockClient::new(lock_memory::MemoryBackend::new());
    /// let fence = client.fence();
    /// let first = client.acquire("report").await?;
    /// let err = client.acquire_timeout("report", Duration::from_millis(10)).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Timeout);
    /// let token = first.token();
    /// first.release().await?;
    /// let second = client.acquire("report").await?;
    /// fence.check("report", second.token())?;
    /// assert!(fence.check("report", token).is_err()); // stale
    ///
    /// let stats = client.stats();
    /// assert_eq!(stats.acquires_granted, 2);
    /// assert_eq!(stats.acquires_timed_out, 1);
    /// assert_eq!(stats.releases, 1);
    /// assert_eq!(stats.locks_held, 1);
    /// assert_eq!(stats.fence_rejections, 1);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> LockStats {
        LockStats {
            waiter_wakeups: self.inner.backend.waiter_wakeups(),
            ..self.inner.tel.snapshot()
        }
    }

    /// A [`Fence`] whose rejections count in this client's [`stats`](Self::stats) and
    /// carry its `backend` label.
    pub fn fence(&self) -> Fence {
        Fence::with_telemetry(self.inner.tel.clone())
    }

    /// The TTL of leases made without an explicit one.
    pub fn default_ttl(&self) -> Duration {
        self.inner.backend.default_ttl()
    }

    /// Grants a new lease with the default TTL.
    ///
    /// # Errors
    ///
    /// The backend's, for example [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable).
    ///
    /// # Cancel safety
    ///
    /// A dropped call may leave a granted lease on the server, which expires after its TTL.
    pub async fn lease(&self) -> Result<Lease> {
        self.lease_with_ttl(self.default_ttl()).await
    }

    /// Grants a new lease with (at least) `ttl`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) for a TTL outside
    /// [`MIN_TTL`](crate::MIN_TTL)..=[`MAX_TTL`](crate::MAX_TTL); backend errors.
    ///
    /// # Cancel safety
    ///
    /// As [`lease`](Self::lease).
    pub async fn lease_with_ttl(&self, ttl: Duration) -> Result<Lease> {
        let ttl = validate_ttl(ttl)?;
        let backend = self.inner.backend.grant_lease(ttl).await?;
        let lease = Lease::with_telemetry(backend, self.inner.tel.clone());
        tracing::debug!(lease = %lease.id(), requested = ?ttl, granted = ?lease.ttl(), "lease granted");
        Ok(lease)
    }

    /// The shared session lease, granting a fresh one if there is none or the last one
    /// is lost.
    ///
    /// # Errors
    ///
    /// As [`lease`](Self::lease).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn session(&self) -> Result<Lease> {
        let mut session = self.inner.session.lock().await;
        if let Some(lease) = session.as_ref().filter(|l| !l.state().is_lost()) {
            return Ok(lease.clone());
        }
        let lease = self.lease().await?;
        *session = Some(lease.clone());
        Ok(lease)
    }

    /// A lock named `name` on the shared session.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidName`](crate::ErrorKind::InvalidName); those of
    /// [`session`](Self::session).
    pub async fn lock<N>(&self, name: N) -> Result<Lock>
    where
        N: IntoLockName,
    {
        let name = name.into_lock_name()?;
        self.session().await?.lock(name)
    }

    /// A read-write lock named `name` on the shared session. See [`RwLock`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidName`](crate::ErrorKind::InvalidName);
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) when the backend's
    /// [`Capabilities::read_write_claims`] is off; those of [`session`](Self::session).
    pub async fn rw_lock<N>(&self, name: N) -> Result<RwLock>
    where
        N: IntoLockName,
    {
        let name = name.into_lock_name()?;
        let rw = self.session().await?.rw_lock(name)?;
        rw.ensure_supported(&self.capabilities())
    }

    /// A counting semaphore named `name` with `limit` permits on the shared session.
    /// See [`Semaphore`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidName`](crate::ErrorKind::InvalidName);
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) for a `limit`
    /// outside `1..=`[`MAX_PERMITS`](crate::MAX_PERMITS);
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) when the backend's
    /// [`Capabilities::shared_claims`] is off; those of [`session`](Self::session).
    pub async fn semaphore<N>(&self, name: N, limit: u32) -> Result<Semaphore>
    where
        N: IntoLockName,
    {
        let name = name.into_lock_name()?;
        let sem = self.session().await?.semaphore(name, limit)?;
        sem.ensure_supported(&self.capabilities())
    }

    /// Acquires `name` on the shared session, waiting FIFO. See [`Lock::acquire`].
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the strong sense.
    pub async fn acquire<N>(&self, name: N) -> Result<LockGuard>
    where
        N: IntoLockName,
    {
        self.lock(name).await?.acquire().await
    }

    /// Takes `name` if free, never waiting. See [`Lock::try_acquire`].
    ///
    /// # Errors
    ///
    /// As [`Lock::try_acquire`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the strong sense.
    pub async fn try_acquire<N>(&self, name: N) -> Result<Option<LockGuard>>
    where
        N: IntoLockName,
    {
        self.lock(name).await?.try_acquire().await
    }

    /// Waits at most `timeout` for `name`. See [`Lock::acquire_timeout`].
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire_timeout`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the strong sense.
    pub async fn acquire_timeout<N>(&self, name: N, timeout: Duration) -> Result<LockGuard>
    where
        N: IntoLockName,
    {
        self.lock(name).await?.acquire_timeout(timeout).await
    }

    /// Runs `critical` under `name`, cancelling it as soon as the lock leaves `Held`.
    /// See [`Lock::with_lock`].
    ///
    /// # Errors
    ///
    /// As [`Lock::with_lock`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn with_lock<N, F, Fut, T>(&self, name: N, critical: F) -> Result<T>
    where
        N: IntoLockName,
        F: FnOnce(FencingToken) -> Fut,
        Fut: Future<Output = T>,
    {
        self.lock(name).await?.with_lock(critical).await
    }

    /// Reads who holds `name` and how many wait; `None` when it is free.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidName`](crate::ErrorKind::InvalidName); backend errors.
    pub async fn inspect<N>(&self, name: N) -> Result<Option<LockInfo>>
    where
        N: IntoLockName,
    {
        self.inner.backend.inspect(&name.into_lock_name()?).await
    }

    /// Lists the held locks whose names start with `prefix`.
    ///
    /// # Errors
    ///
    /// Backend errors.
    pub async fn list(&self, prefix: &str) -> Result<Vec<LockInfo>> {
        self.inner.backend.list(prefix).await
    }

    /// Closes the shared session (revoking its lease) and the backend's connections.
    ///
    /// # Errors
    ///
    /// The first error met; the rest is still closed.
    pub async fn close(&self) -> Result<()> {
        let session = self.inner.session.lock().await.take();
        let revoked = match session {
            Some(lease) => lease.close().await,
            None => Ok(()),
        };
        let closed = self.inner.backend.close().await;
        revoked.and(closed)
    }
}

impl fmt::Debug for LockClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockClient")
            .field("backend", &self.inner.backend)
            .finish()
    }
}
