//! Operator and fault controls of Redlock, as another process would do them with
//! `redis-cli` on every master: list stored keys, break a lock, kill a lease, stall
//! a lease's renewal. Used by tests and tools.

use super::{backend::RedlockBackend, conn::release_all, lock};
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

    /// **Operator action**: deletes the entry a majority of masters holds for
    /// `name`, on every master, and only that entry: a master that holds another
    /// entry by then (the next holder's, granted between the read and the delete)
    /// keeps it, so breaking one holder's lock never takes a later holder's votes.
    /// Returns the broken holder's token, `None` if no entry held a majority (then
    /// nothing is deleted; a minority entry expires with its TTL).
    ///
    /// # Errors
    ///
    /// Backend errors of the read.
    ///
    /// # Cancel safety
    ///
    /// A dropped call may or may not have deleted the entries.
    pub async fn break_lock(&self, name: &LockName) -> Result<Option<FencingToken>> {
        let Some((id, info)) = lock::majority_entry(&self.nodes, name).await? else {
            return Ok(None);
        };
        let key = format!("{}lock", base(self.nodes.prefix(), name));
        release_all(&self.nodes, &key, &id).await;
        Ok(Some(info.token))
    }

    /// **Operator action**: deletes lease `lease`'s key and entries on every master,
    /// as their expiry would. An entry is deleted only while it is still the
    /// lease's (the same conditional delete as a release).
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
        // Entry ids are `<lease hex>.<n>` (see `lock::acquire`).
        let entry_prefix = format!("{hex}.");
        let mut entries = BTreeSet::new();
        for c in &self.nodes.conns {
            for key in c.stored_keys().await? {
                if key.ends_with(&format!("lease:{hex}")) {
                    c.delete(&key).await?;
                } else if key.ends_with("}:lock") {
                    if let Some(id) = c.hget(&key, "i").await? {
                        if id.starts_with(&entry_prefix) {
                            entries.insert((key, id));
                        }
                    }
                }
            }
        }
        for (key, id) in entries {
            release_all(&self.nodes, &key, &id).await;
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
