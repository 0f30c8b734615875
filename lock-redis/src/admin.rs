//! Operator and fault controls, as another process would do them with `redis-cli`:
//! list lock names, break a lock, list stored keys, stall a lease's renewal. Used by
//! tests and tools.

use crate::{backend::RedisBackend, lock, scripts};
use lock_core::{FencingToken, LeaseId, LockName, Result};
use std::sync::atomic::Ordering;

impl RedisBackend {
    /// The key base of lock `name` (`<prefix>{<name>}:`): its queue is `<base>q`, its
    /// token counter `<base>t`, its entries `<base>e:<id>`.
    pub fn lock_base(&self, name: &LockName) -> String {
        scripts::base(self.conn.config.prefix(), name)
    }

    /// The names of the locks with a queue under this backend's prefix whose name
    /// starts with `prefix`.
    ///
    /// # Errors
    ///
    /// Backend errors.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn lock_names(&self, prefix: &str) -> Result<Vec<LockName>> {
        lock::names(&self.conn, prefix).await
    }

    /// Every key stored under this backend's prefix, for leak checks, except the
    /// token counters (`…:t`) that carry a TTL: those stay on purpose (see the
    /// crate's `# Non-guarantees`). A counter without a TTL is listed.
    ///
    /// # Errors
    ///
    /// Backend errors.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn stored_keys(&self) -> Result<Vec<String>> {
        self.conn.stored_keys().await
    }

    /// **Operator action**: deletes the current holder's entry of `name` (as
    /// `redis-cli DEL` would), so the holder's guard turns `Lost` at its next
    /// renewal and the next waiter is granted at its next re-check. Returns the
    /// deleted holder's token, `None` if nobody held it.
    ///
    /// # Errors
    ///
    /// Backend errors.
    ///
    /// # Cancel safety
    ///
    /// A dropped call may or may not have deleted the entry.
    pub async fn break_lock(&self, name: &LockName) -> Result<Option<FencingToken>> {
        let Some(info) = lock::inspect(&self.conn, name).await? else {
            return Ok(None);
        };
        let base = self.lock_base(name);
        let what = || format!("reading the queue of lock {name}");
        let head: Vec<String> = self
            .conn
            .call(&what, |mut c| {
                let cmd = redis::cmd("ZRANGEBYSCORE")
                    .arg(format!("{base}q"))
                    .arg(info.token.get())
                    .arg(info.token.get())
                    .clone();
                async move { cmd.query_async(&mut c).await }
            })
            .await?;
        let Some(id) = head.first() else {
            return Ok(None);
        };
        let what = || format!("breaking lock {name}");
        let deleted: i64 = self
            .conn
            .call(&what, |mut c| {
                let cmd = redis::cmd("DEL").arg(format!("{base}e:{id}")).clone();
                async move { cmd.query_async(&mut c).await }
            })
            .await?;
        Ok((deleted == 1).then_some(info.token))
    }

    /// **Operator action**: deletes `key` (as `redis-cli DEL`). Returns whether it
    /// existed.
    ///
    /// # Errors
    ///
    /// Backend errors.
    ///
    /// # Cancel safety
    ///
    /// A dropped call may or may not have deleted the key.
    pub async fn delete_key(&self, key: &str) -> Result<bool> {
        self.conn.delete(key).await
    }

    /// The leases this backend granted that are neither revoked nor lost.
    pub fn live_leases(&self) -> Vec<LeaseId> {
        self.leases.live().iter().map(|l| l.lease_id()).collect()
    }

    /// **Test hook**: stops (or resumes) renewing `lease`, as if the process were
    /// paused; the lease turns `Suspect`, then `Lost` at its local deadline, and
    /// its entries expire on the server after the TTL. Returns whether the lease is
    /// one of this backend's live leases.
    #[doc(hidden)]
    pub fn stall_keep_alive(&self, lease: LeaseId, stalled: bool) -> bool {
        match self.leases.live().iter().find(|l| l.lease_id() == lease) {
            Some(l) => {
                l.stalled.store(stalled, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}
