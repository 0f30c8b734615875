//! Plain data passed to and returned from backends: lease ids, acquire options, lock info.

use crate::{FencingToken, LockName};
use std::{fmt, time::SystemTime};

/// The backend's identifier of a lease (etcd lease id, ZooKeeper session id, memory
/// lease number). Shown in hex.
///
/// # Examples
///
/// ```
/// use lock_core::LeaseId;
///
/// assert_eq!(LeaseId::new(255).to_string(), "ff");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(u64);

impl LeaseId {
    /// Wraps a raw id.
    pub const fn new(id: u64) -> Self {
        LeaseId(id)
    }

    /// The raw id.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// Per-acquisition options a backend stores with the lock entry.
///
/// # Examples
///
/// ```
/// use lock_core::AcquireOptions;
///
/// let opts = AcquireOptions::default().with_holder("web-3:4711");
/// assert_eq!(opts.holder(), Some("web-3:4711"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AcquireOptions {
    holder: Option<String>,
}

impl AcquireOptions {
    /// Free text stored with the acquisition so others can see who holds the lock
    /// (for example `hostname:pid`). At most [`MAX_HOLDER_LEN`] bytes are kept.
    #[must_use]
    pub fn with_holder(mut self, holder: impl Into<String>) -> Self {
        let mut holder = holder.into();
        if holder.len() > MAX_HOLDER_LEN {
            let mut cut = MAX_HOLDER_LEN;
            while !holder.is_char_boundary(cut) {
                cut -= 1;
            }
            holder.truncate(cut);
        }
        self.holder = Some(holder);
        self
    }

    /// The holder text, if set.
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref()
    }
}

/// The longest holder text kept, in bytes.
pub const MAX_HOLDER_LEN: usize = 1024;

/// A read-only view of one lock on the server, from
/// [`LockClient::inspect`](crate::LockClient::inspect).
///
/// # Non-guarantees
///
/// A snapshot: by the time it is read the holder may have changed.
///
/// # Examples
///
/// ```
/// use lock_core::{LockClient, LockName};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let client = LockClient::new(lock_memory::MemoryBackend::new());
/// let guard = client.acquire("report").await?;
/// let info = client.inspect("report").await?.expect("held");
/// assert_eq!(info.token, guard.token());
/// assert_eq!(info.waiters, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockInfo {
    /// The lock's name.
    pub name: LockName,
    /// The current holder's fencing token.
    pub token: FencingToken,
    /// The lease the holder's entry hangs off.
    pub lease: LeaseId,
    /// The holder text given at acquisition, if any.
    pub holder: Option<String>,
    /// When the holder acquired the lock (wall clock), if the backend records it.
    pub acquired_at: Option<SystemTime>,
    /// How many acquisitions wait behind the holder.
    pub waiters: usize,
}

impl LockInfo {
    /// A view of `name` held with `token` on `lease`, with no holder text, no
    /// acquisition time and no waiters.
    pub fn new(name: LockName, token: FencingToken, lease: LeaseId) -> Self {
        LockInfo {
            name,
            token,
            lease,
            holder: None,
            acquired_at: None,
            waiters: 0,
        }
    }
}
