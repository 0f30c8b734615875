//! Operator and fault controls of Redlock, as another process would do them with
//! `redis-cli` on every master: list stored keys, break a lock, kill a lease, stall
//! a lease's renewal. Used by tests and tools.

use super::{backend::RedlockBackend, lock};
use crate::scripts::base;
use lock_core::{FencingToken, LeaseId, LockName, Result};
use std::{collections::BTreeSet, sync::atomic::Ordering};

impl RedlockBackend {
    /// Every key under the prefix on any master, for leak checks, except the token
    /// counters that carry a TTL.
    ///
    /// # Errors
    ///
    /// Backend errors of a master.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn stored_keys(&self) -> Result<Vec<String>> {
        let mut all = BTreeSet::new();
        for c in &self.nodes.conns {
            all.extend(c.stored_keys().await?);
        }
        Ok(all.into_iter().collect())
    }

    /// **Operator action**: deletes the lock entry of `name` on every master.
    /// Returns its token, `None` if nobody held it.
    ///
    /// # Errors
    ///
    /// Backend errors.
    ///
    /// # Cancel safety
    ///
    /// A dropped call may or may not have deleted the entries.
    pub async fn break_lock(&self, name: &LockName) -> Result<Option<FencingToken>> {
        let info = lock::inspect(&self.nodes, name).await?;
        let key = format!("{}lock", base(self.nodes.prefix(), name));
        for c in &self.nodes.conns {
            let _ = c.delete(&key).await;
        }
        Ok(info.map(|i| i.token))
    }

    /// **Operator action**: deletes lease `lease`'s key and entries on every master,
    /// as their expiry would.
    ///
    /// # Errors
    ///
    /// Backend errors.
    ///
    /// # Cancel safety
    ///
    /// A dropped call may or may not have deleted the keys.
    pub async fn kill_lease(&self, lease: LeaseId) -> Result<()> {
        let hex = format!("{:016x}", lease.get());
        for c in &self.nodes.conns {
            for key in c.stored_keys().await? {
                let mine = key.ends_with(&format!("lease:{hex}"))
                    || (key.ends_with("}:lock")
                        && c.hget(&key, "l").await?.as_deref() == Some(&hex));
                if mine {
                    c.delete(&key).await?;
                }
            }
        }
        Ok(())
    }

    /// **Test hook**: stops (or resumes) renewing `lease`. Returns whether the lease
    /// is one of this backend's live leases.
    #[doc(hidden)]
    pub fn stall_keep_alive(&self, lease: LeaseId, stalled: bool) -> bool {
        match self.leases.get(lease.get()) {
            Some(l) => {
                l.stalled.store(stalled, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}
