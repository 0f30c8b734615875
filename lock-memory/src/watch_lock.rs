//! Lock watches for [`LockClient::watch_lock`](lock_core::LockClient::watch_lock):
//! the store bumps a version on every change to its queues (see
//! [`Changes`](crate::events::Changes)), and each watch wakes on it (whatever its
//! scope: a spurious signal only costs the watcher a re-read). [`states`] reads the
//! store directly at each change: no request is involved.

use crate::store::Store;
use futures::StreamExt;
use lock_core::{backend::LockInfoWatch, LockName};
use std::sync::Arc;

/// The state of lock `name` now, then after each change of the store: what
/// [`Backend::watch_lock_info`](lock_core::backend::Backend::watch_lock_info) yields.
/// Ends when the store is gone.
pub(crate) fn states(store: Arc<Store>, name: LockName) -> LockInfoWatch {
    let rx = store.changes.subscribe();
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
