//! What a backend can promise, so an application can assert what it relies on.

use std::fmt;

/// Where a backend's [`FencingToken`](crate::FencingToken)s come from, described by
/// origin rather than by backend (a new backend picks the variant that fits and edits
/// nothing here).
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
    /// A counter in the lock service's process memory, per store: strictly increasing
    /// while the store lives, not durable (the memory backend).
    Counter,
    /// The store-wide revision (transaction id) at which the acquisition's entry was
    /// created: strictly increasing across every key of the store and durable (etcd's
    /// create revision, ZooKeeper's `czxid`).
    CreateRevision,
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenSource::Counter => "per-store counter",
            TokenSource::CreateRevision => "create revision of the entry",
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
    /// No thundering herd: a release wakes only the waiters it grants (one for a mutex,
    /// a writer or a permit; the run of readers behind a writer), plus, for a
    /// semaphore on a backend that needs it, the one waiter behind a new permit
    /// holder (its grant signal, see [`decide`](crate::backend::decide)). A backend
    /// that claims it counts its wake-ups in
    /// [`Backend::waiter_wakeups`](crate::backend::Backend::waiter_wakeups).
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
    /// The backend grants [`Claim::Shared`](crate::backend::Claim::Shared) (counting
    /// semaphore permits) by [`decide`](crate::backend::decide)'s rule.
    pub shared_claims: bool,
    /// The backend grants [`Claim::Read`](crate::backend::Claim::Read) and
    /// [`Claim::Write`](crate::backend::Claim::Write) (the two sides of a read-write
    /// lock) by [`decide`](crate::backend::decide)'s rule.
    pub read_write_claims: bool,
    /// A holder can change the value stored with its own entry, fenced on the entry
    /// ([`HeldLock::set_value`](crate::backend::HeldLock::set_value), which
    /// [`Leadership::proclaim`](crate::Leadership::proclaim) uses).
    pub set_value: bool,
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
            shared_claims: false,
            read_write_claims: false,
            set_value: false,
        }
    }

    /// Whether the backend grants `claim`. [`Claim::Exclusive`](crate::backend::Claim::Exclusive)
    /// is always supported; a backend answers every other claim it does not support
    /// with [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported), never with a grant.
    ///
    /// # Examples
    ///
    /// ```
    /// use lock_core::{backend::Claim, Capabilities, TokenSource};
    ///
    /// let caps = Capabilities::new(TokenSource::Counter).with_read_write_claims(true);
    /// assert!(caps.supports(Claim::Exclusive) && caps.supports(Claim::Read));
    /// assert!(!caps.supports(Claim::Shared { limit: 2 }));
    /// ```
    pub const fn supports(&self, claim: crate::backend::Claim) -> bool {
        use crate::backend::Claim;
        match claim {
            Claim::Exclusive => true,
            Claim::Shared { .. } => self.shared_claims,
            Claim::Read | Claim::Write => self.read_write_claims,
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

    /// Sets [`shared_claims`](Self::shared_claims).
    pub const fn with_shared_claims(mut self, on: bool) -> Self {
        self.shared_claims = on;
        self
    }

    /// Sets [`read_write_claims`](Self::read_write_claims).
    pub const fn with_read_write_claims(mut self, on: bool) -> Self {
        self.read_write_claims = on;
        self
    }

    /// Sets [`set_value`](Self::set_value).
    pub const fn with_set_value(mut self, on: bool) -> Self {
        self.set_value = on;
        self
    }
}
