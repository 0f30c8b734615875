//! One grant: its entry, whose token fences the release, and its liveness (turned
//! `Lost` by the lease's renewal when the entry is found missing).

use crate::session::{self, LeaseShared};
use lock_core::{backend::Liveness, Error, ErrorKind, FencingToken, LockName, LossCause, Result};
use std::sync::Arc;

/// A granted acquisition on Redis: the entry `<prefix>{<name>}:e:<id>`, whose token
/// (also its score in the lock's queue) is the fencing token.
///
/// # Guarantees
///
/// - The entry is renewed with its lease every third of the TTL; a renewal that finds
///   it missing (an operator's `DEL`, an eviction, an expiry while the process was
///   paused, a server restart or failover that lost it) turns this lock `Lost`
///   ([`LossCause::EntryDeleted`]) at once.
/// - Release deletes the entry only while it still carries this token, so it can
///   never delete a newer holder's entry; it is idempotent.
pub struct RedisHeldLock {
    lease: Arc<LeaseShared>,
    name: LockName,
    base: String,
    id: String,
    token: u64,
    liveness: Liveness,
    released: bool,
}

impl RedisHeldLock {
    pub(crate) fn new(
        lease: &Arc<LeaseShared>,
        name: LockName,
        base: String,
        id: String,
        token: u64,
        liveness: Liveness,
    ) -> Self {
        RedisHeldLock {
            lease: lease.clone(),
            name,
            base,
            id,
            token,
            liveness,
            released: false,
        }
    }

    /// The entry's key in Redis.
    pub fn key(&self) -> String {
        format!("{}e:{}", self.base, self.id)
    }

    /// The lock's name.
    pub fn name(&self) -> &LockName {
        &self.name
    }
}

impl std::fmt::Debug for RedisHeldLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHeldLock")
            .field("name", &self.name)
            .field("key", &self.key())
            .field("token", &self.token)
            .field("state", &self.liveness.state())
            .finish()
    }
}

#[async_trait::async_trait]
impl lock_core::backend::HeldLock for RedisHeldLock {
    fn token(&self) -> FencingToken {
        FencingToken::new(self.token)
    }

    fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    async fn release(&mut self) -> Result<()> {
        if self.released {
            return Ok(());
        }
        let lost_before = self.liveness.state().is_lost();
        self.lease.untrack(&self.key());
        let result =
            session::remove(&self.lease, &self.base, &self.id, &self.token.to_string()).await;
        self.liveness.lose_with(LossCause::Released);
        let result = match result {
            Ok((1, _)) => Ok(()),
            // A retried release may find the entry deleted by its own first attempt.
            Ok((0, true)) if !lost_before => Ok(()),
            Ok(_) => Err(Error::new(
                ErrorKind::NotHeld,
                format!(
                    "lock {} (token {}) was lost before release",
                    self.name, self.token
                ),
            )),
            Err(e) => Err(e),
        };
        self.released = result
            .as_ref()
            .map_or_else(|e| e.kind() == ErrorKind::NotHeld, |()| true);
        result
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
