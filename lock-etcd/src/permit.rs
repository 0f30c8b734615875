//! Semaphore permits: the slot key a granted permit takes, whose create revision is
//! the permit's fencing token.

use crate::{
    conn::{backoff_from_zero, Conn},
    keys::{header_revision, lost_while_waiting},
    queue,
};
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse};
use lock_core::{Error, ErrorKind, LockName, Result};
use std::sync::Arc;

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
pub(crate) async fn claim_permit_slot(
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
