//! Small helpers every backend needs: a retry [`Backoff`], [`lock_unpoisoned`],
//! [`spawn_or_expire`] and the disarmable [`Cleanup`] guard.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
    time::Duration,
};

/// A doubling retry delay with a cap and optional jitter.
///
/// The first delay is `first`. Each later delay is the previous one doubled, capped
/// at `max`, plus a fresh random jitter below the configured jitter (so the jitter
/// compounds, and a delay may exceed `max` by less than the jitter). Arithmetic
/// saturates; nothing panics.
///
/// # Examples
///
/// ```
/// use lock_core::backend::Backoff;
/// use std::time::Duration;
///
/// let ms = Duration::from_millis;
/// let mut backoff = Backoff::new(ms(100), ms(300));
/// assert_eq!(backoff.current(), ms(100)); // what the next call returns
/// let delays: Vec<_> = (0..4).map(|_| backoff.next_delay()).collect();
/// assert_eq!(delays, [ms(100), ms(200), ms(300), ms(300)]);
/// backoff.reset();
/// assert_eq!(backoff.next_delay(), ms(100));
///
/// // With jitter (etcd's request retries): 20 ms, then about 40, 80, … up to 500 ms.
/// let mut backoff = Backoff::new(ms(20), ms(500)).with_jitter(ms(16));
/// assert_eq!(backoff.next_delay(), ms(20));
/// assert!((ms(40)..ms(56)).contains(&backoff.next_delay()));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    jitter: Duration,
    current: Duration,
}

impl Backoff {
    /// A backoff starting at `first` and doubling up to `max`, without jitter.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            jitter: Duration::ZERO,
            current: first,
        }
    }

    /// Adds a random jitter below `jitter` to every delay after the first.
    #[must_use]
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// The delay the next [`next_delay`](Self::next_delay) returns.
    pub fn current(&self) -> Duration {
        self.current
    }

    /// Returns the current delay and advances to the next one.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = delay
            .saturating_mul(2)
            .min(self.max)
            .saturating_add(random_below(self.jitter));
        delay
    }

    /// Starts over at the first delay (after a success).
    pub fn reset(&mut self) {
        self.current = self.first;
    }
}

/// A random duration in `[0, bound)` (zero for a zero bound). Good enough for jitter;
/// not for anything that must be unpredictable.
fn random_below(bound: Duration) -> Duration {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    Duration::from_nanos(hasher.finish() % nanos)
}

/// Locks `mutex`, ignoring poisoning.
///
/// A poisoned mutex only means that some thread panicked while holding it. The
/// backends keep plain data behind their mutexes (maps, deadlines, handles) whose
/// every update is a single assignment or insert, so the data stays usable, and
/// propagating the panic into lock release or keep-alive paths would do more harm.
///
/// # Examples
///
/// ```
/// use lock_core::backend::lock_unpoisoned;
/// use std::sync::Mutex;
///
/// let m = Mutex::new(1);
/// let _ = std::panic::catch_unwind(|| {
///     let _guard = m.lock().unwrap();
///     panic!("poisons the mutex");
/// });
/// assert!(m.is_poisoned());
/// *lock_unpoisoned(&m) += 1;
/// assert_eq!(*lock_unpoisoned(&m), 2);
/// ```
pub fn lock_unpoisoned<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `task` in the background on the current tokio runtime; outside a runtime
/// (a guard dropped after its runtime shut down) logs a warning that `what` is left to
/// expire with its lease, drops `task` and returns `false`.
///
/// What every `Drop` that must talk to the server uses: a drop cannot wait, and
/// without a runtime the lease's expiry is the cleanup.
///
/// # Examples
///
/// ```
/// use lock_core::backend::spawn_or_expire;
///
/// // No runtime here: nothing runs, and the caller learns it.
/// assert!(!spawn_or_expire(format_args!("lock key k"), async {}));
/// ```
pub fn spawn_or_expire<F>(what: std::fmt::Arguments<'_>, task: F) -> bool
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(task);
            true
        }
        Err(_) => {
            tracing::warn!("no tokio runtime to clean up {what}; it expires with its lease");
            false
        }
    }
}

/// Runs a cleanup when dropped, unless [`disarm`](Self::disarm)ed first: what makes
/// a dropped (cancelled) acquisition leave nothing behind.
///
/// # Examples
///
/// ```
/// use lock_core::backend::Cleanup;
/// use std::cell::Cell;
///
/// let ran = Cell::new(0);
/// drop(Cleanup::new(|| ran.set(ran.get() + 1)));
/// assert_eq!(ran.get(), 1, "dropped armed: runs");
/// Cleanup::new(|| ran.set(ran.get() + 1)).disarm();
/// assert_eq!(ran.get(), 1, "disarmed: does not run");
/// ```
#[must_use = "dropping the guard at once runs the cleanup at once"]
pub struct Cleanup<F: FnOnce()> {
    cleanup: Option<F>,
}

impl<F: FnOnce()> Cleanup<F> {
    /// A guard that runs `cleanup` on drop.
    pub fn new(cleanup: F) -> Self {
        Cleanup {
            cleanup: Some(cleanup),
        }
    }

    /// Drops the guard without running the cleanup.
    pub fn disarm(mut self) {
        self.cleanup = None;
    }
}

impl<F: FnOnce()> Drop for Cleanup<F> {
    fn drop(&mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            cleanup();
        }
    }
}

impl<F: FnOnce()> std::fmt::Debug for Cleanup<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cleanup")
            .field("armed", &self.cleanup.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn spawn_or_expire_runs_the_task_inside_a_runtime() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        assert!(spawn_or_expire(format_args!("k"), async move {
            let _ = tx.send(7);
        }));
        assert_eq!(rx.await.ok(), Some(7));
    }

    #[test]
    fn spawn_or_expire_drops_the_task_outside_a_runtime() {
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        assert!(!spawn_or_expire(format_args!("k"), async move {
            let _keep = tx;
        }));
        assert!(rx.try_recv().is_err(), "sender dropped with the task");
    }

    #[test]
    fn cleanup_runs_once_when_armed_and_never_when_disarmed() {
        let ran = std::cell::Cell::new(0);
        {
            let _armed = Cleanup::new(|| ran.set(ran.get() + 1));
        }
        Cleanup::new(|| ran.set(ran.get() + 10)).disarm();
        assert_eq!(ran.get(), 1);
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(100 * MS, 5_000 * MS);
        let delays: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 5000, 5000].map(|m| m * MS)
        );
        b.reset();
        assert_eq!(b.current(), 100 * MS);
    }

    #[test]
    fn zero_start_stays_zero_without_jitter_and_saturates_at_the_top() {
        let mut b = Backoff::new(Duration::ZERO, Duration::MAX);
        assert_eq!(b.next_delay(), Duration::ZERO);
        assert_eq!(b.next_delay(), Duration::ZERO);
        let mut b = Backoff::new(Duration::MAX, Duration::MAX).with_jitter(MS);
        assert_eq!(b.next_delay(), Duration::MAX);
        assert_eq!(b.next_delay(), Duration::MAX);
    }

    #[test]
    fn jitter_compounds_like_the_old_etcd_backoff_and_stays_in_range() {
        // etcd's old `next_backoff`: (current * 2).min(max) + jitter below 16 ms.
        let (max, jitter) = (500 * MS, 16 * MS);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut b = Backoff::new(Duration::ZERO, max).with_jitter(jitter);
            let mut prev = b.next_delay();
            assert_eq!(prev, Duration::ZERO);
            for _ in 0..12 {
                let d = b.next_delay();
                let floor = (prev * 2).min(max);
                assert!(d >= floor && d < floor + jitter, "{prev:?} -> {d:?}");
                seen.insert(d.as_nanos() % jitter.as_nanos());
                prev = d;
            }
        }
        assert!(seen.len() > 100, "jitter is not random: {}", seen.len());
    }

    #[test]
    fn poisoned_mutex_still_locks() {
        let m = std::sync::Arc::new(Mutex::new(vec![1]));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _guard = m2.lock();
            panic!("poison");
        })
        .join();
        assert!(m.is_poisoned());
        lock_unpoisoned(&m).push(2);
        assert_eq!(*lock_unpoisoned(&m), [1, 2]);
    }
}
