//! Single requests on lock keys, below the recipe: reading the queue (out of a Txn's
//! answer, or the contender just ahead of a key) and deleting a key (fenced on its
//! create revision; retried through an outage), and the error for a waiter whose own
//! key is gone.

use crate::{
    conn::Conn,
    queue::{self, Waiter},
};
use etcd_client::{
    Compare, CompareOp, GetOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use lock_core::{backend::Backoff, Error, ErrorKind, LockName, Result};

/// How long a background delete keeps retrying through an outage.
const DELETE_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// Deletes `key` (as [`delete`]), retrying with backoff through an outage: a key whose
/// delete failed would otherwise sit on a lease that is still kept alive and block
/// the lock for every waiter. Gives up after [`DELETE_RETRY_FOR`]; by then the lease
/// has been revoked or has expired unless the server answers keep-alives but not
/// deletes.
pub(crate) async fn delete_until_confirmed(conn: &Conn, key: &str, fence: Option<i64>) -> bool {
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

pub(crate) fn header_revision(resp: &TxnResponse) -> i64 {
    resp.header().map_or(0, |h| h.revision())
}

/// The key-values of the `index`th range response of a txn.
pub(crate) fn range(resp: &TxnResponse, index: usize) -> Vec<Waiter> {
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

/// The contender just ahead of `own_rev` in `range` (none or one), skipping the keys
/// of nested namespaces: one keys-only read of every key created before ours. Also
/// returns the revision it was read at.
pub(crate) async fn direct_ahead(
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

/// Range options: the keys of a range by create revision, at most `limit`.
pub(crate) fn by_create(order: SortOrder, limit: i64) -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, order)
        .with_limit(limit)
}

/// The error for a waiter whose own key is gone.
pub(crate) fn lost_while_waiting(name: &LockName) -> Error {
    Error::new(
        ErrorKind::LeaseLost,
        format!("the waiter entry of lock {name} was deleted (lease expired or revoked, or removed by an operator)"),
    )
}
