//! Operator and fault controls, as another process would do them with `etcdctl`:
//! revoke a lease, break a lock, list what is stored, stall a keep-alive. Used by tests
//! and tools.

use crate::{queue, EtcdBackend};
use etcd_client::{GetOptions, SortOrder, SortTarget};
use lock_core::{FencingToken, LeaseId, LockName, Result};

impl EtcdBackend {
    /// The key range (a prefix ending in `/`) holding every waiter of `name`; the
    /// waiter with the smallest create revision holds the lock. For operators and
    /// tests.
    pub fn lock_range(&self, name: &LockName) -> String {
        queue::lock_range(self.conn.config.prefix(), name)
    }

    /// The leases this backend granted that are neither revoked nor lost.
    pub fn live_leases(&self) -> Vec<LeaseId> {
        self.leases
            .live_leases()
            .iter()
            .map(|l| l.lease_id())
            .collect()
    }

    /// How many requests this backend sent to etcd so far: every attempt of a unary
    /// request (reads, writes, transactions, lease grants and revocations), every
    /// stream opened (watch and keep-alive streams) and every watch created or
    /// cancelled on the shared watch stream; keep-alive messages on an open stream
    /// are not counted. For tests and benchmarks (a follower of an election sends
    /// none per leader change).
    #[doc(hidden)]
    pub fn requests_sent(&self) -> u64 {
        self.conn.members.requests()
    }

    /// **Test hook**: stops (or resumes) sending keep-alives for `lease`, as if the
    /// process were paused; the lease turns `Suspect`, then `Lost` at its local
    /// deadline, and etcd expires it after the TTL. Returns whether the lease is
    /// one of this backend's live leases.
    #[doc(hidden)]
    pub fn stall_keep_alive(&self, lease: LeaseId, stalled: bool) -> bool {
        let leases = self.leases.live_leases();
        match leases.iter().find(|l| l.lease_id() == lease) {
            Some(l) => {
                l.stalled
                    .store(stalled, std::sync::atomic::Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// **Operator action**: revokes lease `lease` (any lease, not only this
    /// backend's), deleting every key attached to it. Returns `false` if it did not
    /// exist.
    ///
    /// # Errors
    ///
    /// Backend errors ([`ErrorKind::Unavailable`](lock_core::ErrorKind::Unavailable), …).
    ///
    /// # Cancel safety
    ///
    /// A dropped call may or may not have revoked the lease.
    pub async fn revoke_lease(&self, lease: LeaseId) -> Result<bool> {
        let id = i64::try_from(lease.get()).unwrap_or(-1);
        let result = self
            .conn
            .call(&|| format!("revoking lease {lease}"), |mut c| async move {
                c.lease_revoke(id).await
            })
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == lock_core::ErrorKind::LeaseLost => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// **Operator action**: deletes the current holder's key of `name` (as
    /// `etcdctl del` would), so the holder's guard turns `Lost` and the next waiter
    /// is granted. Returns the deleted holder's token, `None` if nobody held it.
    ///
    /// # Errors
    ///
    /// Backend errors.
    ///
    /// # Cancel safety
    ///
    /// A dropped call may or may not have deleted the key.
    pub async fn break_lock(&self, name: &LockName) -> Result<Option<FencingToken>> {
        let range = self.lock_range(name);
        let owner = self
            .conn
            .call(&|| format!("reading the holder of lock {name}"), |mut c| {
                let range = range.clone();
                let all = GetOptions::new()
                    .with_prefix()
                    .with_keys_only()
                    .with_sort(SortTarget::Create, SortOrder::Ascend);
                async move { c.get(range, Some(all)).await }
            })
            .await?;
        // The first contender; keys of a nested namespace in the range are not ours.
        let Some(kv) = owner
            .kvs()
            .iter()
            .find(|kv| crate::queue::is_direct_child(&range, kv.key()))
        else {
            return Ok(None);
        };
        let (key, rev) = (kv.key().to_vec(), kv.create_revision());
        let txn = crate::keys::fenced_delete(key, rev);
        let resp = self
            .conn
            .call(&|| format!("breaking lock {name}"), |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        Ok(resp
            .succeeded()
            .then(|| FencingToken::new(rev.unsigned_abs())))
    }

    /// Every key stored under this backend's prefix (lock keys and anything else),
    /// for leak checks. With no prefix: every key of the cluster.
    ///
    /// # Errors
    ///
    /// Backend errors.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn stored_keys(&self) -> Result<Vec<String>> {
        let prefix = match self.conn.config.prefix() {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let resp = self
            .conn
            .call(&|| format!("listing keys under {prefix:?}"), |mut c| {
                let prefix = prefix.clone();
                async move {
                    c.get(
                        prefix,
                        Some(GetOptions::new().with_prefix().with_keys_only()),
                    )
                    .await
                }
            })
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect())
    }

    /// Whether lease `lease` still exists on the server (any lease).
    ///
    /// # Errors
    ///
    /// Backend errors.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn lease_exists(&self, lease: LeaseId) -> Result<bool> {
        let id = i64::try_from(lease.get()).unwrap_or(-1);
        let resp = self
            .conn
            .call(&|| format!("reading lease {lease}"), |mut c| async move {
                c.lease_time_to_live(id, None).await
            })
            .await?;
        Ok(resp.ttl() > 0)
    }

    /// The most recent leases (up to 1024) this backend granted, live or not.
    #[doc(hidden)]
    pub fn granted_leases(&self) -> Vec<LeaseId> {
        self.leases.granted_leases()
    }
}
