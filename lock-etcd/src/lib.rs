//! The etcd backend of fencelock: distributed locks on etcd v3 with lease sessions,
//! herd-free FIFO waiting and create-revision fencing tokens.
//!
//! Applications normally reach it through `fencelock::connect("etcd://…")` and never
//! name a type of this crate; use it directly for [`EtcdConfig`] or the native
//! [fenced transactions](fenced_txn).
//!
//! # URL
//!
//! ```text
//! etcd://[user:password@]host:port[,host:port…][/prefix][?ttl=10s&connect_timeout=3s&request_timeout=5s&ca=PATH&cert=PATH&key=PATH]
//! ```
//!
//! | key | default | meaning |
//! |---|---|---|
//! | hosts | (required) | one or more `host:port`; requests fail over between them |
//! | `/prefix` | none | key prefix: lock `N` is the key range `/prefix/N/`, or `N/` with none (`etcd://host:port/` is none too) |
//! | `ttl` | `10s` | lease TTL when none is given; etcd grants whole seconds and at least its minimum (about 2 s) |
//! | `connect_timeout` | `3s` | an unreachable cluster gives `Unavailable` within this time |
//! | `request_timeout` | `5s` | bound on every request, retries of transient failures included |
//! | `ca` | none | PEM CA certificate; enables TLS |
//! | `cert`, `key` | none | PEM client certificate and key |
//!
//! Unknown parameters are rejected. The password never appears in `Debug` output or
//! error messages.
//!
//! # Capabilities
//!
//! | property | value |
//! |---|---|
//! | FIFO waiting | yes: order of the waiter keys' create revisions |
//! | herd-free | yes: each waiter watches only the key just ahead of it |
//! | token source | create revision of the acquisition's key ([`TokenSource::CreateRevision`]) |
//! | detects external deletion | yes: every key held longer than 50 ms is watched from its grant revision (one shared watch stream per backend), so a deletion is seen at most 50 ms + one round trip after the grant |
//! | native fenced writes | yes: [`fenced_txn`] |
//! | across processes and machines | yes |
//! | fault injection | no |
//!
//! # How it works
//!
//! - A **lease** is an etcd lease kept alive by one task (a keep-alive every sixth of
//!   the *granted* TTL; the local deadline runs from the *send* time of the last
//!   acknowledged keep-alive). TTL 0 in a reply or lease-not-found: lost at once.
//! - **Acquire** puts `<prefix>/<name>/<lease hex>` (`<name>/<lease hex>` with no
//!   prefix) with the lease in one Txn that also reads the queue: uncontended, that
//!   is one round trip. This is the key of etcd's own recipe (see
//!   [Mixed fleets](#mixed-fleets)); a second acquisition of the same lock on the
//!   same lease puts `<lease hex>-<n>` beside it instead of sharing the key.
//!   The key with the smallest create revision owns the lock; the others wait, each
//!   watching only its predecessor. Only direct children of the range contend, so
//!   lock `a` and lock `a/b` are independent. Dropping an `acquire` future deletes
//!   its key.
//! - **Token** = the key's create revision: etcd's global revision only grows, so a
//!   later holder always has a higher token.
//! - **Release** deletes the key only if its create revision is still the token.
//!
//! # Guarantees
//!
//! Mutual exclusion as strong as etcd (linearizable); FIFO order; a guard turns
//! `Lost` when its lease is lost or its key is deleted; nothing is left behind by
//! cancelled acquires; tokens increase across holders, also across server restarts.
//!
//! # Mixed fleets
//!
//! By default a lock named `N` **is** the lock of `etcdctl lock N` and of Go's
//! `concurrency.NewMutex(session, "N")` (with prefix `/P`: of `etcdctl lock /P/N`):
//! the same key range, the same order by create revision. Their keys are
//! contenders like fencelock's own: `acquire` waits for them, `try_acquire` sees
//! the lock taken, and `inspect`/`list` (`fencelock status`/`list`) report them with
//! their lease (and no holder text, as they store an empty value). `list` reports
//! a key as a lock key when it is attached to a lease and its last segment is that
//! lease's id in hex (optionally `-<n>`); `inspect` and `acquire` count every direct
//! child of the range, whatever it is.
//!
//! **Tokens across clients.** fencelock's token is the create revision of its own
//! key; for a queue mixing clients to hand out strictly increasing numbers, every
//! client must fence on the same thing, the create revision of its own key:
//!
//! | client | its key | the number to fence on |
//! |---|---|---|
//! | fencelock | [`EtcdHeldLock::key`] | the token ([`EtcdHeldLock::create_revision`]) |
//! | `etcdctl lock N -- cmd` | `$ETCD_LOCK_KEY` | `create_revision` of `etcdctl get "$ETCD_LOCK_KEY" -w json`; **not** `$ETCD_LOCK_REV`, which is the store revision at which etcdctl saw itself owner (`Mutex.Header().Revision`) |
//! | Go `concurrency.Mutex` | `m.Key()` | `Kvs[0].CreateRevision` of `Get(ctx, m.Key())`; **not** `m.Header().Revision` |
//!
//! A header revision is at least the holder's own create revision but can pass the
//! create revision of a later holder that enqueued while it waited, so a resource
//! fencing on a mix of both would reject the rightful holder.
//!
//! **Not compatible:** python-etcd3's `Lock` (one key `/locks/<name>` put if absent,
//! no queue) does not interoperate: its key is outside every lock range, so neither
//! side sees the other. Older fencelock clients (keys
//! `/fencelock/<name, '/' as %2F>/<lease hex>-<slot>`) meet this one only when it
//! is configured with the prefix `/fencelock` and the name has no `/`.
//!
//! # Non-guarantees
//!
//! A holder paused longer than its TTL still believes it holds the lock when it
//! wakes up, until it looks at its state: protect resources with the token (a
//! `Fence`, a `fence_token` column, or [`fenced_txn`] for data in etcd).
//!
//! # Examples
//!
//! ```no_run
//! use lock_etcd::{etcd_client::TxnOp, fenced_txn, EtcdBackend, FencedTxn};
//! use lock_core::LockClient;
//!
//! # #[tokio::main] async fn main() -> lock_core::Result<()> {
//! let client = LockClient::new(EtcdBackend::from_url("etcd://127.0.0.1:2379/locks?ttl=10s").await?);
//! let guard = client.acquire("reports/daily").await?;
//! // Write to etcd only while the lock is held, atomically on the server:
//! fenced_txn(&guard, FencedTxn::new().and_then([TxnOp::put("/app/report", "done", None)])).await?;
//! guard.release().await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod fenced;
mod held;
mod lock;
mod members;
mod operator;
mod queue;
mod session;
mod slot;
mod watch;
mod watch_lock;

pub use config::{
    EtcdConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_PREFIX, DEFAULT_REQUEST_TIMEOUT, DEFAULT_TTL,
    SCHEME,
};
pub use fenced::{fenced_txn, FencedTxn};
pub use held::EtcdHeldLock;
pub use session::EtcdLease;

/// The etcd-client types of the [fenced transaction](fenced_txn) extension, and only
/// those. Nothing else in this crate's API exposes etcd-client.
pub mod etcd_client {
    pub use etcd_client::{
        Compare, CompareOp, DeleteOptions, DeleteResponse, GetOptions, GetResponse, KeyValue,
        PutOptions, PutResponse, TxnOp, TxnOpResponse, TxnResponse,
    };
}

use ::etcd_client::{GetOptions, SortOrder, SortTarget};
use async_trait::async_trait;
use lock_core::{
    backend::{Backend, ChangeStream, LeaseBackend, WatchScope},
    Capabilities, Error, ErrorKind, FencingToken, LeaseId, LockInfo, LockName, Result, TokenSource,
};
use session::Conn;
use std::{any::Any, collections::BTreeMap, fmt, sync::Arc, time::Duration};
use tokio::time::Instant;

/// The capabilities of the etcd backend.
pub const CAPABILITIES: Capabilities = Capabilities::new(TokenSource::CreateRevision)
    .with_fifo(true)
    .with_herd_free(true)
    .with_detects_external_deletion(true)
    .with_native_fenced_writes(true)
    .with_distributed(true);

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
    conn: Arc<Conn>,
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
            leases: Default::default(),
            granted: Default::default(),
        });
        let probe = conn.probe_members(deadline).await;
        match probe {
            Ok(_) => Ok(EtcdBackend { conn }),
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

    /// The key range (a prefix ending in `/`) holding every waiter of `name`; the
    /// waiter with the smallest create revision holds the lock. For operators and
    /// tests.
    pub fn lock_range(&self, name: &LockName) -> String {
        queue::lock_range(self.conn.config.prefix(), name)
    }

    /// The leases this backend granted that are neither revoked nor lost.
    pub fn live_leases(&self) -> Vec<LeaseId> {
        self.conn
            .live_leases()
            .iter()
            .map(|l| l.lease_id())
            .collect()
    }

    /// How many watch events this backend's watch stream delivered (a release
    /// should cost one). For benchmarks.
    pub fn watch_events_delivered(&self) -> u64 {
        self.conn.watches.events_delivered()
    }

    /// **Test hook**: stops (or resumes) sending keep-alives for `lease`, as if the
    /// process were paused; the lease turns `Suspect`, then `Lost` at its local
    /// deadline, and etcd expires it after the TTL. Returns whether the lease is
    /// one of this backend's live leases.
    #[doc(hidden)]
    pub fn stall_keep_alive(&self, lease: LeaseId, stalled: bool) -> bool {
        let leases = self.conn.live_leases();
        match leases.iter().find(|l| l.lease_id() == lease) {
            Some(l) => {
                l.stalled
                    .store(stalled, std::sync::atomic::Ordering::Relaxed);
                true
            }
            None => false,
        }
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

fn info(name: LockName, owner: &::etcd_client::KeyValue, count: i64) -> LockInfo {
    let (acquired_at, holder) = queue::decode_value(owner.value());
    let mut info = LockInfo::new(
        name,
        FencingToken::new(owner.create_revision().unsigned_abs()),
        LeaseId::new(owner.lease().unsigned_abs()),
    );
    info.holder = holder;
    info.acquired_at = acquired_at;
    info.waiters = usize::try_from(count.saturating_sub(1)).unwrap_or(0);
    info
}

#[async_trait]
impl Backend for EtcdBackend {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn default_ttl(&self) -> Duration {
        self.conn.config.default_ttl()
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<Arc<dyn LeaseBackend>> {
        Ok(Arc::new(self.conn.grant(ttl).await?))
    }

    async fn inspect(&self, name: &LockName) -> Result<Option<LockInfo>> {
        let range = self.lock_range(name);
        let (kvs, count) = self.read_locks(range.clone(), 1).await?;
        let direct = kvs
            .first()
            .is_none_or(|kv| queue::is_direct_child(&range, kv.key()));
        if direct && count <= 1 {
            return Ok(kvs.first().map(|owner| info(name.clone(), owner, count)));
        }
        // Waiters, or keys of a nested namespace in the range: count contenders only.
        let (all, _) = self.read_locks(range.clone(), 0).await?;
        let contenders: Vec<_> = all
            .iter()
            .filter(|kv| queue::is_direct_child(&range, kv.key()))
            .collect();
        let n = i64::try_from(contenders.len()).unwrap_or(i64::MAX);
        Ok(contenders.first().map(|owner| info(name.clone(), owner, n)))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LockInfo>> {
        let prefix_range = queue::list_range(self.conn.config.prefix(), prefix);
        let (kvs, _) = self.read_locks(prefix_range, 0).await?;
        // Sorted by create revision: the first key seen per name is its owner.
        let mut locks: BTreeMap<LockName, (&::etcd_client::KeyValue, i64)> = BTreeMap::new();
        for kv in &kvs {
            if let Some(name) = queue::name_of(self.conn.config.prefix(), kv.key(), kv.lease()) {
                locks.entry(name).or_insert((kv, 0)).1 += 1;
            }
        }
        Ok(locks
            .into_iter()
            .map(|(name, (owner, n))| info(name, owner, n))
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

    async fn close(&self) -> Result<()> {
        let mut first_error = None;
        for lease in self.conn.live_leases() {
            if let Err(e) = lease.revoke().await {
                first_error.get_or_insert(e);
            }
        }
        self.conn.watches.shutdown();
        first_error.map_or(Ok(()), Err)
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
