//! The store: every lease and lock queue of one memory "server", behind one mutex.
//! Pure bookkeeping; no waiting and no tasks here.

use lock_core::{
    backend::lock_unpoisoned, local_deadline, AcquireOptions, Error, ErrorKind, FencingToken,
    LeaseId, Liveness, LockInfo, LockName, LossCause, Result,
};
use std::{
    collections::{HashMap, VecDeque},
    sync::{Mutex, MutexGuard},
    time::{Duration, SystemTime},
};
use tokio::{sync::oneshot, time::Instant};

/// What a waiter receives when its turn comes.
#[derive(Debug)]
pub(crate) struct Grant {
    pub(crate) token: FencingToken,
    pub(crate) liveness: Liveness,
}

/// The outcome of [`Store::enqueue`].
#[derive(Debug)]
pub(crate) enum Enqueued {
    Granted(Grant),
    Busy,
    Waiting(oneshot::Receiver<Grant>),
}

#[derive(Debug)]
struct Holder {
    entry: u64,
    lease: u64,
    token: FencingToken,
    liveness: Liveness,
    holder: Option<String>,
    acquired_at: SystemTime,
}

#[derive(Debug)]
struct Waiter {
    entry: u64,
    lease: u64,
    holder: Option<String>,
    tx: oneshot::Sender<Grant>,
}

#[derive(Debug, Default)]
struct Queue {
    holder: Option<Holder>,
    waiters: VecDeque<Waiter>,
}

#[derive(Debug)]
struct LeaseEntry {
    ttl: Duration,
    server_deadline: Instant,
    stalled: bool,
    liveness: Liveness,
}

#[derive(Debug, Default)]
struct State {
    next_token: u64,
    next_id: u64,
    leases: HashMap<u64, LeaseEntry>,
    locks: HashMap<LockName, Queue>,
}

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

type Observer = Box<dyn Fn(&StoreEvent) + Send + Sync>;

/// One memory "server".
#[derive(Default)]
pub(crate) struct Store {
    state: Mutex<State>,
    observers: Mutex<Vec<Observer>>,
    pub(crate) changes: crate::watch_lock::Changes,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Store")
            .field("leases", &state.leases.len())
            .field("locks", &state.locks.len())
            .finish()
    }
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation below completes without panicking points in between, so a
        // poisoned mutex still guards consistent state.
        lock_unpoisoned(&self.state)
    }

    /// Calls the observers while the caller still holds the store lock, so events
    /// arrive in the order the store applied them.
    fn emit(&self, events: Vec<StoreEvent>) {
        self.changes.bump();
        if events.is_empty() {
            return;
        }
        let observers = lock_unpoisoned(&self.observers);
        for event in &events {
            for observer in observers.iter() {
                observer(event);
            }
        }
    }

    pub(crate) fn observe(&self, observer: Observer) {
        lock_unpoisoned(&self.observers).push(observer);
    }

    pub(crate) fn grant_lease(&self, ttl: Duration) -> (u64, Liveness) {
        let now = Instant::now();
        let liveness = Liveness::for_lease(local_deadline(now, ttl), ttl);
        let mut state = self.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.leases.insert(
            id,
            LeaseEntry {
                ttl,
                server_deadline: now + ttl,
                stalled: false,
                liveness: liveness.clone(),
            },
        );
        (id, liveness)
    }

    /// One keep-alive round for `lease` at time `sent`. Returns when to run the next
    /// round, or `None` once the lease is gone (expired here if its deadline passed).
    pub(crate) fn keep_alive(&self, lease: u64) -> Option<Instant> {
        let now = Instant::now();
        let mut state = self.lock();
        let entry = state.leases.get_mut(&lease)?;
        if entry.stalled {
            entry.liveness.keep_alive_failed();
            entry.liveness.suspect();
        } else {
            entry.server_deadline = now + entry.ttl;
            entry.liveness.confirm(now, entry.ttl);
        }
        if now >= entry.server_deadline {
            let events = expire(&mut state, lease, LossCause::LeaseExpired);
            self.emit(events);
            drop(state);
            return None;
        }
        Some((now + entry.ttl / 3).min(entry.server_deadline))
    }

    pub(crate) fn enqueue(
        &self,
        name: &LockName,
        lease: u64,
        wait: bool,
        options: &AcquireOptions,
    ) -> Result<(u64, Enqueued)> {
        let mut state = self.lock();
        if !state.leases.contains_key(&lease) {
            return Err(Error::new(
                ErrorKind::LeaseLost,
                format!(
                    "lease {} expired before acquiring {name}",
                    LeaseId::new(lease)
                ),
            ));
        }
        state.next_id += 1;
        let entry = state.next_id;
        let queue = state.locks.entry(name.clone()).or_default();
        if queue.holder.is_none() && queue.waiters.is_empty() {
            let grant = make_holder(
                &mut state,
                name,
                entry,
                lease,
                options.holder().map(str::to_owned),
            );
            let event = granted_event(name, &grant, lease);
            self.emit(vec![event]);
            drop(state);
            return Ok((entry, Enqueued::Granted(grant)));
        }
        if !wait {
            return Ok((entry, Enqueued::Busy));
        }
        let (tx, rx) = oneshot::channel();
        queue.waiters.push_back(Waiter {
            entry,
            lease,
            holder: options.holder().map(str::to_owned),
            tx,
        });
        self.changes.bump();
        Ok((entry, Enqueued::Waiting(rx)))
    }

    /// Removes entry `entry` of `name`, whether waiting or holding. Returns whether it
    /// was the holder.
    pub(crate) fn remove(&self, name: &LockName, entry: u64) -> bool {
        let mut state = self.lock();
        let Some(queue) = state.locks.get_mut(name) else {
            return false;
        };
        let mut events = Vec::new();
        let was_holder = queue.holder.as_ref().is_some_and(|h| h.entry == entry);
        if was_holder {
            free_holder(&mut state, name, &mut events, LossCause::Released);
        } else {
            queue.waiters.retain(|w| w.entry != entry);
            drop_if_empty(&mut state, name);
        }
        self.emit(events);
        drop(state);
        was_holder
    }

    /// Deletes `lease` and its entries, losing them with `cause`.
    pub(crate) fn revoke(&self, lease: u64, cause: LossCause) -> bool {
        let mut state = self.lock();
        let existed = state.leases.contains_key(&lease);
        let events = expire(&mut state, lease, cause);
        self.emit(events);
        drop(state);
        existed
    }

    pub(crate) fn set_stalled(&self, lease: u64, stalled: bool) -> bool {
        let mut state = self.lock();
        match state.leases.get_mut(&lease) {
            Some(entry) => {
                entry.stalled = stalled;
                true
            }
            None => false,
        }
    }

    pub(crate) fn delete_holder(&self, name: &LockName) -> Option<FencingToken> {
        let mut state = self.lock();
        let token = state.locks.get(name)?.holder.as_ref()?.token;
        let mut events = Vec::new();
        free_holder(&mut state, name, &mut events, LossCause::EntryDeleted);
        self.emit(events);
        drop(state);
        Some(token)
    }

    pub(crate) fn inspect(&self, name: &LockName) -> Option<LockInfo> {
        let state = self.lock();
        let queue = state.locks.get(name)?;
        queue
            .holder
            .as_ref()
            .map(|h| info(name, h, queue.waiters.len()))
    }

    pub(crate) fn list(&self, prefix: &str) -> Vec<LockInfo> {
        let state = self.lock();
        let mut all: Vec<LockInfo> = state
            .locks
            .iter()
            .filter(|(name, _)| name.as_str().starts_with(prefix))
            .filter_map(|(name, q)| q.holder.as_ref().map(|h| info(name, h, q.waiters.len())))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// How many lock queues and leases exist (for leak checks).
    pub(crate) fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        (state.locks.len(), state.leases.len())
    }
}

fn info(name: &LockName, h: &Holder, waiters: usize) -> LockInfo {
    let mut info = LockInfo::new(name.clone(), h.token, LeaseId::new(h.lease));
    info.holder = h.holder.clone();
    info.acquired_at = Some(h.acquired_at);
    info.waiters = waiters;
    info
}

fn granted_event(name: &LockName, grant: &Grant, lease: u64) -> StoreEvent {
    StoreEvent::Granted {
        name: name.clone(),
        token: grant.token,
        lease: LeaseId::new(lease),
    }
}

fn make_holder(
    state: &mut State,
    name: &LockName,
    entry: u64,
    lease: u64,
    holder: Option<String>,
) -> Grant {
    state.next_token += 1;
    let token = FencingToken::new(state.next_token);
    let liveness = Liveness::new(None);
    if let Some(queue) = state.locks.get_mut(name) {
        queue.holder = Some(Holder {
            entry,
            lease,
            token,
            liveness: liveness.clone(),
            holder,
            acquired_at: SystemTime::now(),
        });
    }
    Grant { token, liveness }
}

/// Removes the holder of `name` (marking its guard lost) and grants the next waiter
/// that is still listening: exactly one wake-up.
fn free_holder(state: &mut State, name: &LockName, events: &mut Vec<StoreEvent>, cause: LossCause) {
    let Some(queue) = state.locks.get_mut(name) else {
        return;
    };
    if let Some(old) = queue.holder.take() {
        old.liveness.lose_with(cause);
        events.push(StoreEvent::Freed {
            name: name.clone(),
            token: old.token,
        });
    }
    while let Some(waiter) = state
        .locks
        .get_mut(name)
        .and_then(|q| q.waiters.pop_front())
    {
        let grant = make_holder(state, name, waiter.entry, waiter.lease, waiter.holder);
        let event = granted_event(name, &grant, waiter.lease);
        match waiter.tx.send(grant) {
            Ok(()) => {
                events.push(event);
                return;
            }
            // The waiter's future is gone without having removed itself; undo.
            Err(_) => {
                if let Some(q) = state.locks.get_mut(name) {
                    q.holder = None;
                }
            }
        }
    }
    drop_if_empty(state, name);
}

fn drop_if_empty(state: &mut State, name: &LockName) {
    if state
        .locks
        .get(name)
        .is_some_and(|q| q.holder.is_none() && q.waiters.is_empty())
    {
        state.locks.remove(name);
    }
}

/// Deletes `lease` and every entry on it; waiters on it learn through their closed
/// channel, holders through their liveness (both lost with `cause`).
fn expire(state: &mut State, lease: u64, cause: LossCause) -> Vec<StoreEvent> {
    let mut events = Vec::new();
    let Some(entry) = state.leases.remove(&lease) else {
        return events;
    };
    entry.liveness.lose_with(cause);
    let names: Vec<LockName> = state.locks.keys().cloned().collect();
    for name in names {
        if let Some(queue) = state.locks.get_mut(&name) {
            queue.waiters.retain(|w| w.lease != lease);
            if queue.holder.as_ref().is_some_and(|h| h.lease == lease) {
                free_holder(state, &name, &mut events, cause);
            } else {
                drop_if_empty(state, &name);
            }
        }
    }
    events
}
