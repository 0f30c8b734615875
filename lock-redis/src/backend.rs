//! The plug into lock-core: [`RedisBackend`] and its [`Backend`] impl (connect,
//! grant leases, inspect, list, close), and the [`LeaseBackend`] impl of
//! [`RedisLease`].

use crate::{
    config::{RedisConfig, SCHEME},
    conn::Conn,
    held::RedisHeldLock,
    lock,
    session::{self, Leases, RedisLease},
};
use async_trait::async_trait;
use lock_core::{
    backend::{check_claim, Backend, Claim, HeldLock, LeaseBackend, Liveness, WaitMode},
    AcquireOptions, Capabilities, LeaseId, LockInfo, LockName, LossCause, Result, TokenSource,
};
use std::{any::Any, fmt, sync::Arc, time::Duration};

/// The capabilities of the single-instance Redis backend.
///
/// `native_fenced_writes` is off: nothing in this crate writes the application's
/// keys under the lock's check yet. Eviction is not a capability flag: see
/// [`RedisBackend::eviction_policy`].
pub const CAPABILITIES: Capabilities = Capabilities::new(TokenSource::Counter)
    .with_fifo(true)
    .with_herd_free(true)
    .with_detects_external_deletion(true)
    .with_distributed(true);

/// A connection to one Redis server implementing fencelock's [`Backend`]. Cheap to
/// clone; clones share the connection.
///
/// # Examples
///
/// ```no_run
/// use lock_redis::{RedisBackend, RedisConfig};
/// use std::time::Duration;
///
/// # #[tokio::main] async fn main() -> lock_core::Result<()> {
/// let config = RedisConfig::new("127.0.0.1:6379").with_default_ttl(Duration::from_secs(5));
/// let client = lock_core::LockClient::new(RedisBackend::connect(config).await?);
/// let guard = client.acquire("nightly").await?;
/// println!("token {}", guard.token());
/// guard.release().await
/// # }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    pub(crate) conn: Arc<Conn>,
    /// The leases granted here, for `close` and the test hooks.
    pub(crate) leases: Arc<Leases>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("address", &self.conn.config.address())
            .field("prefix", &self.conn.config.prefix())
            .field("eviction_policy", &self.conn.eviction_policy)
            .finish()
    }
}

impl RedisBackend {
    /// Parses `url` (see [`RedisConfig`]) and connects.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), and [`ErrorKind::InvalidConfig`](lock_core::ErrorKind::InvalidConfig)
    /// for a bad URL.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is created on the server.
    pub async fn from_url(url: &str) -> Result<RedisBackend> {
        Self::connect(RedisConfig::from_url(url)?).await
    }

    /// Connects, authenticates, reads `maxmemory-policy` (a policy other than
    /// `noeviction`, or one that cannot be read, is logged as a warning and kept in
    /// [`eviction_policy`](Self::eviction_policy)) and checks that the user may run
    /// every command fencelock needs on keys under its prefix (one read-only script,
    /// Redis ≥ 7; see [`ACL_COMMANDS`](crate::ACL_COMMANDS)).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::PermissionDenied`](lock_core::ErrorKind::PermissionDenied) when
    /// the (ACL) user may not run a needed command or touch the prefix's keys, naming
    /// the refused commands and keys;
    /// [`ErrorKind::Unavailable`](lock_core::ErrorKind::Unavailable) when the server
    /// does not answer within the connect timeout;
    /// [`ErrorKind::Unauthenticated`](lock_core::ErrorKind::Unauthenticated) when it
    /// refuses the user or password (or requires one);
    /// [`ErrorKind::InvalidConfig`](lock_core::ErrorKind::InvalidConfig) for an
    /// invalid configuration.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is created on the server.
    pub async fn connect(config: RedisConfig) -> Result<RedisBackend> {
        Ok(RedisBackend {
            conn: Arc::new(Conn::connect(config).await?),
            leases: Arc::default(),
        })
    }

    /// The server's `maxmemory-policy` as read at connect, `None` if it could not be
    /// read. Anything but `noeviction` lets the server evict lock entries under
    /// memory pressure, which frees held locks (their holders learn it at the next
    /// renewal, a third of the TTL later, but another client may be granted first).
    pub fn eviction_policy(&self) -> Option<&str> {
        self.conn.eviction_policy.as_deref()
    }

    /// Whether the server was seen to run with `maxmemory-policy noeviction`.
    pub fn is_eviction_safe(&self) -> bool {
        self.eviction_policy() == Some("noeviction")
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.conn.config
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn default_ttl(&self) -> Duration {
        self.conn.config.default_ttl()
    }

    fn scheme(&self) -> &'static str {
        SCHEME
    }

    /// Counts the `BLPOP`s of waiters that returned a wake-up a release pushed to
    /// their own list; the re-checks after a `BLPOP` timed out are not counted.
    fn waiter_wakeups(&self) -> Option<u64> {
        Some(self.conn.wakeups.load(std::sync::atomic::Ordering::Relaxed))
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<Arc<dyn LeaseBackend>> {
        Ok(Arc::new(
            session::grant(&self.conn, &self.leases, ttl).await?,
        ))
    }

    async fn inspect(&self, name: &LockName) -> Result<Option<LockInfo>> {
        lock::inspect(&self.conn, name).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LockInfo>> {
        let mut out = Vec::new();
        for name in lock::names(&self.conn, prefix).await? {
            if let Some(info) = lock::inspect(&self.conn, &name).await? {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn close(&self) -> Result<()> {
        let leases = self.leases.live();
        let mut result = Ok(());
        for lease in leases {
            lease
                .revoked
                .store(true, std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = session::revoke(&lease).await {
                result = Err(e);
            }
            lease.liveness.lose_with(LossCause::LeaseRevoked);
            lease.stop.notify_one();
        }
        result
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[async_trait]
impl LeaseBackend for RedisLease {
    fn id(&self) -> LeaseId {
        self.shared.lease_id()
    }

    fn granted_ttl(&self) -> Duration {
        self.shared.ttl
    }

    fn liveness(&self) -> &Liveness {
        &self.shared.liveness
    }

    async fn acquire(
        &self,
        name: &LockName,
        claim: Claim,
        mode: WaitMode,
        options: &AcquireOptions,
    ) -> Result<Option<Box<dyn HeldLock>>> {
        check_claim(&CAPABILITIES, SCHEME, claim, name)?;
        let held = lock::acquire(&self.shared, name, mode, options).await?;
        Ok(held.map(|h: RedisHeldLock| Box::new(h) as Box<dyn HeldLock>))
    }

    async fn revoke(&self) -> Result<()> {
        self.shared
            .revoked
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let result = session::revoke(&self.shared).await;
        self.shared.liveness.lose_with(LossCause::LeaseRevoked);
        self.shared.stop.notify_one();
        result
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
