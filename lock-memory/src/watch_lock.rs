//! Change signals for [`LockClient::watch_lock`](lock_core::LockClient::watch_lock):
//! the store bumps a version on every change to its queues, and each watch wakes on
//! it (whatever its scope: a spurious signal only costs the watcher a re-read).

use futures::StreamExt;
use lock_core::backend::ChangeStream;
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
