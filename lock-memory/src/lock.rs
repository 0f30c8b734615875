//! The acquisition recipe on a memory store: enqueue, wait for the grant, build the
//! held lock.

use crate::held::MemoryHeldLock;
use crate::store::{Enqueued, Store};
use lock_core::{
    backend::{check_claim, Claim, Cleanup, WaitMode},
    AcquireOptions, Error, ErrorKind, LeaseId, LockName, Result,
};
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

pub(crate) async fn acquire(
    store: &Arc<Store>,
    lease: u64,
    wakeups: &AtomicU64,
    name: &LockName,
    claim: Claim,
    mode: WaitMode,
    options: &AcquireOptions,
) -> Result<Option<MemoryHeldLock>> {
    check_claim(&crate::CAPABILITIES, "memory", claim, name)?;
    let (entry, enqueued) = store.enqueue(name, lease, claim, mode == WaitMode::Wait, options)?;
    let grant = match enqueued {
        Enqueued::Busy => return Ok(None),
        Enqueued::Granted(grant) => grant,
        Enqueued::Waiting(rx) => {
            // A dropped future leaves nothing behind, even when the grant raced
            // with the drop.
            let cleanup = Cleanup::new(|| {
                store.remove(name, entry);
            });
            let grant = rx.await;
            wakeups.fetch_add(1, Ordering::Relaxed);
            let grant = grant.map_err(|_| {
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
