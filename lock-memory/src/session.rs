//! A memory lease and its keep-alive task.

use crate::{held::MemoryHeldLock, lock::acquire, store::Store};
use async_trait::async_trait;
use lock_core::backend::Liveness;
use lock_core::{
    backend::{Claim, HeldLock, LeaseBackend, WaitMode},
    AcquireOptions, LeaseId, LockName, LossCause, Result,
};
use std::{
    any::Any,
    sync::{atomic::AtomicU64, Arc},
    time::Duration,
};

/// A lease in a memory store, refreshed every third of its TTL by a background task
/// (unless stalled by [`MemoryBackend::stall_lease`](crate::MemoryBackend::stall_lease)).
///
/// Applications see it as a [`Lease`](lock_core::Lease); the concrete type is reachable
/// for tests through the backend traits.
///
/// # Examples
///
/// ```
/// use lock_core::LockClient;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let client = LockClient::new(lock_memory::MemoryBackend::new());
/// let lease = client.lease_with_ttl(Duration::from_millis(300)).await?;
/// tokio::time::sleep(Duration::from_secs(1)).await; // kept alive in the background
/// assert!(lease.is_alive());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MemoryLease {
    store: Arc<Store>,
    /// The granting backend's wake-up counter.
    wakeups: Arc<AtomicU64>,
    id: u64,
    ttl: Duration,
    liveness: Liveness,
}

impl MemoryLease {
    pub(crate) fn grant(store: &Arc<Store>, ttl: Duration, wakeups: Arc<AtomicU64>) -> Self {
        let (id, liveness) = store.grant_lease(ttl);
        let keeper = store.clone();
        let first = tokio::time::Instant::now() + ttl / 3;
        tokio::spawn(async move {
            let mut next = first;
            loop {
                tokio::time::sleep_until(next).await;
                match keeper.keep_alive(id) {
                    Some(at) => next = at,
                    None => break,
                }
            }
        });
        tracing::debug!(lease = %LeaseId::new(id), ?ttl, "memory lease granted");
        MemoryLease {
            store: store.clone(),
            wakeups,
            id,
            ttl,
            liveness,
        }
    }
}

#[async_trait]
impl LeaseBackend for MemoryLease {
    fn id(&self) -> LeaseId {
        LeaseId::new(self.id)
    }

    fn granted_ttl(&self) -> Duration {
        self.ttl
    }

    fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    async fn acquire(
        &self,
        name: &LockName,
        claim: Claim,
        mode: WaitMode,
        options: &AcquireOptions,
    ) -> Result<Option<Box<dyn HeldLock>>> {
        let held = acquire(
            &self.store,
            self.id,
            &self.wakeups,
            name,
            claim,
            mode,
            options,
        )
        .await?;
        Ok(held.map(|h: MemoryHeldLock| Box::new(h) as Box<dyn HeldLock>))
    }

    async fn revoke(&self) -> Result<()> {
        self.store.revoke(self.id, LossCause::LeaseRevoked);
        self.liveness.lose_with(LossCause::LeaseRevoked);
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
