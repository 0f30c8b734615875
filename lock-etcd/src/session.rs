//! The connection (bounded requests with retries) and the lease: grant, one
//! keep-alive task per lease, revoke.

use crate::{error, lock, members::Members, watch::WatchMux, EtcdConfig, EtcdHeldLock};
use async_trait::async_trait;
use etcd_client::{Client, GetOptions};
use futures::stream::{FuturesUnordered, StreamExt};
use lock_core::backend::{local_deadline, lock_unpoisoned, Liveness};
use lock_core::{
    backend::{Backoff, Claim, HeldLock, LeaseBackend, WaitMode},
    AcquireOptions, Error, ErrorKind, LeaseId, LockName, LossCause, Result,
};
use std::{
    any::Any,
    collections::{BTreeSet, HashMap, VecDeque},
    fmt,
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
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

/// One connection to an etcd cluster, shared by the backend, its leases and locks.
pub(crate) struct Conn {
    /// One client per member: unary requests and keep-alives (see [`Members`]).
    pub(crate) members: Arc<Members>,
    pub(crate) config: EtcdConfig,
    pub(crate) watches: WatchMux,
    pub(crate) leases: Mutex<HashMap<i64, Weak<LeaseShared>>>,
    /// The most recent lease ids granted, for leak checks.
    pub(crate) granted: Mutex<VecDeque<LeaseId>>,
    /// Waiters woken to read the queue again ([`Backend::waiter_wakeups`](lock_core::backend::Backend::waiter_wakeups)).
    pub(crate) wakeups: AtomicU64,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("endpoints", &self.config.endpoints())
            .field("prefix", &self.config.prefix())
            .finish()
    }
}

/// The jitter added to every retry delay after the first stays below this.
const BACKOFF_JITTER: Duration = Duration::from_millis(16);

/// The retry backoff of requests and keep-alives: 20 ms, then doubling to 500 ms,
/// plus jitter.
pub(crate) fn retry_backoff() -> Backoff {
    Backoff::new(BACKOFF_START, BACKOFF_MAX).with_jitter(BACKOFF_JITTER)
}

/// The same doubling started from zero: the first delay is the jitter alone.
pub(crate) fn backoff_from_zero() -> Backoff {
    let mut backoff = Backoff::new(Duration::ZERO, BACKOFF_MAX).with_jitter(BACKOFF_JITTER);
    backoff.next_delay(); // skip the zero delay
    backoff
}

impl Conn {
    /// Runs `op` until it succeeds, retrying transient failures (`Unavailable`, and
    /// timeouts of single attempts) with backoff until `deadline` (default: now +
    /// request timeout). Each attempt goes to the preferred member and gets at most
    /// [`Members::attempt_limit`]; a member that times out or is unavailable is left
    /// for the next one, so a stalled member costs one short attempt, and the whole
    /// call never outlives its deadline. Only for operations that are safe to repeat.
    /// Also returns whether more than one attempt was made (an earlier one may have
    /// taken effect).
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
        // An attempt stuck at a stalled member or a dying leader must not use up the
        // whole budget: later attempts reach another member (every operation here is
        // safe to repeat).
        let attempt_limit = self.members.attempt_limit(limit);
        let mut backoff = retry_backoff();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let budget = deadline
                .saturating_duration_since(Instant::now())
                .min(attempt_limit);
            let member = self.members.preferred();
            let client = self.members.client(member);
            let err = match tokio::time::timeout(budget, op(client)).await {
                Ok(Ok(value)) => return Ok((value, attempts > 1)),
                Ok(Err(e)) => error::map(e, what()),
                Err(_) => error::timed_out(what(), budget),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout) {
                self.members.skip(member);
            }
            if !err.is_retryable() || left <= backoff.current() {
                return Err(err);
            }
            tracing::debug!(error = %err, attempt = attempts, endpoint = self.members.endpoint(member), "retrying etcd request");
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Reads the prefix's key count from every member at once, until `deadline`:
    /// the first member to answer becomes the preferred one, so a hung member early
    /// in the URL costs nothing. Fails with the most telling error when none answers.
    /// With no prefix it reads the one key `/` instead (counting the whole key space
    /// walks all of it).
    pub(crate) async fn probe_members(&self, deadline: Instant) -> Result<()> {
        let whole = self.config.prefix().is_empty();
        let key = format!("{}/", self.config.prefix());
        let mut probes: FuturesUnordered<_> = (0..self.members.len())
            .map(|member| {
                let mut client = self.members.client(member);
                let key = key.clone();
                async move {
                    let mut options = GetOptions::new().with_count_only();
                    if !whole {
                        options = options.with_prefix();
                    }
                    let result =
                        tokio::time::timeout_at(deadline, client.get(key, Some(options))).await;
                    (member, result)
                }
            })
            .collect();
        let mut worst: Option<Error> = None;
        while let Some((member, result)) = probes.next().await {
            let what = || format!("reading {key:?} at {}", self.members.endpoint(member));
            let err = match result {
                Ok(Ok(_)) => {
                    self.members.prefer(member);
                    return Ok(());
                }
                Ok(Err(e)) => error::map(e, what()),
                Err(_) => error::timed_out(what(), self.config.connect_timeout()),
            };
            // A definite answer (bad credentials, ...) tells more than a timeout.
            if worst.as_ref().is_none_or(|w| w.is_retryable()) {
                worst = Some(err);
            }
        }
        Err(worst.unwrap_or_else(|| Error::new(ErrorKind::Unavailable, "no etcd endpoint")))
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
            liveness: Liveness::for_lease(local_deadline(sent_at, granted), granted),
            stalled: AtomicBool::new(false),
            poke: Notify::new(),
            revoked: AtomicBool::new(false),
            slots: Mutex::default(),
        });
        {
            let mut leases = lock_unpoisoned(&self.leases);
            leases.retain(|_, l| l.strong_count() > 0);
            leases.insert(shared.id, Arc::downgrade(&shared));
        }
        {
            let mut granted = lock_unpoisoned(&self.granted);
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
        let granted = lock_unpoisoned(&self.granted);
        granted.iter().copied().collect()
    }

    /// Every lease this connection granted that is still alive here.
    pub(crate) fn live_leases(&self) -> Vec<Arc<LeaseShared>> {
        let leases = lock_unpoisoned(&self.leases);
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
        self.liveness.lose_with(LossCause::LeaseRevoked);
        match result {
            Err(e) if e.kind() == ErrorKind::LeaseLost => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// An etcd lease kept alive by one background task: refreshed every sixth of the
/// granted TTL; its local deadline is the send time of the last acknowledged
/// keep-alive plus the granted TTL (minus a tenth). A reply with TTL 0 or a
/// lease-not-found makes it `Lost` at once.
///
/// # One slow, stalled or cut-off member
///
/// Keep-alives go to one member at a time. One that is not answered within 250 ms
/// (or twice the usual round trip, at most a sixth of the TTL) is sent again to the
/// next member of the URL while the first stays in flight, and the member that
/// answers becomes the one requests go to. So in a healthy cluster (a quorum
/// reachable) one stalled, hung, partitioned or slow member costs a lease one hedge
/// delay, not its lock, and the lease stays `Held`: it turns `Suspect` only in the
/// last tenth of the TTL before its deadline without a confirmed renewal (the rule on
/// [`lock_core::LockState`]).
///
/// # Crash takeover
///
/// A holder that dies (SIGKILL, power loss) stops renewing; etcd revokes the lease
/// once the granted TTL has run from the last keep-alive it received (its lessor looks
/// for expired leases every 500 ms), deleting the lock key, and the next waiter's
/// watch fires. Keep-alives go every sixth of the TTL, so from the crash the takeover
/// takes between 5/6 × TTL and TTL + 0.5 s. Measured by
/// `cargo bench -p lock-etcd --bench etcd_cycle` (TTL 5 s, 10 kills at random moments
/// 0.5–2.5 s after the grant, two runs): medians 4.92 and 4.86 s from the kill
/// (4.34–5.29 s overall), less than 20 ms of it after the key's deletion; a raw lease
/// renewed every third of its TTL (as clientv3 does) and killed at the same moment:
/// 4.74 and 4.69 s (3.68–5.28 s), sooner on average only because its last renewal was
/// older. For a faster takeover lower the TTL.
///
/// # Non-guarantees
///
/// - A stalled or cut-off **leader** costs an election first: the cluster cannot
///   renew any lease until a new leader is in (etcd's election timeout, 1 s by
///   default, plus a few heartbeats). A lease survives it when its TTL leaves room:
///   roughly TTL ≥ 5 s with the default election timeout. etcd 3.4 runs without
///   pre-vote by default, so a follower rejoining after a partition can force an
///   extra election; run etcd with `--pre-vote` (the default from 3.5).
/// - A leader paused longer than the TTL may, when it resumes, revoke leases the
///   new leader kept alive (etcd issue 15247): a server-side defect no client can
///   prevent. The lock's fencing token still protects the resource.
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
        claim: Claim,
        mode: WaitMode,
        options: &AcquireOptions,
    ) -> Result<Option<Box<dyn HeldLock>>> {
        // Every claim the capabilities deny is refused here, before anything is
        // enqueued.
        lock_core::backend::check_claim(&crate::CAPABILITIES, "etcd", claim, name)?;
        let held = lock::acquire(&self.shared, name, claim, mode, options).await?;
        Ok(held.map(|h: EtcdHeldLock| Box::new(h) as Box<dyn HeldLock>))
    }

    async fn revoke(&self) -> Result<()> {
        self.shared.revoke().await
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Keep-alives per granted TTL: a renewal confirmed within `TTL/6 + round trip`
/// keeps a lease far from its `Suspect` window (`0.8 TTL`) even over a round trip of
/// 40% of the TTL, and a lost or late one costs a sixth of the TTL, not a third.
const KEEP_ALIVES_PER_TTL: u32 = 6;

/// The most keep-alive exchanges in flight at once.
const MAX_IN_FLIGHT: usize = 4;

/// A keep-alive unanswered this long (or twice the member's usual round trip, if
/// longer) is sent again to the next member, the first staying in flight.
const HEDGE_AFTER: Duration = Duration::from_millis(250);

/// One keep-alive exchange on its own stream to one member: send, await the first
/// reply. Returns the member, the send time (what the local deadline counts from) and
/// the outcome.
async fn exchange(shared: Arc<LeaseShared>, member: usize) -> (usize, Instant, Result<()>) {
    let sent_at = Instant::now();
    // Not bounded by the deadline as it is now: another reply may move it meanwhile,
    // and this one, though late, may move it further. The task ends (and drops this)
    // once the lease is lost.
    let limit = shared.ttl;
    let what = || {
        format!(
            "keep-alive of lease {} at {}",
            shared.lease_id(),
            shared.conn.members.endpoint(member)
        )
    };
    let mut leases = shared.conn.members.client(member).lease_client();
    let result = match tokio::time::timeout(limit, leases.keep_alive(shared.id)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(error::map(e, what())),
        Err(_) => Err(error::timed_out(what(), limit)),
    };
    (member, sent_at, result)
}

/// The keep-alive task of one lease: an exchange every sixth of the granted TTL, to
/// the preferred member. A reply missing after the hedge delay ([`HEDGE_AFTER`], or
/// twice the usual round trip, at most a sixth of the TTL) moves the preferred member
/// on and starts another exchange there without giving up the first: a stalled member
/// costs one hedge delay, and during a leader election the first member to answer
/// wins. The first reply renews the local deadline from its own send time. Neither a
/// late reply nor a failed exchange makes the lease `Suspect` by itself: that happens
/// when its deadline is at risk (the rule on [`lock_core::LockState`]). TTL 0 or
/// lease-not-found: `Lost`. Ends when the lease is lost or revoked, or its
/// [`EtcdLease`] is dropped.
async fn keep_alive(
    shared: Arc<LeaseShared>,
    granted_at: Instant,
    mut stop: oneshot::Receiver<()>,
) {
    let live = &shared.liveness;
    let members = &shared.conn.members;
    let mut lost = live.watch();
    let period = shared.ttl / KEEP_ALIVES_PER_TTL;
    let mut rtt = Duration::ZERO;
    let hedge = |rtt: Duration| (rtt * 2).max(HEDGE_AFTER).min(period);
    let mut in_flight = FuturesUnordered::new();
    // The member the newest exchange went to, while it is unanswered.
    let mut waiting_on: Option<usize> = None;
    let mut last_ok = granted_at;
    let mut next = granted_at + period;
    let mut backoff = retry_backoff();
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = lost.lost() => break,
            _ = tokio::time::sleep_until(next) => {
                let now = Instant::now();
                if shared.stalled.load(Ordering::Relaxed) {
                    live.keep_alive_failed();
                    live.suspect();
                    next = now + period;
                    continue;
                }
                let member = match waiting_on {
                    // The last exchange is late: leave its member for the next one.
                    Some(late) => members.skip(late),
                    None => members.preferred(),
                };
                if in_flight.len() < MAX_IN_FLIGHT {
                    in_flight.push(exchange(shared.clone(), member));
                    waiting_on = Some(member);
                }
                next = now + hedge(rtt);
            }
            _ = shared.poke.notified() => {
                if in_flight.is_empty() && !shared.stalled.load(Ordering::Relaxed) {
                    let member = members.preferred();
                    in_flight.push(exchange(shared.clone(), member));
                    waiting_on = Some(member);
                    next = Instant::now() + hedge(rtt);
                }
            }
            Some((member, sent_at, result)) = in_flight.next(), if !in_flight.is_empty() => match result {
                Ok(()) => {
                    live.confirm(sent_at, shared.ttl);
                    backoff.reset();
                    let took = sent_at.elapsed();
                    rtt = if rtt.is_zero() { took } else { (rtt * 3 + took) / 4 };
                    if sent_at > last_ok {
                        // The freshest answer picks the member; a late answer to an
                        // older exchange (from the member we moved away from) does not.
                        members.prefer(member);
                        last_ok = sent_at;
                        next = sent_at + period;
                        waiting_on = None;
                    }
                }
                Err(e) if e.kind() == ErrorKind::LeaseLost => {
                    tracing::debug!(lease = %shared.lease_id(), "etcd reports the lease gone");
                    live.keep_alive_failed();
                    live.lose_with(LossCause::LeaseExpired);
                    break;
                }
                Err(e) => {
                    tracing::debug!(lease = %shared.lease_id(), error = %e, "keep-alive failed");
                    live.keep_alive_failed();
                    members.skip(member);
                    if waiting_on == Some(member) {
                        waiting_on = None;
                    }
                    next = next.min(Instant::now() + backoff.next_delay());
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
