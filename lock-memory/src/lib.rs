//! The in-process backend of fencelock: a real lock service living in this process's
//! memory, with FIFO waiters, TTL leases on tokio time, keep-alive, a per-store
//! monotonic fencing token and **fault controls** for tests.
//!
//! It is what examples and doc tests run on, and what an application uses to test its
//! lost-lock and fencing paths without a server: expire a lease now, stall a lease's
//! keep-alive (a simulated GC pause or partition), or delete a holder's entry (an
//! operator breaking the lock).
//!
//! Leases run on tokio time, so tests under `tokio::time::pause()` are deterministic.
//!
//! # Capabilities
//!
//! | property | value |
//! |---|---|
//! | FIFO waiting | yes |
//! | herd-free (one wake-up per release) | yes |
//! | token source | per-store counter, strictly increasing |
//! | detects external deletion | yes ([`MemoryBackend::delete_holder`]) |
//! | native fenced writes | no |
//! | across processes | **no**: one process only |
//!
//! # Examples
//!
//! ```
//! use lock_core::{LockClient, LockState};
//! use lock_memory::MemoryBackend;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
//! let backend = MemoryBackend::new();
//! let client = LockClient::new(backend.clone());
//! let guard = client.acquire("payments").await?;
//! backend.expire_lease(guard.lease().id()); // the lease dies, as after a crash
//! assert_eq!(guard.state(), LockState::Lost);
//! assert_eq!(guard.release().await.unwrap_err().kind(), lock_core::ErrorKind::NotHeld);
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! The backend crates' file set, less what a server brings (no `conn.rs`, no
//! `error.rs`: nothing to map; no `fenced.rs`: no native fenced writes). `lib.rs`:
//! docs and re-exports. `config.rs`: [`MemoryConfig`], URL and defaults.
//! `backend.rs`: the trait impls of [`MemoryBackend`]; `admin.rs`: its fault
//! controls. `session.rs`: [`MemoryLease`] and its keep-alive. `lock.rs`: the
//! recipe (enqueue, wait for the grant). `held.rs`: [`MemoryHeldLock`], one grant.
//! `watch_lock.rs`: lock watches read from the store. `store.rs`: the "server",
//! every lease and queue behind one mutex; `queue.rs`: one lock's queue and its
//! pure steps; `events.rs`: [`StoreEvent`] and the change counter. Imports run one
//! way: `backend` → `session` → `lock` → `held` → `store` → `queue`, `events`
//! (and `watch_lock` → `store`); no circle.
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod admin;
mod backend;
mod config;
mod events;
mod held;
mod lock;
mod queue;
mod session;
mod store;
mod watch_lock;

pub use backend::{MemoryBackend, CAPABILITIES};
pub use config::{MemoryConfig, DEFAULT_TTL, SCHEME};
pub use events::StoreEvent;
pub use held::MemoryHeldLock;
pub use session::MemoryLease;
