//! What a backend can promise, so an application can assert what it relies on.

use std::fmt;

/// Where a backend's [`FencingToken`](crate::FencingToken)s come from.
///
/// # Examples
///
/// ```
/// use lock_core::{LockClient, TokenSource};
///
/// let client = LockClient::new(lock_memory::MemoryBackend::new());
/// assert_eq!(client.capabilities().token_source, TokenSource::Counter);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenSource {
    /// A per-store counter in process memory (memory backend).
    Counter,
    /// The etcd create revision of the acquisition's key.
    CreateRevision,
    /// The ZooKeeper `czxid` of the acquisition's node.
    Czxid,
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenSource::Counter => "per-store counter",
            TokenSource::CreateRevision => "etcd create revision",
            TokenSource::Czxid => "zookeeper czxid",
        })
    }
}

/// The capability descriptor every backend returns.
///
/// Tests and documentation read it; an application that depends on a property (say,
/// FIFO fairness) can assert it at start-up so that swapping backends cannot silently
/// remove it.
///
/// # Examples
///
/// ```
/// use lock_core::{Capabilities, TokenSource};
///
/// let caps = Capabilities::new(TokenSource::Counter).with_fifo(true).with_herd_free(true);
/// assert!(caps.fifo && caps.herd_free && !caps.native_fenced_writes);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Capabilities {
    /// Waiters are granted the lock in the order they asked for it.
    pub fifo: bool,
    /// A release wakes exactly one waiter (no thundering herd).
    pub herd_free: bool,
    /// Where fencing tokens come from.
    pub token_source: TokenSource,
    /// A holder learns when its lock entry is deleted by someone else.
    pub detects_external_deletion: bool,
    /// The backend can run writes on its own store that commit only while the lock is
    /// held (etcd transaction on the create revision, ZooKeeper `check` op).
    pub native_fenced_writes: bool,
    /// Locks coordinate separate processes and machines (false for the memory backend).
    pub distributed: bool,
    /// The backend offers fault controls for tests (expire, stall, delete).
    pub fault_injection: bool,
}

impl Capabilities {
    /// All flags off, tokens from `token_source`.
    pub const fn new(token_source: TokenSource) -> Self {
        Capabilities {
            fifo: false,
            herd_free: false,
            token_source,
            detects_external_deletion: false,
            native_fenced_writes: false,
            distributed: false,
            fault_injection: false,
        }
    }

    /// Sets [`fifo`](Self::fifo).
    pub const fn with_fifo(mut self, on: bool) -> Self {
        self.fifo = on;
        self
    }

    /// Sets [`herd_free`](Self::herd_free).
    pub const fn with_herd_free(mut self, on: bool) -> Self {
        self.herd_free = on;
        self
    }

    /// Sets [`detects_external_deletion`](Self::detects_external_deletion).
    pub const fn with_detects_external_deletion(mut self, on: bool) -> Self {
        self.detects_external_deletion = on;
        self
    }

    /// Sets [`native_fenced_writes`](Self::native_fenced_writes).
    pub const fn with_native_fenced_writes(mut self, on: bool) -> Self {
        self.native_fenced_writes = on;
        self
    }

    /// Sets [`distributed`](Self::distributed).
    pub const fn with_distributed(mut self, on: bool) -> Self {
        self.distributed = on;
        self
    }

    /// Sets [`fault_injection`](Self::fault_injection).
    pub const fn with_fault_injection(mut self, on: bool) -> Self {
        self.fault_injection = on;
        self
    }
}
