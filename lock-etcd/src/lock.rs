//! The recipe (etcd's `concurrency` mutex, herd-free): enqueue with one Txn, wait
//! for the key just ahead, verify, hold while watching the own key, release fenced.

use crate::{
    queue::{self, Position, Waiter},
    session::{backoff_from_zero, Conn, LeaseShared},
    slot::Slot,
    watch::Signal,
};
use etcd_client::{
    Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};
use lock_core::{
    backend::{spawn_or_expire, Backoff, Claim, WaitMode},
    AcquireOptions, Error, ErrorKind, LockName, Result,
};
use std::{future::Future, pin::Pin, sync::Arc, time::SystemTime};

type Enqueued = Result<(TxnResponse, bool)>;
type Request = Pin<Box<dyn Future<Output = Enqueued> + Send>>;

/// Deletes the waiter key unless disarmed: a dropped, failed or timed-out acquire
/// leaves nothing behind. The enqueueing request is polled in place; when the
/// acquire is dropped mid-request, a background task finishes it first and deletes
/// the key only once its outcome is known (a delete racing ahead of its put would
/// leave a ghost waiter).
struct Cleanup {
    conn: Arc<Conn>,
    key: Option<String>,
    slot: Option<Slot>,
    pending: Option<Request>,
    indeterminate: bool,
}

impl Cleanup {
    /// Awaits the enqueueing request. Cancel safe: a drop hands it to the cleanup.
    async fn join(&mut self) -> Enqueued {
        let Some(request) = self.pending.as_mut() else {
            return Err(Error::new(
                ErrorKind::Backend,
                "no enqueue request in flight",
            ));
        };
        let outcome = request.await;
        self.pending = None;
        // A failed or retried request may still apply (or have applied) its put.
        self.indeterminate = outcome.as_ref().map_or(true, |(_, retried)| *retried);
        outcome
    }

    /// The key is ours to keep (granted) or was never created: hand back its slot.
    fn disarm(mut self) -> Option<Slot> {
        self.key = None;
        self.slot.take()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let (conn, pending, indeterminate) =
            (self.conn.clone(), self.pending.take(), self.indeterminate);
        let slot = self.slot.take();
        let what = format!("waiter key {key}");
        spawn_or_expire(format_args!("{what}"), async move {
            // Wait for a request still in flight: its outcome decides what to delete.
            let indeterminate = match pending {
                Some(pending) => !matches!(pending.await, Ok((_, false))),
                None => indeterminate,
            };
            let deleted = delete_until_confirmed(&conn, &key, None).await;
            match slot {
                Some(slot) if !deleted => slot.keep_reserved(),
                // The put may still be applied late: sweep before the slot is reused.
                Some(mut slot) if indeterminate => slot.taint(key, 0),
                _ => {}
            }
        });
    }
}

/// Deletes `key` in the background (only if its create revision is `fence`, when
/// given), bounded by the request timeout; frees `slot` once the key is gone.
pub(crate) fn spawn_delete(conn: Arc<Conn>, key: String, fence: Option<i64>, slot: Option<Slot>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(
            key,
            "no tokio runtime to delete a lock key; it expires with its lease"
        );
        if let Some(slot) = slot {
            slot.keep_reserved();
        }
        return;
    };
    rt.spawn(async move {
        if let (false, Some(slot)) = (delete_until_confirmed(&conn, &key, fence).await, slot) {
            slot.keep_reserved();
        }
    });
}

/// How long a background delete keeps retrying through an outage.
const DELETE_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// Deletes `key` (as [`delete`]), retrying with backoff through an outage: a key whose
/// delete failed would otherwise sit on a lease that is still kept alive and block
/// the lock for every waiter. Gives up after [`DELETE_RETRY_FOR`]; by then the lease
/// has been revoked or has expired unless the server answers keep-alives but not
/// deletes.
async fn delete_until_confirmed(conn: &Conn, key: &str, fence: Option<i64>) -> bool {
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::new(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(5),
    );
    loop {
        if delete(conn, key, fence).await {
            return true;
        }
        if started.elapsed() >= DELETE_RETRY_FOR {
            return false;
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Deletes `key`; `false` if that could not be confirmed.
pub(crate) async fn delete(conn: &Conn, key: &str, fence: Option<i64>) -> bool {
    let what = || format!("deleting lock key {key}");
    let result = match fence {
        None => conn
            .call(&what, |mut c| {
                let key = key.to_owned();
                async move { c.delete(key, None).await }
            })
            .await
            .map(drop),
        Some(rev) => conn
            .call(&what, |mut c| {
                let txn = fenced_delete(key, rev);
                async move { c.txn(txn).await }
            })
            .await
            .map(drop),
    };
    if let Err(e) = &result {
        tracing::debug!(error = %e, "background delete failed; the key expires with its lease");
    }
    result.is_ok()
}

pub(crate) fn fenced_delete(key: impl Into<Vec<u8>>, create_revision: i64) -> Txn {
    let key = key.into();
    Txn::new()
        .when([Compare::create_revision(
            key.clone(),
            CompareOp::Equal,
            create_revision,
        )])
        .and_then([TxnOp::delete(key, None)])
}

fn header_revision(resp: &TxnResponse) -> i64 {
    resp.header().map_or(0, |h| h.revision())
}

/// The key-values of the `index`th range response of a txn.
fn range(resp: &TxnResponse, index: usize) -> Vec<Waiter> {
    match resp.op_responses().into_iter().nth(index) {
        Some(TxnOpResponse::Get(get)) => get
            .kvs()
            .iter()
            .map(|kv| Waiter {
                key: kv.key().to_vec(),
                create_revision: kv.create_revision(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The enqueueing `txn` as a request the [`Cleanup`] can await or hand over:
/// retried through [`Conn::call_counted`], which reports whether it was repeated.
fn enqueue_request(conn: &Arc<Conn>, name: &LockName, txn: Txn) -> Request {
    let conn = conn.clone();
    let name = name.clone();
    Box::pin(async move {
        let what = move || format!("acquiring lock {name}");
        conn.call_counted(&what, None, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    })
}

fn lost_while_waiting(name: &LockName) -> Error {
    Error::new(
        ErrorKind::LeaseLost,
        format!("the waiter entry of lock {name} was deleted (lease expired or revoked, or removed by an operator)"),
    )
}

/// Enqueues on `lease` and, with [`WaitMode::Wait`], waits for the turn.
pub(crate) async fn acquire(
    lease: &Arc<LeaseShared>,
    name: &LockName,
    claim: Claim,
    mode: WaitMode,
    options: &AcquireOptions,
) -> Result<Option<crate::EtcdHeldLock>> {
    if lease.liveness.state().is_lost() {
        return Err(Error::new(
            ErrorKind::LeaseLost,
            format!("lease {} is lost; cannot acquire {name}", lease.lease_id()),
        ));
    }
    let conn = &lease.conn;
    let prefix = conn.config.prefix();
    let range_key = queue::lock_range(prefix, name);
    let slot = lease.take_slot(&range_key);
    let key = queue::waiter_key(prefix, name, lease.id, slot.index(), claim);
    let acquired_at = SystemTime::now();
    let value = queue::encode_value(acquired_at, options.holder());
    let put = TxnOp::put(
        key.clone(),
        value,
        Some(PutOptions::new().with_lease(lease.id)),
    );
    // A reader that may share with the holders enqueues like a waiter and then
    // decides once (a range-empty compare would refuse it beside other readers).
    let reader = matches!(claim, Claim::Read | Claim::Shared { .. });
    let txn = match mode {
        // Put only if the lock's range is empty; else read the owner.
        WaitMode::NoWait if !reader => Txn::new()
            .when([Compare::create_revision(range_key.clone(), CompareOp::Equal, 0).with_prefix()])
            .and_then([put.clone()])
            .or_else([TxnOp::get(
                range_key.clone(),
                Some(by_create(SortOrder::Ascend, 1)),
            )]),
        // Put if our key does not exist yet (so a retry cannot move it to the back of
        // the queue) and read the key just ahead of ours.
        WaitMode::Wait | WaitMode::NoWait => Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([
                put.clone(),
                TxnOp::get(range_key.clone(), Some(by_create(SortOrder::Descend, 2))),
            ])
            .or_else([TxnOp::get(key.clone(), None)]),
    };
    let mut cleanup = Cleanup {
        conn: conn.clone(),
        key: Some(key.clone()),
        slot: Some(slot),
        pending: Some(enqueue_request(conn, name, txn)),
        indeterminate: false,
    };
    let (resp, retried) = cleanup.join().await?;
    let rev = header_revision(&resp);
    let wait = mode == WaitMode::Wait || reader;
    let (token, seen_at) = match (wait, resp.succeeded()) {
        (false, true) => (rev, rev),
        (false, false) => match range(&resp, 0).first() {
            // A retry may find the key an earlier attempt created: then it is ours.
            Some(w) if w.key == key.as_bytes() => (w.create_revision, rev),
            Some(w) if !queue::is_direct_child(&range_key, &w.key) => {
                // Only keys of a nested namespace may be there, which the range-empty
                // compare cannot tell apart: enqueue, and keep the key only if it is
                // the first contender (else the cleanup deletes it).
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([put, TxnOp::get(key.clone(), None)])
                    .or_else([TxnOp::get(key.clone(), None)]);
                cleanup.pending = Some(enqueue_request(conn, name, txn));
                let (resp, _) = cleanup.join().await?;
                let index = usize::from(resp.succeeded());
                let own_rev = range(&resp, index)
                    .first()
                    .map(|w| w.create_revision)
                    .ok_or_else(|| lost_while_waiting(name))?;
                let (ahead, read_rev) = direct_ahead(conn, name, &range_key, own_rev).await?;
                if !ahead.is_empty() {
                    return Ok(None);
                }
                (own_rev, read_rev)
            }
            _ => {
                if !retried {
                    drop(cleanup.disarm());
                }
                return Ok(None);
            }
        },
        (true, put) => {
            let (own_rev, ahead) = if put {
                let read = range(&resp, 1);
                // A key of a nested namespace among them, or a reader (whose entry
                // to wait for may lie further down): let the wait read properly.
                let foreign = read
                    .iter()
                    .any(|w| !queue::is_direct_child(&range_key, &w.key));
                (rev, (!foreign && !reader).then_some(read))
            } else {
                let own = range(&resp, 0);
                let own_rev = own
                    .first()
                    .map(|w| w.create_revision)
                    .ok_or_else(|| lost_while_waiting(name))?;
                (own_rev, None)
            };
            let turn = Turn {
                claim,
                wait: mode == WaitMode::Wait,
            };
            let Some(seen_at) = wait_for_turn(lease, name, &key, own_rev, ahead, rev, turn).await?
            else {
                // A reader's try that would wait: the cleanup deletes its key.
                return Ok(None);
            };
            (own_rev, seen_at)
        }
    };
    let permit = match claim {
        Claim::Shared { limit } => {
            Some(claim_permit_slot(conn, name, limit, &key, token, lease.id).await?)
        }
        _ => None,
    };
    let mut slot = cleanup.disarm();
    if retried {
        if let Some(slot) = slot.as_mut() {
            slot.taint(key.clone(), token);
        }
    }
    let held = crate::EtcdHeldLock::start(lease, name.clone(), key, token, seen_at, slot)
        .with_acquired_at(acquired_at);
    Ok(Some(held.with_permit(permit)))
}

/// A granted permit's slot: the key [`queue::permit_slot_key`] held on the permit's
/// lease, whose create revision is the permit's fencing token. A slot key is created
/// only while absent, so successive holders of one slot get increasing tokens.
#[derive(Debug, Clone)]
pub(crate) struct PermitSlot {
    pub(crate) slot: u32,
    pub(crate) key: String,
    pub(crate) revision: i64,
}

/// How many rounds over every slot a granted permit tries before giving up.
const SLOT_ROUNDS: usize = 50;

/// Takes the lowest free slot of semaphore `name` for the granted waiter key
/// `own_key`. [`decide`](lock_core::backend::decide) grants at most `limit` permits,
/// so a slot is free, or held by a permit whose waiter key is already gone (released
/// a moment ago, or deleted by an operator): such a slot key is deleted, fenced on
/// its revision, and taken on the next round.
///
/// The Txn that takes the slot also rewrites `own_key` in place (same value, lease
/// and create revision): the semaphore hand-off signal of
/// [`decide`](lock_core::backend::decide), which wakes the waiter just behind us so
/// it watches the permits ahead of it from now on. It is in the same Txn, so it
/// costs no round trip.
async fn claim_permit_slot(
    conn: &Arc<Conn>,
    name: &LockName,
    limit: u32,
    own_key: &str,
    own_rev: i64,
    lease: i64,
) -> Result<PermitSlot> {
    let prefix = conn.config.prefix();
    let what = || format!("taking a permit slot of semaphore {name}");
    let mut backoff = backoff_from_zero();
    for _ in 0..SLOT_ROUNDS {
        for slot in 0..limit {
            let key = queue::permit_slot_key(prefix, name, slot);
            let take = Txn::new()
                .when([
                    Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                    Compare::create_revision(own_key, CompareOp::Equal, own_rev),
                ])
                .and_then([
                    TxnOp::put(
                        key.clone(),
                        own_key,
                        Some(PutOptions::new().with_lease(lease)),
                    ),
                    TxnOp::put(
                        own_key,
                        "",
                        Some(PutOptions::new().with_ignore_value().with_ignore_lease()),
                    ),
                ])
                .or_else([TxnOp::get(key.clone(), None), TxnOp::get(own_key, None)]);
            let resp = conn
                .call(&what, |mut c| {
                    let txn = take.clone();
                    async move { c.txn(txn).await }
                })
                .await?;
            if resp.succeeded() {
                let revision = header_revision(&resp);
                return Ok(PermitSlot {
                    slot,
                    key,
                    revision,
                });
            }
            if range_kvs(&resp, 1).is_none_or(|own| own.1 != own_rev) {
                return Err(lost_while_waiting(name));
            }
            let Some(kv) = range_kvs(&resp, 0) else {
                continue;
            };
            if kv.0 == own_key.as_bytes() {
                // Our own put, applied by an earlier attempt of a retried request.
                return Ok(PermitSlot {
                    slot,
                    key,
                    revision: kv.1,
                });
            }
            let stale = Txn::new()
                .when([
                    Compare::create_revision(kv.0, CompareOp::Equal, 0),
                    Compare::mod_revision(key.clone(), CompareOp::Equal, kv.2),
                ])
                .and_then([TxnOp::delete(key.clone(), None)]);
            conn.call(&what, |mut c| {
                let txn = stale.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
    Err(Error::new(
        ErrorKind::Unavailable,
        format!("no free permit slot of semaphore {name} after {SLOT_ROUNDS} rounds"),
    ))
}

/// The value, create revision and mod revision of the first key of the `index`th
/// range response of a txn.
fn range_kvs(resp: &TxnResponse, index: usize) -> Option<(Vec<u8>, i64, i64)> {
    match resp.op_responses().into_iter().nth(index) {
        Some(TxnOpResponse::Get(get)) => get
            .kvs()
            .first()
            .map(|kv| (kv.value().to_vec(), kv.create_revision(), kv.mod_revision())),
        _ => None,
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

/// The contender just ahead of `own_rev` in `range` (none or one), skipping the keys
/// of nested namespaces: one keys-only read of every key created before ours. Also
/// returns the revision it was read at.
async fn direct_ahead(
    conn: &Conn,
    name: &LockName,
    range_key: &str,
    own_rev: i64,
) -> Result<(Vec<Waiter>, i64)> {
    let what = || format!("reading the queue of lock {name}");
    let options = GetOptions::new()
        .with_prefix()
        .with_keys_only()
        .with_sort(SortTarget::Create, SortOrder::Descend)
        .with_max_create_revision(own_rev - 1);
    let resp = conn
        .call(&what, |mut c| {
            let (range_key, options) = (range_key.to_owned(), options.clone());
            async move { c.get(range_key, Some(options)).await }
        })
        .await?;
    let ahead = resp
        .kvs()
        .iter()
        .find(|kv| queue::is_direct_child(range_key, kv.key()))
        .map(|kv| Waiter {
            key: kv.key().to_vec(),
            create_revision: kv.create_revision(),
        });
    Ok((
        ahead.into_iter().collect(),
        resp.header().map_or(0, |h| h.revision()),
    ))
}

fn by_create(order: SortOrder, limit: i64) -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, order)
        .with_limit(limit)
}

/// What a waiter claims, and whether it may wait.
#[derive(Debug, Clone, Copy)]
struct Turn {
    claim: Claim,
    wait: bool,
}

/// Waits until [`decide`](lock_core::backend::decide) grants our key, watching only
/// the one key it waits for (the key just ahead for a writer or mutex, the nearest
/// earlier writer for a reader: a release wakes only the waiters it grants) and our
/// own key (so a revoked lease or deleted entry fails the wait at once). `ahead` is
/// what the enqueueing Txn read at `read_rev`, if anything. Returns the revision at
/// which the lock was seen granted, or `None` when `turn.wait` is off and the entry
/// is not granted at once.
/// How often, and how many times, a waiter looks at the keys ahead while its new watch
/// may still be unsynced on the server (see `wait_for_turn`).
const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(20);
const RECHECKS: u32 = 4;

async fn wait_for_turn(
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
            Position::WaitFor(k) => (vec![k], matches!(turn.claim, Claim::Shared { .. })),
            Position::WaitForAny(keys) => (keys, false),
            Position::Missing => return Err(lost_while_waiting(name)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::retry_backoff;
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
