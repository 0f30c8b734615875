//! One grant, owned by core from the moment the backend answers until it is released
//! or dropped: the single place that decides what a drop without release does.

use crate::backend::{spawn_or_expire, Backoff, HeldLock};
use crate::{ErrorKind, FencingToken, LockName, LossCause, Result};
use std::time::Duration;

/// How long the background release of a dropped grant keeps retrying through an
/// outage: an entry whose release failed would otherwise sit on a lease that is still
/// kept alive and block the lock for every waiter. By then the lease has been revoked
/// or has expired, unless the server answers keep-alives but not deletes.
const DROP_RETRY_FOR: Duration = Duration::from_secs(600);

/// The first and the longest pause between two attempts of that background release.
const DROP_RETRY_FIRST: Duration = Duration::from_millis(100);
const DROP_RETRY_MAX: Duration = Duration::from_secs(5);

/// A backend's [`HeldLock`], wrapped the moment
/// [`LeaseBackend::acquire`](crate::backend::LeaseBackend::acquire) returns it (no
/// await in between), and the only owner of its release.
///
/// - [`release`](Self::release) runs the backend's release and remembers whether the
///   entry is now gone for sure (`Ok`, or [`ErrorKind::NotHeld`]: it was gone before).
/// - Dropped before that (a guard dropped unreleased, an acquisition cancelled between
///   the grant and its guard, a release that failed or was cancelled), it marks the
///   entry's liveness [`LossCause::Released`] and then:
///   1. asks the backend to release **at once** ([`HeldLock::release_now`]): an
///      in-process backend (memory) frees the entry synchronously, runtime or not;
///   2. otherwise runs [`HeldLock::release`] on a spawned task
///      ([`spawn_or_expire`]), retrying with backoff until it is confirmed (or the
///      entry is known gone) for at most ten minutes;
///   3. with no tokio runtime, logs a warning and leaves the entry to expire with its
///      lease (the backend's lock is then dropped as is).
///
/// So a backend's `HeldLock` needs no `Drop` of its own: dropping it means "forget",
/// never "release".
pub(crate) struct Grant {
    held: Option<Box<dyn HeldLock>>,
    name: LockName,
    token: FencingToken,
    /// The entry is known to be gone: nothing left to do on drop.
    settled: bool,
}

impl Grant {
    pub(crate) fn new(name: LockName, held: Box<dyn HeldLock>) -> Self {
        Grant {
            token: held.token(),
            held: Some(held),
            name,
            settled: false,
        }
    }

    /// The lock's name.
    pub(crate) fn name(&self) -> &LockName {
        &self.name
    }

    /// The backend's lock.
    pub(crate) fn held(&self) -> &dyn HeldLock {
        self.held
            .as_deref()
            .expect("a grant's lock is taken out only by its drop")
    }

    /// Releases the entry through the backend; see the type's docs for what happens
    /// when that fails and the grant is then dropped.
    pub(crate) async fn release(&mut self) -> Result<()> {
        let Some(held) = self.held.as_mut() else {
            return Ok(());
        };
        let result = held.release().await;
        self.settled = is_settled(&result);
        result
    }
}

/// Whether a release's answer means the entry is gone for sure.
fn is_settled(result: &Result<()>) -> bool {
    result
        .as_ref()
        .map_or_else(|e| e.kind() == ErrorKind::NotHeld, |()| true)
}

impl Drop for Grant {
    fn drop(&mut self) {
        let Some(mut held) = self.held.take() else {
            return;
        };
        if self.settled {
            return;
        }
        held.liveness().lose_with(LossCause::Released);
        let (name, token) = (self.name.clone(), self.token);
        if let Some(result) = held.release_now() {
            tracing::debug!(lock = %name, token = %token, ok = result.is_ok(), "released on drop");
            return;
        }
        let what = format!("lock {name} (token {token}), dropped unreleased");
        spawn_or_expire(format_args!("{what}"), async move {
            let started = tokio::time::Instant::now();
            let mut backoff = Backoff::new(DROP_RETRY_FIRST, DROP_RETRY_MAX);
            loop {
                let result = held.release().await;
                if is_settled(&result) || started.elapsed() >= DROP_RETRY_FOR {
                    tracing::debug!(lock = %name, token = %token, ok = result.is_ok(), "released on drop");
                    return;
                }
                if let Err(e) = &result {
                    tracing::debug!(lock = %name, token = %token, error = %e, "release on drop failed; retrying");
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        });
    }
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("name", &self.name)
            .field("token", &self.token)
            .field("settled", &self.settled)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Liveness;
    use crate::Error;
    use std::sync::{Arc, Mutex};

    /// A backend's lock with **no `Drop`**: it only records what core asks of it. Its
    /// release fails (`Unavailable`) `failures` times first; with `no_io` it can
    /// release at once.
    #[derive(Debug)]
    struct Recorder {
        calls: Arc<Mutex<Vec<&'static str>>>,
        liveness: Liveness,
        no_io: bool,
        failures: usize,
    }

    impl Recorder {
        fn answer(&mut self) -> Result<()> {
            if self.failures == 0 {
                return Ok(());
            }
            self.failures -= 1;
            Err(Error::new(ErrorKind::Unavailable, "server down"))
        }
    }

    #[async_trait::async_trait]
    impl HeldLock for Recorder {
        fn token(&self) -> FencingToken {
            FencingToken::new(7)
        }

        fn liveness(&self) -> &Liveness {
            &self.liveness
        }

        async fn release(&mut self) -> Result<()> {
            self.calls.lock().unwrap().push("release");
            tokio::task::yield_now().await; // I/O
            self.answer()
        }

        fn release_now(&mut self) -> Option<Result<()>> {
            if !self.no_io {
                return None;
            }
            self.calls.lock().unwrap().push("release_now");
            Some(self.answer())
        }

        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    type Calls = Arc<Mutex<Vec<&'static str>>>;

    fn grant(no_io: bool, failures: usize) -> (Grant, Calls, Liveness) {
        let calls = Calls::default();
        let liveness = Liveness::new(None);
        let held = Recorder {
            calls: calls.clone(),
            liveness: liveness.clone(),
            no_io,
            failures,
        };
        let name = LockName::new("k").unwrap();
        (Grant::new(name, Box::new(held)), calls, liveness)
    }

    fn calls(calls: &Calls) -> Vec<&'static str> {
        calls.lock().unwrap().clone()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dropped_grant_marks_its_entry_released_and_releases_in_the_background() {
        let (grant, log, liveness) = grant(false, 0);
        assert_eq!(grant.held().token(), FencingToken::new(7));
        drop(grant);
        assert_eq!(liveness.loss_cause(), Some(LossCause::Released), "at once");
        assert!(calls(&log).is_empty(), "spawned, not run in drop");
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(calls(&log), ["release"]);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_dropped_grant_retries_an_unconfirmed_release_until_it_is() {
        let (grant, log, _) = grant(false, 2);
        drop(grant);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(calls(&log), ["release"; 3]);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_dropped_grant_gives_up_after_ten_minutes() {
        let (grant, log, _) = grant(false, usize::MAX);
        drop(grant);
        tokio::time::sleep(DROP_RETRY_FOR * 2).await;
        let tries = calls(&log).len();
        // 100 ms, 200 ms, ... 5 s: about 600 / 5 + 6 attempts, then nothing more.
        assert!((100..=140).contains(&tries), "{tries}");
        tokio::time::sleep(DROP_RETRY_FOR).await;
        assert_eq!(calls(&log).len(), tries);
    }

    #[test]
    fn a_grant_dropped_outside_a_runtime_releases_a_no_io_lock_at_once() {
        let (grant, log, liveness) = grant(true, 0);
        drop(grant);
        assert_eq!(calls(&log), ["release_now"]);
        assert_eq!(liveness.loss_cause(), Some(LossCause::Released));
    }

    #[test]
    fn a_grant_dropped_outside_a_runtime_leaves_a_server_lock_to_expire() {
        let (grant, log, liveness) = grant(false, 0);
        drop(grant);
        assert!(calls(&log).is_empty());
        assert_eq!(liveness.loss_cause(), Some(LossCause::Released));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_settled_release_leaves_nothing_to_the_drop_an_unconfirmed_one_is_retried() {
        let (mut grant, log, _) = grant(false, 0);
        grant.release().await.unwrap();
        drop(grant);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(calls(&log), ["release"], "released: the drop does nothing");

        let (mut grant, log, _) = self::grant(false, 1);
        let err = grant.release().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        drop(grant);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(calls(&log), ["release"; 2], "unconfirmed: the drop retries");
    }
}
