//! One Redlock grant: the entry on a majority of masters, its quorum token, and its
//! liveness (turned `Lost` by the lease's renewal when a majority no longer holds
//! the entry).

use super::{
    conn::{release_all, Nodes},
    session::RlLeaseShared,
};
use async_trait::async_trait;
use lock_core::{
    backend::{lock_unpoisoned, HeldLock, Liveness},
    Error, ErrorKind, FencingToken, LockName, LossCause, Result,
};
use std::{any::Any, fmt, sync::Arc};

/// A Redlock grant: the entry on a majority of masters and its quorum token.
pub struct RedlockHeldLock {
    nodes: Arc<Nodes>,
    lease: Arc<RlLeaseShared>,
    name: LockName,
    key: String,
    id: String,
    token: u64,
    liveness: Liveness,
    released: bool,
}

impl RedlockHeldLock {
    pub(super) fn new(
        lease: &Arc<RlLeaseShared>,
        name: LockName,
        key: String,
        id: String,
        token: u64,
        liveness: Liveness,
    ) -> Self {
        RedlockHeldLock {
            nodes: lease.nodes.clone(),
            lease: lease.clone(),
            name,
            key,
            id,
            token,
            liveness,
            released: false,
        }
    }
}

impl fmt::Debug for RedlockHeldLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedlockHeldLock")
            .field("name", &self.name)
            .field("token", &self.token)
            .finish()
    }
}

#[async_trait]
impl HeldLock for RedlockHeldLock {
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
        self.released = true;
        let lost_before = self.liveness.state().is_lost();
        lock_unpoisoned(&self.lease.entries).remove(&self.id);
        let deleted = release_all(&self.nodes, &self.key, &self.id).await;
        self.liveness.lose_with(LossCause::Released);
        if lost_before || deleted == 0 {
            return Err(Error::new(
                ErrorKind::NotHeld,
                format!(
                    "lock {} (token {}) was lost before release",
                    self.name, self.token
                ),
            ));
        }
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
