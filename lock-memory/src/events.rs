//! What the store tells the outside: events for observers ([`StoreEvent`]) and the
//! change counter that lock watches wake on ([`Changes`]).

use futures::StreamExt;
use lock_core::{backend::ChangeStream, FencingToken, LeaseId, LockName};
use tokio::sync::watch;

/// A store event, for observers that build the server's own view of history.
///
/// # Examples
///
/// ```
/// use lock_core::LockClient;
/// use lock_memory::{MemoryBackend, StoreEvent};
/// use std::sync::{Arc, Mutex};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let backend = MemoryBackend::new();
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// backend.observe(move |e| sink.lock().unwrap().push(e.clone()));
/// LockClient::new(backend).acquire("k").await?.release().await?;
/// assert!(matches!(seen.lock().unwrap()[..], [StoreEvent::Granted { .. }, StoreEvent::Freed { .. }]));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreEvent {
    /// `name` was granted to `lease` with `token`.
    Granted {
        /// The lock.
        name: LockName,
        /// The new holder's token.
        token: FencingToken,
        /// The new holder's lease.
        lease: LeaseId,
    },
    /// The holder of `name` with `token` is gone (released, expired or deleted).
    Freed {
        /// The lock.
        name: LockName,
        /// The former holder's token.
        token: FencingToken,
    },
}

pub(crate) type Observer = Box<dyn Fn(&StoreEvent) + Send + Sync>;

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

    /// A receiver of the counter, for a watch that reads the store on each change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
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
