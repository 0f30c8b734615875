//! Redlock over N (odd, ≥ 3) independent Redis masters: [`RedlockBackend`].
//!
//! Lock `N` on every node: `<prefix>{N}:lock` (a hash: `i` entry id, `t` token, `l`
//! lease, `a` acquired at, `h` holder) with the lease's TTL, the token counter
//! `<prefix>{N}:t`, and `<prefix>{N}:wq`, the waiters seen lately (for `inspect`).
//! Each lease has a key `<prefix>lease:<id>` on every node.

use crate::{
    config::invalid,
    conn::{retry_backoff, Conn},
    RedisConfig,
};
use async_trait::async_trait;
use futures::future::join_all;
use lock_core::{
    backend::{
        check_claim, local_deadline, lock_unpoisoned, spawn_or_expire, Backend, Claim, HeldLock,
        LeaseBackend, Liveness, WaitMode,
    },
    url::BackendUrl,
    AcquireOptions, Capabilities, Error, ErrorKind, FencingToken, HolderInfo, LeaseId, LockInfo,
    LockName, LossCause, Result, TokenSource,
};
use std::{
    any::Any,
    collections::{BTreeSet, HashMap},
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio::{sync::Notify, time::Instant};

/// The URL scheme of Redlock.
pub const REDLOCK_SCHEME: &str = "redlock";

/// The capabilities of Redlock: no queue, so neither FIFO nor herd-free; no
/// read-write locks or semaphores.
pub const REDLOCK_CAPABILITIES: Capabilities = Capabilities::new(TokenSource::Counter)
    .with_detects_external_deletion(true)
    .with_distributed(true);

const ACQUIRE: &str = r"
local id, ttl, cttl, lease, holder, wait = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6] == '1'
local now = redis.call('TIME')
local micros = tonumber(now[1]) * 1000000 + tonumber(now[2])
local ms = math.floor(micros / 1000)
if redis.call('EXISTS', KEYS[4]) == 0 then return {-1, ''} end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ms)
local have = redis.call('HGET', KEYS[1], 'i')
if have and have ~= id then
  if wait then
    redis.call('ZADD', KEYS[3], ms + tonumber(ttl), id)
    redis.call('PEXPIRE', KEYS[3], ttl)
  end
  return {0, ''}
end
redis.call('ZREM', KEYS[3], id)
if have then return {1, redis.call('HGET', KEYS[1], 't')} end
local last = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local tok = string.format('%.0f', math.max(last + 1, micros))
redis.call('SET', KEYS[2], tok, 'PX', cttl)
redis.call('HSET', KEYS[1], 'i', id, 't', tok, 'l', lease, 'a', string.format('%.0f', ms), 'h', holder)
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, tok}
";

/// Writes the quorum's token back: counter = max(counter, tok); the entry's token.
const COMMIT: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
if redis.call('HGET', KEYS[2], 'i') == ARGV[3] then redis.call('HSET', KEYS[2], 't', ARGV[1]) end
return 1
";

const RELEASE: &str = r"
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'i') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// KEYS[1] the lease key, then lock keys; ARGV[1] ttl, then the entry ids.
const RENEW: &str = r"
local missing = {}
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then table.insert(missing, 1) end
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'i') == ARGV[i] then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
  else
    table.insert(missing, i)
  end
end
return missing
";

const INSPECT: &str = r"
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local f = redis.call('HMGET', KEYS[1], 'i', 't', 'l', 'a', 'h')
local waiters = redis.call('ZCOUNT', KEYS[2], ms, '+inf')
return {f[1] or '', f[2] or '', f[3] or '', f[4] or '', f[5] or '', waiters}
";

struct Scripts {
    acquire: redis::Script,
    commit: redis::Script,
    release: redis::Script,
    renew: redis::Script,
    inspect: redis::Script,
}

/// The clock drift allowed for, per Redlock: 1% of the TTL plus 2 ms.
fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// Configuration of a [`RedlockBackend`]: the masters and the settings of
/// [`RedisConfig`] shared by all of them.
///
/// ```text
/// redlock://[user:password@]host1:port,host2:port,host3:port[?prefix=fl:&ttl=10s&connect_timeout=3s&request_timeout=2s]
/// ```
///
/// `tls=true` speaks TLS to every master (as `rediss://` does to one), with the same
/// `ca`, `cert` and `key` files for all.
///
/// # Examples
///
/// ```
/// use lock_redis::RedlockConfig;
///
/// let cfg = RedlockConfig::from_url("redlock://h1:6379,h2:6379,h3:6379?ttl=5s")?;
/// assert_eq!(cfg.nodes().len(), 3);
/// assert!(RedlockConfig::from_url("redlock://h1:1,h2:2").is_err(), "even count");
/// # Ok::<(), lock_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RedlockConfig {
    nodes: Vec<RedisConfig>,
}

impl RedlockConfig {
    /// Parses a `redlock://` URL.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] for another scheme, an even number or fewer than
    /// 3 hosts, a path, or any error [`RedisConfig`] would give.
    pub fn from_url(url: &str) -> Result<Self> {
        let parsed = BackendUrl::parse(url)?;
        if parsed.scheme != REDLOCK_SCHEME {
            return Err(invalid(format!(
                "not a {REDLOCK_SCHEME}:// url (scheme {:?})",
                parsed.scheme
            )));
        }
        if !parsed.path.is_empty() {
            return Err(invalid(
                "a redlock:// url has no path (database 0 on every master)",
            ));
        }
        let tls = match parsed.param("tls") {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(invalid(format!(
                    "redlock url: tls={other:?} is not true or false"
                )))
            }
        };
        let nodes = parsed
            .hosts
            .iter()
            .map(|h| RedisConfig::from_parts(h.clone(), &parsed, tls))
            .collect::<Result<Vec<_>>>()?;
        let config = RedlockConfig { nodes };
        config.validate()?;
        Ok(config)
    }

    /// A configuration of one [`RedisConfig`] per master.
    pub fn new(nodes: Vec<RedisConfig>) -> Self {
        RedlockConfig { nodes }
    }

    /// The masters.
    pub fn nodes(&self) -> &[RedisConfig] {
        &self.nodes
    }

    /// Checks every value.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] for fewer than 3 or an even number of masters, or
    /// a bad master configuration.
    pub fn validate(&self) -> Result<()> {
        let n = self.nodes.len();
        if n < 3 || n.is_multiple_of(2) {
            return Err(invalid(format!(
                "redlock needs an odd number of at least 3 independent masters, not {n}"
            )));
        }
        self.nodes.iter().try_for_each(RedisConfig::validate)
    }

    fn first(&self) -> &RedisConfig {
        &self.nodes[0]
    }
}

struct Nodes {
    config: RedlockConfig,
    conns: Vec<Arc<Conn>>,
    scripts: Scripts,
    leases: Mutex<HashMap<u64, std::sync::Weak<RlLeaseShared>>>,
}

impl fmt::Debug for Nodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addrs: Vec<&str> = self.config.nodes.iter().map(RedisConfig::address).collect();
        f.debug_struct("Redlock").field("masters", &addrs).finish()
    }
}

impl Nodes {
    fn majority(&self) -> usize {
        self.config.nodes.len() / 2 + 1
    }

    fn prefix(&self) -> &str {
        self.config.first().prefix()
    }

    /// The per-node bound: a dead node must not eat the validity window.
    fn node_timeout(&self, ttl: Duration) -> Duration {
        self.config
            .first()
            .request_timeout()
            .min(ttl / 10)
            .max(Duration::from_millis(50))
    }

    /// Runs `op` on every node at once, each bounded by `limit`.
    async fn all<T, F, Fut>(&self, limit: Duration, op: F) -> Vec<Result<T>>
    where
        F: Fn(usize, redis::aio::ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.on(0..self.conns.len(), limit, op).await
    }

    /// Runs `op` on the nodes `which` at once, each bounded by `limit`.
    async fn on<T, F, Fut>(
        &self,
        which: impl Iterator<Item = usize>,
        limit: Duration,
        op: F,
    ) -> Vec<Result<T>>
    where
        F: Fn(usize, redis::aio::ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        join_all(which.map(|i| {
            let c = &self.conns[i];
            let fut = op(i, c.manager());
            let address = c.config.address().to_owned();
            async move {
                match tokio::time::timeout(limit, fut).await {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(crate::error::map(e, format!("redis master {address}"))),
                    Err(_) => Err(crate::error::timed_out(
                        format!("redis master {address}"),
                        limit,
                    )),
                }
            }
        }))
        .await
    }

    fn unavailable(&self, doing: impl fmt::Display, errors: &[Error]) -> Error {
        let why: Vec<String> = errors.iter().map(ToString::to_string).collect();
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "{doing}: fewer than {} of {} redis masters answered ({})",
                self.majority(),
                self.conns.len(),
                why.join("; ")
            ),
        )
    }
}

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
/// - No read-write locks or semaphores ([`ErrorKind::Unsupported`]), as
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
    nodes: Arc<Nodes>,
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
    /// As [`connect`](Self::connect), and [`ErrorKind::InvalidConfig`] for a bad URL.
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
    /// [`ErrorKind::Unavailable`] unless every master answers within the connect
    /// timeout (a master down later is tolerated while a majority answers);
    /// [`ErrorKind::Unauthenticated`] when one refuses the credentials.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is created on the servers.
    pub async fn connect(config: RedlockConfig) -> Result<RedlockBackend> {
        config.validate()?;
        let conns = join_all(config.nodes.iter().cloned().map(Conn::connect)).await;
        let conns = conns
            .into_iter()
            .map(|c| c.map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        Ok(RedlockBackend {
            nodes: Arc::new(Nodes {
                config,
                conns,
                scripts: Scripts {
                    acquire: redis::Script::new(ACQUIRE),
                    commit: redis::Script::new(COMMIT),
                    release: redis::Script::new(RELEASE),
                    renew: redis::Script::new(RENEW),
                    inspect: redis::Script::new(INSPECT),
                },
                leases: Mutex::default(),
            }),
        })
    }

    /// Every key under the prefix on any master, for leak checks, except the token
    /// counters that carry a TTL.
    ///
    /// # Errors
    ///
    /// Backend errors of a master.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn stored_keys(&self) -> Result<Vec<String>> {
        let mut all = BTreeSet::new();
        for c in &self.nodes.conns {
            all.extend(crate::admin::stored_keys(c).await?);
        }
        Ok(all.into_iter().collect())
    }

    /// **Operator action**: deletes the lock entry of `name` on every master.
    /// Returns its token, `None` if nobody held it.
    ///
    /// # Errors
    ///
    /// Backend errors.
    ///
    /// # Cancel safety
    ///
    /// A dropped call may or may not have deleted the entries.
    pub async fn break_lock(&self, name: &LockName) -> Result<Option<FencingToken>> {
        let info = Backend::inspect(self, name).await?;
        let key = format!("{}lock", crate::scripts::base(self.nodes.prefix(), name));
        for c in &self.nodes.conns {
            let _ = c.delete(&key).await;
        }
        Ok(info.map(|i| i.token))
    }

    /// **Operator action**: deletes lease `lease`'s key and entries on every master,
    /// as their expiry would.
    ///
    /// # Errors
    ///
    /// Backend errors.
    ///
    /// # Cancel safety
    ///
    /// A dropped call may or may not have deleted the keys.
    pub async fn kill_lease(&self, lease: LeaseId) -> Result<()> {
        let hex = format!("{:016x}", lease.get());
        for c in &self.nodes.conns {
            for key in crate::admin::stored_keys(c).await? {
                let mine = key.ends_with(&format!("lease:{hex}"))
                    || (key.ends_with("}:lock")
                        && c.hget(&key, "l").await?.as_deref() == Some(&hex));
                if mine {
                    c.delete(&key).await?;
                }
            }
        }
        Ok(())
    }

    /// **Test hook**: stops (or resumes) renewing `lease`. Returns whether the lease
    /// is one of this backend's live leases.
    #[doc(hidden)]
    pub fn stall_keep_alive(&self, lease: LeaseId, stalled: bool) -> bool {
        let leases = lock_unpoisoned(&self.nodes.leases);
        match leases.get(&lease.get()).and_then(std::sync::Weak::upgrade) {
            Some(l) => {
                l.stalled.store(stalled, Ordering::Relaxed);
                true
            }
            None => false,
        }
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
        let nodes = &self.nodes;
        let id = uuid::Uuid::new_v4().as_u64_pair().0;
        let key = format!("{}lease:{id:016x}", nodes.prefix());
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let sent_at = Instant::now();
        let results = nodes
            .all(nodes.config.first().request_timeout(), |_, mut c| {
                let cmd = redis::cmd("SET")
                    .arg(&key)
                    .arg("1")
                    .arg("PX")
                    .arg(ttl_ms)
                    .clone();
                async move { cmd.query_async::<()>(&mut c).await }
            })
            .await;
        let (ok, errors): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
        if ok.len() < nodes.majority() {
            let errors: Vec<Error> = errors.into_iter().filter_map(Result::err).collect();
            return Err(nodes.unavailable(format_args!("granting lease {id:x}"), &errors));
        }
        let shared = Arc::new(RlLeaseShared {
            nodes: nodes.clone(),
            id,
            ttl,
            liveness: Liveness::for_lease(local_deadline(sent_at, ttl), ttl),
            entries: Mutex::default(),
            next_entry: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            stop: Notify::new(),
        });
        lock_unpoisoned(&nodes.leases).insert(id, Arc::downgrade(&shared));
        tokio::spawn(renewal(shared.clone()));
        Ok(Arc::new(RedlockLease { shared }))
    }

    async fn inspect(&self, name: &LockName) -> Result<Option<LockInfo>> {
        let nodes = &self.nodes;
        let base = crate::scripts::base(nodes.prefix(), name);
        let results = nodes
            .all(nodes.config.first().request_timeout(), |_, mut c| {
                let mut inv = nodes.scripts.inspect.prepare_invoke();
                inv.key(format!("{base}lock")).key(format!("{base}wq"));
                async move {
                    inv.invoke_async::<(String, String, String, String, String, usize)>(&mut c)
                        .await
                }
            })
            .await;
        let mut answers = Vec::new();
        let mut errors = Vec::new();
        for r in results {
            match r {
                Ok(a) => answers.push(a),
                Err(e) => errors.push(e),
            }
        }
        if answers.len() < nodes.majority() {
            return Err(nodes.unavailable(format_args!("reading lock {name}"), &errors));
        }
        let waiters = answers.iter().map(|a| a.5).max().unwrap_or(0);
        // The entry a majority holds, with the highest token any of them reports.
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for a in answers.iter().filter(|a| !a.0.is_empty()) {
            *counts.entry(a.0.as_str()).or_default() += 1;
        }
        let Some((id, _)) = counts.into_iter().find(|(_, n)| *n >= nodes.majority()) else {
            return Ok(None);
        };
        let mine: Vec<_> = answers.iter().filter(|a| a.0 == id).collect();
        let token = mine
            .iter()
            .filter_map(|a| a.1.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let first = mine[0];
        let lease = LeaseId::new(u64::from_str_radix(&first.2, 16).unwrap_or(0));
        let acquired_at = first
            .3
            .parse::<u64>()
            .ok()
            .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms));
        let head = HolderInfo::new(FencingToken::new(token), lease)
            .with_holder((!first.4.is_empty()).then(|| first.4.clone()))
            .with_acquired_at(acquired_at);
        Ok(Some(LockInfo::from_holders(
            name.clone(),
            head,
            Vec::new(),
            waiters,
        )))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LockInfo>> {
        let mut names = BTreeSet::new();
        for c in &self.nodes.conns {
            let pattern = format!("{}{{{prefix}*}}:lock", self.nodes.prefix());
            if let Ok(keys) = c.scan(&pattern).await {
                names.extend(keys.iter().filter_map(|k| {
                    let n = k.strip_prefix(self.nodes.prefix())?.strip_prefix('{')?;
                    LockName::new(n.strip_suffix("}:lock")?).ok()
                }));
            }
        }
        let mut out = Vec::new();
        for name in names {
            if let Some(info) = Backend::inspect(self, &name).await? {
                out.push(info);
            }
        }
        Ok(out)
    }

    async fn close(&self) -> Result<()> {
        let leases: Vec<_> = lock_unpoisoned(&self.nodes.leases)
            .values()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        for lease in leases {
            lease.revoke().await;
        }
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct RlLeaseShared {
    nodes: Arc<Nodes>,
    id: u64,
    ttl: Duration,
    liveness: Liveness,
    /// entry id → (lock key, liveness).
    entries: Mutex<HashMap<String, (String, Liveness)>>,
    next_entry: AtomicU64,
    stalled: AtomicBool,
    stop: Notify,
}

impl fmt::Debug for RlLeaseShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedlockLease")
            .field("id", &LeaseId::new(self.id))
            .finish()
    }
}

impl RlLeaseShared {
    fn key(&self) -> String {
        format!("{}lease:{:016x}", self.nodes.prefix(), self.id)
    }

    /// Deletes every entry and the lease key on every master (best effort).
    async fn revoke(&self) {
        let entries: Vec<(String, String)> = lock_unpoisoned(&self.entries)
            .drain()
            .map(|(id, (key, _))| (id, key))
            .collect();
        for (id, key) in entries {
            release_all(&self.nodes, &key, &id).await;
        }
        let key = self.key();
        let _ = self
            .nodes
            .all(self.nodes.config.first().request_timeout(), |_, mut c| {
                let cmd = redis::cmd("DEL").arg(&key).clone();
                async move { cmd.query_async::<i64>(&mut c).await }
            })
            .await;
        self.liveness.lose_with(LossCause::LeaseRevoked);
        self.stop.notify_one();
    }

    /// One renewal round on every master; `Err` when fewer than a majority answered.
    async fn renew(&self) -> Result<()> {
        let snapshot: Vec<(String, String, Liveness)> = lock_unpoisoned(&self.entries)
            .iter()
            .map(|(id, (key, live))| (id.clone(), key.clone(), live.clone()))
            .collect();
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let lease_key = self.key();
        let results = self
            .nodes
            .all(self.nodes.node_timeout(self.ttl), |_, mut c| {
                let mut inv = self.nodes.scripts.renew.prepare_invoke();
                inv.key(&lease_key).arg(ttl_ms);
                for (id, key, _) in &snapshot {
                    inv.key(key).arg(id);
                }
                async move { inv.invoke_async::<Vec<usize>>(&mut c).await }
            })
            .await;
        let majority = self.nodes.majority();
        let mut answered = 0;
        let mut lease_missing = 0;
        let mut missing = vec![0usize; snapshot.len()];
        let mut errors = Vec::new();
        for r in results {
            match r {
                Ok(gone) => {
                    answered += 1;
                    for i in gone {
                        if i == 1 {
                            lease_missing += 1;
                        } else if let Some(m) = missing.get_mut(i - 2) {
                            *m += 1;
                        }
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if answered < majority {
            return Err(self.nodes.unavailable("renewing a redlock lease", &errors));
        }
        if answered - lease_missing < majority {
            return Err(Error::new(
                ErrorKind::LeaseLost,
                "the lease key is gone from a majority",
            ));
        }
        for ((id, _, live), gone) in snapshot.iter().zip(missing) {
            if answered - gone < majority {
                live.lose_with(LossCause::EntryDeleted);
                lock_unpoisoned(&self.entries).remove(id);
            }
        }
        Ok(())
    }
}

async fn renewal(shared: Arc<RlLeaseShared>) {
    let period = shared.ttl / 3;
    let live = shared.liveness.clone();
    let mut backoff = retry_backoff();
    let mut next = Instant::now() + period;
    let mut watch = live.watch();
    let mut lost = std::pin::pin!(watch.lost());
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shared.stop.notified() => return,
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
                live.lose_with(LossCause::LeaseExpired);
                break;
            }
            Err(e) => {
                tracing::debug!(error = %e, "redlock renewal failed");
                live.keep_alive_failed();
                next = Instant::now() + backoff.next_delay().min(period);
            }
        }
    }
    if !shared.stalled.load(Ordering::Relaxed) {
        shared.revoke().await;
    }
}

async fn release_all(nodes: &Nodes, key: &str, id: &str) -> usize {
    let wq = format!("{}wq", key.trim_end_matches("lock"));
    nodes
        .all(nodes.config.first().request_timeout(), |_, mut c| {
            let mut inv = nodes.scripts.release.prepare_invoke();
            inv.key(key).key(&wq).arg(id);
            async move { inv.invoke_async::<i64>(&mut c).await }
        })
        .await
        .into_iter()
        .filter(|r| matches!(r, Ok(1)))
        .count()
}

/// A Redlock lease: a random id with a key on every master, renewed on all of them
/// every third of the TTL, alive while a majority confirms.
pub struct RedlockLease {
    shared: Arc<RlLeaseShared>,
}

impl fmt::Debug for RedlockLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl Drop for RedlockLease {
    fn drop(&mut self) {
        self.shared.stop.notify_one();
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
        let held = acquire(&self.shared, name, mode, options).await?;
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

/// Releases on every master unless disarmed (a dropped or failed acquire).
struct Undo {
    nodes: Arc<Nodes>,
    key: String,
    id: String,
    armed: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (nodes, key, id) = (self.nodes.clone(), self.key.clone(), self.id.clone());
        spawn_or_expire(format_args!("redlock entry {}", self.key), async move {
            release_all(&nodes, &key, &id).await;
        });
    }
}

async fn acquire(
    lease: &Arc<RlLeaseShared>,
    name: &LockName,
    mode: WaitMode,
    options: &AcquireOptions,
) -> Result<Option<RedlockHeldLock>> {
    let nodes = &lease.nodes;
    if lease.liveness.state().is_lost() {
        return Err(Error::new(
            ErrorKind::LeaseLost,
            format!("lease {:x} is lost; cannot acquire {name}", lease.id),
        ));
    }
    let base = crate::scripts::base(nodes.prefix(), name);
    let (key, counter, wq) = (
        format!("{base}lock"),
        format!("{base}t"),
        format!("{base}wq"),
    );
    let id = format!(
        "{:016x}.{}",
        lease.id,
        lease.next_entry.fetch_add(1, Ordering::Relaxed)
    );
    let mut undo = Undo {
        nodes: nodes.clone(),
        key: key.clone(),
        id: id.clone(),
        armed: true,
    };
    let ttl_ms = u64::try_from(lease.ttl.as_millis()).unwrap_or(u64::MAX);
    let counter_ms = u64::try_from(crate::scripts::COUNTER_TTL.as_millis()).unwrap_or(u64::MAX);
    let lease_hex = format!("{:016x}", lease.id);
    let holder = options.holder().unwrap_or("");
    let wait = if mode == WaitMode::Wait { "1" } else { "0" };
    let majority = nodes.majority();
    let mut lost_watch = lease.liveness.watch();
    let lease_key = lease.key();
    loop {
        let started = Instant::now();
        let acquire_on = |which: std::ops::Range<usize>| {
            nodes.on(which, nodes.node_timeout(lease.ttl), |_, mut c| {
                let mut inv = nodes.scripts.acquire.prepare_invoke();
                inv.key(&key)
                    .key(&counter)
                    .key(&wq)
                    .key(&lease_key)
                    .arg(&id)
                    .arg(ttl_ms)
                    .arg(counter_ms)
                    .arg(&lease_hex)
                    .arg(holder)
                    .arg(wait);
                async move { inv.invoke_async::<(i64, String)>(&mut c).await }
            })
        };
        // The first master breaks ties: a contender refused there does not go on to
        // the others, so contenders rarely split the votes and all retry.
        let mut results = acquire_on(0..1).await;
        if !matches!(results[0], Ok((0, _))) {
            results.extend(acquire_on(1..nodes.conns.len()).await);
        }
        let validity = lease
            .ttl
            .saturating_sub(started.elapsed())
            .saturating_sub(drift(lease.ttl));
        let mut tokens = Vec::new();
        let mut errors = Vec::new();
        let mut lease_gone = 0;
        for r in results {
            match r {
                Ok((1, t)) => tokens.extend(t.parse::<u64>().ok()),
                Ok((-1, _)) => lease_gone += 1,
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
        }
        if tokens.len() >= majority && !validity.is_zero() {
            let token = tokens.iter().copied().max().unwrap_or(0);
            // Write the token back to a majority before reporting the grant.
            let acks = nodes
                .all(nodes.node_timeout(lease.ttl), |_, mut c| {
                    let mut inv = nodes.scripts.commit.prepare_invoke();
                    inv.key(&counter)
                        .key(&key)
                        .arg(token)
                        .arg(counter_ms)
                        .arg(&id);
                    async move { inv.invoke_async::<i64>(&mut c).await }
                })
                .await
                .into_iter()
                .filter(Result::is_ok)
                .count();
            if acks >= majority && started.elapsed() < lease.ttl.saturating_sub(drift(lease.ttl)) {
                // The lease's deadline (from its last renewal sent before `started`)
                // bounds the entry too: its entries were set after that.
                let live = Liveness::new(None);
                lock_unpoisoned(&lease.entries).insert(id.clone(), (key.clone(), live.clone()));
                undo.armed = false;
                return Ok(Some(RedlockHeldLock {
                    nodes: nodes.clone(),
                    lease: lease.clone(),
                    name: name.clone(),
                    key,
                    id,
                    token,
                    liveness: live,
                    released: false,
                }));
            }
        }
        // Not granted: undo whatever was set, then give up or retry.
        release_all(nodes, &key, &id).await;
        if lease_gone >= majority {
            lease.liveness.lose_with(LossCause::LeaseExpired);
            return Err(Error::new(
                ErrorKind::LeaseLost,
                format!(
                    "lease {:x} is gone from a majority of masters; cannot acquire {name}",
                    lease.id
                ),
            ));
        }
        if errors.len() > nodes.conns.len() - majority {
            return Err(nodes.unavailable(format_args!("acquiring lock {name}"), &errors));
        }
        if mode == WaitMode::NoWait {
            undo.armed = false;
            return Ok(None);
        }
        let delay = Duration::from_millis(10 + u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 50);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = lost_watch.lost() => {
                return Err(Error::new(
                    ErrorKind::LeaseLost,
                    format!("lease {:x} was lost while waiting for lock {name}", lease.id),
                ));
            }
        }
    }
}

/// A Redlock grant: the entry on a majority of masters and its quorum token.
pub struct RedlockHeldLock {
    nodes: Arc<Nodes>,
    lease: Arc<RlLeaseShared>,
    name: LockName,
    key: String,
    id: String,
    token: u64,
    liveness: Liveness,
    released: bool,
}

impl fmt::Debug for RedlockHeldLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedlockHeldLock")
            .field("name", &self.name)
            .field("token", &self.token)
            .finish()
    }
}

#[async_trait]
impl HeldLock for RedlockHeldLock {
    fn token(&self) -> FencingToken {
        FencingToken::new(self.token)
    }

    fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    async fn release(&mut self) -> Result<()> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        let lost_before = self.liveness.state().is_lost();
        lock_unpoisoned(&self.lease.entries).remove(&self.id);
        let deleted = release_all(&self.nodes, &self.key, &self.id).await;
        self.liveness.lose_with(LossCause::Released);
        if lost_before || deleted == 0 {
            return Err(Error::new(
                ErrorKind::NotHeld,
                format!(
                    "lock {} (token {}) was lost before release",
                    self.name, self.token
                ),
            ));
        }
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for RedlockHeldLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.liveness.lose_with(LossCause::Released);
        lock_unpoisoned(&self.lease.entries).remove(&self.id);
        let (nodes, key, id) = (self.nodes.clone(), self.key.clone(), self.id.clone());
        spawn_or_expire(format_args!("redlock entry {}", self.key), async move {
            release_all(&nodes, &key, &id).await;
        });
    }
}
