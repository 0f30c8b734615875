//! The real servers of a run (etcd cluster or ZooKeeper ensemble), behind one face:
//! start, endpoints, leader, kill/pause/restart, operator faults and leak checks.

use fencelock::{LockClient, LockName};
#[cfg(feature = "etcd")]
use fencelock_integration_tests::servers::EtcdCluster;
#[cfg(feature = "zk")]
use fencelock_integration_tests::servers::{ZkEnsemble, ZkOptions};
use std::{io, time::Duration};

/// A running cluster.
pub(super) enum Servers {
    #[cfg(feature = "etcd")]
    Etcd(EtcdCluster),
    #[cfg(feature = "zk")]
    Zk(ZkEnsemble),
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

impl Servers {
    /// Starts `backend` (`etcd`, `etcd3`, `zk`, `zk3`); ZooKeeper with tickTime a
    /// quarter of the TTL so the requested session timeout is within its clamp.
    pub(super) fn start(backend: &str, ttl: Duration) -> io::Result<Servers> {
        let n = if backend.ends_with('3') { 3 } else { 1 };
        let missing = |what: &str| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{what} support is not compiled in"),
            )
        };
        if backend.starts_with("etcd") {
            #[cfg(feature = "etcd")]
            return blocking(|| EtcdCluster::start(n)).map(Servers::Etcd);
            #[cfg(not(feature = "etcd"))]
            return Err(missing("etcd"));
        }
        #[cfg(feature = "zk")]
        {
            let tick = u32::try_from(ttl.as_millis() / 4)
                .unwrap_or(500)
                .clamp(50, 2000);
            let options = ZkOptions {
                tick_time_ms: tick,
                ..ZkOptions::default()
            };
            let _ = &missing;
            blocking(|| ZkEnsemble::start_with(n, options)).map(Servers::Zk)
        }
        #[cfg(not(feature = "zk"))]
        {
            let _ = (ttl, n);
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
        }
    }

    pub(super) fn size(&self) -> usize {
        self.endpoints().len()
    }

    pub(super) fn version(&self) -> String {
        blocking(|| match self {
            #[cfg(feature = "etcd")]
            Servers::Etcd(c) => c.version(),
            #[cfg(feature = "zk")]
            Servers::Zk(z) => z.version(),
        })
    }

    pub(super) fn leader(&self) -> Option<usize> {
        blocking(|| match self {
            #[cfg(feature = "etcd")]
            Servers::Etcd(c) => c.leader(),
            #[cfg(feature = "zk")]
            Servers::Zk(z) => z.leader(),
        })
    }

    pub(super) fn kill(&mut self, i: usize) {
        blocking(|| match self {
            #[cfg(feature = "etcd")]
            Servers::Etcd(c) => c.kill(i),
            #[cfg(feature = "zk")]
            Servers::Zk(z) => z.kill(i),
        })
    }

    pub(super) fn restart(&mut self, i: usize) -> io::Result<()> {
        blocking(|| match self {
            #[cfg(feature = "etcd")]
            Servers::Etcd(c) => c.restart(i),
            #[cfg(feature = "zk")]
            Servers::Zk(z) => z.restart(i),
        })
    }

    pub(super) fn pause(&self, i: usize) {
        match self {
            #[cfg(feature = "etcd")]
            Servers::Etcd(c) => c.pause(i),
            #[cfg(feature = "zk")]
            Servers::Zk(z) => z.pause(i),
        }
    }

    pub(super) fn resume(&self, i: usize) {
        match self {
            #[cfg(feature = "etcd")]
            Servers::Etcd(c) => c.resume(i),
            #[cfg(feature = "zk")]
            Servers::Zk(z) => z.resume(i),
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
        }
    }
}
