//! The connection (bounded, retried requests; dedicated connections for blocking
//! waits) and the lease: a random id, the entries made on it, and one task renewing
//! them all together every third of the TTL.

use crate::{error, scripts::Scripts, tls, RedisConfig};
use lock_core::{
    backend::{local_deadline, lock_unpoisoned, Backoff, Liveness},
    Error, ErrorKind, LeaseId, LossCause, Result,
};
use redis::aio::{ConnectionManager, MultiplexedConnection};
use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, Weak,
    },
    time::Duration,
};
use tokio::{sync::Notify, time::Instant};

/// Idle blocking connections kept for reuse.
const IDLE_BLOCKERS: usize = 32;

/// One connection to a Redis server, shared by the backend, its leases and locks.
pub(crate) struct Conn {
    pub(crate) config: RedisConfig,
    client: redis::Client,
    manager: ConnectionManager,
    /// Connections for `BLPOP` (a blocking command stalls a multiplexed connection).
    blockers: Mutex<Vec<MultiplexedConnection>>,
    pub(crate) scripts: Scripts,
    /// `maxmemory-policy` as read at connect (`None`: could not be read).
    pub(crate) eviction_policy: Option<String>,
    pub(crate) leases: Mutex<HashMap<u64, Weak<LeaseShared>>>,
    /// Waiters woken by a release's push (benchmarks divide it by releases).
    pub(crate) wakeups: AtomicU64,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("address", &self.config.address())
            .field("prefix", &self.config.prefix())
            .finish()
    }
}

/// The retry backoff of requests: 20 ms doubling to 500 ms, plus jitter.
pub(crate) fn retry_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(20), Duration::from_millis(500))
        .with_jitter(Duration::from_millis(16))
}

impl Conn {
    /// Connects to the server, authenticates, reads `maxmemory-policy` and checks
    /// the user's rights (see `rights`).
    pub(crate) async fn connect(config: RedisConfig) -> Result<Conn> {
        config.validate()?;
        let (host, port) = config.host_port()?;
        // redis-rs pipelines `CLIENT SETINFO` (result ignored) into the handshake:
        // it makes the handshake a round trip, which the TLS refusal and port
        // mix-up reports rely on. A least-privilege user may not run it (Redis ≥
        // 7.2 logs the refusal in its ACL LOG; harmless).
        let mut redis_info = redis::RedisConnectionInfo::default().set_db(config.db());
        if let Some(user) = config.user() {
            redis_info = redis_info.set_username(user);
        }
        if let Some(password) = config.password() {
            redis_info = redis_info.set_password(password);
        }
        let addr = if config.tls() {
            redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            redis::ConnectionAddr::Tcp(host, port)
        };
        let info = redis::IntoConnectionInfo::into_connection_info(addr)
            .map_err(|e| error::map(e, "redis address"))?
            .set_redis_settings(redis_info);
        let client = crate::tls::client(&config, info)?;
        let address = config.address().to_owned();
        let limit = config.connect_timeout();
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(limit))
            .set_response_timeout(Some(config.request_timeout()))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let what = format!("connecting to redis at {address}");
        let connecting = tokio::time::timeout(
            limit,
            client.get_connection_manager_with_config(manager_config),
        );
        // A plain/TLS port mix-up may hang the handshake: look for one meanwhile.
        let probe = async {
            tokio::time::sleep(tls::PROBE_AFTER).await;
            tls::mixup(&config, limit.saturating_sub(tls::PROBE_AFTER)).await
        };
        let refused =
            |why: String| Error::new(ErrorKind::Unauthenticated, format!("{what}: {why}"));
        let outcome = tokio::select! {
            outcome = connecting => outcome,
            Some(why) = probe => return Err(refused(why)),
        };
        let manager = match outcome {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                let err = error::map(e, &what);
                if err.kind() == ErrorKind::Unavailable {
                    // Reset at once (a plain client on a TLS port): probe briefly.
                    if let Some(why) = tls::mixup(&config, tls::PROBE_AFTER * 4).await {
                        return Err(refused(why).with_source(err));
                    }
                }
                return Err(match err.kind() {
                    ErrorKind::Timeout => Error::new(
                        ErrorKind::Unavailable,
                        format!("redis at {address} is unreachable: {}", err.message()),
                    )
                    .with_source(err),
                    _ => err,
                });
            }
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("redis at {address} is unreachable: no connection within {limit:?}"),
                ))
            }
        };
        let mut conn = Conn {
            config,
            client,
            manager,
            blockers: Mutex::default(),
            scripts: Scripts::new(),
            eviction_policy: None,
            leases: Mutex::default(),
            wakeups: AtomicU64::new(0),
        };
        conn.eviction_policy = conn.read_eviction_policy().await?;
        crate::rights::check(&conn).await?;
        match conn.eviction_policy.as_deref() {
            Some("noeviction") => {}
            Some(policy) => tracing::warn!(
                address,
                policy,
                "redis maxmemory-policy is not noeviction: under memory pressure the server may evict lock entries, freeing held locks (set maxmemory-policy noeviction)"
            ),
            None => tracing::warn!(
                address,
                "cannot read redis maxmemory-policy (CONFIG GET refused): make sure it is noeviction, or evictions may free held locks"
            ),
        }
        Ok(conn)
    }

    /// `PING`, then `CONFIG GET maxmemory-policy`; `None` when the latter is
    /// refused (ACL, renamed command).
    ///
    /// # Errors
    ///
    /// When the server refuses the client (no or wrong password) or does not answer.
    async fn read_eviction_policy(&self) -> Result<Option<String>> {
        let mut c = self.manager.clone();
        let address = self.config.address().to_owned();
        let () = self
            .once(format!("checking redis at {address}"), async move {
                redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .map(drop)
            })
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::Timeout => Error::new(
                    ErrorKind::Unavailable,
                    format!("redis at {address} is unreachable: {}", e.message()),
                )
                .with_source(e),
                _ => e,
            })?;
        let mut c = self.manager.clone();
        let reply: Result<Vec<String>> = self
            .once("reading maxmemory-policy", async move {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("maxmemory-policy")
                    .query_async(&mut c)
                    .await
            })
            .await;
        match reply {
            Ok(fields) => Ok(fields.get(1).cloned()),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Unauthenticated | ErrorKind::Unavailable | ErrorKind::Timeout
                ) =>
            {
                Err(e)
            }
            Err(_) => Ok(None),
        }
    }

    /// One attempt of `request`, bounded by the request timeout.
    pub(crate) async fn once<T>(
        &self,
        what: impl fmt::Display,
        request: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        let limit = self.config.request_timeout();
        match tokio::time::timeout(limit, request).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(error::map(e, what)),
            Err(_) => Err(error::timed_out(what, limit)),
        }
    }

    /// Runs `op` (safe to repeat) until it succeeds, retrying transient failures
    /// with backoff within one request timeout. Also says whether it was repeated.
    pub(crate) async fn call_counted<T, F, Fut>(
        &self,
        what: &(dyn Fn() -> String + Sync),
        mut op: F,
    ) -> Result<(T, bool)>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let limit = self.config.request_timeout();
        let deadline = Instant::now() + limit;
        let mut backoff = retry_backoff();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let budget = deadline.saturating_duration_since(Instant::now());
            let err = match tokio::time::timeout(budget, op(self.manager.clone())).await {
                Ok(Ok(v)) => return Ok((v, attempts > 1)),
                Ok(Err(e)) => error::map(e, what()),
                Err(_) => error::timed_out(what(), limit),
            };
            if err.kind() == ErrorKind::PermissionDenied {
                return Err(crate::rights::explain(self, err).await);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if err.kind() != ErrorKind::Unavailable || left <= backoff.current() {
                return Err(err);
            }
            tracing::debug!(error = %err, attempt = attempts, "retrying redis request");
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// [`call_counted`](Self::call_counted) without the count.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        what: &(dyn Fn() -> String + Sync),
        op: F,
    ) -> Result<T>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.call_counted(what, op).await.map(|(v, _)| v)
    }

    /// A handle on the shared connection.
    pub(crate) fn manager(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// `DEL key`; whether it existed.
    pub(crate) async fn delete(&self, key: &str) -> Result<bool> {
        let what = || format!("deleting {key}");
        let deleted: i64 = self
            .call(&what, |mut c| {
                let cmd = redis::cmd("DEL").arg(key).clone();
                async move { cmd.query_async(&mut c).await }
            })
            .await?;
        Ok(deleted == 1)
    }

    /// `HGET key field`.
    pub(crate) async fn hget(&self, key: &str, field: &str) -> Result<Option<String>> {
        let what = || format!("reading {key}");
        self.call(&what, |mut c| {
            let cmd = redis::cmd("HGET").arg(key).arg(field).clone();
            async move { cmd.query_async(&mut c).await }
        })
        .await
    }

    /// A connection for one blocking wait of at most `wait`.
    pub(crate) async fn blocker(&self, wait: Duration) -> Result<MultiplexedConnection> {
        if let Some(c) = lock_unpoisoned(&self.blockers).pop() {
            return Ok(c);
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout()))
            .set_response_timeout(Some(wait + self.config.request_timeout()));
        self.once(
            format!(
                "connecting to redis at {} for a wait",
                self.config.address()
            ),
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
    }

    /// Hands a blocking connection back after a wait that completed.
    pub(crate) fn return_blocker(&self, c: MultiplexedConnection) {
        let mut idle = lock_unpoisoned(&self.blockers);
        if idle.len() < IDLE_BLOCKERS {
            idle.push(c);
        }
    }

    /// Every lease of this connection that is still alive here.
    pub(crate) fn live_leases(&self) -> Vec<Arc<LeaseShared>> {
        lock_unpoisoned(&self.leases)
            .values()
            .filter_map(Weak::upgrade)
            .filter(|l| !l.liveness.state().is_lost())
            .collect()
    }
}

/// What a lease's renewal task, its locks and the backend share.
#[derive(Debug)]
pub(crate) struct LeaseShared {
    pub(crate) conn: Arc<Conn>,
    pub(crate) id: u64,
    pub(crate) ttl: Duration,
    pub(crate) liveness: Liveness,
    /// The entries on this lease: key → the entry's own liveness.
    pub(crate) entries: Mutex<HashMap<String, Liveness>>,
    /// Ids of this lease's acquisitions (`<lease hex>.<n>`).
    pub(crate) next_entry: AtomicU64,
    pub(crate) stalled: AtomicBool,
    pub(crate) revoked: AtomicBool,
    pub(crate) stop: Notify,
    /// Asks for a renewal now (a waiter found its entry or the lease gone).
    pub(crate) poke: Notify,
}

impl LeaseShared {
    pub(crate) fn lease_id(&self) -> LeaseId {
        LeaseId::new(self.id)
    }

    /// The lease's own key, `<prefix>lease:<id hex>`.
    pub(crate) fn key(&self) -> String {
        format!("{}lease:{:016x}", self.conn.config.prefix(), self.id)
    }

    /// A fresh entry id for one acquisition on this lease.
    pub(crate) fn entry_id(&self) -> String {
        format!(
            "{:016x}.{}",
            self.id,
            self.next_entry.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Renews `key` with the others from now on; `live` turns `Lost` if it vanishes.
    pub(crate) fn track(&self, key: String, live: Liveness) {
        lock_unpoisoned(&self.entries).insert(key, live);
    }

    /// The keys of the entries on this lease.
    pub(crate) fn entries_snapshot(&self) -> Vec<String> {
        lock_unpoisoned(&self.entries).keys().cloned().collect()
    }

    pub(crate) fn untrack(&self, key: &str) {
        lock_unpoisoned(&self.entries).remove(key);
    }

    /// One renewal of every entry; reports the vanished ones lost.
    async fn renew(&self) -> Result<()> {
        let snapshot: Vec<(String, Liveness)> = lock_unpoisoned(&self.entries)
            .iter()
            .map(|(k, l)| (k.clone(), l.clone()))
            .collect();
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let scripts = &self.conn.scripts;
        let missing: Vec<usize> = self
            .conn
            .once(format!("renewing lease {}", self.lease_id()), async {
                let mut c = self.conn.manager.clone();
                let mut inv = scripts.renew.prepare_invoke();
                inv.key(self.key());
                for (k, _) in &snapshot {
                    inv.key(k);
                }
                inv.arg(ttl_ms);
                inv.invoke_async(&mut c).await
            })
            .await?;
        if missing.first() == Some(&1) {
            return Err(Error::new(
                ErrorKind::LeaseLost,
                format!(
                    "lease {} is gone from the server (expired or deleted)",
                    self.lease_id()
                ),
            ));
        }
        for i in missing {
            if let Some((key, live)) = i.checked_sub(2).and_then(|i| snapshot.get(i)) {
                tracing::debug!(key, "lock entry vanished (deleted, evicted or expired)");
                live.lose_with(LossCause::EntryDeleted);
                self.untrack(key);
            }
        }
        Ok(())
    }
}

/// A Redis lease: a random 64-bit id with no server-side object of its own. Its
/// entries carry the TTL on the server, and one task renews them all together every
/// third of the TTL with one script (`PEXPIRE` each); an entry the renewal finds
/// missing (deleted by an operator, evicted, expired while the holder was paused,
/// lost in a failover or a restart) turns its guard `Lost` at once
/// ([`LossCause::EntryDeleted`]). A lease with no entries still sends the (empty)
/// script, so its state says whether the server answers.
///
/// The local deadline runs from the *send* time of the last answered renewal (the
/// rule on [`lock_core::LockState`]).
pub struct RedisLease {
    pub(crate) shared: Arc<LeaseShared>,
}

impl fmt::Debug for RedisLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLease")
            .field("id", &self.shared.lease_id())
            .field("ttl", &self.shared.ttl)
            .field("state", &self.shared.liveness.state())
            .finish()
    }
}

impl Drop for RedisLease {
    fn drop(&mut self) {
        self.shared.stop.notify_one();
    }
}

/// Renewals per TTL.
const RENEWALS_PER_TTL: u32 = 3;

/// Grants a lease of `ttl` (its key, with the TTL) and starts its renewal.
pub(crate) async fn grant(conn: &Arc<Conn>, ttl: Duration) -> Result<RedisLease> {
    let id = uuid::Uuid::new_v4().as_u64_pair().0;
    let key = format!("{}lease:{id:016x}", conn.config.prefix());
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let now = Instant::now();
    let what = || format!("granting lease {id:x}");
    let () = conn
        .call(&what, |mut c| {
            let cmd = redis::cmd("SET")
                .arg(&key)
                .arg("1")
                .arg("PX")
                .arg(ttl_ms)
                .clone();
            async move { cmd.query_async(&mut c).await }
        })
        .await?;
    let shared = Arc::new(LeaseShared {
        conn: conn.clone(),
        id,
        ttl,
        liveness: Liveness::for_lease(local_deadline(now, ttl), ttl),
        entries: Mutex::default(),
        next_entry: AtomicU64::new(0),
        stalled: AtomicBool::new(false),
        revoked: AtomicBool::new(false),
        stop: Notify::new(),
        poke: Notify::new(),
    });
    {
        let mut leases = lock_unpoisoned(&conn.leases);
        leases.retain(|_, l| l.strong_count() > 0);
        leases.insert(id, Arc::downgrade(&shared));
    }
    tokio::spawn(renewal(shared.clone()));
    Ok(RedisLease { shared })
}

/// Renews every `ttl / 3` (sooner after a failure) until the lease is lost, revoked
/// or dropped; then deletes what is left of its entries.
async fn renewal(shared: Arc<LeaseShared>) {
    let period = shared.ttl / RENEWALS_PER_TTL;
    let live = shared.liveness.clone();
    let mut backoff = retry_backoff();
    let mut next = Instant::now() + period;
    let mut watch = live.watch();
    let mut lost = std::pin::pin!(watch.lost());
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shared.stop.notified() => break,
            _ = shared.poke.notified() => {}
            _ = &mut lost => break,
        }
        if shared.stalled.load(Ordering::Relaxed) {
            live.keep_alive_failed();
            live.suspect();
            next = Instant::now() + period;
            continue;
        }
        let sent_at = Instant::now();
        match shared.renew().await {
            Ok(()) => {
                live.confirm(sent_at, shared.ttl);
                backoff.reset();
                next = sent_at + period;
            }
            Err(e) if e.kind() == ErrorKind::LeaseLost => {
                tracing::debug!(lease = %shared.lease_id(), "the lease key is gone");
                live.keep_alive_failed();
                live.lose_with(LossCause::LeaseExpired);
                break;
            }
            Err(e) => {
                tracing::debug!(lease = %shared.lease_id(), error = %e, "renewal failed");
                live.keep_alive_failed();
                next = Instant::now() + backoff.next_delay().min(period);
            }
        }
    }
    if !shared.stalled.load(Ordering::Relaxed) && !shared.revoked.load(Ordering::Relaxed) {
        let _ = crate::lock::revoke(&shared).await;
    }
    live.lose();
}

/// `Err(LeaseLost)` when the lease is lost.
pub(crate) fn ensure_alive(shared: &LeaseShared, doing: impl fmt::Display) -> Result<()> {
    if shared.liveness.state().is_lost() {
        return Err(Error::new(
            ErrorKind::LeaseLost,
            format!("lease {} is lost; cannot {doing}", shared.lease_id()),
        ));
    }
    Ok(())
}
