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
//! Every series carries the label `backend` (`"memory"`, `"etcd"`, `"zk"`, from
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
//! - Keep-alive round trips are backend-side and not recorded here.

use crate::{Error, ErrorKind, LockState, Result};
use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
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
    /// deadline passed) before they were released.
    pub losses: u64,
    /// Grants now neither released, dropped nor lost.
    pub locks_held: u64,
    /// Acquire calls running now.
    pub acquires_in_flight: u64,
    /// Grants ever made, each with a new fencing token.
    pub tokens_issued: u64,
    /// Stale tokens rejected by fences from [`LockClient::fence`](crate::LockClient::fence).
    pub fence_rejections: u64,
}

/// How an acquire call ended.
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
    Lost,
}

/// Which liveness changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Lease,
    Lock,
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
#[derive(Debug, Default)]
pub(crate) struct Telemetry {
    /// The `backend` label (read by the metrics only).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    backend: &'static str,
    granted: AtomicU64,
    not_granted: AtomicU64,
    timed_out: AtomicU64,
    cancelled: AtomicU64,
    lease_lost: AtomicU64,
    failed: AtomicU64,
    releases: AtomicU64,
    losses: AtomicU64,
    held: AtomicU64,
    in_flight: AtomicU64,
    tokens: AtomicU64,
    fence_rejections: AtomicU64,
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
    pub(crate) fn new(backend: &'static str) -> Arc<Self> {
        Arc::new(Telemetry {
            backend,
            ..Telemetry::default()
        })
    }

    pub(crate) fn snapshot(&self) -> LockStats {
        LockStats {
            acquires_granted: get(&self.granted),
            acquires_not_granted: get(&self.not_granted),
            acquires_timed_out: get(&self.timed_out),
            acquires_cancelled: get(&self.cancelled),
            acquires_lease_lost: get(&self.lease_lost),
            acquires_failed: get(&self.failed),
            releases: get(&self.releases),
            losses: get(&self.losses),
            locks_held: get(&self.held),
            acquires_in_flight: get(&self.in_flight),
            tokens_issued: get(&self.tokens),
            fence_rejections: get(&self.fence_rejections),
        }
    }

    pub(crate) fn token_issued(&self) {
        inc(&self.tokens);
        #[cfg(feature = "metrics")]
        metrics::counter!("fencelock_tokens_issued_total", "backend" => self.backend).increment(1);
    }

    pub(crate) fn fence_rejected(this: Option<&Self>) {
        if let Some(t) = this {
            inc(&t.fence_rejections);
        }
        #[cfg(feature = "metrics")]
        metrics::counter!("fencelock_fence_rejections_total", "backend" => this.map_or("none", |t| t.backend))
            .increment(1);
    }

    pub(crate) fn transition(&self, scope: Scope, from: LockState, to: LockState) {
        #[cfg(feature = "metrics")]
        metrics::counter!(
            "fencelock_state_transitions_total",
            "backend" => self.backend,
            "scope" => match scope { Scope::Lease => "lease", Scope::Lock => "lock" },
            "from" => state_label(from),
            "to" => state_label(to),
        )
        .increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = (scope, from, to);
    }

    fn acquire_ended(&self, outcome: Outcome, _waited: std::time::Duration) {
        inc(match outcome {
            Outcome::Granted => &self.granted,
            Outcome::NotGranted => &self.not_granted,
            Outcome::Timeout => &self.timed_out,
            Outcome::Cancelled => &self.cancelled,
            Outcome::LeaseLost => &self.lease_lost,
            Outcome::Error => &self.failed,
        });
        #[cfg(feature = "metrics")]
        metrics::histogram!(
            "fencelock_acquire_wait_seconds",
            "backend" => self.backend,
            "outcome" => outcome.label(),
        )
        .record(_waited.as_secs_f64());
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
        inc(&tel.in_flight);
        #[cfg(feature = "metrics")]
        metrics::gauge!("fencelock_acquires_in_flight", "backend" => tel.backend).increment(1.0);
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
        dec(&self.tel.in_flight);
        #[cfg(feature = "metrics")]
        metrics::gauge!("fencelock_acquires_in_flight", "backend" => self.tel.backend)
            .decrement(1.0);
    }
}

/// One grant's accounting: counted held from [`new`](Self::new) until it [`end`](Self::end)s, once.
#[derive(Debug)]
pub(crate) struct GrantTel {
    tel: Arc<Telemetry>,
    /// The grant's moment (read by the metrics only).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    granted: Instant,
    ended: AtomicBool,
    /// Set while the guard itself releases: the entry's own `…→lost` is then no loss.
    releasing: AtomicBool,
}

impl GrantTel {
    pub(crate) fn new(tel: &Arc<Telemetry>) -> Arc<Self> {
        inc(&tel.held);
        #[cfg(feature = "metrics")]
        metrics::gauge!("fencelock_locks_held", "backend" => tel.backend).increment(1.0);
        Arc::new(GrantTel {
            tel: tel.clone(),
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

    /// Ends the grant with `cause`; later calls do nothing.
    pub(crate) fn end(&self, cause: End) {
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        let tel = &self.tel;
        dec(&tel.held);
        inc(match cause {
            End::Released | End::Dropped => &tel.releases,
            End::Lost => &tel.losses,
        });
        #[cfg(feature = "metrics")]
        {
            let cause = match cause {
                End::Released => "released",
                End::Dropped => "dropped",
                End::Lost => "lost",
            };
            metrics::gauge!("fencelock_locks_held", "backend" => tel.backend).decrement(1.0);
            metrics::histogram!("fencelock_hold_seconds", "backend" => tel.backend, "cause" => cause)
                .record(self.granted.elapsed().as_secs_f64());
        }
    }
}
