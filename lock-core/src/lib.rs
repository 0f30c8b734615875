//! The core vocabulary of fencelock: fencing tokens, leases, locks, guards, the
//! resource-side [`Fence`], errors, and the object-safe [`backend`] traits that
//! `lock-etcd`, `lock-zk` and `lock-memory` implement. No backend and no network here.
//!
//! Applications normally use the `fencelock` facade crate, which re-exports all of this
//! and adds `fencelock::connect(url)`.
//!
//! # Guarantees
//!
//! - **Mutual exclusion** among guards in state [`LockState::Held`], as strong as the
//!   backend (etcd, ZooKeeper: linearizable, across machines).
//! - **No deadlock on crash**: every lock entry hangs off a [`Lease`] that dies with
//!   its holder; a live holder's lease is kept alive in the background.
//! - **Fencing**: every grant carries a [`FencingToken`] higher than all earlier grants
//!   of the same name; a resource that rejects older tokens (see [`Fence`]) is safe
//!   from holders whose lock passed on while they were paused.
//! - **Early warning**: a guard leaves `Held` as soon as its lock *may* be lost (missed
//!   keep-alive, disconnect, local deadline from the granted TTL).
//!
//! # Non-guarantees
//!
//! A lock alone cannot stop a paused holder from acting after its lease expired: only
//! the resource's token check can. Clocks are not trusted beyond the local monotonic
//! clock.
//!
//! # Quick start (memory backend)
//!
//! ```
//! use lock_core::{Fence, LockClient};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
//! let client = LockClient::new(lock_memory::MemoryBackend::new());
//! let fence = Fence::new();
//! let guard = client.acquire("daily-report").await?;
//! fence.check("daily-report", guard.token())?; // the resource checks the token
//! guard.release().await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backend;
mod capabilities;
mod client;
mod election;
mod error;
mod fence;
mod guard;
mod held;
mod info;
mod lease;
mod lock;
mod name;
mod rw;
mod semaphore;
mod state;
pub mod stats;
mod token;
pub mod url;
mod watch;

pub use capabilities::{Capabilities, TokenSource};
pub use client::LockClient;
pub use election::{Election, Leader, LeaderWatch, Leadership};
pub use error::{Error, ErrorKind, Result};
pub use fence::Fence;
pub use guard::LockGuard;
pub use info::{AcquireOptions, HolderInfo, LeaseId, LockInfo, MAX_HOLDER_LEN};
pub use lease::{validate_ttl, Lease, MAX_TTL, MIN_TTL};
pub use lock::Lock;
pub use name::{IntoLockName, LockName, MAX_NAME_LEN};
pub use rw::RwLock;
pub use semaphore::{Permit, Semaphore, MAX_PERMITS};
pub use state::{LockState, LossCause, StateWatch};
pub use stats::LockStats;
pub use token::FencingToken;
pub use watch::LockWatch;
