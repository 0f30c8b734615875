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

mod config;
mod lock;
mod session;
mod store;
mod watch_lock;

pub use config::{MemoryConfig, DEFAULT_TTL, SCHEME};
pub use lock::MemoryHeldLock;
pub use session::MemoryLease;
pub use store::StoreEvent;

use async_trait::async_trait;
use lock_core::{
    backend::{lock_unpoisoned, Backend, ChangeStream, LeaseBackend, WatchScope},
    Capabilities, FencingToken, LeaseId, LockInfo, LockName, Result, TokenSource,
};
use std::{
    any::Any,
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, Weak},
    time::Duration,
};
use store::Store;

/// The capabilities of the memory backend.
pub const CAPABILITIES: Capabilities = Capabilities::new(TokenSource::Counter)
    .with_fifo(true)
    .with_herd_free(true)
    .with_detects_external_deletion(true)
    .with_fault_injection(true);

/// A memory lock store ("server") and its fault controls. Cheap to clone; clones share
/// the store.
///
/// # Guarantees
///
/// Within one process: mutual exclusion, FIFO order, one wake-up per release, strictly
/// increasing tokens, every entry removed when its lease expires or is revoked.
///
/// # Non-guarantees
///
/// Nothing is shared across processes; nothing survives the process.
///
/// # Examples
///
/// ```
/// use lock_core::LockClient;
/// use lock_memory::MemoryBackend;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let backend = MemoryBackend::new();
/// let a = LockClient::new(backend.clone());
/// let b = LockClient::new(backend.clone()); // same store: they contend
/// let held = a.acquire("job").await?;
/// assert!(b.try_acquire("job").await?.is_none());
/// held.release().await?;
/// assert_eq!(backend.lock_count(), 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    store: Arc<Store>,
    default_ttl: Duration,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

fn named_stores() -> &'static Mutex<HashMap<String, Weak<Store>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Weak<Store>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

impl MemoryBackend {
    /// A new private store with the default TTL.
    pub fn new() -> Self {
        Self::with_config(MemoryConfig::default())
    }

    /// A backend as configured: a private store, or the process-wide store of that
    /// name (created on first use, dropped when no backend uses it any more).
    pub fn with_config(config: MemoryConfig) -> Self {
        let store = match config.store {
            None => Arc::new(Store::default()),
            Some(name) => {
                let mut stores = lock_unpoisoned(named_stores());
                stores.retain(|_, s| s.strong_count() > 0);
                match stores.get(&name).and_then(Weak::upgrade) {
                    Some(store) => store,
                    None => {
                        let store = Arc::new(Store::default());
                        stores.insert(name, Arc::downgrade(&store));
                        store
                    }
                }
            }
        };
        MemoryBackend {
            store,
            default_ttl: config.default_ttl,
        }
    }

    /// Parses `url` (see [`MemoryConfig`]) and builds the backend.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`](lock_core::ErrorKind::InvalidConfig) for a bad URL.
    pub fn from_url(url: &str) -> Result<Self> {
        MemoryConfig::from_url(url).map(Self::with_config)
    }

    /// Sets the TTL of leases made without an explicit one.
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// **Fault:** expires `lease` now, as the server would after a crash: its entries
    /// are deleted, its guards turn `Lost`, its waiters fail with `LeaseLost`, and the
    /// next waiters are granted. Returns whether the lease existed.
    pub fn expire_lease(&self, lease: LeaseId) -> bool {
        self.store
            .revoke(lease.get(), lock_core::LossCause::LeaseExpired)
    }

    /// **Fault:** stops `lease`'s keep-alive from reaching the "server" (a GC pause or a
    /// partition). The holder turns `Suspect` at the next missed refresh and `Lost` at
    /// its local deadline; the store expires the lease a little later (granted TTL after
    /// the last refresh), and only then can another holder acquire. Returns whether the
    /// lease exists.
    pub fn stall_lease(&self, lease: LeaseId) -> bool {
        self.store.set_stalled(lease.get(), true)
    }

    /// **Fault:** lets a stalled lease's keep-alive through again. A holder that was not
    /// yet `Lost` returns to `Held`.
    pub fn resume_lease(&self, lease: LeaseId) -> bool {
        self.store.set_stalled(lease.get(), false)
    }

    /// **Fault:** deletes the current holder's entry of `name`, as an operator breaking
    /// the lock would: the holder's guard turns `Lost` at once and the next waiter is
    /// granted. Returns the deleted holder's token.
    pub fn delete_holder(&self, name: &LockName) -> Option<FencingToken> {
        self.store.delete_holder(name)
    }

    /// Calls `observer` with every grant and free, in the order the store applied them,
    /// while the store lock is held: the server's own view of history for checkers. The
    /// observer must be quick and must not call back into this backend (it would
    /// deadlock).
    pub fn observe(&self, observer: impl Fn(&StoreEvent) + Send + Sync + 'static) {
        self.store.observe(Box::new(observer));
    }

    /// `true` when no lock entry and no lease is left (leak checks).
    pub fn is_empty(&self) -> bool {
        self.store.counts() == (0, 0)
    }

    /// The number of lock queues with a holder or waiters.
    pub fn lock_count(&self) -> usize {
        self.store.counts().0
    }

    /// The number of live leases.
    pub fn lease_count(&self) -> usize {
        self.store.counts().1
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn default_ttl(&self) -> Duration {
        self.default_ttl
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<Arc<dyn LeaseBackend>> {
        Ok(Arc::new(MemoryLease::grant(&self.store, ttl)))
    }

    async fn inspect(&self, name: &LockName) -> Result<Option<LockInfo>> {
        Ok(self.store.inspect(name))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LockInfo>> {
        Ok(self.store.list(prefix))
    }

    async fn watch_changes(&self, _scope: &WatchScope) -> Result<ChangeStream> {
        Ok(self.store.changes.stream())
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
