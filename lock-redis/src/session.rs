//! The lease: a random id, the entries made on it, and one task renewing them all
//! together every third of the TTL; the release script on one entry, and the
//! deletion of what is left on a lease when it ends.

use crate::conn::{retry_backoff, Conn};
use lock_core::{
    backend::{local_deadline, lock_unpoisoned, Liveness},
    Error, ErrorKind, LeaseId, LossCause, Result,
};
use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, Weak,
    },
    time::Duration,
};
use tokio::{sync::Notify, time::Instant};

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
                let mut c = self.conn.manager();
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

/// The leases a backend granted, by id, held weakly: a registration ends when the
/// last reference to its lease is dropped, and the next registration prunes it.
/// Shared by the single-instance backend and Redlock.
#[derive(Debug)]
pub(crate) struct Registry<T>(Mutex<HashMap<u64, Weak<T>>>);

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry(Mutex::default())
    }
}

impl<T> Registry<T> {
    /// Registers `lease` as `id`, dropping the registrations of dropped leases.
    pub(crate) fn insert(&self, id: u64, lease: &Arc<T>) {
        let mut leases = lock_unpoisoned(&self.0);
        leases.retain(|_, l| l.strong_count() > 0);
        leases.insert(id, Arc::downgrade(lease));
    }

    /// Lease `id`, if it is still referenced.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<T>> {
        lock_unpoisoned(&self.0).get(&id).and_then(Weak::upgrade)
    }

    /// Every lease still referenced.
    pub(crate) fn all(&self) -> Vec<Arc<T>> {
        lock_unpoisoned(&self.0)
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// How many registrations are kept (dropped leases not yet pruned included).
    #[cfg(test)]
    fn len(&self) -> usize {
        lock_unpoisoned(&self.0).len()
    }
}

/// The leases a backend granted, for `close` and the test hooks.
pub(crate) type Leases = Registry<LeaseShared>;

impl Leases {
    /// Every lease here that is still alive.
    pub(crate) fn live(&self) -> Vec<Arc<LeaseShared>> {
        self.all()
            .into_iter()
            .filter(|l| !l.liveness.state().is_lost())
            .collect()
    }
}

/// Grants a lease of `ttl` (its key, with the TTL), registers it in `leases` and
/// starts its renewal.
pub(crate) async fn grant(conn: &Arc<Conn>, leases: &Leases, ttl: Duration) -> Result<RedisLease> {
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
    leases.insert(id, &shared);
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
        let _ = revoke(&shared).await;
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

/// Runs the release script on entry `id` of the lock at `base` (any token if
/// `token` is empty); retried while the server is unavailable. Returns the
/// script's answer and whether it was repeated.
pub(crate) async fn remove(
    lease: &LeaseShared,
    base: &str,
    id: &str,
    token: &str,
) -> Result<(i64, bool)> {
    let conn = &lease.conn;
    let what = || format!("releasing entry {base}e:{id}");
    conn.call_counted(&what, |mut c| {
        let mut inv = conn.scripts.release.prepare_invoke();
        inv.key(format!("{base}q"))
            .key(format!("{base}e:{id}"))
            .arg(base)
            .arg(id)
            .arg(token);
        async move { inv.invoke_async(&mut c).await }
    })
    .await
}

/// Deletes every entry left on `lease` (revoke, or the lease lost locally).
pub(crate) async fn revoke(lease: &LeaseShared) -> Result<()> {
    let entries: Vec<String> = lease.entries_snapshot();
    let mut result = Ok(());
    for key in entries {
        let Some((base, id)) = key.rsplit_once("e:") else {
            continue;
        };
        if let Err(e) = remove(lease, base, id, "").await {
            result = Err(e);
        }
        lease.untrack(&key);
    }
    let conn = &lease.conn;
    let lease_key = lease.key();
    let what = || format!("revoking lease {}", lease.lease_id());
    let deleted: Result<i64> = conn
        .call(&what, |mut c| {
            let cmd = redis::cmd("DEL").arg(&lease_key).clone();
            async move { cmd.query_async(&mut c).await }
        })
        .await;
    result.and(deleted.map(drop))
}

#[cfg(test)]
mod tests {
    use super::Registry;
    use std::sync::Arc;

    #[test]
    fn a_registration_ends_with_its_last_reference() {
        let registry = Registry::<u8>::default();
        let (a, b) = (Arc::new(1), Arc::new(2));
        registry.insert(1, &a);
        registry.insert(2, &b);
        drop(a);
        assert!(registry.get(1).is_none());
        assert_eq!(registry.all().len(), 1);
        let c = Arc::new(3);
        registry.insert(3, &c);
        assert_eq!(
            registry.len(),
            2,
            "the dropped lease's registration is pruned"
        );
        assert_eq!(registry.get(3).as_deref(), Some(&3));
    }
}
