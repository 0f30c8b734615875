//! One grant in a memory store: its entry, token and liveness, and its release
//! (synchronous: no I/O).

use crate::queue::Grant;
use crate::store::Store;
use async_trait::async_trait;
use lock_core::backend::Liveness;
use lock_core::{backend::HeldLock, Error, ErrorKind, FencingToken, LockName, LossCause, Result};
use std::{any::Any, sync::Arc};

/// A granted acquisition in a memory store.
///
/// Its release needs no I/O ([`HeldLock::release_now`]): a guard dropped without
/// release (even outside a runtime) removes its entry at once.
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
    slot: Option<u32>,
    released: bool,
}

impl MemoryHeldLock {
    pub(crate) fn new(store: Arc<Store>, name: LockName, entry: u64, grant: Grant) -> Self {
        MemoryHeldLock {
            store,
            name,
            entry,
            token: grant.token,
            liveness: grant.liveness,
            slot: grant.slot,
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

    fn slot(&self) -> Option<u32> {
        self.slot
    }

    async fn release(&mut self) -> Result<()> {
        self.release_now().unwrap_or(Ok(()))
    }

    fn release_now(&mut self) -> Option<Result<()>> {
        if std::mem::replace(&mut self.released, true) {
            return Some(Ok(()));
        }
        let was_holder = self.store.remove(&self.name, self.entry);
        self.liveness.lose_with(LossCause::Released);
        Some(if was_holder {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::NotHeld,
                format!(
                    "lock {} (token {}) was lost before release",
                    self.name, self.token
                ),
            ))
        })
    }

    async fn set_value(&self, value: &str) -> Result<()> {
        if !self.released && self.store.set_holder(&self.name, self.entry, value) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::NotHeld,
            format!(
                "lock {} (token {}) is no longer held; its value was not changed",
                self.name, self.token
            ),
        ))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
