//! Change signals for [`LockClient::watch_lock`](lock_core::LockClient::watch_lock):
//! the store bumps a version on every change to its queues, and each watch wakes on
//! it (whatever its scope: a spurious signal only costs the watcher a re-read).
//! [`states`] reads the store directly at each change: no request is involved.

use crate::store::Store;
use futures::StreamExt;
use lock_core::{
    backend::{ChangeStream, LockInfoWatch},
    LockName,
};
use std::sync::Arc;
use tokio::sync::watch;

/// The store's change counter.
#[derive(Debug)]
pub(crate) struct Changes(watch::Sender<u64>);

impl Default for Changes {
    fn default() -> Self {
        Changes(watch::channel(0).0)
    }
}

impl Changes {
    /// Records a change (one atomic load when nobody watches).
    pub(crate) fn bump(&self) {
        if self.0.receiver_count() > 0 {
            self.0.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// A signal per change from now on; ends when the store is gone.
    pub(crate) fn stream(&self) -> ChangeStream {
        let rx = self.0.subscribe();
        futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            Some((Ok(()), rx))
        })
        .boxed()
    }
}

/// The state of lock `name` now, then after each change of the store: what
/// [`Backend::watch_lock_info`](lock_core::backend::Backend::watch_lock_info) yields.
/// Ends when the store is gone.
pub(crate) fn states(store: Arc<Store>, name: LockName) -> LockInfoWatch {
    let rx = store.changes.0.subscribe();
    let first = store.inspect(&name);
    futures::stream::unfold(
        (store, name, rx, Some(first)),
        |(store, name, mut rx, first)| async move {
            let info = match first {
                Some(first) => first,
                None => {
                    rx.changed().await.ok()?;
                    store.inspect(&name)
                }
            };
            Some((Ok(info), (store, name, rx, None)))
        },
    )
    .boxed()
}
