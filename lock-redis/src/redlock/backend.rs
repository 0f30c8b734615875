//! The plug into lock-core: [`RedlockBackend`] and its [`Backend`] impl (connect,
//! grant leases, inspect, list, close), and the [`LeaseBackend`] impl of
//! [`RedlockLease`].

use super::{
    config::{RedlockConfig, REDLOCK_SCHEME},
    conn::Nodes,
    lock,
    session::{self, Leases, RedlockLease},
};
use async_trait::async_trait;
use lock_core::{
    backend::{check_claim, Backend, Claim, HeldLock, LeaseBackend, Liveness, WaitMode},
    AcquireOptions, Capabilities, LeaseId, LockInfo, LockName, Result, TokenSource,
};
use std::{any::Any, fmt, sync::Arc, time::Duration};

/// The capabilities of Redlock: no queue, so neither FIFO nor herd-free; no
/// read-write locks or semaphores.
pub const REDLOCK_CAPABILITIES: Capabilities = Capabilities::new(TokenSource::Counter)
    .with_detects_external_deletion(true)
    .with_distributed(true);

/// Redlock over independent Redis masters, implementing fencelock's [`Backend`].
///
/// # Guarantees
///
/// - A grant needs the lock entry on a majority of masters, set within the validity
///   window (TTL − time taken − drift of 1% + 2 ms), so two grants overlap only if a
///   master of the intersection lost its data (a restart without persistence) or
///   clocks drift beyond the allowance.
/// - **Token by quorum max-register**: each master answers `max(counter + 1, its
///   server time in µs)`; the client takes the maximum over its majority and writes it
///   back (`counter = max(counter, t)`) to a majority before reporting the grant. A
///   later majority intersects that one, so later tokens are higher while no master
///   of the intersection loses both its counter and its clock.
/// - Renewal goes to every master; the lease stays alive while a majority confirms
///   it, and an entry that a majority no longer holds turns its guard `Lost`.
/// - One master down: everything keeps working. A majority down: `Unavailable`
///   within one request timeout.
///
/// # Non-guarantees
///
/// - **No FIFO and no herd-freedom**: waiters retry with a random 10–60 ms delay;
///   a release wakes nobody. The first master of the URL breaks ties (a contender it
///   refuses retries without asking the others), so an uncontended acquire costs two
///   round trips, and a first master down costs every acquire its timeout.
/// - No read-write locks or semaphores ([`ErrorKind::Unsupported`](lock_core::ErrorKind::Unsupported)), as
///   DistributedLock also refuses them over Redlock.
/// - Safety needs bounded clock drift and process pauses, and masters that either
///   persist every write (`appendfsync always`) or wait a TTL before rejoining after
///   a crash ("delayed restart"): a master restarted empty at once can grant the
///   lock a second time. A master failed over to a replica that missed the entry
///   is such a master too. Only the resource's token check makes that harmless.
/// - Each master's `maxmemory-policy` is read at connect and a policy other than
///   `noeviction` is logged as a warning, but not exposed on this type.
#[derive(Clone)]
pub struct RedlockBackend {
    pub(super) nodes: Arc<Nodes>,
    /// The leases granted here, for `close` and the test hook.
    pub(super) leases: Arc<Leases>,
}

impl fmt::Debug for RedlockBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.nodes.fmt(f)
    }
}

impl RedlockBackend {
    /// Parses `url` (see [`RedlockConfig`]) and connects.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), and [`ErrorKind::InvalidConfig`](lock_core::ErrorKind::InvalidConfig) for a bad URL.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is created on the servers.
    pub async fn from_url(url: &str) -> Result<RedlockBackend> {
        Self::connect(RedlockConfig::from_url(url)?).await
    }

    /// Connects to every master at once.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`](lock_core::ErrorKind::Unavailable) unless every master answers within the connect
    /// timeout (a master down later is tolerated while a majority answers);
    /// [`ErrorKind::Unauthenticated`](lock_core::ErrorKind::Unauthenticated) when one refuses the credentials.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is created on the servers.
    pub async fn connect(config: RedlockConfig) -> Result<RedlockBackend> {
        Ok(RedlockBackend {
            nodes: Arc::new(Nodes::connect(config).await?),
            leases: Arc::default(),
        })
    }
}

#[async_trait]
impl Backend for RedlockBackend {
    fn capabilities(&self) -> Capabilities {
        REDLOCK_CAPABILITIES
    }

    fn default_ttl(&self) -> Duration {
        self.nodes.config.first().default_ttl()
    }

    fn scheme(&self) -> &'static str {
        REDLOCK_SCHEME
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<Arc<dyn LeaseBackend>> {
        Ok(Arc::new(
            session::grant(&self.nodes, &self.leases, ttl).await?,
        ))
    }

    async fn inspect(&self, name: &LockName) -> Result<Option<LockInfo>> {
        lock::inspect(&self.nodes, name).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LockInfo>> {
        let mut out = Vec::new();
        for name in lock::names(&self.nodes, prefix).await {
            if let Some(info) = lock::inspect(&self.nodes, &name).await? {
                out.push(info);
            }
        }
        Ok(out)
    }

    async fn close(&self) -> Result<()> {
        for lease in self.leases.all() {
            lease.revoke().await;
        }
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[async_trait]
impl LeaseBackend for RedlockLease {
    fn id(&self) -> LeaseId {
        LeaseId::new(self.shared.id)
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
        check_claim(&REDLOCK_CAPABILITIES, REDLOCK_SCHEME, claim, name)?;
        let held = lock::acquire(&self.shared, name, mode, options).await?;
        Ok(held.map(|h| Box::new(h) as Box<dyn HeldLock>))
    }

    async fn revoke(&self) -> Result<()> {
        self.shared.revoke().await;
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
