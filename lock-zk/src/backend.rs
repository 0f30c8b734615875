//! The plug into lock-core: [`ZkBackend`] (connecting, granting leases, inspecting
//! and watching locks) with its [`Backend`] impl, and the [`LeaseBackend`] impl of
//! [`ZkLease`], whose `acquire` runs the recipe of `lock.rs`. The fault controls and
//! leak checks are in `admin.rs`.

use crate::{
    config::ZkConfig,
    conn, inspect, lock,
    session::{Session, ZkLease},
    watch_lock,
};
use async_trait::async_trait;
use lock_core::{
    backend::{
        lock_unpoisoned, Backend, ChangeStream, Claim, HeldLock, LeaseBackend, Liveness,
        LockInfoWatch, WaitMode, WatchScope,
    },
    AcquireOptions, Capabilities, LeaseId, LockInfo, LockName, Result, TokenSource,
};
use std::{
    any::Any,
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, Weak,
    },
    time::Duration,
};
use zookeeper_client::Client;

/// The capabilities of the ZooKeeper backend.
pub const CAPABILITIES: Capabilities = Capabilities::new(TokenSource::CreateRevision)
    .with_fifo(true)
    .with_herd_free(true)
    .with_set_value(true)
    .with_detects_external_deletion(true)
    .with_native_fenced_writes(true)
    .with_distributed(true)
    .with_read_write_claims(true)
    .with_shared_claims(true);

struct Inner {
    config: ZkConfig,
    /// The backend's own session (under the chroot) for `inspect`, `list`,
    /// `watch_changes` and the fault controls: opened on first use (not by
    /// [`ZkBackend::connect`]), reopened if it ends. Locks never use it: each lease is
    /// its own session.
    admin: tokio::sync::Mutex<Option<Client>>,
    /// Every lease granted, for [`ZkBackend::expire_session`] and [`Backend::close`].
    sessions: Mutex<Vec<Weak<Session>>>,
    /// Requests sent on `admin` by reads and watches: see [`ZkBackend::requests_sent`].
    requests: Arc<AtomicU64>,
    /// Waiters of this backend's sessions woken by a watch ([`Backend::waiter_wakeups`]).
    wakeups: Arc<AtomicU64>,
}

/// The ZooKeeper lock service: connect with [`ZkBackend::from_url`] or
/// [`ZkBackend::connect`] and wrap it in a [`LockClient`](lock_core::LockClient) (the
/// facade's `fencelock::connect("zk://…")` does both). Cheap to clone.
///
/// Each [lease](lock_core::Lease) it grants is a **new ZooKeeper session** with its own
/// connection, whose timeout is the requested TTL as clamped by the server. Taking,
/// holding and releasing locks needs nothing else: a process that only locks keeps
/// exactly one session per lease. The read-only and operator calls
/// ([`inspect`](Backend::inspect), [`list`](Backend::list),
/// [`watch_changes`](Backend::watch_changes), [`delete_holder`](Self::delete_holder),
/// [`nodes`](Self::nodes)) go through one more session of the backend's own, opened
/// on the first such call and kept (reopened if it ends): they must work without any
/// lease, and must not die with one. Background tasks run on the tokio runtime the
/// backend and its leases were created on.
///
/// # Examples
///
/// ```no_run
/// use lock_core::LockClient;
/// use lock_zk::ZkBackend;
///
/// # async fn run() -> lock_core::Result<()> {
/// let client = LockClient::new(ZkBackend::from_url("zk://127.0.0.1:2181/app?session_timeout=6s").await?);
/// let guard = client.acquire("nightly-report").await?;
/// println!("fencing token (czxid): {}", guard.token());
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ZkBackend {
    inner: Arc<Inner>,
}

impl ZkBackend {
    /// Parses `url` (see [`ZkConfig`]) and connects.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`](lock_core::ErrorKind::InvalidConfig) for a bad URL
    /// or rejected credentials; [`ErrorKind::Unavailable`](lock_core::ErrorKind::Unavailable)
    /// when no server answers within the connect timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped connect leaves at most a session that closes at once.
    pub async fn from_url(url: &str) -> Result<ZkBackend> {
        Self::connect(ZkConfig::from_url(url)?).await
    }

    /// Connects with `config`.
    ///
    /// Connecting opens a session to check that a server answers and accepts the
    /// credentials, and closes it again: a backend keeps no session of its own until
    /// the first `inspect`, `list`, `watch_changes` or fault control needs one (see
    /// [`ZkBackend`]). It creates nothing on the server: the chroot (persistent nodes)
    /// is created, if missing, when the first lease is granted (the first acquisition).
    /// Read-only use ([`inspect`](Backend::inspect), [`list`](Backend::list), the
    /// CLI's `status` and `list`) never creates it, and reports no locks while it is
    /// missing.
    ///
    /// # Errors
    ///
    /// As [`from_url`](Self::from_url).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`from_url`](Self::from_url).
    pub async fn connect(config: ZkConfig) -> Result<ZkBackend> {
        config.validate()?;
        // Only the check: an idle session per client would cost the servers a
        // connection and pings for nothing (issue 11). Dropping the client closes the
        // session in the background.
        drop(open_admin(&config).await?);
        Ok(ZkBackend {
            inner: Arc::new(Inner {
                config,
                admin: tokio::sync::Mutex::new(None),
                sessions: Mutex::new(Vec::new()),
                requests: Arc::default(),
                wakeups: Arc::default(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ZkConfig {
        &self.inner.config
    }

    /// How many requests this backend sent on its own session for
    /// [`inspect`](Backend::inspect), [`list`](Backend::list),
    /// [`watch_changes`](Backend::watch_changes) and
    /// [`watch_lock_info`](Backend::watch_lock_info) (every `getChildren`, `getData`
    /// and watch set up): all that a follower of an election or a `status --watch`
    /// sends. Requests of lease sessions (acquisitions, keep-alives) and of the fault
    /// controls are not counted. For tests and benchmarks.
    #[doc(hidden)]
    pub fn requests_sent(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    pub(crate) async fn admin(&self) -> Result<Client> {
        let mut slot = self.inner.admin.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.state().is_terminated()) {
            return Ok(client.clone());
        }
        let client = open_admin(&self.inner.config).await?;
        *slot = Some(client.clone());
        Ok(client)
    }

    pub(crate) fn live_sessions(&self) -> Vec<Arc<Session>> {
        let mut sessions = lock_unpoisoned(&self.inner.sessions);
        sessions.retain(|s| s.strong_count() > 0);
        sessions.iter().filter_map(Weak::upgrade).collect()
    }
}

/// Opens the backend's own session, under the chroot. It never creates the chroot:
/// `inspect`, `list` and the leak checks only read, and report "no locks" while the
/// chroot is missing.
async fn open_admin(config: &ZkConfig) -> Result<Client> {
    let client = conn::connect(config, config.session_timeout(), false, None).await?;
    conn::under_chroot(config, client, false).await
}

#[async_trait]
impl Backend for ZkBackend {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn scheme(&self) -> &'static str {
        "zk"
    }

    fn default_ttl(&self) -> Duration {
        self.inner.config.session_timeout()
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<Arc<dyn LeaseBackend>> {
        let lease = ZkLease::grant(&self.inner.config, ttl, self.inner.wakeups.clone()).await?;
        {
            let mut sessions = lock_unpoisoned(&self.inner.sessions);
            sessions.retain(|s| s.strong_count() > 0);
            sessions.push(Arc::downgrade(lease.session()));
        }
        Ok(Arc::new(lease))
    }

    async fn inspect(&self, name: &LockName) -> Result<Option<LockInfo>> {
        inspect::inspect(&self.admin().await?, name, &self.inner.requests).await
    }

    /// Counts the events of the watches a waiter set on the nodes ahead of it (a
    /// deletion, a permit's grant signal, a session event), each of which makes it
    /// read the queue again.
    fn waiter_wakeups(&self) -> Option<u64> {
        Some(self.inner.wakeups.load(Ordering::Relaxed))
    }

    async fn watch_changes(&self, scope: &WatchScope) -> Result<ChangeStream> {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        watch_lock::changes(&self.admin().await?, scope).await
    }

    async fn watch_lock_info(self: Arc<Self>, name: &LockName) -> Result<LockInfoWatch> {
        let client = self.admin().await?;
        watch_lock::lock_infos(client, name.clone(), self.inner.requests.clone()).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LockInfo>> {
        inspect::list(&self.admin().await?, prefix, &self.inner.requests).await
    }

    async fn close(&self) -> Result<()> {
        drop(self.inner.admin.lock().await.take());
        let limit = self.inner.config.connect_timeout();
        let sessions = self.live_sessions();
        let results = futures::future::join_all(sessions.iter().map(|s| s.close(limit))).await;
        results.into_iter().collect()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[async_trait]
impl LeaseBackend for ZkLease {
    fn id(&self) -> LeaseId {
        self.session().id()
    }

    fn granted_ttl(&self) -> Duration {
        self.session().timeout()
    }

    fn liveness(&self) -> &Liveness {
        self.session().liveness()
    }

    async fn acquire(
        &self,
        name: &LockName,
        claim: Claim,
        mode: WaitMode,
        options: &AcquireOptions,
    ) -> Result<Option<Box<dyn HeldLock>>> {
        // Every claim the capabilities deny is refused here, before anything is
        // enqueued.
        lock_core::backend::check_claim(&CAPABILITIES, "zk", claim, name)?;
        let held = lock::acquire(self.session(), name, claim, mode, options).await?;
        Ok(held.map(|h| Box::new(h) as Box<dyn HeldLock>))
    }

    async fn revoke(&self) -> Result<()> {
        let limit = self.session().timeout().max(Duration::from_secs(2));
        self.session().close(limit).await
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl fmt::Debug for ZkBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZkBackend")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}
