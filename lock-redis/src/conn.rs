//! The connection to one Redis server: connect (authenticate, read
//! `maxmemory-policy`, check the user's rights), bounded and retried requests, and
//! dedicated connections for blocking waits. Shared by the backend, its leases and
//! locks, and by every master of Redlock.

use crate::{
    config::RedisConfig,
    error,
    rights::{self, Refused},
    scripts::Scripts,
    tls,
};
use lock_core::{
    backend::{lock_unpoisoned, Backoff},
    Error, ErrorKind, Result,
};
use redis::aio::{ConnectionManager, MultiplexedConnection};
use std::{fmt, future::Future, sync::atomic::AtomicU64, sync::Mutex, time::Duration};
use tokio::time::Instant;

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
            wakeups: AtomicU64::new(0),
        };
        conn.eviction_policy = conn.read_eviction_policy().await?;
        let refused = conn.probe_rights().await?;
        if refused.is_none() {
            // No `redis.acl_check_cmd`: Redis < 7, maybe older than the scripts need.
            let info = conn.read_info().await?;
            rights::check_version(&conn.config, info.as_deref())?;
        }
        rights::check(&conn.config, refused)?;
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

    /// `INFO server`; `None` when refused (ACL, renamed command).
    ///
    /// # Errors
    ///
    /// When the server refuses the client or does not answer.
    async fn read_info(&self) -> Result<Option<String>> {
        let mut c = self.manager.clone();
        let reply: Result<String> = self
            .once("reading the redis version", async move {
                redis::cmd("INFO").arg("server").query_async(&mut c).await
            })
            .await;
        refused_is_none(reply)
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
        Ok(refused_is_none(reply)?.and_then(|fields| fields.get(1).cloned()))
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
                return Err(self.explain(err).await);
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

    /// Every key matching the glob `pattern` on this server.
    pub(crate) async fn scan(&self, pattern: &str) -> Result<Vec<String>> {
        let mut cursor = 0u64;
        let mut keys = Vec::new();
        loop {
            let what = || format!("scanning keys {pattern:?}");
            let (next, batch): (u64, Vec<String>) = self
                .call(&what, |mut c| {
                    let cmd = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .clone();
                    async move { cmd.query_async(&mut c).await }
                })
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Runs the rights probe (see `rights`): `None` when the server cannot tell
    /// (Redis < 7).
    async fn probe_rights(&self) -> Result<Refused> {
        let mut c = self.manager();
        let prefix = self.config.prefix().to_owned();
        self.once("checking the redis user's rights", async move {
            let mut inv = self.scripts.probe.prepare_invoke();
            inv.arg(prefix);
            inv.invoke_async(&mut c).await
        })
        .await
    }

    /// `err` (a `PermissionDenied` met on a request) with the rights the user lacks
    /// now appended, when the probe can name them.
    pub(crate) async fn explain(&self, err: Error) -> Error {
        rights::explain(&self.config, err, self.probe_rights().await)
    }

    /// Every key under the prefix except token counters with a TTL (for leak checks).
    pub(crate) async fn stored_keys(&self) -> Result<Vec<String>> {
        let keys = self.scan(&format!("{}*", self.config.prefix())).await?;
        let mut out = Vec::new();
        for key in keys {
            if key.ends_with("}:t") {
                let what = || format!("reading the ttl of {key}");
                let pttl: i64 = self
                    .call(&what, |mut c| {
                        let cmd = redis::cmd("PTTL").arg(&key).clone();
                        async move { cmd.query_async(&mut c).await }
                    })
                    .await?;
                if pttl > 0 {
                    continue;
                }
            }
            out.push(key);
        }
        Ok(out)
    }
}

/// The reply of an optional read at connect: `None` when the server refused the
/// command (ACL, renamed command), the error when it refused the client or did not
/// answer.
fn refused_is_none<T>(reply: Result<T>) -> Result<Option<T>> {
    match reply {
        Ok(value) => Ok(Some(value)),
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
