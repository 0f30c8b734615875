//! The connection: one client per cluster member (`members.rs`) and the shared watch
//! stream (`watch.rs`), requests bounded by the request timeout and retried over the
//! members, and the backoff of every retry loop of this crate.

use crate::{error, members::Members, queue_view::QueueViews, watch::WatchMux, EtcdConfig};
use etcd_client::{Client, GetOptions};
use futures::stream::{FuturesUnordered, StreamExt};
use lock_core::{backend::Backoff, Error, ErrorKind, Result};
use std::{fmt, future::Future, sync::atomic::AtomicU64, sync::Arc, time::Duration};
use tokio::time::Instant;

const BACKOFF_START: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// One connection to an etcd cluster, shared by the backend, its leases and locks.
pub(crate) struct Conn {
    /// One client per member: unary requests and keep-alives (see [`Members`]).
    pub(crate) members: Arc<Members>,
    pub(crate) config: EtcdConfig,
    pub(crate) watches: WatchMux,
    /// Waiters woken to read the queue again ([`Backend::waiter_wakeups`](lock_core::backend::Backend::waiter_wakeups)).
    pub(crate) wakeups: AtomicU64,
    /// The waiters' views of the locks they wait on (`queue_view.rs`).
    pub(crate) views: QueueViews,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    /// The old `next_backoff`: `(current * 2).min(500 ms)` plus 0..=15 ms of jitter.
    fn in_old_step(prev: Duration, next: Duration) -> bool {
        let floor = (prev * 2).min(500 * MS);
        next >= floor && next < floor + 16 * MS
    }

    #[test]
    fn retry_delays_match_the_old_schedule() {
        let mut requests = retry_backoff();
        let mut prev = requests.next_delay();
        assert_eq!(prev, 20 * MS);
        // Started from zero: the first delay is the jitter alone.
        let mut waits = backoff_from_zero();
        let mut prev_wait = waits.next_delay();
        assert!(in_old_step(Duration::ZERO, prev_wait), "{prev_wait:?}");
        for _ in 0..10 {
            let (next, next_wait) = (requests.next_delay(), waits.next_delay());
            assert!(in_old_step(prev, next), "{prev:?} -> {next:?}");
            assert!(
                in_old_step(prev_wait, next_wait),
                "{prev_wait:?} -> {next_wait:?}"
            );
            (prev, prev_wait) = (next, next_wait);
        }
        requests.reset();
        assert_eq!(requests.current(), 20 * MS);
    }
}
