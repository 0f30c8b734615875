//! What a backend runner provides to the conformance suite.

use async_trait::async_trait;
use fencelock::{Capabilities, Lease, LockClient, LockGuard, LockName};
use std::time::Duration;

/// The error type of conformance cases: anything, with `?` on fencelock errors.
pub type TestError = Box<dyn std::error::Error + Send + Sync>;
/// The result of a conformance case.
pub type TestResult = Result<(), TestError>;

/// A backend under test, as the conformance suite sees it.
///
/// Every case runs in its own *namespace* (a random string): all keys or nodes of the
/// clients made for that namespace live under it, so cases run in parallel without
/// seeing each other, and [`leftover`](Self::leftover) can check that nothing remains.
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    /// The backend's name, used in test names (`memory`, `etcd`, `etcd-3`, `zk`, …).
    fn name(&self) -> String;

    /// What the backend promises; cases are gated on it, never on the backend name.
    fn capabilities(&self) -> Capabilities;

    /// A new, independent client (its own connection, like another process) whose
    /// entries live under `namespace`.
    async fn client(&self, namespace: &str) -> fencelock::Result<LockClient>;

    /// A TTL short enough for loss tests and long enough not to expire by accident
    /// on a loaded machine.
    fn short_ttl(&self) -> Duration;

    /// Forces `lease` lost from outside its client, as the server would after a crash
    /// (memory: expire; etcd: revoke from another client; ZooKeeper: expire the session).
    async fn kill_lease(&self, namespace: &str, lease: &Lease) -> fencelock::Result<()>;

    /// Deletes the current holder's entry of `name` from outside, as an operator would.
    async fn delete_holder(&self, namespace: &str, name: &LockName) -> fencelock::Result<()>;

    /// Stops `lease`'s keep-alive from reaching the server (a pause or partition) if the
    /// harness can; returns `false` if it cannot.
    async fn stall_lease(&self, namespace: &str, lease: &Lease) -> fencelock::Result<bool>;

    /// Lets `lease`'s keep-alive through again after [`stall_lease`](Self::stall_lease);
    /// returns `false` if the harness cannot.
    async fn resume_lease(&self, _namespace: &str, _lease: &Lease) -> fencelock::Result<bool> {
        Ok(false)
    }

    /// Over how long the case `cancellation::cancelled_acquires_behind_a_holder_leave_only_the_holder`
    /// spreads its cancellations: enough to cover every await point of the backend's
    /// acquire (the enqueue round trip, the queue read, setting the watch); `None`
    /// gates the case off.
    fn cancel_spread(&self) -> Option<Duration> {
        None
    }

    /// How soon a holder must learn that [`kill_lease`](Self::kill_lease) killed its
    /// lease of granted TTL `ttl`; `None` when the harness promises nothing (the
    /// cases that need it are ignored).
    fn kill_notice(&self, _ttl: Duration) -> Option<Duration> {
        None
    }

    /// How soon a holder must learn that [`delete_holder`](Self::delete_holder)
    /// deleted its entry; `None` when the harness promises nothing (the cases that
    /// need it are ignored).
    fn delete_notice(&self) -> Option<Duration> {
        None
    }

    /// A URL with which another process reaches `namespace` (`fencelock::connect`),
    /// for the cases that run a holder in a child process
    /// ([`holder::child_main`](crate::holder::child_main)); `None` when the backend
    /// cannot be shared between processes (the cases are then ignored).
    fn process_url(&self, _namespace: &str) -> Option<String> {
        None
    }

    /// The URL of a client of a server at `addr` (`host:port`) that is not there or
    /// does not answer, with the backend's connect timeout set to at most 1 s; `None`
    /// for a backend without a network (the case is then ignored).
    fn unreachable_url(&self, _addr: &str) -> Option<String> {
        None
    }

    /// Every key or node of `namespace` on the server (no leases or sessions), in a
    /// readable form; `None` when the backend cannot list them.
    async fn entries(&self, _namespace: &str) -> fencelock::Result<Option<Vec<String>>> {
        Ok(None)
    }

    /// The backend's native fenced writes, in the few steps the suite needs; `None`
    /// when it has none.
    fn native_fence(&self) -> Option<&dyn NativeFence> {
        None
    }

    /// How many tasks and cycles per task the exclusion stress runs.
    fn stress_size(&self) -> (usize, usize) {
        (8, 25)
    }

    /// How many acquire futures the cancellation stress drops.
    fn cancellations(&self) -> usize {
        50
    }

    /// Every key or node (and, where the backend can tell, lease) of `namespace` still
    /// on the server, in a readable form; empty when clean.
    async fn leftover(&self, namespace: &str) -> fencelock::Result<Vec<String>>;
}

/// A backend's native fenced writes (etcd transactions, ZooKeeper multi-ops) on a data
/// entry of a namespace, in the steps the conformance case
/// `fencing::native_fenced_writes_commit_only_while_held` takes. An entry's *stamp*
/// is its version as the backend counts it (etcd: mod revision; ZooKeeper: data
/// version). Each method also checks the backend's own outcomes of the write.
#[async_trait]
pub trait NativeFence: Send + Sync {
    /// Under `guard`'s fence: creates `key` with `value` if it does not exist and
    /// returns its stamp; `None` (nothing written) when it exists already.
    async fn create(
        &self,
        namespace: &str,
        guard: &LockGuard,
        key: &str,
        value: &[u8],
    ) -> Result<Option<u64>, TestError>;

    /// Under `guard`'s fence: sets `key` to `value` if its stamp is `stamp` (any stamp
    /// for `None`); `Ok(false)` (nothing applied) on a stamp mismatch.
    ///
    /// # Errors
    ///
    /// `NotHeld` when the lock is lost: nothing applied.
    async fn set(
        &self,
        namespace: &str,
        guard: &LockGuard,
        key: &str,
        value: &[u8],
        stamp: Option<u64>,
    ) -> fencelock::Result<bool>;

    /// Under `guard`'s fence: deletes `key` if its stamp is `stamp`; `Ok(false)`
    /// (nothing applied) on a mismatch.
    async fn delete(
        &self,
        namespace: &str,
        guard: &LockGuard,
        key: &str,
        stamp: u64,
    ) -> fencelock::Result<bool>;

    /// A fenced write of no operation: only checks that `guard` still holds.
    async fn check(&self, guard: &LockGuard) -> fencelock::Result<()>;

    /// The value and stamp of `key`, read outside any lock; `None` if absent.
    async fn read(&self, namespace: &str, key: &str) -> Result<Option<(Vec<u8>, u64)>, TestError>;
}
