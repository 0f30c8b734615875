//! The lease: grant, the state its keep-alive task, its locks and the backend share,
//! one keep-alive task per lease, revoke; and the registry of the leases a backend
//! granted. Its `LeaseBackend` impl (which runs the recipe) is in `backend.rs`.

use crate::{
    conn::{retry_backoff, Conn},
    error,
};
use futures::stream::{FuturesUnordered, StreamExt};
use lock_core::backend::{local_deadline, lock_unpoisoned, Liveness};
use lock_core::{Error, ErrorKind, LeaseId, LossCause, Result};
use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    fmt,
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

const GRANTED_KEPT: usize = 1024;

/// The leases one backend (and its clones) granted.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    /// Every lease granted whose state is still referenced, by id.
    live: Mutex<HashMap<i64, Weak<LeaseShared>>>,
    /// The most recent lease ids granted, for leak checks.
    granted: Mutex<VecDeque<LeaseId>>,
}

impl Leases {
    /// Grants a lease of `ttl` rounded up to whole seconds on `conn` and starts its
    /// keep-alive.
    pub(crate) async fn grant(&self, conn: &Arc<Conn>, ttl: Duration) -> Result<EtcdLease> {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let secs = i64::try_from(secs.max(1)).unwrap_or(i64::MAX);
        let (resp, sent_at) = conn
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
            conn: conn.clone(),
            id: resp.id(),
            ttl: granted,
            liveness: Liveness::for_lease(local_deadline(sent_at, granted), granted),
            stalled: AtomicBool::new(false),
            poke: Notify::new(),
            revoked: AtomicBool::new(false),
            slots: Mutex::default(),
        });
        {
            let mut leases = lock_unpoisoned(&self.live);
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

    /// Every lease this backend granted that is still alive here.
    pub(crate) fn live_leases(&self) -> Vec<Arc<LeaseShared>> {
        let leases = lock_unpoisoned(&self.live);
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
    /// Key suffixes in use per lock range (see `Slot` in `slot.rs`).
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
    pub(crate) shared: Arc<LeaseShared>,
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
