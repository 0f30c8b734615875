//! Fencing tokens.

use std::fmt;

/// A number handed out with every acquisition that grows with each new holder of a lock.
///
/// Tokens are strictly increasing per lock name across successive holders on one
/// backend: etcd uses the create revision of the acquisition's key, ZooKeeper the
/// `czxid` of the lock node, the memory backend a per-store counter. A resource that
/// remembers the highest token it accepted can reject a write from a holder whose lock
/// has already passed on (see [`Fence`](crate::Fence)).
///
/// Tokens support comparison only; there is deliberately no arithmetic.
///
/// # Guarantees
///
/// If grant A completed before grant B of the same lock name was requested, then
/// `B.token() > A.token()`. Two grants never share a token.
///
/// # Non-guarantees
///
/// Tokens are not dense (gaps are normal) and tokens of different backends or of
/// different stores are not comparable.
///
/// # Examples
///
/// ```
/// use lock_core::FencingToken;
///
/// let older = FencingToken::new(7);
/// let newer = FencingToken::new(12);
/// assert!(newer > older);
/// assert_eq!(newer.to_string(), "12");
/// assert_eq!(newer.get(), 12);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(u64);

impl FencingToken {
    /// Wraps a raw token value (as read back from a resource's storage).
    pub const fn new(value: u64) -> Self {
        FencingToken(value)
    }

    /// The raw value, for storing next to the protected data.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<FencingToken> for u64 {
    fn from(token: FencingToken) -> u64 {
        token.0
    }
}
