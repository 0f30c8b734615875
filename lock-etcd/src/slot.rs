//! Key slots: the suffix of a waiter key, reserved per lease and lock until the key
//! is known to be gone, and the sweep of keys that a late request may re-create.

use crate::session::LeaseShared;
use lock_core::backend::lock_unpoisoned;
use std::{sync::Arc, time::Duration};

/// How long after a request timed out etcd may still apply it (its own request
/// timeout is 5 s plus two election timeouts).
const GHOST_WINDOW: Duration = Duration::from_secs(10);

/// The suffix of a waiter key (`<lease hex>` for slot 0, as etcd's own recipe
/// writes it; `<lease hex>-<slot>` for the others), reserved until the key is known
/// to be deleted. Acquisitions of one lock on one lease reuse the lowest free slot,
/// so a busy lock does not leave a new key behind per acquisition (etcd keeps every
/// deleted key in its index until compaction, and range reads over the lock walk
/// them all). Reservation makes reuse safe: an unconditional cleanup delete can never
/// hit a later acquisition's key.
#[derive(Debug)]
pub(crate) struct Slot {
    lease: Arc<LeaseShared>,
    range: String,
    index: u32,
    keep: bool,
    sweep: Option<(String, i64)>,
}

impl Slot {
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// An enqueue request for `key` may still be applied late (it was retried or
    /// failed: a proposal stuck at a dying leader can commit seconds later). Before
    /// the slot is reused, a sweep deletes `key` if it was created after revision
    /// `above` (the grant's token, or 0).
    pub(crate) fn taint(&mut self, key: String, above: i64) {
        self.sweep = Some((key, above));
    }

    /// Never reuse this slot (its key may still exist: a delete failed).
    pub(crate) fn keep_reserved(mut self) {
        self.keep = true;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Some((key, above)) = self.sweep.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let slot = Slot {
                    lease: self.lease.clone(),
                    range: std::mem::take(&mut self.range),
                    index: self.index,
                    keep: false,
                    sweep: None,
                };
                self.keep = true;
                rt.spawn(sweep(slot, key, above));
                return;
            }
        }
        let mut slots = lock_unpoisoned(&self.lease.slots);
        if let Some(used) = slots.get_mut(&self.range) {
            used.remove(&self.index);
            if used.is_empty() {
                slots.remove(&self.range);
            }
        }
    }
}

/// Deletes a late re-creation of `key` (create revision above `above`), then frees
/// `slot`.
async fn sweep(slot: Slot, key: String, above: i64) {
    let conn = &slot.lease.conn;
    tokio::time::sleep(conn.config.request_timeout() + GHOST_WINDOW).await;
    let txn = etcd_client::Txn::new()
        .when([etcd_client::Compare::create_revision(
            key.clone(),
            etcd_client::CompareOp::Greater,
            above,
        )])
        .and_then([etcd_client::TxnOp::delete(key.clone(), None)]);
    let swept = conn
        .call(&|| format!("sweeping lock key {key}"), |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await;
    match swept {
        Ok(resp) if resp.succeeded() => {
            tracing::warn!(key, "deleted a lock key re-created by a late request")
        }
        Ok(_) => {}
        Err(e) => {
            tracing::debug!(key, error = %e, "sweep failed; the slot stays reserved");
            slot.keep_reserved();
        }
    }
}

impl LeaseShared {
    /// Reserves the lowest free key slot of `range` on this lease.
    pub(crate) fn take_slot(self: &Arc<Self>, range: &str) -> Slot {
        let mut slots = lock_unpoisoned(&self.slots);
        let used = slots.entry(range.to_owned()).or_default();
        let index = (0..).find(|i| !used.contains(i)).unwrap_or(u32::MAX);
        used.insert(index);
        Slot {
            lease: self.clone(),
            range: range.to_owned(),
            index,
            keep: false,
            sweep: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{conn::Conn, watch::WatchMux, EtcdConfig};
    use lock_core::backend::Liveness;
    use std::sync::{atomic::AtomicBool, Arc};
    use tokio::sync::Notify;

    async fn lease() -> Arc<crate::session::LeaseShared> {
        // etcd-client connects lazily: no server is needed to build one.
        let client = etcd_client::Client::connect(["127.0.0.1:1"], None)
            .await
            .expect("a lazy client");
        let config = EtcdConfig::new(["127.0.0.1:1"]);
        let members = Arc::new(crate::members::Members::single("127.0.0.1:1", client));
        let conn = Arc::new(Conn {
            watches: WatchMux::start(members.clone(), config.request_timeout()),
            members,
            config,
            wakeups: Default::default(),
            views: Default::default(),
        });
        Arc::new(crate::session::LeaseShared {
            conn,
            id: 0x1234,
            ttl: std::time::Duration::from_secs(5),
            liveness: Liveness::new(None),
            stalled: AtomicBool::new(false),
            poke: Notify::new(),
            revoked: AtomicBool::new(false),
            slots: Default::default(),
        })
    }

    #[tokio::test]
    async fn lowest_free_slot_is_reused_only_once_released() {
        let lease = lease().await;
        let (a, b) = (lease.take_slot("/p/x/"), lease.take_slot("/p/x/"));
        assert_eq!((a.index(), b.index()), (0, 1));
        assert_eq!(
            lease.take_slot("/p/y/").index(),
            0,
            "ranges are independent"
        );
        drop(a);
        let c = lease.take_slot("/p/x/");
        assert_eq!(c.index(), 0);
        c.keep_reserved();
        assert_eq!(
            lease.take_slot("/p/x/").index(),
            2,
            "a kept slot is never reused"
        );
        let mut d = lease.take_slot("/p/x/");
        assert_eq!(d.index(), 2);
        d.taint("/p/x/1234-2".into(), 7);
        drop(d);
        assert_eq!(
            lease.take_slot("/p/x/").index(),
            3,
            "a tainted slot stays reserved until its sweep"
        );
    }
}
