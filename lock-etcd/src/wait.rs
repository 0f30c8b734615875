//! Waiting for the turn. A waiter that may wait waits in its client's view of the
//! lock's queue (`queue_view.rs`, followed by `watch_lock::join_queue`): woken only
//! by the event of the key it waits for, and granted with no request. A permit
//! waiter (whose grant signal is a rewrite of the key ahead), a reader's try, and
//! any waiter whose view etcd refuses, wait by reading: each watches only the one
//! key it waits for (the key just ahead, or for a reader the nearest earlier
//! writer) and its own key, and reads the queue again when woken.

use crate::{
    conn::{backoff_from_zero, Conn},
    keys::{by_create, direct_ahead, header_revision, lost_while_waiting, range},
    queue::{self, Position, Waiter},
    queue_view::Waited,
    session::LeaseShared,
    watch::Signal,
    watch_lock,
};
use etcd_client::{GetOptions, SortOrder, SortTarget, Txn, TxnOp};
use lock_core::{backend::Claim, Error, ErrorKind, LockName, Result};

/// What a waiter claims, and whether it may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Turn {
    pub(crate) claim: Claim,
    pub(crate) wait: bool,
}

/// How often, and how many times, a waiter looks at the keys ahead while its new watch
/// may still be unsynced on the server (see `wait_for_turn`).
const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(20);
const RECHECKS: u32 = 4;

/// Waits until [`decide`](lock_core::backend::decide) grants our key. After one read
/// of the queue (the enqueueing Txn's, if it was enough), a waiter that has to wait
/// waits in the client's view of the queue (`queue_view.rs`); a permit waiter, or any
/// waiter when etcd refuses the view, waits by watching only the one key it waits
/// for (the key just ahead for a writer or mutex, the nearest earlier writer for a
/// reader: a release wakes only the waiters it grants) and our own key (so a
/// revoked lease or deleted entry fails the wait at once). `ahead` is
/// what the enqueueing Txn read at `read_rev`, if anything. Returns the revision at
/// which the lock was seen granted, or `None` when `turn.wait` is off and the entry
/// is not granted at once.
pub(crate) async fn wait_for_turn(
    lease: &LeaseShared,
    name: &LockName,
    key: &str,
    own_rev: i64,
    mut ahead: Option<Vec<Waiter>>,
    mut read_rev: i64,
    turn: Turn,
) -> Result<Option<i64>> {
    let conn = &lease.conn;
    let range_key = queue::lock_range(conn.config.prefix(), name);
    let own = Waiter {
        key: key.as_bytes().to_vec(),
        create_revision: own_rev,
    };
    // A waiter that has to wait waits in the client's view of the queue (one prefix
    // watch per client and lock, `queue_view.rs`): no request per wake-up. A permit
    // waiter (whose grant signal is a rewrite of the key ahead) waits by reading.
    let mut in_view = turn.wait && !matches!(turn.claim, Claim::Shared { .. });
    let mut own_watch = None;
    let mut backoff = backoff_from_zero();
    loop {
        let mut waiters = match ahead.take() {
            Some(w) => w,
            None => {
                // Read our key and the one just ahead of it (a reader: every key
                // ahead, keys only), in one round trip.
                let before = match turn.claim {
                    Claim::Read | Claim::Shared { .. } => GetOptions::new()
                        .with_prefix()
                        .with_keys_only()
                        .with_sort(SortTarget::Create, SortOrder::Descend),
                    _ => by_create(SortOrder::Descend, 1),
                }
                .with_max_create_revision(own_rev - 1);
                let txn = Txn::new().and_then([
                    TxnOp::get(key, None),
                    TxnOp::get(range_key.clone(), Some(before)),
                ]);
                let what = || format!("waiting for lock {name}");
                let resp = match conn
                    .call(&what, |mut c| {
                        let txn = txn.clone();
                        async move { c.txn(txn).await }
                    })
                    .await
                {
                    Ok(resp) => resp,
                    Err(e) if e.is_retryable() && !lease.liveness.state().is_lost() => {
                        tokio::time::sleep(backoff.next_delay()).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                read_rev = header_revision(&resp);
                if !range(&resp, 0).iter().any(|w| w.create_revision == own_rev) {
                    lease.poke();
                    return Err(lost_while_waiting(name));
                }
                let ahead = range(&resp, 1);
                if let Claim::Shared { limit } = turn.claim {
                    // The whole queue ahead was read: every contender counts.
                    let ahead: Vec<Waiter> = ahead
                        .into_iter()
                        .filter(|w| queue::is_direct_child(&range_key, &w.key))
                        .collect();
                    if let Some(other) = queue::other_limit(&range_key, &ahead, limit) {
                        return Err(Error::new(
                            ErrorKind::InvalidConfig,
                            format!("semaphore {name} has limit {other}, not {limit}"),
                        ));
                    }
                    ahead
                } else if turn.claim == Claim::Read {
                    // The whole queue ahead was read: the nearest earlier writer.
                    ahead
                        .into_iter()
                        .find(|w| queue::blocks(&range_key, turn.claim, &w.key))
                        .into_iter()
                        .collect()
                } else if ahead
                    .iter()
                    .all(|w| queue::is_direct_child(&range_key, &w.key))
                {
                    ahead
                } else {
                    // The nearest key is a nested namespace's: read further down.
                    match direct_ahead(conn, name, &range_key, own_rev).await {
                        Ok((ahead, rev)) => {
                            read_rev = read_rev.max(rev);
                            ahead
                        }
                        Err(e) if e.is_retryable() && !lease.liveness.state().is_lost() => {
                            tokio::time::sleep(backoff.next_delay()).await;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        };
        waiters.push(own.clone());
        // The keys to watch, and whether a rewrite of the one key wakes us too (a
        // permit waiter behind another waiter: its grant signal, see `decide`).
        let (targets, wake_on_put) = match queue::position(&range_key, &waiters, key.as_bytes()) {
            Position::Owner => return Ok(Some(read_rev)),
            Position::WaitFor(_) | Position::WaitForAny(_) if !turn.wait => return Ok(None),
            Position::Missing => return Err(lost_while_waiting(name)),
            _ if in_view => match wait_in_view(lease, name, &range_key, key, own_rev).await? {
                Some(seen_at) => return Ok(Some(seen_at)),
                None => {
                    // etcd refused the view: wait by reading, from a fresh read.
                    in_view = false;
                    continue;
                }
            },
            Position::WaitFor(k) => (vec![k], matches!(turn.claim, Claim::Shared { .. })),
            Position::WaitForAny(keys) => (keys, false),
        };
        tracing::trace!(lock = %name, ahead = targets.len(), "waiting for the keys ahead");
        let targets: Vec<(Vec<u8>, i64)> = targets
            .into_iter()
            .map(|k| {
                let rev = waiters
                    .iter()
                    .find(|w| w.key == k)
                    .map_or(0, |w| w.create_revision);
                (k, rev)
            })
            .collect();
        // From the next change on, not from `read_rev + 1`: under contention other
        // writes land between our read and the watch's registration, and etcd serves
        // a watch that starts in the past only from a catch-up loop that runs every
        // 100 ms. What happened in between is checked once the watch is registered.
        let mut ahead_watches: Vec<_> = targets
            .iter()
            .map(|(k, _)| conn.watches.watch(k, 0))
            .collect();
        let own_sub =
            own_watch.get_or_insert_with(|| conn.watches.watch(key.as_bytes(), read_rev + 1));
        // etcd < 3.7 registers a watch "from now" at the revision it read just before
        // (`wsrev + 1`): a write committed in between leaves the watcher unsynced,
        // served only by the store's resync loop every 100 ms. While that may be so,
        // look at the keys ahead a few times (at most `RECHECKS`, only as long as we
        // still wait), so such a watch costs at most `RECHECK_EVERY`, not 100 ms.
        let mut recheck_at = tokio::time::Instant::now() + RECHECK_EVERY;
        let mut rechecks = 0;
        let reset = loop {
            let next_ahead = futures::future::select_all(
                ahead_watches
                    .iter_mut()
                    .enumerate()
                    .map(|(i, w)| Box::pin(async move { (i, w.next().await) })),
            );
            tokio::select! {
                ((i, signal), _, _) = next_ahead => match signal {
                    Signal::Delete { .. } => break false,
                    Signal::Reset => break true,
                    Signal::Created { revision } if revision > read_rev => {
                        let (ahead_key, ahead_rev) = &targets[i];
                        // Gone, or (for a permit waiter) rewritten since our read:
                        // the grant signal came before the watch did.
                        match ahead_moved(conn, name, ahead_key, *ahead_rev, wake_on_put, read_rev).await {
                            Ok(false) => {}
                            Ok(true) => break false,
                            Err(e) if e.is_retryable() => break true,
                            Err(e) => return Err(e),
                        }
                    }
                    Signal::Put { .. } if wake_on_put => break false,
                    Signal::Created { .. } | Signal::Put { .. } => {}
                },
                _ = tokio::time::sleep_until(recheck_at), if rechecks < RECHECKS => {
                    rechecks += 1;
                    recheck_at += RECHECK_EVERY;
                    let mut moved = false;
                    for (ahead_key, ahead_rev) in &targets {
                        match ahead_moved(conn, name, ahead_key, *ahead_rev, wake_on_put, read_rev).await {
                            Ok(m) => moved = m,
                            Err(e) if e.is_retryable() => {}
                            Err(e) => return Err(e),
                        }
                        if moved {
                            break;
                        }
                    }
                    if moved {
                        break false;
                    }
                }
                signal = own_sub.next() => match signal {
                    Signal::Put { create_revision, .. } if create_revision == own_rev => {}
                    Signal::Created { .. } => {}
                    Signal::Reset => break true,
                    Signal::Put { .. } | Signal::Delete { .. } => {
                        lease.poke();
                        return Err(lost_while_waiting(name));
                    }
                },
            }
        };
        // Woken (an event on a key ahead, a late registration or a re-check that
        // showed a change, or a broken watch): read the queue again.
        conn.wakeups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if reset {
            own_watch = None;
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
}

/// The mod revision of `key` if it still exists with create revision
/// `create_revision` (the key a waiter watches, checked once its watch is
/// registered).
async fn still_there(
    conn: &Conn,
    name: &LockName,
    key: &[u8],
    create_revision: i64,
) -> Result<Option<i64>> {
    let what = || format!("waiting for lock {name}");
    let resp = conn
        .call(&what, |mut c| {
            let key = key.to_vec();
            async move { c.get(key, None).await }
        })
        .await?;
    Ok(resp
        .kvs()
        .first()
        .filter(|kv| kv.create_revision() == create_revision)
        .map(|kv| kv.mod_revision()))
}

/// Whether the key ahead (`key`, created at `create_revision`) left, or, for a permit
/// waiter (`wake_on_put`), was rewritten since our read at `read_rev`: its grant signal.
async fn ahead_moved(
    conn: &Conn,
    name: &LockName,
    key: &[u8],
    create_revision: i64,
    wake_on_put: bool,
    read_rev: i64,
) -> Result<bool> {
    Ok(match still_there(conn, name, key, create_revision).await? {
        Some(modified) => wake_on_put && modified > read_rev,
        None => true,
    })
}

/// Waits in the client's view of the queue (see `queue_view.rs`): `Some(revision)`
/// once the lock is ours, `None` when etcd refuses the view (then wait by reading).
async fn wait_in_view(
    lease: &LeaseShared,
    name: &LockName,
    range_key: &str,
    key: &str,
    own_rev: i64,
) -> Result<Option<i64>> {
    let conn = &lease.conn;
    let joined = watch_lock::join_queue(conn, range_key);
    let waited = joined.wait_for_turn(key.as_bytes(), own_rev, &lease.liveness, &conn.wakeups);
    match waited.await {
        Waited::Granted(seen_at) => Ok(Some(seen_at)),
        Waited::KeyGone => {
            lease.poke();
            Err(lost_while_waiting(name))
        }
        Waited::LeaseLost => Err(Error::new(
            ErrorKind::LeaseLost,
            format!("the lease was lost while waiting for lock {name}"),
        )),
        Waited::Unavailable => Ok(None),
    }
}
