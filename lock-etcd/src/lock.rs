//! The recipe (etcd's `concurrency` mutex, herd-free), I/O only: enqueue with one
//! Txn, wait for the turn (`wait.rs`), take a semaphore's permit slot
//! (`permit.rs`), and hand the key to the grant (`held.rs`), which watches it and
//! releases it fenced. A dropped, failed or timed-out acquire deletes its key.

use crate::{
    conn::Conn,
    keys::{
        by_create, delete_until_confirmed, direct_ahead, header_revision, lost_while_waiting, range,
    },
    permit::claim_permit_slot,
    queue,
    session::LeaseShared,
    slot::Slot,
    wait::{wait_for_turn, Turn},
};
use etcd_client::{Compare, CompareOp, PutOptions, SortOrder, Txn, TxnOp, TxnResponse};
use lock_core::{
    backend::{spawn_or_expire, Claim, WaitMode},
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
