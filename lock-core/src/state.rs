//! Liveness states, the writer side backends update, and the watch users read.

use futures::future::select_all;
use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, OnceLock,
    },
    time::Duration,
};
use tokio::{sync::watch, time::Instant};

/// Whether a lock (or the lease under it) is still held, as far as the client can tell.
///
/// Ordered by severity: `Held < Suspect < Lost`.
///
/// # The rule: Suspect means "the deadline is at risk"
///
/// With `T` the TTL the server *granted* and `s` the moment the last *confirmed*
/// keep-alive (or the grant) was *sent*:
///
/// - local deadline `D = s + T − T/10` ([`local_deadline`]): the server cannot have
///   expired the lease before `s + T`, and the tenth covers clock-rate drift and the
///   time between the server's expiry and our look at the clock;
/// - `Suspect` from `D − T/10 = s + 0.8·T` when no later renewal was confirmed
///   ([`suspect_window`]), and `Lost` at `D = s + 0.9·T`.
///
/// Backends renew several times per TTL (etcd every `T/6`, with the request sent
/// again to another member while one is late; ZooKeeper every `T/4`), so a lease reaches `Suspect` only after
/// renewals went unanswered for most of a TTL: a slow reply, a reconnect, a stalled
/// member the client moves away from, or a server blip that ends well before the
/// deadline leave it `Held`. Example, `T = 2 s` over an 800 ms round trip, renewals
/// every `T/6`: one sent at `s + 0.33 s` is answered at `s + 1.13 s`, well before
/// `Suspect` at `s + 1.6 s`, and moves the deadline to `s + 2.13 s`. Right after the
/// grant such a lease is briefly at risk by this rule: its first renewal cannot be
/// confirmed before two round trips after the grant was sent (`s + 1.6 s`). Backends still report `Suspect` at once for
/// a lease they *know* cannot be renewed (a fault injected on purpose).
///
/// # Guarantees
///
/// - `Lost` is final: a lease or lock never returns from it.
/// - A state is never reported as `Held` after `D − T/10`, nor as anything but `Lost`
///   after `D`, even when no background task has run since (for example right after
///   the process was paused): the state is computed from the clock when read.
///
/// # Non-guarantees
///
/// `Held` is a belief, not a proof: the server may have expired the lease a moment
/// ago. This is why resources must check [fencing tokens](crate::FencingToken).
///
/// # Examples
///
/// ```
/// use lock_core::LockState;
///
/// assert!(LockState::Held < LockState::Suspect);
/// assert!(LockState::Suspect.is_held() == false);
/// assert!(LockState::Lost.is_lost());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockState {
    /// The backend confirmed the lease recently enough; the lock is believed held.
    Held,
    /// The backend cannot currently confirm the lock (missed keep-alive, disconnected
    /// session). It may come back to `Held` before the deadline. Code that must not act
    /// without the lock stops here.
    Suspect,
    /// The lock is certainly gone, or its local deadline passed. Final.
    Lost,
}

impl LockState {
    /// `true` for [`LockState::Held`].
    pub fn is_held(self) -> bool {
        self == LockState::Held
    }

    /// `true` for [`LockState::Lost`].
    pub fn is_lost(self) -> bool {
        self == LockState::Lost
    }
}

impl fmt::Display for LockState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockState::Held => "held",
            LockState::Suspect => "suspect",
            LockState::Lost => "lost",
        })
    }
}

/// The local validity deadline of a lease: `sent_at + granted_ttl - margin`, where the
/// margin is a tenth of the TTL.
///
/// `sent_at` must be the moment the keep-alive (or grant) request was *sent*, and
/// `granted_ttl` the TTL the server *granted*. Overflow yields `sent_at` (already
/// expired), never a panic.
///
/// # Examples
///
/// ```
/// use lock_core::backend::local_deadline;
/// use std::time::Duration;
/// use tokio::time::Instant;
///
/// let now = Instant::now();
/// assert_eq!(local_deadline(now, Duration::from_secs(10)), now + Duration::from_secs(9));
/// ```
pub fn local_deadline(sent_at: Instant, granted_ttl: Duration) -> Instant {
    let valid_for = granted_ttl.saturating_sub(granted_ttl / 10);
    sent_at.checked_add(valid_for).unwrap_or(sent_at)
}

/// How long before its local deadline a lease that was not renewed turns `Suspect`:
/// a tenth of the granted TTL (see [`LockState`] for the whole rule).
///
/// # Examples
///
/// ```
/// use lock_core::backend::suspect_window;
/// use std::time::Duration;
///
/// assert_eq!(suspect_window(Duration::from_secs(3)), Duration::from_millis(300));
/// ```
pub fn suspect_window(granted_ttl: Duration) -> Duration {
    granted_ttl / 10
}

/// Why a lease or a lock turned [`LockState::Lost`]: the cause a backend gives when
/// it detects the loss, read back from [`Liveness::loss_cause`],
/// [`StateWatch::loss_cause`] and [`LockGuard::loss_cause`](crate::LockGuard::loss_cause),
/// and the `cause` label of the `fencelock_losses_total` [metric](crate::stats).
///
/// The first cause recorded wins: a lease lost because its deadline passed stays
/// `DeadlinePassed` even if the server's expiry is learnt later.
///
/// # Examples
///
/// ```
/// use lock_core::{backend::Liveness, LossCause};
///
/// let live = Liveness::new(None);
/// assert_eq!(live.loss_cause(), None);
/// live.lose_with(LossCause::EntryDeleted);
/// live.lose_with(LossCause::LeaseExpired); // already lost: changes nothing
/// assert_eq!(live.loss_cause(), Some(LossCause::EntryDeleted));
/// assert_eq!(LossCause::EntryDeleted.as_str(), "entry_deleted");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LossCause {
    /// The server reports the lease expired or unknown (etcd: TTL 0 or lease not
    /// found; memory: its TTL ran out without keep-alive).
    LeaseExpired,
    /// The lease was revoked: [`Lease::close`](crate::Lease::close), or revoked by
    /// someone else.
    LeaseRevoked,
    /// The lock's own entry (etcd key, ZooKeeper node, memory holder) was deleted or
    /// replaced by someone else, for example an operator.
    EntryDeleted,
    /// The ZooKeeper session expired (or was closed) on the server.
    SessionExpired,
    /// The connection ended for good (the client was closed, authentication failed).
    Disconnected,
    /// The local deadline passed with no renewal confirmed in time (the rule on
    /// [`LockState`]); the server may still hold the lease a moment longer.
    DeadlinePassed,
    /// The entry's own release (not a loss: the guard was releasing).
    Released,
    /// The backend did not say ([`Liveness::lose`]).
    Unknown,
}

impl LossCause {
    /// A stable lowercase name, used as the metrics label: `lease_expired`,
    /// `lease_revoked`, `entry_deleted`, `session_expired`, `disconnected`,
    /// `deadline_passed`, `released`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            LossCause::LeaseExpired => "lease_expired",
            LossCause::LeaseRevoked => "lease_revoked",
            LossCause::EntryDeleted => "entry_deleted",
            LossCause::SessionExpired => "session_expired",
            LossCause::Disconnected => "disconnected",
            LossCause::DeadlinePassed => "deadline_passed",
            LossCause::Released => "released",
            LossCause::Unknown => "unknown",
        }
    }

    pub(crate) const ALL: [LossCause; 8] = [
        LossCause::LeaseExpired,
        LossCause::LeaseRevoked,
        LossCause::EntryDeleted,
        LossCause::SessionExpired,
        LossCause::Disconnected,
        LossCause::DeadlinePassed,
        LossCause::Released,
        LossCause::Unknown,
    ];

    pub(crate) fn index(self) -> usize {
        LossCause::ALL
            .iter()
            .position(|c| *c == self)
            .unwrap_or(LossCause::ALL.len() - 1)
    }
}

impl fmt::Display for LossCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().replace('_', " "))
    }
}

/// What a [`Liveness`] reports to its observers (the client's telemetry).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Event {
    /// The state changed; `cause` is set when `to` is `Lost`.
    Transition {
        from: LockState,
        to: LockState,
        cause: Option<LossCause>,
    },
    /// A keep-alive was confirmed after `rtt`, with `margin` left before the
    /// previous local deadline.
    KeepAlive { rtt: Duration, margin: Duration },
    /// A keep-alive failed or went unanswered.
    KeepAliveFailed,
}

/// Called with each [`Event`]; see [`Liveness::subscribe`].
pub(crate) type Hook = Arc<dyn Fn(Event) + Send + Sync>;

struct Inner {
    tx: watch::Sender<LockState>,
    /// Observers of state changes (the client's telemetry), by subscription id.
    hooks: Mutex<Vec<(u64, Hook)>>,
    next_hook: AtomicU64,
    deadline: Mutex<Option<Instant>>,
    /// Why it turned `Lost`; set once, right before the state does.
    cause: OnceLock<LossCause>,
    /// Held while the state changes: one change (and its observers) at a time.
    changing: Mutex<()>,
    /// `Suspect` from `deadline - window` unless renewed; zero: only explicit.
    window: Duration,
}

impl Inner {
    fn deadline(&self) -> MutexGuard<'_, Option<Instant>> {
        // A poisoned deadline lock only means a panic elsewhere; the value is still a
        // plain Instant, so keep using it.
        crate::backend::lock_unpoisoned(&self.deadline)
    }

    /// The state, downgraded to `Lost` once the deadline has passed and from `Held` to
    /// `Suspect` once it is within the window (both recorded, so watchers learn).
    fn state(&self) -> LockState {
        let state = *self.tx.borrow();
        if state == LockState::Lost {
            return state;
        }
        let Some(deadline) = *self.deadline() else {
            return state;
        };
        let now = Instant::now();
        if now >= deadline {
            self.lose(LossCause::DeadlinePassed);
            return LockState::Lost;
        }
        if state == LockState::Held && self.at_risk(deadline, now) {
            self.set(LockState::Suspect);
            return LockState::Suspect;
        }
        state
    }

    fn at_risk(&self, deadline: Instant, now: Instant) -> bool {
        !self.window.is_zero() && now + self.window >= deadline
    }

    /// When the state changes by itself next without any update: the start of the
    /// window while `Held`, else the deadline.
    fn next_change(&self) -> Option<Instant> {
        let deadline = (*self.deadline())?;
        let state = *self.tx.borrow();
        if state == LockState::Held && !self.window.is_zero() {
            Some(deadline.checked_sub(self.window).unwrap_or(deadline))
        } else {
            Some(deadline)
        }
    }

    fn lose(&self, cause: LossCause) {
        self.set_with(LockState::Lost, Some(cause));
    }

    fn set(&self, next: LockState) {
        self.set_with(next, None);
    }

    /// Changes the state to `next` (never out of `Lost`): first records the cause,
    /// then tells the observers, and only then publishes the new state, so whoever
    /// sees it also sees what the observers counted (for example a lost grant in
    /// [`LockStats`](crate::LockStats)). Observers must not change this state.
    fn set_with(&self, next: LockState, cause: Option<LossCause>) {
        let _one_at_a_time = crate::backend::lock_unpoisoned(&self.changing);
        let from = *self.tx.borrow();
        if from == LockState::Lost || from == next {
            return;
        }
        let cause = (next == LockState::Lost).then(|| {
            // The first loss sets the cause.
            *self
                .cause
                .get_or_init(|| cause.unwrap_or(LossCause::Unknown))
        });
        self.emit(Event::Transition {
            from,
            to: next,
            cause,
        });
        self.tx.send_replace(next);
    }

    fn emit(&self, event: Event) {
        // Called outside the hooks' lock, so a hook may (un)subscribe.
        let hooks: Vec<Hook> = crate::backend::lock_unpoisoned(&self.hooks)
            .iter()
            .map(|(_, h)| h.clone())
            .collect();
        for hook in hooks {
            hook(event);
        }
    }
}

/// The writer side of a liveness state: what a backend updates as keep-alives succeed,
/// connections drop and keys disappear.
///
/// Cheap to clone; all clones share one state. Users read it through [`StateWatch`].
///
/// # Examples
///
/// ```
/// use lock_core::{backend::Liveness, LockState};
/// use std::time::Duration;
/// use tokio::time::Instant;
///
/// let live = Liveness::new(Some(Instant::now() + Duration::from_secs(5)));
/// assert_eq!(live.state(), LockState::Held);
/// live.suspect();
/// assert_eq!(live.state(), LockState::Suspect);
/// assert!(live.renew(Instant::now() + Duration::from_secs(5)));
/// assert_eq!(live.state(), LockState::Held);
/// live.lose();
/// assert!(!live.renew(Instant::now() + Duration::from_secs(5)), "lost is final");
/// assert_eq!(live.state(), LockState::Lost);
/// ```
#[derive(Clone)]
pub struct Liveness {
    inner: Arc<Inner>,
}

impl Liveness {
    /// A `Held` state that turns `Lost` at `deadline` unless renewed (`None`: no deadline),
    /// and `Suspect` only when told ([`suspect`](Self::suspect)).
    pub fn new(deadline: Option<Instant>) -> Self {
        Self::with_window(deadline, Duration::ZERO)
    }

    /// The state of a lease granted for `granted_ttl`: `Lost` at `deadline` and, unless
    /// renewed, `Suspect` from [`suspect_window`] before it (the rule on [`LockState`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use lock_core::{backend::{local_deadline, Liveness}, LockState};
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    ///
    /// let ttl = Duration::from_secs(3);
    /// let live = Liveness::for_lease(local_deadline(Instant::now(), ttl), ttl);
    /// assert_eq!(live.state(), LockState::Held);
    /// ```
    pub fn for_lease(deadline: Instant, granted_ttl: Duration) -> Self {
        Self::with_window(Some(deadline), suspect_window(granted_ttl))
    }

    fn with_window(deadline: Option<Instant>, window: Duration) -> Self {
        let (tx, _) = watch::channel(LockState::Held);
        Liveness {
            inner: Arc::new(Inner {
                tx,
                hooks: Mutex::new(Vec::new()),
                next_hook: AtomicU64::new(0),
                deadline: Mutex::new(deadline),
                cause: OnceLock::new(),
                changing: Mutex::new(()),
                window,
            }),
        }
    }

    /// Records a confirmed keep-alive: moves the deadline to `deadline` (if later) and a
    /// `Suspect` state back to `Held` (unless the new deadline is itself at risk).
    ///
    /// Returns `false`, changing nothing, when the state is already `Lost` or the old
    /// deadline has passed (a late confirmation never revives a lease).
    pub fn renew(&self, deadline: Instant) -> bool {
        if self.inner.state() == LockState::Lost {
            return false;
        }
        let next = {
            let mut cur = self.inner.deadline();
            let next = cur.map_or(deadline, |c| c.max(deadline));
            *cur = Some(next);
            next
        };
        if !self.inner.at_risk(next, Instant::now()) {
            self.inner.set(LockState::Held);
        }
        true
    }

    /// Records a keep-alive *sent* at `sent_at` and confirmed now, for a lease granted
    /// `granted_ttl`: [`renew`](Self::renew)s to [`local_deadline`]`(sent_at,
    /// granted_ttl)` and reports to the client's [metrics](crate::stats) the round trip
    /// (now − `sent_at`) and the margin that was left (the local deadline before this
    /// renewal − now). Backends call this, rather than `renew`, from their keep-alive.
    ///
    /// Returns what `renew` returns: `false` (nothing recorded) for a lease already
    /// `Lost`.
    ///
    /// # Examples
    ///
    /// ```
    /// use lock_core::{backend::{local_deadline, Liveness}, LockState};
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    ///
    /// let ttl = Duration::from_secs(10);
    /// let live = Liveness::for_lease(local_deadline(Instant::now(), ttl), ttl);
    /// let sent = Instant::now();
    /// assert!(live.confirm(sent, ttl));
    /// assert_eq!(live.deadline(), Some(local_deadline(sent, ttl)));
    /// ```
    pub fn confirm(&self, sent_at: Instant, granted_ttl: Duration) -> bool {
        let now = Instant::now();
        let margin = self
            .deadline()
            .map_or(Duration::ZERO, |d| d.saturating_duration_since(now));
        if !self.renew(local_deadline(sent_at, granted_ttl)) {
            return false;
        }
        self.inner.emit(Event::KeepAlive {
            rtt: now.saturating_duration_since(sent_at),
            margin,
        });
        true
    }

    /// Reports a keep-alive that failed or went unanswered to the client's
    /// [metrics](crate::stats). Changes no state: the deadline rule decides when the
    /// lease turns `Suspect` or `Lost`.
    pub fn keep_alive_failed(&self) {
        self.inner.emit(Event::KeepAliveFailed);
    }

    /// Marks the state `Suspect` (unless `Lost`).
    pub fn suspect(&self) {
        if self.inner.state() == LockState::Held {
            self.inner.set(LockState::Suspect);
        }
    }

    /// Marks the state `Lost`, for good, with [`LossCause::Unknown`]. Prefer
    /// [`lose_with`](Self::lose_with) where the cause is known.
    pub fn lose(&self) {
        self.lose_with(LossCause::Unknown);
    }

    /// Marks the state `Lost`, for good, because of `cause` (kept only if this is the
    /// first loss).
    pub fn lose_with(&self, cause: LossCause) {
        self.inner.lose(cause);
    }

    /// Why the state turned `Lost`; `None` while it has not.
    pub fn loss_cause(&self) -> Option<LossCause> {
        // Reading the state first turns a passed deadline into its cause.
        self.inner.state();
        self.inner.cause.get().copied()
    }

    /// The current state, taking the deadline into account.
    pub fn state(&self) -> LockState {
        self.inner.state()
    }

    /// The local deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        *self.inner.deadline()
    }

    /// Calls `hook` with every later [`Event`]: each state change, on the thread that
    /// made (or, for deadlines, first noticed) it, and each keep-alive report. Returns the id for [`unsubscribe`](Self::unsubscribe).
    pub(crate) fn subscribe(&self, hook: Hook) -> u64 {
        let id = self.inner.next_hook.fetch_add(1, Ordering::Relaxed);
        crate::backend::lock_unpoisoned(&self.inner.hooks).push((id, hook));
        id
    }

    /// Removes the hook `id` (no-op if gone).
    pub(crate) fn unsubscribe(&self, id: u64) {
        crate::backend::lock_unpoisoned(&self.inner.hooks).retain(|(i, _)| *i != id);
    }

    /// A reader of this state.
    pub fn watch(&self) -> StateWatch {
        StateWatch {
            sources: vec![Source::new(&self.inner)],
        }
    }
}

impl fmt::Debug for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Liveness")
            .field("state", &self.state())
            .field("deadline", &self.deadline())
            .finish()
    }
}

#[derive(Clone)]
struct Source {
    inner: Arc<Inner>,
    rx: watch::Receiver<LockState>,
}

impl Source {
    fn new(inner: &Arc<Inner>) -> Self {
        Source {
            inner: inner.clone(),
            rx: inner.tx.subscribe(),
        }
    }
}

/// A reader of one or more liveness states (a lock's own and its lease's), reporting
/// the worst of them.
///
/// Obtained from [`LockGuard::watch`](crate::LockGuard::watch) or
/// [`Lease::watch`](crate::Lease::watch). Cheap to clone.
///
/// # Examples
///
/// ```
/// use lock_core::{backend::Liveness, LockState};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let lease = Liveness::new(None);
/// let lock = Liveness::new(None);
/// let mut watch = lock.watch().and(&lease);
/// lease.suspect();
/// assert_eq!(watch.not_held().await, LockState::Suspect);
/// # }
/// ```
#[derive(Clone)]
pub struct StateWatch {
    sources: Vec<Source>,
}

impl StateWatch {
    /// Also watches `other`; the combined state is the worst of all.
    #[must_use]
    pub fn and(mut self, other: &Liveness) -> Self {
        self.sources.push(Source::new(&other.inner));
        self
    }

    /// The current combined state, deadlines included.
    pub fn state(&self) -> LockState {
        self.sources
            .iter()
            .map(|s| s.inner.state())
            .max()
            .unwrap_or(LockState::Lost)
    }

    /// Why the combined state is `Lost`: the cause of the first lost source (the lock's
    /// own entry before its lease); `None` while not lost.
    pub fn loss_cause(&self) -> Option<LossCause> {
        self.sources.iter().find_map(|s| {
            s.inner.state();
            s.inner.cause.get().copied()
        })
    }

    /// The earliest local deadline of all sources.
    pub fn deadline(&self) -> Option<Instant> {
        self.sources
            .iter()
            .filter_map(|s| *s.inner.deadline())
            .min()
    }

    /// The earliest moment a source changes state by itself (window start or deadline).
    fn next_change(&self) -> Option<Instant> {
        self.sources
            .iter()
            .filter_map(|s| s.inner.next_change())
            .min()
    }

    /// Resolves with the state as soon as it is no longer `Held` (at once if it already
    /// is not).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping it loses nothing; call again to keep waiting.
    pub async fn not_held(&mut self) -> LockState {
        self.wait_until(|s| s != LockState::Held).await
    }

    /// Resolves once the state is `Lost`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn lost(&mut self) {
        self.wait_until(LockState::is_lost).await;
    }

    /// Resolves with the new state once the combined state differs from `from`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn changed_from(&mut self, from: LockState) -> LockState {
        self.wait_until(|s| s != from).await
    }

    async fn wait_until(&mut self, done: impl Fn(LockState) -> bool) -> LockState {
        loop {
            for s in &mut self.sources {
                s.rx.borrow_and_update();
            }
            let state = self.state();
            if done(state) {
                return state;
            }
            let deadline = self.next_change();
            let changes = select_all(self.sources.iter_mut().map(|s| Box::pin(s.rx.changed())));
            match deadline {
                Some(d) => {
                    tokio::select! {
                        _ = changes => {}
                        _ = tokio::time::sleep_until(d) => {}
                    }
                }
                None => {
                    let _ = changes.await;
                }
            }
        }
    }
}

impl fmt::Debug for StateWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateWatch")
            .field("state", &self.state())
            .field("deadline", &self.deadline())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deadline_turns_state_lost_without_any_update() {
        let live = Liveness::new(Some(Instant::now() + Duration::from_secs(3)));
        let mut watch = live.watch();
        let start = Instant::now();
        assert_eq!(watch.not_held().await, LockState::Lost);
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert!(!live.renew(Instant::now() + Duration::from_secs(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn renew_before_deadline_keeps_held() {
        let live = Liveness::new(Some(Instant::now() + Duration::from_secs(3)));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(live.renew(Instant::now() + Duration::from_secs(3)));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(live.state(), LockState::Held);
    }

    #[tokio::test]
    async fn combined_watch_reports_worst_source() {
        let lease = Liveness::new(None);
        let lock = Liveness::new(None);
        let mut watch = lock.watch().and(&lease);
        lease.suspect();
        assert_eq!(watch.state(), LockState::Suspect);
        lock.lose();
        assert_eq!(
            watch.changed_from(LockState::Suspect).await,
            LockState::Lost
        );
        lease.renew(Instant::now() + Duration::from_secs(1));
        assert_eq!(watch.state(), LockState::Lost);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_turns_suspect_only_in_the_last_tenth_before_its_deadline() {
        let ttl = Duration::from_secs(10);
        let start = Instant::now();
        let live = Liveness::for_lease(local_deadline(start, ttl), ttl);
        let mut watch = live.watch();
        assert_eq!(watch.not_held().await, LockState::Suspect);
        assert_eq!(start.elapsed(), Duration::from_secs(8));
        // A renewal confirmed in time brings it back.
        assert!(live.renew(local_deadline(Instant::now(), ttl)));
        assert_eq!(live.state(), LockState::Held);
        tokio::time::sleep(Duration::from_millis(7_900)).await;
        assert_eq!(live.state(), LockState::Held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(live.state(), LockState::Suspect);
        watch.lost().await;
        assert_eq!(start.elapsed(), Duration::from_secs(17));
    }

    #[tokio::test(start_paused = true)]
    async fn renewals_every_third_over_a_slow_link_stay_held() {
        // TTL 2 s (granted at `start`), a renewal sent every T/3, each answered after an
        // 800 ms round trip: Held throughout, looked at every 50 ms for 10 s.
        let ttl = Duration::from_secs(2);
        let rtt = Duration::from_millis(800);
        let start = Instant::now();
        let live = Liveness::for_lease(local_deadline(start, ttl), ttl);
        let sends: Vec<Instant> = (1..40u32).map(|k| start + ttl / 3 * k).collect();
        let mut answered = 0;
        for step in 1..=200u32 {
            let now = start + Duration::from_millis(50) * step;
            tokio::time::sleep_until(now).await;
            while answered < sends.len() && sends[answered] + rtt <= now {
                assert!(live.renew(local_deadline(sends[answered], ttl)));
                answered += 1;
            }
            assert_eq!(live.state(), LockState::Held, "at {:?}", now - start);
        }
        // The same link with every reply lost: Suspect at 0.8 T, Lost at 0.9 T after
        // the last answered send.
        let last = sends[answered - 1];
        let mut watch = live.watch();
        let close = |got: Duration, want: u64| {
            let want = Duration::from_millis(want);
            assert!(
                got.abs_diff(want) < Duration::from_millis(1),
                "{got:?} not {want:?}"
            );
        };
        assert_eq!(watch.not_held().await, LockState::Suspect);
        close(Instant::now() - last, 1600);
        watch.lost().await;
        close(Instant::now() - last, 1800);
    }

    #[test]
    fn local_deadline_never_overflows() {
        let now = Instant::now();
        assert_eq!(local_deadline(now, Duration::MAX), now);
    }
}
