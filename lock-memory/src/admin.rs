//! Fault and operator controls of the memory "server": expire or stall a lease,
//! delete a holder's entry, observe grants, count what is left.

use crate::{MemoryBackend, StoreEvent};
use lock_core::{FencingToken, LeaseId, LockName, LossCause};

impl MemoryBackend {
    /// **Fault:** expires `lease` now, as the server would after a crash: its entries
    /// are deleted, its guards turn `Lost`, its waiters fail with `LeaseLost`, and the
    /// next waiters are granted. Returns whether the lease existed.
    pub fn expire_lease(&self, lease: LeaseId) -> bool {
        self.store.revoke(lease.get(), LossCause::LeaseExpired)
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
