//! What a backend runner provides to the conformance suite.

use async_trait::async_trait;
use fencelock::{Capabilities, Lease, LockClient, LockName};
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
