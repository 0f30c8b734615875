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
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod admin;
mod backend;
mod config;
mod lock;
mod session;
mod store;
mod watch_lock;

pub use backend::{MemoryBackend, CAPABILITIES};
pub use config::{MemoryConfig, DEFAULT_TTL, SCHEME};
pub use lock::MemoryHeldLock;
pub use session::MemoryLease;
pub use store::StoreEvent;
