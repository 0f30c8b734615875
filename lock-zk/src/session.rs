//! Lease = ZooKeeper session: connecting (bounded), following the session's state,
//! heartbeats that move the local deadline, and closing.
//!
//! State mapping, done by one keeper task per session:
//!
//! | zookeeper-client state | lease [`Liveness`] |
//! |---|---|
//! | `SyncConnected` | heartbeats answered move the deadline (`Held`) |
//! | `Disconnected` (and `ConnectedReadOnly`) | no change by itself: the deadline stops moving, so the lease turns `Suspect` in the last tenth of the timeout before it (the rule on [`lock_core::LockState`]) unless a reconnect and an answered heartbeat come first |
//! | `Expired`, `Closed`, `AuthFailed` | `Lost` (final) |
//!
//! The local deadline is `sent + 0.9 × negotiated timeout`, where `sent` is when the
//! last *answered* heartbeat was sent: the server saw the session alive after that
//! moment, so it cannot expire it before `sent + timeout`. A heartbeat is a cheap
//! `exists` read on the chroot, sent every quarter of the negotiated timeout while the
//! session is connected (zookeeper-client's own pings do not tell us when they were
//! answered).

use crate::{
    config::{ZkAcl, ZkConfig, ZkNodeStyle},
    conn::{acls, connect, under_chroot},
    error,
};
use futures::future::BoxFuture;
use lock_core::backend::{local_deadline, Liveness};
use lock_core::{
    backend::{lock_unpoisoned, Backoff},
    Error, ErrorKind, LeaseId, LossCause, Result,
};
use std::{
    fmt,
    sync::{atomic::AtomicU64, Arc, Mutex, Weak},
    time::Duration,
};
use tokio::{sync::watch, time::Instant};
use zookeeper_client::{Acls, Client, Error as ZkError, SessionInfo, SessionState, WatchedEvent};

/// The future of the next event on a watched node.
pub(crate) type NodeEvent = BoxFuture<'static, WatchedEvent>;

/// How often an indeterminate request is retried before giving up.
pub(crate) const RETRIES: usize = 5;

/// The delays between those attempts: 100 ms, doubling (100, 200, 400, 800 ms).
pub(crate) fn retry_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::MAX)
}

/// Sets a watch on `path` and returns the future of its next event; `Ok(None)` if the
/// node does not exist.
pub(crate) async fn watch_node(
    client: &Client,
    path: &str,
) -> std::result::Result<Option<NodeEvent>, ZkError> {
    match client.get_and_watch_data(path).await {
        Ok((_, _, watcher)) => Ok(Some(Box::pin(watcher.changed()))),
        Err(ZkError::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One ZooKeeper session and what hangs off it.
pub(crate) struct Session {
    /// `None` once revoked: dropping the last clone closes the session.
    client: Mutex<Option<Client>>,
    id: LeaseId,
    timeout: Duration,
    liveness: Liveness,
    info: SessionInfo,
    acl: ZkAcl,
    node_style: ZkNodeStyle,
    shutdown: watch::Sender<bool>,
    /// The granting backend's count of waiter wake-ups.
    pub(crate) wakeups: Arc<AtomicU64>,
}

impl Session {
    /// A clone of the client, `None` after revoke.
    pub(crate) fn client(&self) -> Option<Client> {
        lock_unpoisoned(&self.client).clone()
    }

    /// Like [`client`](Self::client), failing with `LeaseLost` after revoke.
    pub(crate) fn client_for(&self, what: impl fmt::Display) -> Result<Client> {
        self.client().ok_or_else(|| error::revoked(what))
    }

    pub(crate) fn id(&self) -> LeaseId {
        self.id
    }

    pub(crate) fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    /// How this session's lock nodes are named.
    pub(crate) fn node_style(&self) -> ZkNodeStyle {
        self.node_style
    }

    pub(crate) fn acls(&self) -> Acls<'static> {
        acls(self.acl)
    }

    pub(crate) fn info(&self) -> &SessionInfo {
        &self.info
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Closes the session (the server deletes its ephemeral nodes in the same step)
    /// and waits, at most `limit`, for the close to be confirmed.
    pub(crate) async fn close(&self, limit: Duration) -> Result<()> {
        let client = lock_unpoisoned(&self.client).take();
        self.shutdown.send_replace(true);
        self.liveness.lose_with(LossCause::LeaseRevoked);
        let Some(client) = client else {
            return Ok(());
        };
        let mut states = client.state_watcher();
        if states.peek_state().is_terminated() {
            return Ok(());
        }
        drop(client);
        let closed = async {
            loop {
                if states.changed().await.is_terminated() {
                    return;
                }
            }
        };
        tokio::time::timeout(limit, closed).await.map_err(|_| {
            Error::new(
                ErrorKind::Unavailable,
                format!("close of zookeeper session {} not confirmed within {limit:?}; it expires after its timeout", self.id),
            )
        })
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("timeout", &self.timeout)
            .field("liveness", &self.liveness)
            .field("acl", &self.acl)
            .field("node_style", &self.node_style)
            .finish()
    }
}

/// Waits for `fut` if there is one, forever otherwise.
async fn poll_opt<F: std::future::Future + Unpin>(fut: &mut Option<F>) -> F::Output {
    match fut {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

type Beat = BoxFuture<'static, (Instant, std::result::Result<(), ZkError>)>;

/// Follows the session's states and sends heartbeats until the session ends, the
/// lease is revoked or dropped.
async fn keep(
    session: Weak<Session>,
    mut states: zookeeper_client::StateWatcher,
    mut shutdown: watch::Receiver<bool>,
    liveness: Liveness,
    timeout: Duration,
) {
    let interval = timeout / 4;
    let mut beat: Option<Beat> = None;
    let mut next = Instant::now();
    loop {
        tokio::select! {
            biased; // state changes first: a disconnect must not be overtaken by a beat
            _ = shutdown.changed() => break,
            state = states.changed() => match state {
                SessionState::SyncConnected => {
                    tracing::debug!(?state, "zookeeper session reconnected; confirming");
                    next = Instant::now();
                }
                // Not a reason for Suspect by itself: the session lives on the server
                // until its timeout, and the lease turns Suspect once its deadline is at
                // risk (the rule on `LockState`) unless a reconnect renews it first.
                SessionState::Disconnected | SessionState::ConnectedReadOnly => {
                    tracing::debug!(?state, "zookeeper session disconnected");
                }
                terminal => {
                    tracing::debug!(state = ?terminal, "zookeeper session ended");
                    liveness.lose_with(error::session_end_cause(terminal));
                    break;
                }
            },
            (sent, result) = poll_opt(&mut beat) => {
                beat = None;
                match result {
                    // Answered, but disconnected since: the deadline may not move, and
                    // the state stays suspect until a beat after the reconnect.
                    Ok(()) if states.peek_state() != SessionState::SyncConnected => {}
                    Ok(()) => {
                        if !liveness.confirm(sent, timeout) {
                            tracing::debug!("heartbeat answered after the local deadline; lease stays lost");
                            break;
                        }
                    }
                    Err(e) if error::is_terminal(&e) => {
                        liveness.keep_alive_failed();
                        liveness.lose_with(error::loss_cause_of(&e));
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "heartbeat failed");
                        liveness.keep_alive_failed();
                    }
                }
                next = sent + interval;
            },
            _ = tokio::time::sleep_until(next), if beat.is_none() => {
                let Some(client) = session.upgrade().and_then(|s| s.client()) else { break };
                beat = Some(Box::pin(async move {
                    let sent = Instant::now();
                    let result = client.check_stat("/").await.map(drop);
                    (sent, result)
                }));
            }
        }
    }
}

/// A lease of the ZooKeeper backend: one ZooKeeper session with its own connection.
///
/// Its TTL is the session timeout the server negotiated (it clamps requests to
/// `[2, 20] × tickTime`). Revoking it closes the session, which deletes every lock
/// node on it in one step. A session that expired is dead for good;
/// [`LockClient::session`](lock_core::LockClient::session) then grants a new one.
///
/// # One slow, stalled or cut-off server
///
/// The session's connection counts as lost once its server is silent for the
/// per-host timeout ([`ZkConfig::per_host_timeout`](crate::ZkConfig::per_host_timeout),
/// at most a fifth of the session timeout), and zookeeper-client moves it to another
/// server of the URL, where it resumes with its locks. A disconnect alone does not
/// make the lease `Suspect`: that happens only when no heartbeat was confirmed for
/// 0.8 of the timeout (the rule on [`lock_core::LockState`]). Tested: a follower
/// SIGSTOPped for 30 s costs none of three holders at a 3 s timeout.
///
/// # Crash takeover
///
/// Nothing closes the session of a holder that dies (SIGKILL, power loss): the server
/// expires it by itself, deleting its lock nodes, and the next waiter, whose watch on
/// that node fires, holds the lock one read later. ZooKeeper expires a session on the
/// first `tickTime` boundary after its last packet plus the negotiated timeout, so
/// from the crash the takeover takes
///
/// `timeout − (crash − last packet) + (0 … tickTime)`: at most `timeout + tickTime`.
///
/// The session's last packet is at most one ping interval before the crash:
/// zookeeper-client pings after 3/8 of the per-host timeout of silence
/// ([`ZkConfig::per_host_timeout`](crate::ZkConfig::per_host_timeout), at most a
/// fifth of the session timeout, checked on a timer of a fortieth), so every 3/40 to
/// 1/10 of the timeout, and the takeover lies between 0.9 × timeout and timeout +
/// tickTime. The lease asks
/// the server for exactly the TTL as its timeout (raised to
/// [`MIN_REQUESTED_SESSION_TIMEOUT`](crate::MIN_REQUESTED_SESSION_TIMEOUT)), and its
/// local deadline (0.9 × timeout after the last answered heartbeat was sent) still
/// comes before the server can expire it.
///
/// Measured by `cargo bench -p lock-zk --bench zk_cycle` (timeout 5 s, tickTime 2 s,
/// 10 kills at random moments 0.5–2.5 s after the grant, four runs): medians 5.60,
/// 6.11, 5.70 and 6.10 s from the kill (4.98–6.91 s overall), less than 10 ms of it
/// after the node's deletion; a raw zookeeper-client ephemeral node whose process was
/// killed at the same moment: 5.60, 6.11, 5.93 and 6.10 s (the two sessions mostly
/// expire on the same tick; the tick spreads runs by up to 2 s). A client that pings less often is
/// taken over sooner on average, because the server had already counted part of its
/// timeout down before the crash (kazoo pings about every third of the timeout; issue
/// 11 measured it at a median of 5.1 s with the same timeout and tickTime); the price
/// is noticing a dead server later (kazoo after 2/3 of the timeout, fencelock after a
/// fifth). For a faster takeover lower the
/// session timeout or the servers' `tickTime`.
///
/// # Non-guarantees
///
/// A stalled or cut-off **leader** costs an election first: the followers notice
/// after `syncLimit × tickTime` and elect a new one, and until then no session can be
/// renewed. A lease rides that out only when its timeout leaves room for the
/// election on top; with a short timeout (a few ticks) it may expire. A standalone
/// server has nowhere to move to: a round-trip jump of more than about two thirds of
/// the per-host timeout drops the connection and the lease turns `Suspect`.
pub struct ZkLease {
    session: Arc<Session>,
}

impl ZkLease {
    /// Opens a new session asking for `ttl` as its timeout.
    pub(crate) async fn grant(
        config: &ZkConfig,
        ttl: Duration,
        wakeups: Arc<AtomicU64>,
    ) -> Result<Self> {
        let started = Instant::now();
        let client = connect(config, ttl, false, None).await?;
        let client = under_chroot(config, client, true).await?;
        let timeout = client.session_timeout();
        let id = LeaseId::new(client.session_id().0 as u64);
        let liveness = Liveness::for_lease(local_deadline(started, timeout), timeout);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let states = client.state_watcher();
        let session = Arc::new(Session {
            info: client.session().clone(),
            client: Mutex::new(Some(client)),
            id,
            timeout,
            liveness: liveness.clone(),
            acl: config.acl(),
            node_style: config.node_style(),
            shutdown,
            wakeups,
        });
        tokio::spawn(keep(
            Arc::downgrade(&session),
            states,
            shutdown_rx,
            liveness,
            timeout,
        ));
        tracing::debug!(lease = %id, requested = ?ttl, negotiated = ?timeout, "zookeeper session opened");
        Ok(ZkLease { session })
    }

    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.session
    }
}

impl fmt::Debug for ZkLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.session, f)
    }
}

impl Drop for ZkLease {
    fn drop(&mut self) {
        // The core revokes dropped leases; this only makes sure the keeper stops and
        // the session closes even if that never ran (for example without a runtime).
        self.session.shutdown.send_replace(true);
        lock_unpoisoned(&self.session.client).take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_from_100_ms_as_before() {
        let mut backoff = retry_backoff();
        for attempt in 1..RETRIES {
            assert_eq!(
                backoff.next_delay(),
                Duration::from_millis(50 << attempt),
                "{attempt}"
            );
        }
    }
}
