//! Fenced writes to ZooKeeper itself: a multi-op on the application's own znodes that
//! commits only while the lock node exists (a `check` op on it, in the same
//! transaction).

use crate::{error, held::ZkHeldLock};
use lock_core::{Error, ErrorKind, LockGuard, Result};
use zookeeper_client::{CheckWriteError, CreateMode, Error as ZkError, MultiWriteResult};

/// One operation of a [`FencedWrite`]. Paths are absolute within the backend's chroot
/// (the same root the lock nodes live under).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FencedOp {
    /// Create a persistent node (with the backend's ACL).
    Create {
        /// The node's path.
        path: String,
        /// Its data.
        data: Vec<u8>,
    },
    /// Replace a node's data, optionally only at `version`.
    SetData {
        /// The node's path.
        path: String,
        /// The new data.
        data: Vec<u8>,
        /// The data version it must have, `None` for any.
        version: Option<i32>,
    },
    /// Delete a node, optionally only at `version`.
    Delete {
        /// The node's path.
        path: String,
        /// The data version it must have, `None` for any.
        version: Option<i32>,
    },
    /// Require a node to have data version `version`.
    CheckVersion {
        /// The node's path.
        path: String,
        /// The data version it must have.
        version: i32,
    },
}

/// A ZooKeeper transaction that commits only while the lock is held: the
/// backend-native fenced write.
///
/// The transaction starts with a `check` of the guard's lock node, so if the lock was
/// lost (session expired, node deleted) nothing is applied, however late the write
/// arrives. Build it with the chained methods and run it with [`fenced_write`] (or
/// [`ZkHeldLock::fenced_write`]).
///
/// # Examples
///
/// ```no_run
/// use lock_core::LockClient;
/// use lock_zk::{fenced_write, FencedWrite, ZkBackend};
///
/// # async fn run() -> lock_core::Result<()> {
/// let client = LockClient::new(ZkBackend::from_url("zk://127.0.0.1:2181/app").await?);
/// let guard = client.acquire("config").await?;
/// let write = FencedWrite::new()
///     .set_data("/config/current", b"v2".to_vec(), None)
///     .create("/config/history-v2", b"v2".to_vec());
/// // Commits only if the guard's lock node still exists: `NotHeld` and nothing
/// // applied if the lock was lost, however late this request arrives.
/// let outcome = fenced_write(&guard, &write).await?;
/// assert_eq!(outcome.len(), 2);
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FencedWrite {
    ops: Vec<FencedOp>,
}

impl FencedWrite {
    /// An empty write (committing it only checks that the lock is still held).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the creation of a persistent node.
    #[must_use]
    pub fn create(mut self, path: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        self.ops.push(FencedOp::Create {
            path: path.into(),
            data: data.into(),
        });
        self
    }

    /// Adds a data update.
    #[must_use]
    pub fn set_data(
        mut self,
        path: impl Into<String>,
        data: impl Into<Vec<u8>>,
        version: Option<i32>,
    ) -> Self {
        self.ops.push(FencedOp::SetData {
            path: path.into(),
            data: data.into(),
            version,
        });
        self
    }

    /// Adds a deletion.
    #[must_use]
    pub fn delete(mut self, path: impl Into<String>, version: Option<i32>) -> Self {
        self.ops.push(FencedOp::Delete {
            path: path.into(),
            version,
        });
        self
    }

    /// Adds a version check.
    #[must_use]
    pub fn check_version(mut self, path: impl Into<String>, version: i32) -> Self {
        self.ops.push(FencedOp::CheckVersion {
            path: path.into(),
            version,
        });
        self
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[FencedOp] {
        &self.ops
    }
}

/// What one operation of a committed [`FencedWrite`] did, in the order of the ops.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FencedOutcome {
    /// A node was created at `path`.
    Created {
        /// The created node's path.
        path: String,
    },
    /// A node's data was set; its new data version.
    DataSet {
        /// The new data version.
        version: i32,
    },
    /// A node was deleted.
    Deleted,
    /// A version check passed.
    Checked,
}

/// Runs `write` as one ZooKeeper transaction that commits only if `guard`'s lock node
/// still exists.
///
/// # Errors
///
/// - [`ErrorKind::NotHeld`] when the lock node is gone (lock lost): nothing applied;
/// - [`ErrorKind::Backend`] when `guard` is not a ZooKeeper lock, or an operation
///   failed (for example a version mismatch): nothing applied;
/// - [`ErrorKind::Unavailable`] when the connection dropped: the write **may or may
///   not** have been applied.
///
/// # Cancel safety
///
/// Not cancel safe: the request is sent when the call is made; a dropped call may or
/// may not have committed (all or nothing).
pub async fn fenced_write(guard: &LockGuard, write: &FencedWrite) -> Result<Vec<FencedOutcome>> {
    let held = guard.backend_lock::<ZkHeldLock>().ok_or_else(|| {
        Error::new(
            ErrorKind::Backend,
            format!(
                "lock {} is not held on the zookeeper backend; no fenced write",
                guard.name()
            ),
        )
    })?;
    held.fenced_write(write).await
}

impl ZkHeldLock {
    /// Runs `write` as one transaction that commits only if this lock node still
    /// exists. See [`fenced_write`].
    ///
    /// # Errors
    ///
    /// As [`fenced_write`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`fenced_write`].
    pub async fn fenced_write(&self, write: &FencedWrite) -> Result<Vec<FencedOutcome>> {
        let what = || {
            format!(
                "fenced write under lock {} (token {})",
                self.name(),
                self.token_value()
            )
        };
        let not_held = || {
            Error::new(
                ErrorKind::NotHeld,
                format!("{}: the lock is no longer held; nothing applied", what()),
            )
        };
        let Some(client) = self.session.client() else {
            return Err(not_held());
        };
        let mut writer = client
            .new_check_writer(self.node_path(), None)
            .map_err(|e| error::map(e, what()))?;
        let acls = self.session.acls();
        let persistent = CreateMode::Persistent.with_acls(acls);
        for op in &write.ops {
            let added = match op {
                FencedOp::Create { path, data } => writer.add_create(path, data, &persistent),
                FencedOp::SetData {
                    path,
                    data,
                    version,
                } => writer.add_set_data(path, data, *version),
                FencedOp::Delete { path, version } => writer.add_delete(path, *version),
                FencedOp::CheckVersion { path, version } => {
                    writer.add_check_version(path, *version)
                }
            };
            added.map_err(|e| error::map(e, format_args!("{}: bad operation {op:?}", what())))?;
        }
        let results = match writer.commit().await {
            Ok(results) => results,
            Err(CheckWriteError::CheckFailed {
                source: ZkError::NoNode,
            }) => return Err(not_held()),
            Err(CheckWriteError::CheckFailed { source })
            | Err(CheckWriteError::RequestFailed { source })
                if error::is_terminal(&source) =>
            {
                return Err(not_held().with_source(source))
            }
            Err(CheckWriteError::OperationFailed { index, source }) => {
                return Err(Error::new(
                    ErrorKind::Backend,
                    format!(
                        "{}: operation {index} ({:?}) failed: {source}; nothing applied",
                        what(),
                        write.ops.get(index)
                    ),
                )
                .with_source(source))
            }
            Err(CheckWriteError::CheckFailed { source })
            | Err(CheckWriteError::RequestFailed { source }) => {
                return Err(error::map(source, what()))
            }
        };
        results
            .into_iter()
            .map(|r| match r {
                MultiWriteResult::Create { path, .. } => Ok(FencedOutcome::Created { path }),
                MultiWriteResult::SetData { stat } => Ok(FencedOutcome::DataSet {
                    version: stat.version,
                }),
                MultiWriteResult::Delete => Ok(FencedOutcome::Deleted),
                MultiWriteResult::Check => Ok(FencedOutcome::Checked),
                other => Err(Error::new(
                    ErrorKind::Backend,
                    format!("{}: unexpected result {other:?}", what()),
                )),
            })
            .collect()
    }

    fn token_value(&self) -> u64 {
        lock_core::backend::HeldLock::token(self).get()
    }
}
