//! The plug into lock-core: [`MemoryBackend`] and its [`Backend`] impl.

use crate::{store::Store, MemoryConfig, MemoryLease};
use async_trait::async_trait;
use lock_core::{
    backend::{lock_unpoisoned, Backend, ChangeStream, LeaseBackend, LockInfoWatch, WatchScope},
    Capabilities, LockInfo, LockName, Result, TokenSource,
};
use std::{
    any::Any,
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock, Weak,
    },
    time::Duration,
};

/// The capabilities of the memory backend.
pub const CAPABILITIES: Capabilities = Capabilities::new(TokenSource::Counter)
    .with_fifo(true)
    .with_herd_free(true)
    .with_detects_external_deletion(true)
    .with_fault_injection(true)
    .with_shared_claims(true)
    .with_read_write_claims(true)
    .with_set_value(true);

/// A memory lock store ("server") and its fault controls. Cheap to clone; clones share
/// the store.
///
/// # Guarantees
///
/// Within one process: mutual exclusion, FIFO order, strictly increasing tokens, every
/// entry removed when its lease expires or is revoked. Herd-free: a release wakes only
/// the waiters it grants (one for a mutex, a write lock or a permit; the run of
/// readers behind a writer), by handing each its grant; [`Backend::waiter_wakeups`]
/// counts them.
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
    pub(crate) store: Arc<Store>,
    default_ttl: Duration,
    /// Waiters on this backend's leases that were handed their grant
    /// ([`Backend::waiter_wakeups`]); shared by clones, not by other backends on the
    /// same named store.
    wakeups: Arc<AtomicU64>,
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
            wakeups: Arc::default(),
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
}

#[async_trait]
impl Backend for MemoryBackend {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn scheme(&self) -> &'static str {
        "memory"
    }

    fn default_ttl(&self) -> Duration {
        self.default_ttl
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<Arc<dyn LeaseBackend>> {
        Ok(Arc::new(MemoryLease::grant(
            &self.store,
            ttl,
            self.wakeups.clone(),
        )))
    }

    /// A waiter is woken only by the grant a release hands it (the store decides
    /// who is granted), so this counts grants that had to wait.
    fn waiter_wakeups(&self) -> Option<u64> {
        Some(self.wakeups.load(Ordering::Relaxed))
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

    async fn watch_lock_info(self: Arc<Self>, name: &LockName) -> Result<LockInfoWatch> {
        Ok(crate::watch_lock::states(self.store.clone(), name.clone()))
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
