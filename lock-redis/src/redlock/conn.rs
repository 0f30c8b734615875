//! The masters: one [`Conn`] each, operations run on all (or some) of them at once
//! with a per-node bound, and the majority that decides.

use super::{config::RedlockConfig, scripts::Scripts};
use crate::{config::RedisConfig, conn::Conn, error};
use futures::future::join_all;
use lock_core::{Error, ErrorKind, Result};
use std::{fmt, sync::Arc, time::Duration};

/// The masters: one connection each, and the scripts.
pub(super) struct Nodes {
    pub(super) config: RedlockConfig,
    pub(super) conns: Vec<Arc<Conn>>,
    pub(super) scripts: Scripts,
}

impl fmt::Debug for Nodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addrs: Vec<&str> = self
            .config
            .nodes()
            .iter()
            .map(RedisConfig::address)
            .collect();
        f.debug_struct("Redlock").field("masters", &addrs).finish()
    }
}

impl Nodes {
    /// Connects to every master at once (see `RedlockBackend::connect`).
    pub(super) async fn connect(config: RedlockConfig) -> Result<Nodes> {
        config.validate()?;
        let conns = join_all(config.nodes().iter().cloned().map(Conn::connect)).await;
        let conns = conns
            .into_iter()
            .map(|c| c.map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        Ok(Nodes {
            config,
            conns,
            scripts: Scripts::new(),
        })
    }

    pub(super) fn majority(&self) -> usize {
        self.config.nodes().len() / 2 + 1
    }

    pub(super) fn prefix(&self) -> &str {
        self.config.first().prefix()
    }

    /// The per-node bound: a dead node must not eat the validity window.
    pub(super) fn node_timeout(&self, ttl: Duration) -> Duration {
        self.config
            .first()
            .request_timeout()
            .min(ttl / 10)
            .max(Duration::from_millis(50))
    }

    /// Runs `op` on every node at once, each bounded by `limit`.
    pub(super) async fn all<T, F, Fut>(&self, limit: Duration, op: F) -> Vec<Result<T>>
    where
        F: Fn(usize, redis::aio::ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.on(0..self.conns.len(), limit, op).await
    }

    /// Runs `op` on the nodes `which` at once, each bounded by `limit`.
    pub(super) async fn on<T, F, Fut>(
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
                    Ok(Err(e)) => Err(error::map(e, format!("redis master {address}"))),
                    Err(_) => Err(error::timed_out(format!("redis master {address}"), limit)),
                }
            }
        }))
        .await
    }

    pub(super) fn unavailable(&self, doing: impl fmt::Display, errors: &[Error]) -> Error {
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

/// Runs the release script for entry `id` of lock key `key` on every master (best
/// effort); returns on how many it deleted the entry.
pub(super) async fn release_all(nodes: &Nodes, key: &str, id: &str) -> usize {
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
