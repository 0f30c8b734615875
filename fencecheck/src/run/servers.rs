//! The real servers of a run (etcd cluster or ZooKeeper ensemble), behind one face:
//! start, endpoints, leader, kill/pause/restart, operator faults and leak checks.

use fencelock::{LockClient, LockName};
#[cfg(feature = "etcd")]
use fencelock_integration_tests::servers::EtcdCluster;
use fencelock_integration_tests::servers::Link;
#[cfg(feature = "redis")]
use fencelock_integration_tests::servers::{RedisOptions, RedisServer};
#[cfg(feature = "zk")]
use fencelock_integration_tests::servers::{ZkEnsemble, ZkOptions};
use std::{
    io,
    time::{Duration, Instant},
};

/// A running cluster.
pub(super) enum Servers {
    #[cfg(feature = "etcd")]
    Etcd(EtcdCluster),
    #[cfg(feature = "zk")]
    Zk(ZkEnsemble),
    /// One server (`redis`), with a replica for the failover fault, or independent
    /// masters (`redlock`), no persistence.
    #[cfg(feature = "redis")]
    Redis(RedisSet),
}

/// The Redis servers of a run.
#[cfg(feature = "redis")]
pub(super) struct RedisSet {
    /// Every server: the master(s) clients use and, for the failover fault, a
    /// replica of the first.
    nodes: Vec<RedisServer>,
    /// The node behind each endpoint clients use (one for `redis`, three for
    /// `redlock`), in URL order.
    slots: Vec<usize>,
    /// The replica: (the endpoint whose master it follows, its node).
    replica: Option<(usize, usize)>,
    /// Independent masters (`redlock`).
    redlock: bool,
}

#[cfg(feature = "redis")]
impl RedisSet {
    /// The servers clients use: the master, or every Redlock master.
    fn used(&self) -> Vec<&RedisServer> {
        self.slots.iter().map(|&i| &self.nodes[i]).collect()
    }
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

impl Servers {
    /// Starts `backend` (`etcd`, `etcd3`, `zk`, `zk3`, and `etcd3-net`, `zk3-net`
    /// with each member in a network namespace of its own); ZooKeeper with tickTime
    /// a quarter of the TTL so the requested session timeout is within its clamp
    /// (in namespaces a sixth, with `syncLimit` 2, so that a cut-off leader is
    /// noticed within about a third of the TTL).
    /// With `replica` the (first) master gets a replica, for the failover fault.
    pub(super) fn start(backend: &str, ttl: Duration, replica: bool) -> io::Result<Servers> {
        let n = if backend.contains('3') { 3 } else { 1 };
        let net = backend.ends_with("-net");
        let missing = |what: &str| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{what} support is not compiled in"),
            )
        };
        if backend == "redis" || backend == "redlock" {
            #[cfg(feature = "redis")]
            return blocking(|| {
                let redlock = backend == "redlock";
                let mut nodes = RedisServer::start_masters(if redlock { 3 } else { 1 })?;
                let slots: Vec<usize> = (0..nodes.len()).collect();
                let mut set = RedisSet {
                    slots,
                    replica: None,
                    redlock,
                    nodes: Vec::new(),
                };
                if replica {
                    let node = RedisServer::start(RedisOptions {
                        replica_of: Some(nodes[0].address()),
                        ..RedisOptions::default()
                    })?;
                    node.wait_replica_in_sync(Duration::from_secs(30))?;
                    set.replica = Some((0, nodes.len()));
                    nodes.push(node);
                }
                set.nodes = nodes;
                Ok(Servers::Redis(set))
            });
            #[cfg(not(feature = "redis"))]
            return Err(missing("redis"));
        }
        if backend.starts_with("etcd") {
            #[cfg(feature = "etcd")]
            return blocking(|| {
                if net {
                    EtcdCluster::start_in_namespaces(n)
                } else {
                    EtcdCluster::start(n)
                }
            })
            .map(Servers::Etcd);
            #[cfg(not(feature = "etcd"))]
            return Err(missing("etcd"));
        }
        #[cfg(feature = "zk")]
        {
            let ticks_per_ttl = if net { 6 } else { 4 };
            let tick = u32::try_from(ttl.as_millis() / ticks_per_ttl)
                .unwrap_or(500)
                .clamp(50, 2000);
            let options = ZkOptions {
                tick_time_ms: tick,
                sync_limit: if net { 2 } else { 5 },
                ..ZkOptions::default()
            };
            let _ = &missing;
            blocking(|| {
                if net {
                    ZkEnsemble::start_in_namespaces(n, options)
                } else {
                    ZkEnsemble::start_with(n, options)
                }
            })
            .map(Servers::Zk)
        }
        #[cfg(not(feature = "zk"))]
        {
            let _ = (ttl, n, net);
            Err(missing("zk"))
        }
    }

    /// `127.0.0.1:PORT` of every member.
    pub(super) fn endpoints(&self) -> Vec<String> {
        match self {
            #[cfg(feature = "etcd")]
            Servers::Etcd(c) => c.endpoints(),
            #[cfg(feature = "zk")]
            Servers::Zk(z) => z.connect_string().split(',').map(str::to_owned).collect(),
            #[cfg(feature = "redis")]
            Servers::Redis(r) => r.used().into_iter().map(RedisServer::address).collect(),
        }
    }

    /// A URL over `hosts` with the run's prefix/chroot and TTL.
    pub(super) fn url(&self, hosts: &[String], root: &str, ttl: Duration) -> String {
        let ms = ttl.as_millis();
        match self {
            #[cfg(feature = "etcd")]
            Servers::Etcd(_) => format!(
                "etcd://{}/{root}?ttl={ms}ms&request_timeout=3s",
                hosts.join(",")
            ),
            #[cfg(feature = "zk")]
            Servers::Zk(_) => format!("zk://{}/{root}?session_timeout={ms}ms", hosts.join(",")),
            #[cfg(feature = "redis")]
            Servers::Redis(r) => format!(
                "{}://{}?prefix={root}:&ttl={ms}ms&request_timeout=1s",
                if r.redlock { "redlock" } else { "redis" },
                hosts.join(",")
            ),
        }
    }

    /// Server processes (a Redis replica included).
    pub(super) fn size(&self) -> usize {
        match self {
            #[cfg(feature = "redis")]
            Servers::Redis(r) => r.nodes.len(),
            #[allow(unreachable_patterns)]
            _ => self.endpoints().len(),
        }
    }

    pub(super) fn version(&self) -> String {
        blocking(|| match self {
            #[cfg(feature = "etcd")]
            Servers::Etcd(c) => c.version(),
            #[cfg(feature = "zk")]
            Servers::Zk(z) => z.version(),
            #[cfg(feature = "redis")]
            Servers::Redis(r) => r.nodes[0]
                .command(&["INFO", "server"])
                .ok()
                .and_then(|i| {
                    i.lines()
                        .find_map(|l| l.strip_prefix("redis_version:").map(str::to_owned))
                })
                .unwrap_or_else(|| "redis (version unknown)".into()),
        })
    }

    pub(super) fn leader(&self) -> Option<usize> {
        blocking(|| match self {
            #[cfg(feature = "etcd")]
            Servers::Etcd(c) => c.leader(),
            #[cfg(feature = "zk")]
            Servers::Zk(z) => z.leader(),
            #[cfg(feature = "redis")]
            Servers::Redis(r) => Some(r.slots[0]),
        })
    }

    pub(super) fn kill(&mut self, i: usize) {
        blocking(|| match self {
            #[cfg(feature = "etcd")]
            Servers::Etcd(c) => c.kill(i),
            #[cfg(feature = "zk")]
            Servers::Zk(z) => z.kill(i),
            #[cfg(feature = "redis")]
            Servers::Redis(r) => r.nodes[i].kill(),
        })
    }

    pub(super) fn restart(&mut self, i: usize) -> io::Result<()> {
        blocking(|| match self {
            #[cfg(feature = "etcd")]
            Servers::Etcd(c) => c.restart(i),
            #[cfg(feature = "zk")]
            Servers::Zk(z) => z.restart(i),
            #[cfg(feature = "redis")]
            Servers::Redis(r) => r.nodes[i].restart(),
        })
    }

    /// Waits, at most `limit`, until every member runs and serves (one leads);
    /// returns how long that took, or `None` on timeout.
    pub(super) async fn wait_all_ready(&self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        loop {
            let ready = blocking(|| match self {
                #[cfg(feature = "etcd")]
                Servers::Etcd(c) => c.all_healthy() && c.leader().is_some(),
                #[cfg(feature = "zk")]
                Servers::Zk(z) => z.all_serving(),
                #[cfg(feature = "redis")]
                Servers::Redis(r) => r.nodes.iter().all(|s| {
                    s.command(&["PING"]).is_ok_and(|p| p.contains("PONG"))
                        && (!s.is_replica() || s.replica_in_sync())
                }),
            });
            if ready {
                return Some(start.elapsed());
            }
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills every member and starts them all again with their data.
    pub(super) fn restart_all(&mut self) -> io::Result<()> {
        blocking(|| match self {
            #[cfg(feature = "etcd")]
            Servers::Etcd(c) => c.restart_all(),
            #[cfg(feature = "zk")]
            Servers::Zk(z) => z.restart_all(),
            #[cfg(feature = "redis")]
            Servers::Redis(r) => r.nodes.iter_mut().try_for_each(RedisServer::restart),
        })
    }

    /// Cuts (`up == false`) or heals member `i`'s `link`.
    pub(super) fn set_link(&self, i: usize, link: Link, up: bool) -> io::Result<()> {
        match (self, up) {
            #[cfg(feature = "etcd")]
            (Servers::Etcd(c), false) => c.cut(i, link),
            #[cfg(feature = "etcd")]
            (Servers::Etcd(c), true) => c.heal(i, link),
            #[cfg(feature = "zk")]
            (Servers::Zk(z), false) => z.cut(i, link),
            #[cfg(feature = "zk")]
            (Servers::Zk(z), true) => z.heal(i, link),
            #[cfg(feature = "redis")]
            (Servers::Redis(_), _) => {
                let _ = (i, link);
                Err(io::Error::other(
                    "redis servers run without network namespaces",
                ))
            }
        }
    }

    pub(super) fn pause(&self, i: usize) {
        match self {
            #[cfg(feature = "etcd")]
            Servers::Etcd(c) => c.pause(i),
            #[cfg(feature = "zk")]
            Servers::Zk(z) => z.pause(i),
            #[cfg(feature = "redis")]
            Servers::Redis(r) => r.nodes[i].pause(),
        }
    }

    pub(super) fn resume(&self, i: usize) {
        match self {
            #[cfg(feature = "etcd")]
            Servers::Etcd(c) => c.resume(i),
            #[cfg(feature = "zk")]
            Servers::Zk(z) => z.resume(i),
            #[cfg(feature = "redis")]
            Servers::Redis(r) => r.nodes[i].resume(),
        }
    }

    /// Whether a master has a replica to fail over to (`redis`, `redlock` with
    /// `failover`).
    pub(super) fn has_replica(&self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            Servers::Redis(r) => r.replica.is_some(),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Failover, first step: promotes the replica (`REPLICAOF NO ONE`). Clients still
    /// use the old master, so from here on the promoted replica misses every write.
    /// Returns (the endpoint failed over, old master, promoted replica).
    pub(super) fn promote_replica(&mut self) -> io::Result<(usize, usize, usize)> {
        match self {
            #[cfg(feature = "redis")]
            Servers::Redis(r) => {
                let (slot, replica) = r
                    .replica
                    .ok_or_else(|| io::Error::other("no replica to fail over to"))?;
                blocking(|| r.nodes[replica].promote())?;
                Ok((slot, r.slots[slot], replica))
            }
            #[allow(unreachable_patterns)]
            _ => Err(io::Error::other("failover needs redis with a replica")),
        }
    }

    /// The value of string key `key` on member `i` (`redis`): read by the failover
    /// before the switch.
    pub(super) fn get(&self, i: usize, key: &str) -> io::Result<Option<String>> {
        match self {
            #[cfg(feature = "redis")]
            Servers::Redis(r) => blocking(|| r.nodes[i].get(key)),
            #[allow(unreachable_patterns)]
            _ => {
                let _ = (i, key);
                Err(io::Error::other("get needs redis"))
            }
        }
    }

    /// `127.0.0.1:PORT` of member `i`.
    pub(super) fn address(&self, i: usize) -> Option<String> {
        match self {
            #[cfg(feature = "redis")]
            Servers::Redis(r) => r.nodes.get(i).map(RedisServer::address),
            #[allow(unreachable_patterns)]
            _ => self.endpoints().get(i).cloned(),
        }
    }

    /// Failover, last step (after the clients of endpoint `slot` were switched to
    /// `new_master`): kills the old master and starts it again, empty, as the new
    /// master's replica.
    pub(super) fn demote_old_master(
        &mut self,
        slot: usize,
        old: usize,
        new_master: usize,
    ) -> io::Result<()> {
        match self {
            #[cfg(feature = "redis")]
            Servers::Redis(r) => {
                r.slots[slot] = new_master;
                r.replica = Some((slot, old));
                let address = r.nodes[new_master].address();
                blocking(|| r.nodes[old].restart_as_replica_of(&address))
            }
            #[allow(unreachable_patterns)]
            _ => {
                let _ = (slot, old, new_master);
                Err(io::Error::other("failover needs redis with a replica"))
            }
        }
    }

    /// Operator fault: revoke the owner's lease (etcd). Returns the revoked token.
    pub(super) async fn revoke(
        &self,
        admin: &LockClient,
        name: &str,
    ) -> Result<Option<u64>, String> {
        #[cfg(feature = "etcd")]
        if let Servers::Etcd(c) = self {
            let Some(info) = admin.inspect(name).await.map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            let mut etcd = etcd_client::Client::connect(c.endpoints(), None)
                .await
                .map_err(|e| e.to_string())?;
            let id = i64::try_from(info.lease.get()).map_err(|e| e.to_string())?;
            etcd.lease_revoke(id).await.map_err(|e| e.to_string())?;
            return Ok(Some(info.token.get()));
        }
        let _ = (admin, name);
        Err("revoke needs etcd".into())
    }

    /// Operator fault: delete the owner's key or node. Returns its token.
    pub(super) async fn delete(
        &self,
        admin: &LockClient,
        name: &str,
    ) -> Result<Option<u64>, String> {
        let lock = LockName::new(name).map_err(|e| e.to_string())?;
        match self {
            #[cfg(feature = "etcd")]
            Servers::Etcd(c) => {
                use etcd_client::{GetOptions, SortOrder, SortTarget};
                let backend = admin
                    .backend::<fencelock::etcd::EtcdBackend>()
                    .ok_or("not etcd")?;
                let range = backend.lock_range(&lock);
                let mut etcd = etcd_client::Client::connect(c.endpoints(), None)
                    .await
                    .map_err(|e| e.to_string())?;
                let opts = GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Create, SortOrder::Ascend)
                    .with_limit(1);
                let got = etcd
                    .get(range, Some(opts))
                    .await
                    .map_err(|e| e.to_string())?;
                let Some(kv) = got.kvs().first() else {
                    return Ok(None);
                };
                let token = u64::try_from(kv.create_revision()).map_err(|e| e.to_string())?;
                etcd.delete(kv.key().to_vec(), None)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Some(token))
            }
            #[cfg(feature = "zk")]
            Servers::Zk(_) => {
                let backend = admin
                    .backend::<fencelock::zk::ZkBackend>()
                    .ok_or("not zk")?;
                let token = backend
                    .delete_holder(&lock)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(token.map(|t| t.get()))
            }
            #[cfg(feature = "redis")]
            Servers::Redis(_) => {
                let token = if let Some(b) = admin.backend::<fencelock::redis::RedisBackend>() {
                    b.break_lock(&lock).await
                } else if let Some(b) = admin.backend::<fencelock::redis::RedlockBackend>() {
                    b.break_lock(&lock).await
                } else {
                    return Err("not a redis client".into());
                };
                Ok(token.map_err(|e| e.to_string())?.map(|t| t.get()))
            }
        }
    }

    /// Leak check: keys, leases or nodes left under the run's prefix/chroot.
    pub(super) async fn leaks(&self, admin: &LockClient, root: &str) -> Vec<String> {
        let _ = root;
        match self {
            #[cfg(feature = "etcd")]
            Servers::Etcd(c) => {
                let _ = admin;
                let mut out = Vec::new();
                let mut etcd = match etcd_client::Client::connect(c.endpoints(), None).await {
                    Ok(e) => e,
                    Err(e) => return vec![format!("cannot check leaks: {e}")],
                };
                let prefix = format!("/{root}");
                match etcd
                    .get(
                        prefix.clone(),
                        Some(etcd_client::GetOptions::new().with_prefix()),
                    )
                    .await
                {
                    Ok(r) => out.extend(
                        r.kvs()
                            .iter()
                            .map(|kv| format!("key {}", String::from_utf8_lossy(kv.key()))),
                    ),
                    Err(e) => out.push(format!("cannot list {prefix}: {e}")),
                }
                match etcd.leases().await {
                    Ok(r) => out.extend(r.leases().iter().map(|l| format!("lease {:x}", l.id()))),
                    Err(e) => out.push(format!("cannot list leases: {e}")),
                }
                out
            }
            #[cfg(feature = "zk")]
            Servers::Zk(_) => match admin.backend::<fencelock::zk::ZkBackend>() {
                Some(b) => match b.nodes().await {
                    Ok(nodes) => nodes.into_iter().map(|n| format!("node {n}")).collect(),
                    Err(e) => vec![format!("cannot list nodes: {e}")],
                },
                None => vec!["not a zk client".into()],
            },
            #[cfg(feature = "redis")]
            Servers::Redis(_) => {
                let keys = if let Some(b) = admin.backend::<fencelock::redis::RedisBackend>() {
                    b.stored_keys().await
                } else if let Some(b) = admin.backend::<fencelock::redis::RedlockBackend>() {
                    b.stored_keys().await
                } else {
                    return vec!["not a redis client".into()];
                };
                match keys {
                    Ok(keys) => keys.into_iter().map(|k| format!("key {k}")).collect(),
                    Err(e) => vec![format!("cannot list keys: {e}")],
                }
            }
        }
    }
}
