//! Native fenced writes: a transaction on the application's own keys that commits
//! only while the guard's lock key still has its create revision (the token).

use crate::{
    error,
    etcd_client::{Compare, CompareOp, TxnOp, TxnOpResponse, TxnResponse},
    EtcdHeldLock,
};
use etcd_client::Txn;
use lock_core::{Error, ErrorKind, LockGuard, Result};

/// The application's part of a fenced transaction: its own compares and the
/// operations to run when they hold (`and_then`) or not (`or_else`).
///
/// Built from the etcd-client types re-exported in [`crate::etcd_client`]; run it
/// with [`fenced_txn`] or [`EtcdHeldLock::fenced_txn`].
#[derive(Debug, Clone, Default)]
pub struct FencedTxn {
    compares: Vec<Compare>,
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
}

impl FencedTxn {
    /// An empty transaction (no compare, no operation).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds compares that must all hold for `and_then` to run.
    #[must_use]
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.compares.extend(compares);
        self
    }

    /// Adds operations to run when every compare holds.
    #[must_use]
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.success.extend(ops);
        self
    }

    /// Adds operations to run when a compare fails (the lock still being held).
    #[must_use]
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.failure.extend(ops);
        self
    }
}

impl EtcdHeldLock {
    /// Runs `txn` in one etcd transaction that commits only if this lock's key still
    /// exists with its create revision, i.e. the lock is still held on the server at
    /// the moment the transaction applies. See [`fenced_txn`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotHeld`] when the lock was lost (nothing was applied);
    /// [`ErrorKind::Timeout`] or [`ErrorKind::Unavailable`] when etcd did not
    /// confirm (the transaction may or may not have applied; it is not retried).
    ///
    /// # Cancel safety
    ///
    /// A dropped call may or may not have applied the transaction, as any etcd write.
    pub async fn fenced_txn(&self, txn: FencedTxn) -> Result<TxnResponse> {
        let inner = Txn::new()
            .when(txn.compares)
            .and_then(txn.success)
            .or_else(txn.failure);
        let outer = Txn::new()
            .when([Compare::create_revision(
                self.key(),
                CompareOp::Equal,
                self.create_revision(),
            )])
            .and_then([TxnOp::txn(inner)]);
        let conn = self.conn();
        let limit = conn.config.request_timeout();
        let what = || {
            format!(
                "fenced transaction under lock {} (token {})",
                self.name(),
                self.create_revision()
            )
        };
        let mut client = conn.members.client(conn.members.preferred());
        let resp = match tokio::time::timeout(limit, client.txn(outer)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => return Err(error::map(e, what())),
            Err(_) => return Err(error::timed_out(what(), limit)),
        };
        if !resp.succeeded() {
            return Err(Error::new(
                ErrorKind::NotHeld,
                format!(
                    "{}: the lock is no longer held; nothing was applied",
                    what()
                ),
            ));
        }
        match resp.op_responses().into_iter().next() {
            Some(TxnOpResponse::Txn(inner)) => Ok(inner),
            _ => Err(Error::new(
                ErrorKind::Backend,
                format!("{}: etcd answered without the inner transaction", what()),
            )),
        }
    }
}

/// Runs `txn` on etcd only while `guard` holds its lock: the strongest fencing etcd
/// offers, since the check and the write are one atomic transaction on the server.
///
/// The returned response is the application's transaction's: `succeeded()` tells
/// whether its own compares held.
///
/// # Errors
///
/// [`ErrorKind::InvalidConfig`] when `guard` is not from the etcd backend; the
/// errors of [`EtcdHeldLock::fenced_txn`], notably [`ErrorKind::NotHeld`] when the
/// lock was lost and nothing was written.
///
/// # Cancel safety
///
/// As [`EtcdHeldLock::fenced_txn`].
///
/// # Examples
///
/// ```no_run
/// use lock_etcd::{etcd_client::TxnOp, fenced_txn, FencedTxn};
///
/// # #[tokio::main] async fn main() -> lock_core::Result<()> {
/// let client = fencelock_demo_client().await?;
/// let guard = client.acquire("reports/daily").await?;
/// let write = FencedTxn::new().and_then([TxnOp::put("/app/report", "done", None)]);
/// match fenced_txn(&guard, write).await {
///     Ok(_) => println!("written under token {}", guard.token()),
///     Err(e) if e.kind() == lock_core::ErrorKind::NotHeld => println!("lock lost; nothing written"),
///     Err(e) => return Err(e),
/// }
/// guard.release().await
/// # }
/// # async fn fencelock_demo_client() -> lock_core::Result<lock_core::LockClient> {
/// #     Ok(lock_core::LockClient::new(lock_etcd::EtcdBackend::from_url("etcd://127.0.0.1:2379").await?))
/// # }
/// ```
pub async fn fenced_txn(guard: &LockGuard, txn: FencedTxn) -> Result<TxnResponse> {
    let held = guard.backend_lock::<EtcdHeldLock>().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("lock {} is not held through the etcd backend", guard.name()),
        )
    })?;
    held.fenced_txn(txn).await
}
