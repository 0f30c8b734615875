//! The acquisition recipe on a memory store, and the held lock.

use crate::store::{Enqueued, Grant, Store};
use async_trait::async_trait;
use lock_core::{
    backend::{HeldLock, WaitMode},
    AcquireOptions, Error, ErrorKind, FencingToken, LeaseId, Liveness, LockName, LossCause, Result,
};
use std::{any::Any, sync::Arc};

/// Removes a queued entry unless disarmed: what makes a dropped `acquire` leave nothing
/// behind, even when the grant raced with the drop.
struct EntryGuard<'a> {
    store: &'a Store,
    name: &'a LockName,
    entry: Option<u64>,
}

impl EntryGuard<'_> {
    fn disarm(mut self) -> u64 {
        self.entry.take().unwrap_or_default()
    }
}

impl Drop for EntryGuard<'_> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.store.remove(self.name, entry);
        }
    }
}

pub(crate) async fn acquire(
    store: &Arc<Store>,
    lease: u64,
    name: &LockName,
    mode: WaitMode,
    options: &AcquireOptions,
) -> Result<Option<MemoryHeldLock>> {
    let (entry, enqueued) = store.enqueue(name, lease, mode == WaitMode::Wait, options)?;
    let grant = match enqueued {
        Enqueued::Busy => return Ok(None),
        Enqueued::Granted(grant) => grant,
        Enqueued::Waiting(rx) => {
            let cleanup = EntryGuard {
                store,
                name,
                entry: Some(entry),
            };
            let grant = rx.await.map_err(|_| {
                Error::new(
                    ErrorKind::LeaseLost,
                    format!(
                        "lease {} expired while waiting for {name}",
                        LeaseId::new(lease)
                    ),
                )
            })?;
            cleanup.disarm();
            grant
        }
    };
    Ok(Some(MemoryHeldLock::new(
        store.clone(),
        name.clone(),
        entry,
        grant,
    )))
}

/// A granted acquisition in a memory store.
///
/// Dropped without release (for example outside a runtime), it removes its entry at
/// once.
///
/// # Examples
///
/// ```
/// use lock_core::LockClient;
/// use lock_memory::MemoryHeldLock;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let client = LockClient::new(lock_memory::MemoryBackend::new());
/// let guard = client.acquire("k").await?;
/// assert!(guard.backend_lock::<MemoryHeldLock>().is_some());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MemoryHeldLock {
    store: Arc<Store>,
    name: LockName,
    entry: u64,
    token: FencingToken,
    liveness: Liveness,
    released: bool,
}

impl MemoryHeldLock {
    fn new(store: Arc<Store>, name: LockName, entry: u64, grant: Grant) -> Self {
        MemoryHeldLock {
            store,
            name,
            entry,
            token: grant.token,
            liveness: grant.liveness,
            released: false,
        }
    }
}

#[async_trait]
impl HeldLock for MemoryHeldLock {
    fn token(&self) -> FencingToken {
        self.token
    }

    fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    async fn release(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.released, true) {
            return Ok(());
        }
        let was_holder = self.store.remove(&self.name, self.entry);
        self.liveness.lose_with(LossCause::Released);
        if was_holder {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::NotHeld,
                format!(
                    "lock {} (token {}) was lost before release",
                    self.name, self.token
                ),
            ))
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for MemoryHeldLock {
    fn drop(&mut self) {
        if !self.released {
            self.store.remove(&self.name, self.entry);
        }
    }
}
