//! **fencelock**: distributed locks with fencing tokens, safe by construction, over
//! etcd, ZooKeeper or an in-process memory backend.
//!
//! ```
//! use fencelock::{Fence, LockState};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> fencelock::Result<()> {
//! // Swap "memory://" for "etcd://10.0.0.1:2379" or "zk://10.0.0.1:2181": nothing else changes.
//! let client = fencelock::connect("memory://").await?;
//! let fence = Fence::new(); // lives in the resource (or a fence_token column)
//!
//! let guard = client.acquire("daily-report").await?;
//! assert_eq!(guard.state(), LockState::Held);
//! fence.check("daily-report", guard.token())?; // the resource rejects stale tokens
//! guard.release().await?;
//!
//! // Or let fencelock cancel the job the moment the lock may be lost:
//! let rows = client
//!     .with_lock("daily-report", |token| async move {
//!         fence.check("daily-report", token).map(|()| 42)
//!     })
//!     .await??;
//! assert_eq!(rows, 42);
//! # Ok(()) }
//! ```
//!
//! # What you get
//!
//! - **Mutual exclusion** across processes and machines (etcd, ZooKeeper), FIFO
//!   waiting, one wake-up per release (counted in
//!   [`LockStats::waiter_wakeups`](crate::LockStats::waiter_wakeups)).
//! - **No deadlock on crash**: every lock hangs off a [`Lease`] that dies with its holder.
//! - **Fencing tokens** ([`FencingToken`]) that grow with every new holder, and a
//!   resource-side [`Fence`] (plus the SQL pattern in its docs).
//! - **Early warning**: [`LockGuard::state`] leaves `Held` as soon as the lock *may* be
//!   lost; [`LockClient::with_lock`] cancels the critical section then.
//!
//! # What you do not get
//!
//! A lock cannot stop a paused process from acting after its lease expired. Only a
//! resource that checks the token can. Use the token.
//!
//! # Backends and features
//!
//! | feature | scheme | crate |
//! |---|---|---|
//! | `memory` (default) | `memory://` | `lock-memory` |
//! | `etcd` | `etcd://` | `lock-etcd` |
//! | `zk` | `zk://` | `lock-zk` |
//! | `redis` | `redis://`, `redlock://` | `lock-redis` |
//!
//! A known scheme whose feature is off gives [`ErrorKind::FeatureDisabled`].
//!
//! | feature | what | crate |
//! |---|---|---|
//! | `fence-sqlite` | `fence::sqlite`: fence writes inside your SQLite transaction | `lock-fence` |
//! | `fence-postgres` | `fence::postgres`: the same on PostgreSQL | `lock-fence` |
//!
//! The fence kit checks the token where the data lives, in the same transaction as
//! the write (see `lock-fence` and `examples/payment.rs`).
//!
//! # Observability
//!
//! [`LockClient::stats`] returns a snapshot of the client's counters with no feature
//! on. The opt-in feature `metrics` also records `fencelock_…` series through the
//! `metrics` facade (fencelock never installs a recorder); [`stats`] lists them.
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod connect;

pub use connect::{connect, SCHEMES};
pub use lock_core::{Election, Leader, LeaderWatch, Leadership};
// The user surface, item by item: what an implementor needs (`Liveness`, deadlines,
// the grant policy, the support kit) stays under `backend`, as OpenDAL keeps `raw`.
pub use lock_core::{
    backend, stats, url, validate_ttl, AcquireOptions, Capabilities, Error, ErrorKind, Fence,
    FencingToken, HolderInfo, IntoLockName, Lease, LeaseId, Lock, LockClient, LockGuard, LockInfo,
    LockName, LockState, LockStats, LockWatch, LossCause, Result, StateWatch, TokenSource,
    MAX_HOLDER_LEN, MAX_NAME_LEN, MAX_TTL, MIN_TTL,
};
pub use lock_core::{Permit, RwLock, Semaphore, MAX_PERMITS};

/// The in-process backend and its fault controls.
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub use lock_memory as memory;

/// The etcd backend.
#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
pub use lock_etcd as etcd;

/// The ZooKeeper backend.
#[cfg(feature = "zk")]
#[cfg_attr(docsrs, doc(cfg(feature = "zk")))]
pub use lock_zk as zk;

/// The Redis backend.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use lock_redis as redis;

/// The resource-side fence kit: accept a token inside your own SQL transaction.
#[cfg(any(feature = "fence-sqlite", feature = "fence-postgres"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "fence-sqlite", feature = "fence-postgres")))
)]
pub use lock_fence as fence;
