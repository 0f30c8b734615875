//! Plain data passed to and returned from backends: lease ids, acquire options, lock info.

use crate::{backend::Claim, FencingToken, LockName};
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

/// One holder of a lock, as listed in [`LockInfo::holders`].
///
/// # Examples
///
/// ```
/// use lock_core::{FencingToken, HolderInfo, LeaseId};
///
/// let h = HolderInfo::new(FencingToken::new(7), LeaseId::new(1)).with_holder(Some("web-3".into()));
/// assert_eq!(h.holder.as_deref(), Some("web-3"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HolderInfo {
    /// This holder's fencing token.
    pub token: FencingToken,
    /// The lease this holder's entry hangs off.
    pub lease: LeaseId,
    /// The holder text given at acquisition, if any.
    pub holder: Option<String>,
    /// When this holder acquired the lock (wall clock), if the backend records it.
    pub acquired_at: Option<SystemTime>,
    /// What the holder's entry claims ([`Claim::Exclusive`] for a mutex).
    pub claim: Claim,
    /// A semaphore permit's slot, when the backend records it.
    pub slot: Option<u32>,
}

impl HolderInfo {
    /// An exclusive holder with `token` on `lease`, with no holder text and no
    /// acquisition time.
    pub fn new(token: FencingToken, lease: LeaseId) -> Self {
        HolderInfo {
            token,
            lease,
            holder: None,
            acquired_at: None,
            claim: Claim::Exclusive,
            slot: None,
        }
    }

    /// Sets [`slot`](Self::slot).
    #[must_use]
    pub fn with_slot(mut self, slot: Option<u32>) -> Self {
        self.slot = slot;
        self
    }

    /// Sets [`holder`](Self::holder).
    #[must_use]
    pub fn with_holder(mut self, holder: Option<String>) -> Self {
        self.holder = holder;
        self
    }

    /// Sets [`acquired_at`](Self::acquired_at).
    #[must_use]
    pub fn with_acquired_at(mut self, at: Option<SystemTime>) -> Self {
        self.acquired_at = at;
        self
    }

    /// Sets [`claim`](Self::claim).
    #[must_use]
    pub fn with_claim(mut self, claim: Claim) -> Self {
        self.claim = claim;
        self
    }
}

/// A read-only view of one lock on the server, from
/// [`LockClient::inspect`](crate::LockClient::inspect).
///
/// A lock may have several holders at once (readers of a read-write lock, permits of a
/// semaphore): [`holders`](Self::holders) lists them all in queue order, and the
/// flat fields `token`, `lease`, `holder` and `acquired_at` repeat the first of them
/// (the only one for a mutex).
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
/// assert_eq!(info.holders.len(), 1);
/// assert_eq!(info.waiters, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockInfo {
    /// The lock's name.
    pub name: LockName,
    /// The first holder's fencing token.
    pub token: FencingToken,
    /// The lease the first holder's entry hangs off.
    pub lease: LeaseId,
    /// The first holder's text given at acquisition, if any.
    pub holder: Option<String>,
    /// When the first holder acquired the lock (wall clock), if the backend records it.
    pub acquired_at: Option<SystemTime>,
    /// Every holder, in queue order (never empty; the first is the one the flat
    /// fields describe).
    pub holders: Vec<HolderInfo>,
    /// How many acquisitions wait behind the holders.
    pub waiters: usize,
}

impl LockInfo {
    /// A view of `name` held with `token` on `lease` by one exclusive holder, with no
    /// holder text, no acquisition time and no waiters.
    pub fn new(name: LockName, token: FencingToken, lease: LeaseId) -> Self {
        LockInfo::from_holders(name, HolderInfo::new(token, lease), Vec::new(), 0)
    }

    /// A view of `name` held by `first` and then `others` (in queue order), with
    /// `waiters` acquisitions waiting behind them.
    ///
    /// # Examples
    ///
    /// ```
    /// use lock_core::{backend::Claim, FencingToken, HolderInfo, LeaseId, LockInfo, LockName};
    ///
    /// let reader = |t| HolderInfo::new(FencingToken::new(t), LeaseId::new(t)).with_claim(Claim::Read);
    /// let info = LockInfo::from_holders(LockName::new("doc").unwrap(), reader(4), vec![reader(5)], 1);
    /// assert_eq!((info.token, info.holders.len(), info.waiters), (FencingToken::new(4), 2, 1));
    /// ```
    pub fn from_holders(
        name: LockName,
        first: HolderInfo,
        others: Vec<HolderInfo>,
        waiters: usize,
    ) -> Self {
        let mut holders = Vec::with_capacity(1 + others.len());
        holders.push(first);
        holders.extend(others);
        let head = &holders[0];
        LockInfo {
            name,
            token: head.token,
            lease: head.lease,
            holder: head.holder.clone(),
            acquired_at: head.acquired_at,
            holders,
            waiters,
        }
    }
}
