//! [`ZkBackend`]: connecting, granting leases (sessions) and inspecting locks. The
//! fault controls and leak checks are in `admin.rs`.

use crate::{
    config::ZkConfig,
    error, queue,
    session::{self, Session, ZkLease},
};
use async_trait::async_trait;
use lock_core::{
    backend::{lock_unpoisoned, Backend, ChangeStream, LeaseBackend, LockInfoWatch, WatchScope},
    Capabilities, Error, ErrorKind, FencingToken, HolderInfo, LeaseId, LockInfo, LockName, Result,
    TokenSource,
};
use std::{
    any::Any,
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, Weak,
    },
    time::{Duration, UNIX_EPOCH},
};
use zookeeper_client::{Client, Error as ZkError, Stat};

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

/// How often `inspect` re-reads when the owner leaves between two reads.
const INSPECT_RETRIES: usize = 5;

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
    /// [`ErrorKind::InvalidConfig`] for a bad URL or rejected credentials;
    /// [`ErrorKind::Unavailable`] when no server answers within the connect timeout.
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
    let client = session::connect(config, config.session_timeout(), false, None).await?;
    session::under_chroot(config, client, false).await
}

/// The holder that lock node `node` of `kind` describes, from its data and stat.
pub(crate) fn holder_info(kind: queue::NodeKind, data: &[u8], stat: &Stat) -> HolderInfo {
    let (holder, at) = match queue::decode_data(data) {
        (holder, Some(at)) if kind.may_be_fencelock() => (holder, Some(at)),
        // Another client's node: name the client, take the time from the stat.
        _ => (Some(queue::foreign_holder(kind, data)), None),
    };
    let at = at.or_else(|| UNIX_EPOCH.checked_add(Duration::from_millis(stat.ctime.max(0) as u64)));
    HolderInfo::new(
        FencingToken::new(stat.czxid as u64),
        LeaseId::new(stat.ephemeral_owner as u64),
    )
    .with_holder(holder)
    .with_acquired_at(at)
    .with_claim(kind.claim())
}

/// Reads the holder of `name` through `client`, counting each request in
/// `requests`.
async fn inspect(
    client: &Client,
    name: &LockName,
    requests: &AtomicU64,
) -> Result<Option<LockInfo>> {
    let dir = queue::dir_path(name);
    let what = || format!("inspecting lock {name}");
    for _ in 0..INSPECT_RETRIES {
        requests.fetch_add(1, Ordering::Relaxed);
        let children = match client.list_children(&dir).await {
            Ok(children) => children,
            Err(ZkError::NoNode) => return Ok(None),
            Err(e) => return Err(error::map(e, what())),
        };
        let nodes = queue::queue(&children);
        let (held, waiters) = queue::holders_and_waiters(&nodes);
        let mut holders = Vec::with_capacity(held);
        for &(node, kind) in &nodes[..held] {
            requests.fetch_add(1, Ordering::Relaxed);
            let (data, stat) = match client.get_data(&format!("{dir}/{node}")).await {
                Ok(read) => read,
                Err(ZkError::NoNode) => break,
                Err(e) => return Err(error::map(e, what())),
            };
            holders.push(holder_info(kind, &data, &stat));
        }
        if holders.len() < held {
            continue; // a holder left between the two reads
        }
        let mut holders = holders.into_iter();
        let Some(first) = holders.next() else {
            return Ok(None);
        };
        let info = LockInfo::from_holders(name.clone(), first, holders.collect(), waiters);
        return Ok(Some(info));
    }
    Err(Error::new(
        ErrorKind::Unavailable,
        format!("{}: the holder kept changing", what()),
    ))
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
        inspect(&self.admin().await?, name, &self.inner.requests).await
    }

    /// Counts the events of the watches a waiter set on the nodes ahead of it (a
    /// deletion, a permit's grant signal, a session event), each of which makes it
    /// read the queue again.
    fn waiter_wakeups(&self) -> Option<u64> {
        Some(self.inner.wakeups.load(Ordering::Relaxed))
    }

    async fn watch_changes(&self, scope: &WatchScope) -> Result<ChangeStream> {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        crate::watch_lock::changes(&self.admin().await?, scope).await
    }

    async fn watch_lock_info(self: Arc<Self>, name: &LockName) -> Result<LockInfoWatch> {
        let client = self.admin().await?;
        crate::watch_lock::lock_infos(client, name.clone(), self.inner.requests.clone()).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LockInfo>> {
        let client = self.admin().await?;
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let dirs = match client.list_children("/").await {
            Ok(dirs) => dirs,
            // No chroot yet: nobody ever took a lock here.
            Err(ZkError::NoNode) => return Ok(Vec::new()),
            Err(e) => return Err(error::map(e, "listing locks")),
        };
        let mut names: Vec<LockName> = dirs
            .iter()
            .filter_map(|d| queue::decode_name(d))
            .filter(|n| n.as_str().starts_with(prefix))
            .collect();
        names.sort();
        let infos = futures::future::join_all(
            names
                .iter()
                .map(|n| inspect(&client, n, &self.inner.requests)),
        )
        .await;
        infos.into_iter().filter_map(Result::transpose).collect()
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

impl fmt::Debug for ZkBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZkBackend")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}
