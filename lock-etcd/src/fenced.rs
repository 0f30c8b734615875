//! Native fenced writes: a transaction on the application's own keys that commits
//! only while the guard's lock key still has its create revision (the token).
//!
//! The operations, comparisons and outcomes are lock-etcd's own types, so no
//! etcd-client type appears in this crate's API (etcd-client can change its types
//! without changing ours).

use crate::{error, EtcdHeldLock};
use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use lock_core::{Error, ErrorKind, LockGuard, Result};

/// How a [`FencedCompare`] compares the key's field with the given value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cmp {
    /// Equal to.
    Equal,
    /// Not equal to.
    NotEqual,
    /// Greater than.
    Greater,
    /// Less than.
    Less,
}

impl Cmp {
    fn etcd(self) -> CompareOp {
        match self {
            Cmp::Equal => CompareOp::Equal,
            Cmp::NotEqual => CompareOp::NotEqual,
            Cmp::Greater => CompareOp::Greater,
            Cmp::Less => CompareOp::Less,
        }
    }
}

/// One condition of a [`FencedTxn`] on one of the application's keys, as etcd
/// compares it: a missing key has version, create revision and mod revision 0 and
/// fails every value comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FencedCompare {
    /// The key's value.
    Value {
        /// The key.
        key: Vec<u8>,
        /// How to compare.
        cmp: Cmp,
        /// The value to compare with.
        value: Vec<u8>,
    },
    /// The key's version (writes since it was created; 0 when it does not exist).
    Version {
        /// The key.
        key: Vec<u8>,
        /// How to compare.
        cmp: Cmp,
        /// The version to compare with.
        version: i64,
    },
    /// The revision at which the key was created (0 when it does not exist).
    CreateRevision {
        /// The key.
        key: Vec<u8>,
        /// How to compare.
        cmp: Cmp,
        /// The revision to compare with.
        revision: i64,
    },
    /// The revision of the key's last write (0 when it does not exist).
    ModRevision {
        /// The key.
        key: Vec<u8>,
        /// How to compare.
        cmp: Cmp,
        /// The revision to compare with.
        revision: i64,
    },
}

impl FencedCompare {
    /// The key's value compared with `value`.
    pub fn value(key: impl Into<Vec<u8>>, cmp: Cmp, value: impl Into<Vec<u8>>) -> Self {
        FencedCompare::Value {
            key: key.into(),
            cmp,
            value: value.into(),
        }
    }

    /// The key's version compared with `version` (`version(k, Cmp::Equal, 0)`: the
    /// key does not exist).
    pub fn version(key: impl Into<Vec<u8>>, cmp: Cmp, version: i64) -> Self {
        FencedCompare::Version {
            key: key.into(),
            cmp,
            version,
        }
    }

    /// The key's create revision compared with `revision`.
    pub fn create_revision(key: impl Into<Vec<u8>>, cmp: Cmp, revision: i64) -> Self {
        FencedCompare::CreateRevision {
            key: key.into(),
            cmp,
            revision,
        }
    }

    /// The key's mod revision compared with `revision`.
    pub fn mod_revision(key: impl Into<Vec<u8>>, cmp: Cmp, revision: i64) -> Self {
        FencedCompare::ModRevision {
            key: key.into(),
            cmp,
            revision,
        }
    }

    fn etcd(self) -> Compare {
        match self {
            FencedCompare::Value { key, cmp, value } => Compare::value(key, cmp.etcd(), value),
            FencedCompare::Version { key, cmp, version } => {
                Compare::version(key, cmp.etcd(), version)
            }
            FencedCompare::CreateRevision { key, cmp, revision } => {
                Compare::create_revision(key, cmp.etcd(), revision)
            }
            FencedCompare::ModRevision { key, cmp, revision } => {
                Compare::mod_revision(key, cmp.etcd(), revision)
            }
        }
    }
}

/// One operation of a [`FencedTxn`] on one of the application's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FencedOp {
    /// Write `value` at `key` (no lease: the data outlives the lock).
    Put {
        /// The key.
        key: Vec<u8>,
        /// Its new value.
        value: Vec<u8>,
    },
    /// Delete `key` (nothing happens when it does not exist).
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Read `key` in the transaction.
    Get {
        /// The key.
        key: Vec<u8>,
    },
}

impl FencedOp {
    /// A write of `value` at `key`.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        FencedOp::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    /// A deletion of `key`.
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        FencedOp::Delete { key: key.into() }
    }

    /// A read of `key`.
    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        FencedOp::Get { key: key.into() }
    }

    fn etcd(self) -> TxnOp {
        match self {
            FencedOp::Put { key, value } => TxnOp::put(key, value, None),
            FencedOp::Delete { key } => TxnOp::delete(key, None),
            FencedOp::Get { key } => TxnOp::get(key, None),
        }
    }
}

/// What one operation of a committed [`FencedTxn`] did, in the order of the
/// operations of the branch that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FencedOutcome {
    /// A put was applied.
    Put,
    /// A delete was applied; how many keys it removed (0 or 1).
    Deleted {
        /// Keys removed.
        count: i64,
    },
    /// A read: the key's value and mod revision, `None` when it does not exist.
    Got {
        /// The value and its mod revision.
        value: Option<(Vec<u8>, i64)>,
    },
}

/// The answer to a [`FencedTxn`] that ran while the lock was held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencedTxnResult {
    succeeded: bool,
    outcomes: Vec<FencedOutcome>,
}

impl FencedTxnResult {
    /// Whether the application's own compares held (then `and_then` ran, otherwise
    /// `or_else`).
    pub fn succeeded(&self) -> bool {
        self.succeeded
    }

    /// What each operation of the branch that ran did, in order.
    pub fn outcomes(&self) -> &[FencedOutcome] {
        &self.outcomes
    }
}

/// The application's part of a fenced transaction: its own compares and the
/// operations to run when they hold (`and_then`) or not (`or_else`). Run it with
/// [`fenced_txn`] or [`EtcdHeldLock::fenced_txn`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FencedTxn {
    compares: Vec<FencedCompare>,
    success: Vec<FencedOp>,
    failure: Vec<FencedOp>,
}

impl FencedTxn {
    /// An empty transaction (committing it only checks that the lock is still held).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds compares that must all hold for `and_then` to run.
    #[must_use]
    pub fn when(mut self, compares: impl IntoIterator<Item = FencedCompare>) -> Self {
        self.compares.extend(compares);
        self
    }

    /// Adds operations to run when every compare holds.
    #[must_use]
    pub fn and_then(mut self, ops: impl IntoIterator<Item = FencedOp>) -> Self {
        self.success.extend(ops);
        self
    }

    /// Adds operations to run when a compare fails (the lock still being held).
    #[must_use]
    pub fn or_else(mut self, ops: impl IntoIterator<Item = FencedOp>) -> Self {
        self.failure.extend(ops);
        self
    }

    fn etcd(self) -> Txn {
        Txn::new()
            .when(
                self.compares
                    .into_iter()
                    .map(FencedCompare::etcd)
                    .collect::<Vec<_>>(),
            )
            .and_then(
                self.success
                    .into_iter()
                    .map(FencedOp::etcd)
                    .collect::<Vec<_>>(),
            )
            .or_else(
                self.failure
                    .into_iter()
                    .map(FencedOp::etcd)
                    .collect::<Vec<_>>(),
            )
    }
}

fn outcome(resp: TxnOpResponse) -> Option<FencedOutcome> {
    Some(match resp {
        TxnOpResponse::Put(_) => FencedOutcome::Put,
        TxnOpResponse::Delete(d) => FencedOutcome::Deleted { count: d.deleted() },
        TxnOpResponse::Get(g) => FencedOutcome::Got {
            value: g
                .kvs()
                .first()
                .map(|kv| (kv.value().to_vec(), kv.mod_revision())),
        },
        TxnOpResponse::Txn(_) => return None,
    })
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
    pub async fn fenced_txn(&self, txn: FencedTxn) -> Result<FencedTxnResult> {
        let outer = Txn::new()
            .when([Compare::create_revision(
                self.key(),
                CompareOp::Equal,
                self.create_revision(),
            )])
            .and_then([TxnOp::txn(txn.etcd())]);
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
            Some(TxnOpResponse::Txn(inner)) => Ok(FencedTxnResult {
                succeeded: inner.succeeded(),
                outcomes: inner
                    .op_responses()
                    .into_iter()
                    .filter_map(outcome)
                    .collect(),
            }),
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
/// The result is the application's transaction's: `succeeded()` tells whether its
/// own compares held, `outcomes()` what each operation did.
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
/// use lock_etcd::{fenced_txn, Cmp, FencedCompare, FencedOp, FencedTxn};
///
/// # #[tokio::main] async fn main() -> lock_core::Result<()> {
/// let client = fencelock_demo_client().await?;
/// let guard = client.acquire("reports/daily").await?;
/// // Write the report once: only if it is not there yet, and only while held.
/// let write = FencedTxn::new()
///     .when([FencedCompare::version("/app/report", Cmp::Equal, 0)])
///     .and_then([FencedOp::put("/app/report", "done")]);
/// match fenced_txn(&guard, write).await {
///     Ok(r) if r.succeeded() => println!("written under token {}", guard.token()),
///     Ok(_) => println!("already written"),
///     Err(e) if e.kind() == lock_core::ErrorKind::NotHeld => println!("lock lost; nothing written"),
///     Err(e) => return Err(e),
/// }
/// guard.release().await
/// # }
/// # async fn fencelock_demo_client() -> lock_core::Result<lock_core::LockClient> {
/// #     Ok(lock_core::LockClient::new(lock_etcd::EtcdBackend::from_url("etcd://127.0.0.1:2379").await?))
/// # }
/// ```
pub async fn fenced_txn(guard: &LockGuard, txn: FencedTxn) -> Result<FencedTxnResult> {
    let held = guard.backend_lock::<EtcdHeldLock>().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("lock {} is not held through the etcd backend", guard.name()),
        )
    })?;
    held.fenced_txn(txn).await
}
