//! The object-safe traits a backend implements. Applications use
//! [`LockClient`](crate::LockClient) instead.
//!
//! The traits are deliberately small: timeouts, retries of the caller's choosing,
//! shared sessions, lease-loss racing and the critical-section helper live once on the
//! handles in this crate, so no backend can get them subtly wrong.
//!
//! Next to the traits live the pure pieces every backend's recipe shares: the grant
//! policy ([`decide`] over a queue of [`Claim`]s, read in a backend's own terms by
//! [`position`]) and the support kit: [`Backoff`], [`lock_unpoisoned`],
//! [`spawn_or_expire`], the disarmable [`Cleanup`] guard, the value codec
//! ([`encode_value`], [`split_value`]) and the name escaping ([`escape_name`],
//! [`unescape_name`]).
//!
//! # Writing a backend
//!
//! Start from a copy of one backend crate (lock-zk or lock-etcd for a server with
//! watches, lock-redis for one without, lock-memory for the smallest). Every crate
//! has the same files, and imports run one way, top to bottom, with no circle:
//!
//! | file | job |
//! |---|---|
//! | `lib.rs` | crate docs (guarantees, non-guarantees, layout) and `pub use` only |
//! | `backend.rs` | the trait impls: [`Backend`] for the backend, [`LeaseBackend`] for its lease |
//! | `admin.rs` | operator and fault controls (expire or revoke a lease, delete an entry, stall) |
//! | `lock.rs` | the recipe, I/O only: enqueue a [`Claim`], read the queue, wait for what [`position`] names, clean up with a [`Cleanup`] guard |
//! | `held.rs` | one grant: [`HeldLock`] (token, liveness, fenced release) |
//! | `session.rs` | the lease: grant, keep-alive, revoke, its [`Liveness`] |
//! | `conn.rs` | the connection: requests, retries ([`Backoff`]), timeouts |
//! | `queue.rs` | the pure on-server layout: keys or node names, [`encode_value`], [`escape_name`] |
//! | `fenced.rs` | native fenced writes, with the crate's own op and outcome types (if the server has them) |
//! | `config.rs`, `error.rs` | builder, URL and defaults; the mapping of the client's errors into [`Error`](crate::Error) |
//!
//! What a backend writes: [`Backend`]'s `capabilities`, `default_ttl`, `scheme`,
//! `grant_lease`, `inspect`, `list`, `close`, `as_any` (and, if it can watch,
//! `watch_changes`, `watch_lock_info`, `waiter_wakeups`); [`LeaseBackend`]'s `id`,
//! `granted_ttl`, `liveness`, `acquire`, `revoke`, `as_any`; [`HeldLock`]'s `token`,
//! `liveness`, `release`, `as_any` (and `set_value`, `slot`, `release_now` where
//! they apply). What it does not write: the grant decision ([`decide`],
//! [`position`]), timeouts, retries of the caller's choosing, lease-loss racing,
//! release on drop (lock-core's grant owns it, see [`HeldLock`]), metrics, the
//! holder-value codec, name escaping, backoff, poisoned-lock recovery, and
//! spawn-or-expire. The conformance suite (`integration-tests`) runs every case
//! against a new backend through one harness file, gated by its [`Capabilities`].

use crate::{AcquireOptions, Capabilities, FencingToken, LeaseId, LockInfo, LockName, Result};
use async_trait::async_trait;
use std::{any::Any, fmt::Debug, sync::Arc, time::Duration};

mod codec;
mod grant;
mod kit;
mod position;

pub use crate::state::{local_deadline, suspect_window, Liveness};
pub use crate::watch::{follow_lock, ChangeStream, LockInfoWatch, WatchScope};
pub use codec::{
    encode_value, escape_name, from_unix_millis, split_value, unescape_name, unix_millis,
};
pub use grant::{check_claim, decide, Claim, Decision};
pub use kit::{lock_unpoisoned, spawn_or_expire, Backoff, Cleanup};
pub use position::{position, Position};

/// Whether an acquisition may wait for the current holder.
///
/// # Examples
///
/// ```
/// use lock_core::backend::WaitMode;
///
/// let mode = WaitMode::NoWait; // what `Lock::try_acquire` asks the backend for
/// assert_ne!(mode, WaitMode::Wait);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitMode {
    /// Return `Ok(None)` at once if another holder (or an earlier waiter) exists.
    NoWait,
    /// Queue FIFO until granted.
    Wait,
}

/// A lock service: grants leases and inspects locks.
#[async_trait]
pub trait Backend: Send + Sync + Debug + 'static {
    /// What this backend promises.
    fn capabilities(&self) -> Capabilities;

    /// The TTL used for leases when the caller does not pick one.
    fn default_ttl(&self) -> Duration;

    /// The backend's name, its URL scheme (`"memory"`, `"etcd"`, `"zk"`): the
    /// `backend` label of the [metrics](crate::stats) and the name in
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) messages.
    fn scheme(&self) -> &'static str;

    /// Grants a new lease with (about) `ttl`, kept alive in the background until
    /// revoked or lost. `ttl` has been validated by the caller
    /// ([`validate_ttl`](crate::validate_ttl)); the backend may round it up.
    async fn grant_lease(&self, ttl: Duration) -> Result<Arc<dyn LeaseBackend>>;

    /// Reads the current holder and queue length of `name`; `None` when not held.
    async fn inspect(&self, name: &LockName) -> Result<Option<LockInfo>>;

    /// Reads every held lock whose name starts with `prefix` (`""` for all).
    async fn list(&self, prefix: &str) -> Result<Vec<LockInfo>>;

    /// Signals changes to the locks in `scope`: one `Ok(())` (or more) after each grant,
    /// release, expiry, and waiter joining or leaving, for
    /// [`LockClient::watch_list`](crate::LockClient::watch_list) and the default
    /// [`watch_lock_info`](Self::watch_lock_info), which re-read on each signal. The
    /// watch must be in place when this returns, so no change after it is missed; a
    /// spurious signal is harmless. The stream ends (or yields an error) when the
    /// backend can no longer watch.
    ///
    /// # Errors
    ///
    /// By default [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported); backend
    /// errors when the watch cannot be set up.
    async fn watch_changes(&self, scope: &WatchScope) -> Result<ChangeStream> {
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!("the {} backend cannot watch {scope}", self.scheme()),
        ))
    }

    /// Follows lock `name`: yields its state now (`None`: free), then its state after
    /// each change, for [`LockClient::watch_lock`](crate::LockClient::watch_lock) and
    /// [`Election::observe`](crate::Election::observe), which drop repeats. The watch
    /// must be in place before the first item is read, so no change after it is
    /// missed. The stream ends after its first error.
    ///
    /// The default reads [`inspect`](Self::inspect) once after each signal of
    /// [`watch_changes`](Self::watch_changes): one read per watcher per change. A
    /// backend whose watch carries the data overrides it to keep the state from the
    /// watch itself (etcd: the events of a prefix watch; ZooKeeper: the node paths of
    /// a persistent recursive watch, with a read of the head's data only when the
    /// head or its data changed; memory: the store), so that watchers add no request
    /// per change.
    ///
    /// # Errors
    ///
    /// Those of [`watch_changes`](Self::watch_changes) and of the first read.
    async fn watch_lock_info(self: Arc<Self>, name: &LockName) -> Result<LockInfoWatch> {
        let changes = self.watch_changes(&WatchScope::Lock(name.clone())).await?;
        let name = name.clone();
        Ok(crate::watch::snapshots(changes, move || {
            let (backend, name) = (self.clone(), name.clone());
            async move { backend.inspect(&name).await }
        }))
    }

    /// A diagnostic counter: how many times a waiter on a lease this backend (or a
    /// clone of it) granted was **woken to re-check its turn**, since the backend was
    /// made. One wake-up is one notification that makes a waiting acquisition look at
    /// the queue again: a grant handed to it (memory), a watch event or a broken
    /// watch (etcd, ZooKeeper), a `BLPOP` that returned a pushed wake-up (Redis).
    /// Re-checks on a timer or after a failed request are not wake-ups.
    ///
    /// What [`LockStats::waiter_wakeups`](crate::LockStats::waiter_wakeups) reports
    /// and the conformance suite counts: a [`herd_free`](Capabilities::herd_free)
    /// backend wakes, per release, only the waiters that release may grant (see
    /// [`decide`]'s guarantees), so the sum over every client's backend stays near
    /// the number of grants, where a herd would cost one per waiter queued. A backend
    /// that claims `herd_free` must return `Some`.
    ///
    /// By default `None`: the backend does not count.
    fn waiter_wakeups(&self) -> Option<u64> {
        None
    }

    /// Closes connections. Leases still open are revoked or left to expire.
    async fn close(&self) -> Result<()>;

    /// For backend-specific extensions (fault controls, native fenced writes).
    fn as_any(&self) -> &dyn Any;
}

/// One live lease (etcd lease, ZooKeeper session, memory lease) and the locks on it.
#[async_trait]
pub trait LeaseBackend: Send + Sync + Debug + 'static {
    /// The backend's id of the lease.
    fn id(&self) -> LeaseId;

    /// The TTL the server granted (which may exceed the requested one).
    fn granted_ttl(&self) -> Duration;

    /// The lease's liveness, kept up to date by the backend's keep-alive.
    fn liveness(&self) -> &Liveness;

    /// Enqueues an acquisition of `name` claiming `claim` on this lease, in the one
    /// ordered queue of `name` that every claim shares, and, with [`WaitMode::Wait`],
    /// waits until [`decide`] grants it (watching only the entry `decide` names).
    ///
    /// Returns `Ok(None)` only for [`WaitMode::NoWait`] when `decide` does not grant
    /// the entry at once (the entry is then removed). Must fail with
    /// [`ErrorKind::LeaseLost`](crate::ErrorKind::LeaseLost) when the lease is lost,
    /// and with [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported), before
    /// enqueueing anything, for a claim its
    /// [`Capabilities::supports`](crate::Capabilities::supports) denies (see
    /// [`check_claim`]).
    ///
    /// # Cancel safety
    ///
    /// Implementations must be cancel safe in the strong sense: dropping the future at
    /// any await point leaves no waiter entry behind (and releases a grant that raced
    /// with the drop). Build the [`HeldLock`] last and return it without awaiting
    /// after: from that moment core owns it (see [`HeldLock`]'s "Release and drop"),
    /// and a cancellation after the return is core's to clean up.
    async fn acquire(
        &self,
        name: &LockName,
        claim: Claim,
        mode: WaitMode,
        options: &AcquireOptions,
    ) -> Result<Option<Box<dyn HeldLock>>>;

    /// Revokes the lease now, deleting every lock entry on it.
    async fn revoke(&self) -> Result<()>;

    /// For backend-specific extensions.
    fn as_any(&self) -> &dyn Any;
}

/// One granted acquisition.
///
/// # Release and drop
///
/// Core owns a `HeldLock` from the moment [`LeaseBackend::acquire`] returns it: it
/// wraps it at once (no await in between) in the one type under every guard, which
/// alone decides what a drop without [`release`](Self::release) does (a guard dropped
/// unreleased, an acquisition cancelled between the grant and its guard, a release
/// that failed):
///
/// 1. it marks [`liveness`](Self::liveness) lost with
///    [`LossCause::Released`](crate::LossCause::Released);
/// 2. it calls [`release_now`](Self::release_now): a backend that can release
///    without I/O (memory) frees the entry there, synchronously, runtime or not;
/// 3. otherwise it runs [`release`](Self::release) on a spawned task
///    ([`spawn_or_expire`]), again with backoff until the answer is `Ok` or
///    [`ErrorKind::NotHeld`](crate::ErrorKind::NotHeld), for at most ten minutes;
/// 4. with no tokio runtime it logs a warning and the entry expires with its lease.
///
/// So an implementation needs **no `Drop`**: dropping it means "forget this entry",
/// never "release it". Its fields may still free local bookkeeping on drop (a
/// background watch task, a key slot that stays reserved while the entry may exist).
#[async_trait]
pub trait HeldLock: Send + Sync + Debug + 'static {
    /// The acquisition's fencing token.
    fn token(&self) -> FencingToken;

    /// The acquisition's own liveness (its entry deleted or replaced: `Lost`). The
    /// lease's liveness is combined with it by the caller.
    fn liveness(&self) -> &Liveness;

    /// Deletes this acquisition's entry, fenced on its token, so it can never delete a
    /// newer holder's entry. Idempotent.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotHeld`](crate::ErrorKind::NotHeld) when the entry was already
    /// gone (the lock was lost before release).
    async fn release(&mut self) -> Result<()>;

    /// Releases at once, without I/O, when the backend can (an in-process store):
    /// `Some` with what [`release`](Self::release) would have answered. What a drop
    /// without release tries first, so such a backend frees the entry synchronously
    /// even outside a runtime (see "Release and drop" above).
    ///
    /// By default `None`: the release needs the server, and core runs
    /// [`release`](Self::release) in the background instead.
    fn release_now(&mut self) -> Option<Result<()>> {
        None
    }

    /// Replaces the holder text stored with this acquisition's entry by `value`, only
    /// while the entry still exists (etcd: a transaction comparing the key's create
    /// revision with the token; ZooKeeper: `setData` on the acquisition's own
    /// sequential node; memory: the store's entry). Never writes another entry. The
    /// token does not change. What [`Leadership::proclaim`](crate::Leadership::proclaim)
    /// uses; a backend that implements it sets
    /// [`Capabilities::set_value`](crate::Capabilities::set_value).
    ///
    /// # Errors
    ///
    /// By default [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported);
    /// [`ErrorKind::NotHeld`](crate::ErrorKind::NotHeld) when the entry is gone;
    /// backend errors when the write could not be confirmed.
    async fn set_value(&self, value: &str) -> Result<()> {
        let _ = value;
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!("this backend cannot change the value of a held entry ({self:?})"),
        ))
    }

    /// The permit's slot in `0..limit` for a granted
    /// [`Claim::Shared`] entry: no two live permits of one name share a slot, and the
    /// tokens of successive holders of one slot increase (see
    /// [`Permit`](crate::Permit)). `None` (the default) for every other claim.
    fn slot(&self) -> Option<u32> {
        None
    }

    /// For backend-specific extensions (native fenced writes).
    fn as_any(&self) -> &dyn Any;
}
