//! Observability: the pull-based [`LockStats`] snapshot and, with the cargo feature
//! `metrics`, the series recorded through the [`metrics`](https://docs.rs/metrics)
//! facade.
//!
//! Both are recorded once, here in `lock-core`, by [`LockClient`](crate::LockClient),
//! [`Lock`](crate::Lock), [`LockGuard`](crate::LockGuard), [`Lease`](crate::Lease) and
//! [`Fence`](crate::Fence), so every backend reports them the same way.
//!
//! # The stats snapshot
//!
//! [`LockClient::stats`](crate::LockClient::stats) works without any feature: a handful
//! of atomic counters shared by the client's clones (and every lease, lock, guard and
//! [`LockClient::fence`](crate::LockClient::fence) made from it).
//!
//! # Metrics (feature `metrics`)
//!
//! The library never installs a recorder: with none installed the calls are no-ops.
//! A client registers its series once, when it is made ([`LockClient::new`](crate::LockClient::new)),
//! with the recorder current then (the global one, or one set by
//! `metrics::with_local_recorder`), and afterwards updates the handles it got: so
//! **install the recorder before making clients**, and a call costs the recorder's
//! own update, no key building or lookup.
//! Every series carries the label `backend` (`"memory"`, `"etcd"`, `"zk"`, `"redis"`,
//! `"redlock"`, from
//! [`Backend::scheme`](crate::backend::Backend::scheme)); none carries a lock name, so
//! the number of series does not grow with the number of locks.
//!
//! | series | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `fencelock_acquire_wait_seconds` | histogram | `backend`, `outcome` | time from the call of [`Lock::acquire`](crate::Lock::acquire), [`try_acquire`](crate::Lock::try_acquire) or [`acquire_timeout`](crate::Lock::acquire_timeout) to its end; `outcome` is `granted`, `not_granted` (`try_acquire` found it held), `timeout`, `cancelled` (the future was dropped), `lease_lost` or `error` |
//! | `fencelock_hold_seconds` | histogram | `backend`, `cause` | time from a grant to its end; `cause` is `released` ([`LockGuard::release`](crate::LockGuard::release)), `dropped` (guard dropped) or `lost` (the guard turned `Lost` first) |
//! | `fencelock_acquires_in_flight` | gauge | `backend` | acquire calls running now |
//! | `fencelock_locks_held` | gauge | `backend` | grants neither released, dropped nor lost |
//! | `fencelock_state_transitions_total` | counter | `backend`, `scope`, `from`, `to` | state changes of a lease (`scope="lease"`) or of one grant's own entry (`scope="lock"`); `from`/`to` are `held`, `suspect`, `lost` |
//! | `fencelock_losses_total` | counter | `backend`, `cause` | grants lost, by [`LossCause`] ([`as_str`](LossCause::as_str)): `lease_expired`, `lease_revoked`, `entry_deleted`, `session_expired`, `disconnected`, `deadline_passed`, `unknown`; each loss is also one `warn` event (fields `lock`, `token`, `lease`, `backend`, `cause`) |
//! | `fencelock_keep_alive_seconds` | histogram | `backend` | round trip of each confirmed keep-alive (etcd lease keep-alive, ZooKeeper heartbeat, memory renewal), from its send to its answer |
//! | `fencelock_keep_alive_margin_seconds` | histogram | `backend` | at each confirmed keep-alive, the time that was left before the lease's local deadline (set by the last keep-alive confirmed before it, counted from that one's *send*): near 0 means the lease almost turned `Lost` |
//! | `fencelock_keep_alive_failures_total` | counter | `backend` | keep-alives that failed (an error, the server reporting the lease gone) or were not sent (a stalled lease) |
//! | `fencelock_tokens_issued_total` | counter | `backend` | grants (each carries a new fencing token) |
//! | `fencelock_fence_rejections_total` | counter | `backend` | stale tokens rejected by a [`Fence`](crate::Fence); `backend="none"` for a fence from [`Fence::new`](crate::Fence::new) |
//!
//! # Guarantees
//!
//! - Each acquire call ends in exactly one `outcome` (one histogram sample, one count in
//!   [`LockStats`]), including a call whose future is dropped (`cancelled`).
//!   [`acquire_timeout`](crate::Lock::acquire_timeout) counts once, as `timeout` when
//!   the time runs out.
//! - Each grant ends exactly once: one `fencelock_hold_seconds` sample, and one of
//!   [`LockStats::releases`] or [`LockStats::losses`].
//! - Each lost grant counts once in `fencelock_losses_total` and [`LockStats::losses_by_cause`],
//!   with the cause its backend (or the deadline) gave first, and logs exactly one
//!   `warn` event.
//! - A deliberate end is not a transition: releasing a guard, or closing or dropping a
//!   lease, counts no `…→lost` transition for it (the guards of a closed lease do
//!   count as lost).
//!
//! # Non-guarantees
//!
//! - A state change is recorded when the client *observes* it: a backend update, a
//!   keep-alive tick, a read of the state, or a watcher waking at a deadline. A lease
//!   past its local deadline that nothing looks at is counted when next looked at, and
//!   a lost grant's hold time ends then.
//! - A [`LockStats`] snapshot reads each counter atomically but not all of them at one
//!   instant.
//! - Keep-alive series are recorded by [`Liveness::confirm`](crate::backend::Liveness::confirm)
//!   and [`Liveness::keep_alive_failed`](crate::backend::Liveness::keep_alive_failed), which
//!   every backend here calls from its keep-alive; a third-party backend that only
//!   calls [`Liveness::renew`](crate::backend::Liveness::renew) reports none.
//! - A hedged etcd keep-alive (the same renewal sent to a second member) counts each
//!   answer; a failure is one failed exchange, not a lost lease.
//! - Series are bound to the recorder current when the client was made; a recorder
//!   installed later sees nothing from older clients.

use crate::{Error, ErrorKind, FencingToken, LeaseId, LockName, LockState, LossCause, Result};
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::time::Instant;

/// A snapshot of one [`LockClient`](crate::LockClient)'s counters, from
/// [`LockClient::stats`](crate::LockClient::stats). Counts are since the client was
/// made, over all its clones.
///
/// # Examples
///
/// ```
/// use lock_core::LockClient;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let client = LockClient::new(lock_memory::MemoryBackend::new());
/// let guard = client.acquire("daily-report").await?;
/// assert!(client.try_acquire("daily-report").await?.is_none());
/// let stats = client.stats();
/// assert_eq!((stats.acquires_granted, stats.acquires_not_granted), (1, 1));
/// assert_eq!((stats.locks_held, stats.tokens_issued), (1, 1));
/// guard.release().await?;
/// assert_eq!((client.stats().locks_held, client.stats().releases), (0, 1));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LockStats {
    /// Acquire calls that got the lock.
    pub acquires_granted: u64,
    /// `try_acquire` calls that found the lock held (`Ok(None)`).
    pub acquires_not_granted: u64,
    /// `acquire_timeout` calls whose time ran out.
    pub acquires_timed_out: u64,
    /// Acquire calls whose future was dropped before it finished.
    pub acquires_cancelled: u64,
    /// Acquire calls that failed with [`ErrorKind::LeaseLost`].
    pub acquires_lease_lost: u64,
    /// Acquire calls that failed with any other error.
    pub acquires_failed: u64,
    /// Grants that ended by release or by dropping the guard while not `Lost`.
    pub releases: u64,
    /// Grants that turned `Lost` (lease expired or closed, entry deleted, local
    /// deadline passed) before they were released: the sum of
    /// [`losses_by_cause`](Self::losses_by_cause).
    pub losses: u64,
    /// [`losses`](Self::losses) by [`LossCause`].
    pub losses_by_cause: LossCounts,
    /// Grants now neither released, dropped nor lost.
    pub locks_held: u64,
    /// Acquire calls running now.
    pub acquires_in_flight: u64,
    /// Grants ever made, each with a new fencing token.
    pub tokens_issued: u64,
    /// Stale tokens rejected by fences from [`LockClient::fence`](crate::LockClient::fence).
    pub fence_rejections: u64,
    /// Keep-alives confirmed by the server, over all the client's leases.
    pub keep_alives: u64,
    /// Keep-alives that failed or went unanswered (a stalled lease counts one per
    /// missed renewal).
    pub keep_alive_failures: u64,
    /// Waiters woken to re-check their turn, from the backend's diagnostic counter
    /// ([`Backend::waiter_wakeups`](crate::backend::Backend::waiter_wakeups)); `None`
    /// when the backend does not count. Unlike the other fields it is the backend's:
    /// it counts since the backend was made, over every client sharing it (a backend
    /// from `fencelock::connect` belongs to one client). A release on a
    /// [herd-free](crate::Capabilities::herd_free) backend wakes only the waiters it
    /// may grant: about one per grant, summed over the clients of the waiters.
    pub waiter_wakeups: Option<u64>,
}

/// How an acquire call ended (in the order of the series handles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Granted,
    NotGranted,
    Timeout,
    Cancelled,
    LeaseLost,
    Error,
}

impl Outcome {
    #[cfg(feature = "metrics")]
    const ALL: [Outcome; 6] = [
        Outcome::Granted,
        Outcome::NotGranted,
        Outcome::Timeout,
        Outcome::Cancelled,
        Outcome::LeaseLost,
        Outcome::Error,
    ];

    pub(crate) fn of_result<T>(result: &Result<Option<T>>) -> Self {
        match result {
            Ok(Some(_)) => Outcome::Granted,
            Ok(None) => Outcome::NotGranted,
            Err(e) => Self::of_error(e),
        }
    }

    pub(crate) fn of_error(e: &Error) -> Self {
        match e.kind() {
            ErrorKind::Timeout => Outcome::Timeout,
            ErrorKind::LeaseLost => Outcome::LeaseLost,
            _ => Outcome::Error,
        }
    }

    #[cfg(feature = "metrics")]
    fn label(self) -> &'static str {
        match self {
            Outcome::Granted => "granted",
            Outcome::NotGranted => "not_granted",
            Outcome::Timeout => "timeout",
            Outcome::Cancelled => "cancelled",
            Outcome::LeaseLost => "lease_lost",
            Outcome::Error => "error",
        }
    }
}

/// How a grant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Released,
    Dropped,
    Lost(LossCause),
}

/// Which liveness changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Lease,
    Lock,
}

/// The state changes that can happen (`Lost` is final).
#[cfg(feature = "metrics")]
const TRANSITIONS: [(LockState, LockState); 4] = [
    (LockState::Held, LockState::Suspect),
    (LockState::Held, LockState::Lost),
    (LockState::Suspect, LockState::Held),
    (LockState::Suspect, LockState::Lost),
];

/// Per-cause loss counts in a [`LockStats`] snapshot.
///
/// # Examples
///
/// ```
/// use lock_core::{LockClient, LossCause};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let client = LockClient::new(lock_memory::MemoryBackend::new());
/// let lease = client.lease().await?;
/// let guard = lease.lock("daily-report")?.acquire().await?;
/// lease.close().await?;
/// assert_eq!(guard.loss_cause(), Some(LossCause::LeaseRevoked));
/// let losses = client.stats().losses_by_cause;
/// assert_eq!(losses.get(LossCause::LeaseRevoked), 1);
/// assert_eq!(losses.total(), client.stats().losses);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct LossCounts([u64; LossCause::ALL.len()]);

impl std::fmt::Debug for LossCounts {
    /// The non-zero counts by cause name, as a map.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(c, n)| (c.as_str(), n)))
            .finish()
    }
}

impl LossCounts {
    /// Grants lost because of `cause`.
    pub fn get(&self, cause: LossCause) -> u64 {
        self.0[cause.index()]
    }

    /// Grants lost, all causes together.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Every cause with a non-zero count.
    pub fn iter(&self) -> impl Iterator<Item = (LossCause, u64)> + '_ {
        LossCause::ALL
            .iter()
            .map(|c| (*c, self.get(*c)))
            .filter(|(_, n)| *n > 0)
    }
}

/// The series handles of one client, registered once with the recorder current when
/// the client is made (so a call costs one atomic update in the recorder, no key
/// building or lookup).
#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Handles {
    in_flight: metrics::Gauge,
    held: metrics::Gauge,
    tokens: metrics::Counter,
    fence_rejections: metrics::Counter,
    /// By [`Outcome`] index.
    waits: [metrics::Histogram; 6],
    /// Released, dropped, lost.
    holds: [metrics::Histogram; 3],
    /// By scope, then [`TRANSITIONS`] index.
    transitions: [[metrics::Counter; 4]; 2],
    /// By [`LossCause`] index; `None` for `Released` (no loss).
    losses: [Option<metrics::Counter>; LossCause::ALL.len()],
    keep_alive: metrics::Histogram,
    keep_alive_margin: metrics::Histogram,
    keep_alive_failures: metrics::Counter,
}

#[cfg(feature = "metrics")]
impl Handles {
    fn register(backend: &'static str) -> Self {
        use metrics::{counter, gauge, histogram};
        let outcome = |o: Outcome| histogram!("fencelock_acquire_wait_seconds", "backend" => backend, "outcome" => o.label());
        let hold = |cause: &'static str| histogram!("fencelock_hold_seconds", "backend" => backend, "cause" => cause);
        let transition = |scope: &'static str, from: LockState, to: LockState| {
            counter!(
                "fencelock_state_transitions_total",
                "backend" => backend,
                "scope" => scope,
                "from" => state_label(from),
                "to" => state_label(to),
            )
        };
        let scoped = |scope| TRANSITIONS.map(|(from, to)| transition(scope, from, to));
        Handles {
            in_flight: gauge!("fencelock_acquires_in_flight", "backend" => backend),
            held: gauge!("fencelock_locks_held", "backend" => backend),
            tokens: counter!("fencelock_tokens_issued_total", "backend" => backend),
            fence_rejections: counter!("fencelock_fence_rejections_total", "backend" => backend),
            waits: Outcome::ALL.map(outcome),
            holds: [hold("released"), hold("dropped"), hold("lost")],
            transitions: [scoped("lease"), scoped("lock")],
            losses: LossCause::ALL.map(|c| {
                (c != LossCause::Released).then(|| {
                    counter!("fencelock_losses_total", "backend" => backend, "cause" => c.as_str())
                })
            }),
            keep_alive: histogram!("fencelock_keep_alive_seconds", "backend" => backend),
            keep_alive_margin: histogram!("fencelock_keep_alive_margin_seconds", "backend" => backend),
            keep_alive_failures: counter!("fencelock_keep_alive_failures_total", "backend" => backend),
        }
    }
}

#[cfg(feature = "metrics")]
fn state_label(state: LockState) -> &'static str {
    match state {
        LockState::Held => "held",
        LockState::Suspect => "suspect",
        LockState::Lost => "lost",
    }
}

/// One client's counters and its `backend` label.
#[derive(Debug)]
pub(crate) struct Telemetry {
    /// The `backend` label.
    backend: &'static str,
    granted: AtomicU64,
    not_granted: AtomicU64,
    timed_out: AtomicU64,
    cancelled: AtomicU64,
    lease_lost: AtomicU64,
    failed: AtomicU64,
    releases: AtomicU64,
    losses: [AtomicU64; LossCause::ALL.len()],
    held: AtomicU64,
    in_flight: AtomicU64,
    tokens: AtomicU64,
    fence_rejections: AtomicU64,
    keep_alives: AtomicU64,
    keep_alive_failures: AtomicU64,
    #[cfg(feature = "metrics")]
    series: Handles,
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn dec(c: &AtomicU64) {
    c.fetch_sub(1, Ordering::Relaxed);
}

impl Telemetry {
    /// A counter set labelled `backend`; with the `metrics` feature, its series are
    /// registered now with the current recorder.
    pub(crate) fn new(backend: &'static str) -> Arc<Self> {
        let zero = || AtomicU64::new(0);
        Arc::new(Telemetry {
            backend,
            granted: zero(),
            not_granted: zero(),
            timed_out: zero(),
            cancelled: zero(),
            lease_lost: zero(),
            failed: zero(),
            releases: zero(),
            losses: LossCause::ALL.map(|_| zero()),
            held: zero(),
            in_flight: zero(),
            tokens: zero(),
            fence_rejections: zero(),
            keep_alives: zero(),
            keep_alive_failures: zero(),
            #[cfg(feature = "metrics")]
            series: Handles::register(backend),
        })
    }

    pub(crate) fn backend(&self) -> &'static str {
        self.backend
    }

    pub(crate) fn snapshot(&self) -> LockStats {
        let losses = LossCounts(self.losses.each_ref().map(get));
        LockStats {
            acquires_granted: get(&self.granted),
            acquires_not_granted: get(&self.not_granted),
            acquires_timed_out: get(&self.timed_out),
            acquires_cancelled: get(&self.cancelled),
            acquires_lease_lost: get(&self.lease_lost),
            acquires_failed: get(&self.failed),
            releases: get(&self.releases),
            losses: losses.total(),
            losses_by_cause: losses,
            locks_held: get(&self.held),
            acquires_in_flight: get(&self.in_flight),
            tokens_issued: get(&self.tokens),
            fence_rejections: get(&self.fence_rejections),
            keep_alives: get(&self.keep_alives),
            keep_alive_failures: get(&self.keep_alive_failures),
            waiter_wakeups: None,
        }
    }

    pub(crate) fn token_issued(&self) {
        inc(&self.tokens);
        #[cfg(feature = "metrics")]
        self.series.tokens.increment(1);
    }

    pub(crate) fn fence_rejected(this: Option<&Self>) {
        if let Some(t) = this {
            inc(&t.fence_rejections);
            #[cfg(feature = "metrics")]
            t.series.fence_rejections.increment(1);
        } else {
            #[cfg(feature = "metrics")]
            metrics::counter!("fencelock_fence_rejections_total", "backend" => "none").increment(1);
        }
    }

    pub(crate) fn transition(&self, scope: Scope, from: LockState, to: LockState) {
        #[cfg(feature = "metrics")]
        if let Some(i) = TRANSITIONS.iter().position(|t| *t == (from, to)) {
            self.series.transitions[scope as usize][i].increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (scope, from, to);
    }

    pub(crate) fn keep_alive(&self, _rtt: Duration, _margin: Duration) {
        inc(&self.keep_alives);
        #[cfg(feature = "metrics")]
        {
            self.series.keep_alive.record(_rtt.as_secs_f64());
            self.series.keep_alive_margin.record(_margin.as_secs_f64());
        }
    }

    pub(crate) fn keep_alive_failed(&self) {
        inc(&self.keep_alive_failures);
        #[cfg(feature = "metrics")]
        self.series.keep_alive_failures.increment(1);
    }

    fn acquire_ended(&self, outcome: Outcome, _waited: Duration) {
        inc(match outcome {
            Outcome::Granted => &self.granted,
            Outcome::NotGranted => &self.not_granted,
            Outcome::Timeout => &self.timed_out,
            Outcome::Cancelled => &self.cancelled,
            Outcome::LeaseLost => &self.lease_lost,
            Outcome::Error => &self.failed,
        });
        #[cfg(feature = "metrics")]
        self.series.waits[outcome as usize].record(_waited.as_secs_f64());
    }

    fn in_flight(&self, up: bool) {
        if up {
            inc(&self.in_flight);
        } else {
            dec(&self.in_flight);
        }
        #[cfg(feature = "metrics")]
        if up {
            self.series.in_flight.increment(1.0);
        } else {
            self.series.in_flight.decrement(1.0);
        }
    }

    fn held(&self, up: bool) {
        if up {
            inc(&self.held);
        } else {
            dec(&self.held);
        }
        #[cfg(feature = "metrics")]
        if up {
            self.series.held.increment(1.0);
        } else {
            self.series.held.decrement(1.0);
        }
    }
}

/// Measures one acquire call; a timer dropped before [`finish`](Self::finish) records
/// `cancelled`.
#[derive(Debug)]
pub(crate) struct AcquireTimer {
    tel: Arc<Telemetry>,
    start: Instant,
    done: bool,
}

impl AcquireTimer {
    pub(crate) fn start(tel: &Arc<Telemetry>) -> Self {
        tel.in_flight(true);
        AcquireTimer {
            tel: tel.clone(),
            start: Instant::now(),
            done: false,
        }
    }

    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.done = true;
        self.tel.acquire_ended(outcome, self.start.elapsed());
    }
}

impl Drop for AcquireTimer {
    fn drop(&mut self) {
        if !self.done {
            self.tel
                .acquire_ended(Outcome::Cancelled, self.start.elapsed());
        }
        self.tel.in_flight(false);
    }
}

/// One grant's accounting: counted held from [`new`](Self::new) until it [`end`](Self::end)s, once.
#[derive(Debug)]
pub(crate) struct GrantTel {
    tel: Arc<Telemetry>,
    name: LockName,
    token: FencingToken,
    lease: LeaseId,
    /// The grant's moment (read by the metrics only).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    granted: Instant,
    ended: AtomicBool,
    /// Set while the guard itself releases: the entry's own `…→lost` is then no loss.
    releasing: AtomicBool,
}

impl GrantTel {
    pub(crate) fn new(
        tel: &Arc<Telemetry>,
        name: LockName,
        token: FencingToken,
        lease: LeaseId,
    ) -> Arc<Self> {
        tel.held(true);
        Arc::new(GrantTel {
            tel: tel.clone(),
            name,
            token,
            lease,
            granted: Instant::now(),
            ended: AtomicBool::new(false),
            releasing: AtomicBool::new(false),
        })
    }

    pub(crate) fn telemetry(&self) -> &Arc<Telemetry> {
        &self.tel
    }

    pub(crate) fn start_releasing(&self) {
        self.releasing.store(true, Ordering::Release);
    }

    pub(crate) fn is_releasing(&self) -> bool {
        self.releasing.load(Ordering::Acquire)
    }

    /// Ends the grant with `cause`; later calls do nothing. A loss is logged here: one
    /// `warn` event per lost grant.
    pub(crate) fn end(&self, cause: End) {
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        let tel = &self.tel;
        tel.held(false);
        match cause {
            End::Released | End::Dropped => inc(&tel.releases),
            End::Lost(why) => {
                inc(&tel.losses[why.index()]);
                #[cfg(feature = "metrics")]
                if let Some(c) = &tel.series.losses[why.index()] {
                    c.increment(1);
                }
                tracing::warn!(
                    lock = %self.name,
                    token = %self.token,
                    lease = %self.lease,
                    backend = tel.backend,
                    cause = why.as_str(),
                    "lock lost: {why}"
                );
            }
        }
        #[cfg(feature = "metrics")]
        {
            let hold = match cause {
                End::Released => 0,
                End::Dropped => 1,
                End::Lost(_) => 2,
            };
            tel.series.holds[hold].record(self.granted.elapsed().as_secs_f64());
        }
    }
}
