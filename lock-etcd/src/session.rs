//! The connection (bounded requests with retries) and the lease: grant, one
//! keep-alive task per lease, revoke.

use crate::{error, lock, watch::WatchMux, EtcdConfig, EtcdHeldLock};
use async_trait::async_trait;
use etcd_client::Client;
use futures::stream::{FuturesUnordered, StreamExt};
use lock_core::{
    backend::{HeldLock, LeaseBackend, WaitMode},
    local_deadline, AcquireOptions, Error, ErrorKind, LeaseId, Liveness, LockName, Result,
};
use std::{
    any::Any,
    collections::{BTreeSet, HashMap, VecDeque},
    fmt,
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, Weak,
    },
    time::Duration,
};
use tokio::{
    sync::{oneshot, Notify},
    time::Instant,
};

const BACKOFF_START: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
const GRANTED_KEPT: usize = 1024;
const MIN_ATTEMPT: Duration = Duration::from_secs(1);

/// One connection to an etcd cluster, shared by the backend, its leases and locks.
pub(crate) struct Conn {
    pub(crate) client: Client,
    pub(crate) config: EtcdConfig,
    pub(crate) watches: WatchMux,
    pub(crate) leases: Mutex<HashMap<i64, Weak<LeaseShared>>>,
    /// The most recent lease ids granted, for leak checks.
    pub(crate) granted: Mutex<VecDeque<LeaseId>>,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("endpoints", &self.config.endpoints())
            .field("prefix", &self.config.prefix())
            .finish()
    }
}

/// Doubling backoff with jitter, capped.
pub(crate) fn next_backoff(current: Duration) -> Duration {
    let jitter = Duration::from_millis(u64::from(uuid::Uuid::new_v4().as_u128() as u8) % 16);
    (current * 2).min(BACKOFF_MAX) + jitter
}

impl Conn {
    /// Runs `op` until it succeeds, retrying transient failures (`Unavailable`, and
    /// timeouts of single attempts) with backoff until `deadline` (default: now +
    /// request timeout). Each attempt gets at most a third of the request timeout
    /// (at least 1 s), so the whole call never outlives its deadline. Only for operations that are safe to
    /// repeat. Also returns whether more than one attempt was made (an earlier one
    /// may have taken effect).
    pub(crate) async fn call_counted<T, F, Fut>(
        &self,
        what: &(dyn Fn() -> String + Sync),
        deadline: Option<Instant>,
        mut op: F,
    ) -> Result<(T, bool)>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let limit = self.config.request_timeout();
        let deadline = deadline.unwrap_or_else(|| Instant::now() + limit);
        // An attempt stuck at a dying leader must not use up the whole budget: later
        // attempts reach the new leader (every operation here is safe to repeat).
        let attempt_limit = (limit / 3).max(MIN_ATTEMPT).min(limit);
        let mut backoff = BACKOFF_START;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let budget = deadline
                .saturating_duration_since(Instant::now())
                .min(attempt_limit);
            let err = match tokio::time::timeout(budget, op(self.client.clone())).await {
                Ok(Ok(value)) => return Ok((value, attempts > 1)),
                Ok(Err(e)) => error::map(e, what()),
                Err(_) => error::timed_out(what(), budget),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if !err.is_retryable() || left <= backoff {
                return Err(err);
            }
            tracing::debug!(error = %err, attempt = attempts, "retrying etcd request");
            tokio::time::sleep(backoff).await;
            backoff = next_backoff(backoff);
        }
    }

    /// [`call_counted`](Self::call_counted) without the count.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        what: &(dyn Fn() -> String + Sync),
        op: F,
    ) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.call_counted(what, None, op).await.map(|(v, _)| v)
    }

    /// Grants a lease of `ttl` rounded up to whole seconds and starts its keep-alive.
    pub(crate) async fn grant(self: &Arc<Self>, ttl: Duration) -> Result<EtcdLease> {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let secs = i64::try_from(secs.max(1)).unwrap_or(i64::MAX);
        let (resp, sent_at) = self
            .call(
                &|| format!("granting a lease of {secs}s"),
                |mut c| async move {
                    let sent_at = Instant::now();
                    c.lease_grant(secs, None).await.map(|r| (r, sent_at))
                },
            )
            .await?;
        if resp.ttl() <= 0 || !resp.error().is_empty() {
            return Err(Error::new(
                ErrorKind::Backend,
                format!("etcd refused a lease of {secs}s: {}", resp.error()),
            ));
        }
        let granted = Duration::from_secs(resp.ttl().unsigned_abs());
        let shared = Arc::new(LeaseShared {
            conn: self.clone(),
            id: resp.id(),
            ttl: granted,
            liveness: Liveness::new(Some(local_deadline(sent_at, granted))),
            stalled: AtomicBool::new(false),
            poke: Notify::new(),
            revoked: AtomicBool::new(false),
            slots: Mutex::default(),
        });
        {
            let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
            leases.retain(|_, l| l.strong_count() > 0);
            leases.insert(shared.id, Arc::downgrade(&shared));
        }
        {
            let mut granted = self.granted.lock().unwrap_or_else(|e| e.into_inner());
            if granted.len() >= GRANTED_KEPT {
                granted.pop_front();
            }
            granted.push_back(shared.lease_id());
        }
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(keep_alive(shared.clone(), sent_at, stopped));
        tracing::debug!(lease = %LeaseId::new(resp.id().unsigned_abs()), ?granted, "etcd lease granted");
        Ok(EtcdLease {
            shared,
            _stop: stop,
        })
    }

    /// The most recent lease ids granted, live or not.
    pub(crate) fn granted_leases(&self) -> Vec<LeaseId> {
        let granted = self.granted.lock().unwrap_or_else(|e| e.into_inner());
        granted.iter().copied().collect()
    }

    /// Every lease this connection granted that is still alive here.
    pub(crate) fn live_leases(&self) -> Vec<Arc<LeaseShared>> {
        let leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        leases
            .values()
            .filter_map(Weak::upgrade)
            .filter(|l| !l.liveness.state().is_lost())
            .collect()
    }
}

/// What a lease's keep-alive task, its locks and the backend share.
#[derive(Debug)]
pub(crate) struct LeaseShared {
    pub(crate) conn: Arc<Conn>,
    pub(crate) id: i64,
    pub(crate) ttl: Duration,
    pub(crate) liveness: Liveness,
    pub(crate) stalled: AtomicBool,
    /// Wakes the keep-alive task for an immediate round (a lock key vanished: is the
    /// lease still there?).
    pub(crate) poke: Notify,
    pub(crate) revoked: AtomicBool,
    /// Key suffixes in use per lock range (see [`Slot`](crate::slot::Slot)).
    pub(crate) slots: Mutex<HashMap<String, BTreeSet<u32>>>,
}

impl LeaseShared {
    /// Asks the keep-alive task to confirm the lease now.
    pub(crate) fn poke(&self) {
        self.poke.notify_one();
    }

    pub(crate) fn lease_id(&self) -> LeaseId {
        LeaseId::new(self.id.unsigned_abs())
    }

    /// Revokes on the server; an already gone lease counts as revoked.
    pub(crate) async fn revoke(&self) -> Result<()> {
        self.revoked.store(true, Ordering::Relaxed);
        let id = self.id;
        let result = self
            .conn
            .call(
                &|| format!("revoking lease {}", self.lease_id()),
                |mut c| async move { c.lease_revoke(id).await },
            )
            .await;
        self.liveness.lose();
        match result {
            Err(e) if e.kind() == ErrorKind::LeaseLost => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// An etcd lease kept alive by one background task: refreshed every third of the
/// granted TTL; its local deadline is the send time of the last acknowledged
/// keep-alive plus the granted TTL (minus a tenth). A reply with TTL 0 or a
/// lease-not-found makes it `Lost` at once; a missed reply makes it `Suspect` while
/// the task reconnects the keep-alive stream until the deadline.
pub struct EtcdLease {
    shared: Arc<LeaseShared>,
    _stop: oneshot::Sender<()>,
}

impl fmt::Debug for EtcdLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdLease")
            .field("id", &self.shared.lease_id())
            .field("ttl", &self.shared.ttl)
            .field("state", &self.shared.liveness.state())
            .finish()
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
        mode: WaitMode,
        options: &AcquireOptions,
    ) -> Result<Option<Box<dyn HeldLock>>> {
        let held = lock::acquire(&self.shared, name, mode, options).await?;
        Ok(held.map(|h: EtcdHeldLock| Box::new(h) as Box<dyn HeldLock>))
    }

    async fn revoke(&self) -> Result<()> {
        self.shared.revoke().await
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The most keep-alive exchanges in flight at once.
const MAX_IN_FLIGHT: usize = 3;

/// One keep-alive exchange on its own stream: send, await the first reply. Returns
/// the send time, which is what the local deadline counts from.
async fn exchange(shared: Arc<LeaseShared>) -> (Instant, Result<()>) {
    let sent_at = Instant::now();
    let limit = shared
        .liveness
        .deadline()
        .map_or(shared.conn.config.request_timeout(), |d| {
            d.saturating_duration_since(sent_at)
        });
    let what = || format!("keep-alive of lease {}", shared.lease_id());
    let mut leases = shared.conn.client.lease_client();
    let result = match tokio::time::timeout(limit, leases.keep_alive(shared.id)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(error::map(e, what())),
        Err(_) => Err(error::timed_out(what(), limit)),
    };
    (sent_at, result)
}

/// The keep-alive task of one lease: an exchange every third of the granted TTL.
/// A reply missing after `reply_timeout` makes the lease `Suspect` and starts another
/// exchange beside it (possibly through another member) without giving up the first:
/// during a leader election a follower answers once the new leader is in. The first
/// reply renews the local deadline from its own send time. TTL 0 or lease-not-found:
/// `Lost`. Ends when the lease is lost or revoked, or its [`EtcdLease`] is dropped.
async fn keep_alive(
    shared: Arc<LeaseShared>,
    granted_at: Instant,
    mut stop: oneshot::Receiver<()>,
) {
    let live = &shared.liveness;
    let mut lost = live.watch();
    let period = shared.ttl / 3;
    let reply_timeout = period.min(shared.conn.config.request_timeout());
    let mut in_flight = FuturesUnordered::new();
    let mut last_ok = granted_at;
    let mut next = granted_at + period;
    let mut backoff = BACKOFF_START;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = lost.lost() => break,
            _ = tokio::time::sleep_until(next) => {
                let now = Instant::now();
                if shared.stalled.load(Ordering::Relaxed) {
                    live.suspect();
                    next = now + period;
                    continue;
                }
                if now >= last_ok + period + reply_timeout {
                    live.suspect();
                }
                if in_flight.len() < MAX_IN_FLIGHT {
                    in_flight.push(exchange(shared.clone()));
                }
                next = now + reply_timeout;
            }
            _ = shared.poke.notified() => {
                if in_flight.is_empty() && !shared.stalled.load(Ordering::Relaxed) {
                    in_flight.push(exchange(shared.clone()));
                    next = Instant::now() + reply_timeout;
                }
            }
            Some((sent_at, result)) = in_flight.next(), if !in_flight.is_empty() => match result {
                Ok(()) => {
                    live.renew(local_deadline(sent_at, shared.ttl));
                    backoff = BACKOFF_START;
                    if sent_at > last_ok {
                        last_ok = sent_at;
                        next = sent_at + period;
                    }
                }
                Err(e) if e.kind() == ErrorKind::LeaseLost => {
                    tracing::debug!(lease = %shared.lease_id(), "etcd reports the lease gone");
                    live.lose();
                    break;
                }
                Err(e) => {
                    tracing::debug!(lease = %shared.lease_id(), error = %e, "keep-alive failed");
                    live.suspect();
                    next = next.min(Instant::now() + backoff);
                    backoff = next_backoff(backoff);
                }
            },
        }
    }
    live.lose();
    // Lost locally (deadline, revoke, TTL 0): make sure others need not wait for
    // the server to expire it, unless a test stalls this lease on purpose.
    if !shared.stalled.load(Ordering::Relaxed) && !shared.revoked.load(Ordering::Relaxed) {
        let _ = shared.revoke().await;
    }
}
