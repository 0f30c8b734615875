//! The server's own view: who owns each lock, when. Memory: the store's event hook
//! (exact). etcd and ZooKeeper: a poller reading the owner with `inspect` over a
//! direct connection (not through the fault proxy) every 50 ms.

use crate::history::mono_ns;
use fencelock::LockClient;
use serde::{Deserialize, Serialize};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::task::JoinHandle;

/// The owner of `name` at some instant within `[start, end]` (mono ns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the read was sent.
    pub start: u64,
    /// When it was answered.
    pub end: u64,
    /// The lock.
    pub name: String,
    /// The owner's token, `None` when free.
    pub owner: Option<u64>,
}

/// A shared list of snapshots.
pub type Truth = Arc<Mutex<Vec<Snapshot>>>;

/// Hooks `backend`'s event stream; each grant or free becomes an exact snapshot.
pub fn observe_memory(backend: &fencelock::memory::MemoryBackend) -> Truth {
    use fencelock::memory::StoreEvent;
    let truth: Truth = Arc::default();
    let sink = truth.clone();
    let owners: Mutex<std::collections::HashMap<String, u64>> = Mutex::default();
    backend.observe(move |event| {
        let t = mono_ns();
        let mut owners = owners.lock().unwrap_or_else(|e| e.into_inner());
        // Observers run after the store's lock is released, so events of different
        // threads may interleave: a free only counts for the owner it names.
        let (name, owner) = match event {
            StoreEvent::Granted { name, token, .. } => {
                owners.insert(name.to_string(), token.get());
                (name.to_string(), Some(token.get()))
            }
            StoreEvent::Freed { name, token } => {
                if owners.get(name.as_str()) != Some(&token.get()) {
                    return;
                }
                owners.remove(name.as_str());
                (name.to_string(), None)
            }
            _ => return,
        };
        sink.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Snapshot {
                start: t,
                end: t,
                name,
                owner,
            });
    });
    truth
}

/// Polls `name`'s owner through `client` every `every` until aborted; failed reads
/// are skipped.
pub fn spawn_poller(client: LockClient, name: String, every: Duration) -> (Truth, JoinHandle<()>) {
    let truth: Truth = Arc::default();
    let sink = truth.clone();
    let task = tokio::spawn(async move {
        loop {
            let start = mono_ns();
            let read = tokio::time::timeout(Duration::from_secs(2), client.inspect(name.as_str()));
            if let Ok(Ok(info)) = read.await {
                let end = mono_ns();
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Snapshot {
                        start,
                        end,
                        name: name.clone(),
                        owner: info.map(|i| i.token.get()),
                    });
            }
            tokio::time::sleep(every).await;
        }
    });
    (truth, task)
}

/// A copy of the snapshots so far.
pub fn snapshot(truth: &Truth) -> Vec<Snapshot> {
    truth.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
