//! The held lock (one grant): a watch on its own key (shared stream) for loss
//! detection, and the fenced release.

use crate::{
    conn::{backoff_from_zero, Conn},
    keys::{delete, delete_until_confirmed, fenced_delete},
    permit::PermitSlot,
    session::LeaseShared,
    slot::Slot,
    watch::Signal,
};
use lock_core::backend::{spawn_or_expire, Liveness};
use lock_core::{Error, ErrorKind, LockName, LossCause, Result};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// How long a guard is held before its key gets a watch (see [`watch_own_key`]).
pub(crate) const OWN_KEY_WATCH_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

/// Marks `liveness` lost as soon as `key` is deleted or replaced (or its lease
/// changed), re-reading the key whenever the watch resets.
pub(crate) async fn watch_own_key(
    conn: Arc<Conn>,
    lease: Arc<LeaseShared>,
    key: String,
    token: i64,
    liveness: Liveness,
    mut from: i64,
) {
    let mut lease_lost = lease.liveness.watch();
    // Short critical sections end before this: they cost no watch at all. Nothing is
    // missed, since the watch starts at the grant's revision and replays from there.
    tokio::select! {
        _ = tokio::time::sleep(OWN_KEY_WATCH_DELAY) => {}
        _ = lease_lost.lost() => return,
    }
    let mut backoff = backoff_from_zero();
    loop {
        let mut sub = conn.watches.watch(key.as_bytes(), from);
        loop {
            let signal = tokio::select! {
                s = sub.next() => s,
                _ = lease_lost.lost() => return,
            };
            match signal {
                Signal::Put {
                    create_revision,
                    lease: l,
                } if create_revision == token && l == lease.id => {}
                Signal::Created { .. } => {}
                Signal::Put { .. } | Signal::Delete { .. } => {
                    tracing::debug!(key, "lock key deleted or replaced; the lock is lost");
                    liveness.lose_with(LossCause::EntryDeleted);
                    lease.poke();
                    return;
                }
                Signal::Reset => break,
            }
        }
        drop(sub);
        tokio::time::sleep(backoff.next_delay()).await;
        let what = || format!("re-reading lock key {key}");
        match conn
            .call(&what, |mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await
        {
            Ok(resp) => {
                let held = resp
                    .kvs()
                    .first()
                    .is_some_and(|kv| kv.create_revision() == token && kv.lease() == lease.id);
                if !held {
                    liveness.lose_with(LossCause::EntryDeleted);
                    return;
                }
                from = resp.header().map_or(from, |h| h.revision() + 1);
            }
            Err(e) => tracing::debug!(error = %e, "cannot re-read own lock key; watching again"),
        }
    }
}

/// Deletes `key` only while its create revision is `token`. `Ok(true)`: deleted;
/// `Ok(false)`: it was already gone.
pub(crate) async fn release(
    conn: &Conn,
    name: &LockName,
    key: &str,
    token: i64,
    lost_before: bool,
) -> Result<()> {
    let what = || format!("releasing lock {name} (token {token})");
    let (resp, retried) = conn
        .call_counted(&what, None, |mut c| {
            let txn = fenced_delete(key, token);
            async move { c.txn(txn).await }
        })
        .await?;
    // A retried release may find the key deleted by its own earlier attempt.
    if resp.succeeded() || (retried && !lost_before) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::NotHeld,
            format!("lock {name} (token {token}) was lost before release"),
        ))
    }
}

/// Deletes `key` in the background (only if its create revision is `fence`, when
/// given), retried until confirmed within the request bounds; outside a runtime it is
/// left to expire with its lease.
fn spawn_delete(conn: Arc<Conn>, key: String, fence: Option<i64>) {
    let what = format!("lock key {key}");
    spawn_or_expire(format_args!("{what}"), async move {
        delete_until_confirmed(&conn, &key, fence).await;
    });
}

/// The key's slot: freed once the key is known to be gone; dropped before that (a
/// release never confirmed, or no runtime to run one), it stays reserved, since the
/// key may still exist.
#[derive(Debug)]
struct KeySlot(Option<Slot>);

impl KeySlot {
    /// The key is gone: the slot may be reused.
    fn free(&mut self) {
        self.0 = None;
    }
}

impl Drop for KeySlot {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            slot.keep_reserved();
        }
    }
}

/// Stops a task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A granted acquisition on etcd: its key, whose create revision is the fencing
/// token, and a watch (on the backend's shared watch stream) that turns it `Lost`
/// as soon as the key is deleted or replaced by someone else.
///
/// The watch is opened once the lock has been held for 50 ms, starting at the grant's
/// revision: short critical sections cost no watch, and a deletion in the first 50 ms
/// is still reported (at 50 ms).
///
/// Reach it from a guard with
/// [`LockGuard::backend_lock`](lock_core::LockGuard::backend_lock) to run fenced
/// transactions on your own keys (see [`fenced_txn`](crate::fenced_txn)).
pub struct EtcdHeldLock {
    conn: Arc<Conn>,
    name: LockName,
    key: String,
    token: i64,
    lease: lock_core::LeaseId,
    liveness: Liveness,
    watcher: Option<AbortOnDrop>,
    slot: KeySlot,
    /// A semaphore permit's slot key; its create revision is the token.
    permit: Option<PermitSlot>,
    released: bool,
    acquired_at: std::time::SystemTime,
}

impl EtcdHeldLock {
    pub(crate) fn start(
        lease: &Arc<LeaseShared>,
        name: LockName,
        key: String,
        token: i64,
        seen_at: i64,
        slot: Option<Slot>,
    ) -> Self {
        let liveness = Liveness::new(None);
        let task = watch_own_key(
            lease.conn.clone(),
            lease.clone(),
            key.clone(),
            token,
            liveness.clone(),
            seen_at + 1,
        );
        EtcdHeldLock {
            conn: lease.conn.clone(),
            name,
            key,
            token,
            lease: lease.lease_id(),
            liveness,
            watcher: Some(AbortOnDrop(tokio::spawn(task))),
            slot: KeySlot(slot),
            permit: None,
            released: false,
            acquired_at: std::time::SystemTime::now(),
        }
    }

    /// The time written into the key's value at enqueueing, kept by
    /// [`set_value`](lock_core::backend::HeldLock::set_value).
    pub(crate) fn with_acquired_at(mut self, at: std::time::SystemTime) -> Self {
        self.acquired_at = at;
        self
    }

    pub(crate) fn with_permit(mut self, permit: Option<PermitSlot>) -> Self {
        self.permit = permit;
        self
    }

    /// The lock's key in etcd.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The create revision of the key: the fencing token's value.
    pub fn create_revision(&self) -> i64 {
        self.token
    }

    /// The lease the key is attached to.
    pub fn lease(&self) -> lock_core::LeaseId {
        self.lease
    }

    /// The lock's name.
    pub fn name(&self) -> &LockName {
        &self.name
    }

    pub(crate) fn conn(&self) -> &Conn {
        &self.conn
    }
}

impl std::fmt::Debug for EtcdHeldLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdHeldLock")
            .field("name", &self.name)
            .field("key", &self.key)
            .field("token", &self.token)
            .field("lease", &self.lease)
            .field("state", &self.liveness.state())
            .finish()
    }
}

#[async_trait::async_trait]
impl lock_core::backend::HeldLock for EtcdHeldLock {
    fn token(&self) -> lock_core::FencingToken {
        let token = self.permit.as_ref().map_or(self.token, |p| p.revision);
        lock_core::FencingToken::new(token.unsigned_abs())
    }

    fn slot(&self) -> Option<u32> {
        self.permit.as_ref().map(|p| p.slot)
    }

    fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    async fn release(&mut self) -> Result<()> {
        if self.released {
            return Ok(());
        }
        self.watcher = None;
        let lost_before = self.liveness.state().is_lost();
        if let Some(permit) = self.permit.take() {
            // The slot first: the next permit finds it free at once.
            if !delete(&self.conn, &permit.key, Some(permit.revision)).await {
                spawn_delete(self.conn.clone(), permit.key, Some(permit.revision));
            }
        }
        let result = release(&self.conn, &self.name, &self.key, self.token, lost_before).await;
        self.liveness.lose_with(LossCause::Released);
        // Gone for sure (deleted now, or before): the key slot may be reused. An
        // unconfirmed release is retried in the background by lock-core's grant.
        self.released = result
            .as_ref()
            .map_or_else(|e| e.kind() == ErrorKind::NotHeld, |()| true);
        if self.released {
            self.slot.free();
        }
        result
    }

    async fn set_value(&self, value: &str) -> Result<()> {
        let not_held = || {
            Error::new(
                ErrorKind::NotHeld,
                format!(
                    "lock {} (token {}) is no longer held; its value was not changed",
                    self.name, self.token
                ),
            )
        };
        if self.released {
            return Err(not_held());
        }
        let what = || {
            format!(
                "setting the value of lock {} (token {})",
                self.name, self.token
            )
        };
        let data = crate::queue::encode_value(self.acquired_at, Some(value));
        let lease = self.lease.get() as i64;
        // Idempotent: a retry after an unconfirmed attempt compares and writes the same.
        let resp = self
            .conn
            .call(&what, |mut c| {
                let txn = fenced_put(&self.key, self.token, data.clone(), lease);
                async move { c.txn(txn).await }
            })
            .await?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(not_held())
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Puts `value` into `key` (keeping it on `lease`) only while its create revision is
/// `token`.
fn fenced_put(key: &str, token: i64, value: String, lease: i64) -> etcd_client::Txn {
    use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
    Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, token)])
        .and_then([TxnOp::put(
            key,
            value,
            Some(PutOptions::new().with_lease(lease)),
        )])
}
