//! The plug into lock-core: [`EtcdBackend`] and its [`Backend`] impl (connect,
//! inspect, list, close), and [`EtcdLease`]'s [`LeaseBackend`] impl, which runs the
//! recipe (`lock.rs`).

use crate::{
    config, conn::Conn, error, lock, members, queue, session::Leases, view::info, watch,
    watch_lock, EtcdConfig, EtcdHeldLock, EtcdLease,
};
use ::etcd_client::{GetOptions, SortOrder, SortTarget};
use async_trait::async_trait;
use lock_core::{
    backend::{
        Backend, ChangeStream, Claim, HeldLock, LeaseBackend, Liveness, LockInfoWatch, WaitMode,
        WatchScope,
    },
    AcquireOptions, Capabilities, Error, ErrorKind, LeaseId, LockInfo, LockName, Result,
    TokenSource,
};
use std::{any::Any, collections::BTreeMap, fmt, sync::Arc, time::Duration};
use tokio::time::Instant;

/// The capabilities of the etcd backend.
pub const CAPABILITIES: Capabilities = Capabilities::new(TokenSource::CreateRevision)
    .with_fifo(true)
    .with_herd_free(true)
    .with_set_value(true)
    .with_detects_external_deletion(true)
    .with_native_fenced_writes(true)
    .with_distributed(true)
    .with_read_write_claims(true)
    .with_shared_claims(true);

/// A connection to an etcd cluster implementing fencelock's [`Backend`]. Cheap to
/// clone; clones share the connection and its one watch stream.
///
/// # Examples
///
/// ```no_run
/// use lock_etcd::{EtcdBackend, EtcdConfig};
/// use std::time::Duration;
///
/// # #[tokio::main] async fn main() -> lock_core::Result<()> {
/// let config = EtcdConfig::new(["127.0.0.1:2379"]).with_prefix("/locks").with_default_ttl(Duration::from_secs(5));
/// let client = lock_core::LockClient::new(EtcdBackend::connect(config).await?);
/// let guard = client.acquire("nightly").await?;
/// println!("token {}", guard.token());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EtcdBackend {
    pub(crate) conn: Arc<Conn>,
    pub(crate) leases: Arc<Leases>,
}

impl fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("endpoints", &self.conn.config.endpoints())
            .field("prefix", &self.conn.config.prefix())
            .finish()
    }
}

impl EtcdBackend {
    /// Parses `url` (see [`EtcdConfig`]) and connects.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), and [`ErrorKind::InvalidConfig`] for a bad URL.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is created on the server.
    pub async fn from_url(url: &str) -> Result<EtcdBackend> {
        Self::connect(EtcdConfig::from_url(url)?).await
    }

    /// Connects and checks, within the connect timeout, that the cluster answers a
    /// linearizable read under the prefix (etcd-client's own connect succeeds even
    /// when no server runs).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`] when no endpoint answers (or the cluster has no
    /// leader) within the connect timeout; [`ErrorKind::InvalidConfig`] for an invalid
    /// configuration or unreadable TLS files; [`ErrorKind::Unauthenticated`] when etcd
    /// refuses the user or password, or the TLS handshake fails on either side (a
    /// server certificate the client does not trust, a client certificate the server
    /// refuses or lacks, TLS on one side only: etcd closing every connection at once,
    /// twice in a row, counts as such a refusal); [`ErrorKind::PermissionDenied`] when
    /// the user may not read the prefix. All within the connect timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is created on the server.
    pub async fn connect(config: EtcdConfig) -> Result<EtcdBackend> {
        config.validate()?;
        let options = config::connect_options(&config)?;
        let deadline = Instant::now() + config.connect_timeout();
        let first = match Self::connect_once(&config, &options, deadline).await {
            Err(err) if error::closed_at_once(&err) => err,
            other => return other,
        };
        // A server that closes the connection at once: a restart, or a refusal at the
        // TLS layer that the client cannot see as such (with TLS 1.3 the server checks
        // the client's certificate after the client's handshake is done; a TLS server
        // drops a plain-text client). Once more: the same again is a refusal.
        tokio::time::sleep(Duration::from_millis(100).min(config.connect_timeout() / 10)).await;
        match Self::connect_once(&config, &options, deadline).await {
            Err(err) if error::closed_at_once(&err) => {
                let (ca, identity) = config.tls_files();
                let why = match (ca.is_some() || identity.is_some(), identity.is_some()) {
                    (true, true) => "etcd refused the tls connection: it does not accept the client certificate (signed by a ca it does not trust, expired, or not a client certificate) or does not speak tls on this port",
                    (true, false) => "etcd refused the tls connection: it requires a client certificate (add cert= and key=) or does not speak tls on this port",
                    (false, _) => "etcd refused the plain-text connection: the port likely requires tls (add ca=, and cert= and key= if it requires client certificates)",
                };
                drop(first);
                Err(Error::new(
                    ErrorKind::Unauthenticated,
                    format!("{why} ({})", err.message()),
                )
                .with_source(err))
            }
            other => other,
        }
    }

    /// One connect attempt, by `deadline`.
    async fn connect_once(
        config: &EtcdConfig,
        options: &::etcd_client::ConnectOptions,
        deadline: Instant,
    ) -> Result<EtcdBackend> {
        let config = config.clone();
        let endpoints = config.endpoints().join(",");
        let unavailable = |why: String| {
            Error::new(
                ErrorKind::Unavailable,
                format!("etcd at {endpoints} is unreachable: {why}"),
            )
        };
        let members = match members::Members::connect(config.endpoints(), options, deadline).await {
            Ok(members) => members,
            Err(err) => {
                return Err(match err.kind() {
                    ErrorKind::Unavailable | ErrorKind::Timeout => {
                        unavailable(err.message().to_owned()).with_source(err)
                    }
                    // A refusal (bad credentials or certificate, missing rights) or a
                    // bad configuration says more than "unreachable".
                    _ => err,
                });
            }
        };
        let members = Arc::new(members);
        let conn = Arc::new(Conn {
            watches: watch::WatchMux::start(members.clone(), config.request_timeout()),
            members,
            config,
            wakeups: Default::default(),
            views: Default::default(),
        });
        let probe = conn.probe_members(deadline).await;
        match probe {
            Ok(_) => Ok(EtcdBackend {
                conn,
                leases: Arc::default(),
            }),
            Err(err) => {
                conn.watches.shutdown();
                Err(match err.kind() {
                    ErrorKind::Unavailable | ErrorKind::Timeout => {
                        unavailable(err.message().to_owned()).with_source(err)
                    }
                    _ => err,
                })
            }
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &EtcdConfig {
        &self.conn.config
    }

    async fn read_locks(
        &self,
        range: String,
        limit: i64,
    ) -> Result<(Vec<::etcd_client::KeyValue>, i64)> {
        let what = || format!("reading locks under {range:?}");
        let mut options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend);
        if limit > 0 {
            options = options.with_limit(limit);
        }
        let resp = self
            .conn
            .call(&what, |mut c| {
                let (range, options) = (range.clone(), options.clone());
                async move { c.get(range, Some(options)).await }
            })
            .await?;
        Ok((resp.kvs().to_vec(), resp.count()))
    }
}

#[async_trait]
impl Backend for EtcdBackend {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn scheme(&self) -> &'static str {
        "etcd"
    }

    fn default_ttl(&self) -> Duration {
        self.conn.config.default_ttl()
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<Arc<dyn LeaseBackend>> {
        Ok(Arc::new(self.leases.grant(&self.conn, ttl).await?))
    }

    /// Counts the times a waiter's wait for the keys ahead of it ended (a watch
    /// event on one of them, a watch registered after a change, or a broken watch
    /// stream), each followed by a new read of the queue.
    fn waiter_wakeups(&self) -> Option<u64> {
        Some(self.conn.wakeups.load(std::sync::atomic::Ordering::Relaxed))
    }

    async fn inspect(&self, name: &LockName) -> Result<Option<LockInfo>> {
        let range = self.lock_range(name);
        let (kvs, count) = self.read_locks(range.clone(), 1).await?;
        let direct = kvs
            .first()
            .is_none_or(|kv| queue::is_direct_child(&range, kv.key()));
        // One key, a direct child: it holds alone. Otherwise `count` may include
        // keys of nested locks (`jobs/nightly/…` under `jobs/`) or a semaphore's
        // slot keys, so read the range and count only direct children.
        if direct && count <= 1 {
            let first: Vec<_> = kvs.iter().collect();
            return Ok(info(name.clone(), &range, &first, count));
        }
        // Waiters, or keys of a nested namespace in the range: count contenders only.
        let (all, _) = self.read_locks(range.clone(), 0).await?;
        let contenders: Vec<_> = all
            .iter()
            .filter(|kv| queue::is_direct_child(&range, kv.key()))
            .collect();
        let n = i64::try_from(contenders.len()).unwrap_or(i64::MAX);
        Ok(info(name.clone(), &range, &contenders, n))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LockInfo>> {
        let prefix_range = queue::list_range(self.conn.config.prefix(), prefix);
        let (kvs, _) = self.read_locks(prefix_range, 0).await?;
        // Sorted by create revision: each name's keys in queue order.
        let mut locks: BTreeMap<LockName, Vec<&::etcd_client::KeyValue>> = BTreeMap::new();
        for kv in &kvs {
            if let Some(name) = queue::name_of(self.conn.config.prefix(), kv.key(), kv.lease()) {
                locks.entry(name).or_default().push(kv);
            }
        }
        Ok(locks
            .into_iter()
            .filter_map(|(name, keys)| {
                let range = self.lock_range(&name);
                let n = i64::try_from(keys.len()).unwrap_or(i64::MAX);
                info(name, &range, &keys, n)
            })
            .collect())
    }

    async fn watch_changes(&self, scope: &WatchScope) -> Result<ChangeStream> {
        let range = match scope {
            WatchScope::Lock(name) => self.lock_range(name),
            WatchScope::Prefix(p) => queue::list_range(self.conn.config.prefix(), p),
            other => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("etcd cannot watch {other}"),
                ))
            }
        };
        watch_lock::changes(self.conn.clone(), range).await
    }

    async fn watch_lock_info(self: Arc<Self>, name: &LockName) -> Result<LockInfoWatch> {
        let range = self.lock_range(name);
        watch_lock::lock_infos(self.conn.clone(), name.clone(), range).await
    }

    async fn close(&self) -> Result<()> {
        let mut first_error = None;
        for lease in self.leases.live_leases() {
            if let Err(e) = lease.revoke().await {
                first_error.get_or_insert(e);
            }
        }
        self.conn.watches.shutdown();
        self.conn.views.shutdown();
        first_error.map_or(Ok(()), Err)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[async_trait]
impl LeaseBackend for EtcdLease {
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
        // Every claim the capabilities deny is refused here, before anything is
        // enqueued.
        lock_core::backend::check_claim(&CAPABILITIES, "etcd", claim, name)?;
        let held = lock::acquire(&self.shared, name, claim, mode, options).await?;
        Ok(held.map(|h: EtcdHeldLock| Box::new(h) as Box<dyn HeldLock>))
    }

    async fn revoke(&self) -> Result<()> {
        self.shared.revoke().await
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<EtcdBackend>();
    assert_send_sync::<EtcdHeldLock>();
    assert_send_sync::<EtcdLease>();
};
