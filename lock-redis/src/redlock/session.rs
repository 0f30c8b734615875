//! The Redlock lease: a random id with a key on every master, and one task renewing
//! it and its entries on all of them every third of the TTL, alive while a majority
//! confirms.

use super::conn::{release_all, Nodes};
use crate::conn::retry_backoff;
use lock_core::{
    backend::{local_deadline, lock_unpoisoned, Liveness},
    Error, ErrorKind, LeaseId, LossCause, Result,
};
use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio::{sync::Notify, time::Instant};

/// What a Redlock lease's renewal task, its locks and the backend share.
pub(super) struct RlLeaseShared {
    pub(super) nodes: Arc<Nodes>,
    pub(super) id: u64,
    pub(super) ttl: Duration,
    pub(super) liveness: Liveness,
    /// entry id → (lock key, liveness).
    pub(super) entries: Mutex<HashMap<String, (String, Liveness)>>,
    pub(super) next_entry: AtomicU64,
    pub(super) stalled: AtomicBool,
    pub(super) stop: Notify,
}

impl fmt::Debug for RlLeaseShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedlockLease")
            .field("id", &LeaseId::new(self.id))
            .finish()
    }
}

impl RlLeaseShared {
    /// The lease's own key, `<prefix>lease:<id hex>`, on every master.
    pub(super) fn key(&self) -> String {
        format!("{}lease:{:016x}", self.nodes.prefix(), self.id)
    }

    /// Deletes every entry and the lease key on every master (best effort).
    pub(super) async fn revoke(&self) {
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

/// A Redlock lease: a random id with a key on every master, renewed on all of them
/// every third of the TTL, alive while a majority confirms.
pub struct RedlockLease {
    pub(super) shared: Arc<RlLeaseShared>,
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

/// The leases a backend granted, for `close` and the test hook.
pub(super) type Leases = crate::session::Registry<RlLeaseShared>;

/// Grants a lease of `ttl` (its key on every master, with the TTL; a majority must
/// answer), registers it in `leases` and starts its renewal.
pub(super) async fn grant(
    nodes: &Arc<Nodes>,
    leases: &Leases,
    ttl: Duration,
) -> Result<RedlockLease> {
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
    leases.insert(id, &shared);
    tokio::spawn(renewal(shared.clone()));
    Ok(RedlockLease { shared })
}
