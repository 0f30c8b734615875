//! The store: every lease and lock queue of one memory "server", behind one mutex.
//! Pure bookkeeping; no waiting and no tasks here.

use lock_core::backend::{local_deadline, Liveness};
use lock_core::{
    backend::{decide, lock_unpoisoned, Claim, Decision},
    AcquireOptions, Error, ErrorKind, FencingToken, LeaseId, LockInfo, LockName, LossCause, Result,
};
use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::Duration,
};
use tokio::{sync::oneshot, time::Instant};

use crate::events::{Changes, Observer, StoreEvent};
use crate::queue::{check_limit, info, new_grant, Entry, Grant, Queue, Slot};

/// The outcome of [`Store::enqueue`].
#[derive(Debug)]
pub(crate) enum Enqueued {
    Granted(Grant),
    Busy,
    Waiting(oneshot::Receiver<Grant>),
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

/// One memory "server".
#[derive(Default)]
pub(crate) struct Store {
    state: Mutex<State>,
    observers: Mutex<Vec<Observer>>,
    pub(crate) changes: Changes,
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
        claim: Claim,
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
        let id = state.next_id;
        let State {
            next_token, locks, ..
        } = &mut *state;
        let queue = locks.entry(name.clone()).or_default();
        check_limit(&queue.claims, claim, name)?;
        queue.claims.push(claim);
        let index = queue.claims.len() - 1;
        let holder = options.holder().map(str::to_owned);
        if decide(&queue.claims, index) == Some(Decision::Granted) {
            let (slot, grant) = new_grant(next_token, queue.free_slot(claim));
            queue.entries.push(Entry {
                id,
                lease,
                holder,
                slot,
            });
            let event = granted_event(name, &grant, lease);
            self.emit(vec![event]);
            drop(state);
            return Ok((id, Enqueued::Granted(grant)));
        }
        if !wait {
            // The last entry decides nothing for the ones ahead of it: popping it
            // changes no other decision.
            queue.claims.pop();
            return Ok((id, Enqueued::Busy));
        }
        let (tx, rx) = oneshot::channel();
        queue.entries.push(Entry {
            id,
            lease,
            holder,
            slot: Slot::Waiting(tx),
        });
        self.changes.bump();
        Ok((id, Enqueued::Waiting(rx)))
    }

    /// Removes entry `entry` of `name`, whether waiting or holding, and grants what
    /// [`decide`] grants after it. Returns whether it was a holder.
    pub(crate) fn remove(&self, name: &LockName, entry: u64) -> bool {
        let mut state = self.lock();
        let Some(index) = state.locks.get(name).and_then(|q| q.position(entry)) else {
            return false;
        };
        let mut events = Vec::new();
        let was_holder = take_entry(&mut state, name, index, &mut events, LossCause::Released);
        settle(&mut state, name, &mut events);
        self.emit(events);
        drop(state);
        was_holder
    }

    /// Replaces the holder text of entry `entry` of `name` while it holds. Returns
    /// whether it did (`false`: the entry is gone or not granted).
    pub(crate) fn set_holder(&self, name: &LockName, entry: u64, holder: &str) -> bool {
        let mut state = self.lock();
        let Some(e) = state
            .locks
            .get_mut(name)
            .and_then(|q| q.entries.iter_mut().find(|e| e.id == entry))
            .filter(|e| matches!(e.slot, Slot::Held { .. }))
        else {
            return false;
        };
        e.holder = (!holder.is_empty()).then(|| holder.to_owned());
        self.emit(Vec::new());
        true
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

    /// Deletes the first holder of `name` (an operator's delete of its entry).
    pub(crate) fn delete_holder(&self, name: &LockName) -> Option<FencingToken> {
        let mut state = self.lock();
        let token = match state.locks.get(name)?.entries.first()?.slot {
            Slot::Held { token, .. } => token,
            Slot::Waiting(_) => return None,
        };
        let mut events = Vec::new();
        take_entry(&mut state, name, 0, &mut events, LossCause::EntryDeleted);
        settle(&mut state, name, &mut events);
        self.emit(events);
        drop(state);
        Some(token)
    }

    pub(crate) fn inspect(&self, name: &LockName) -> Option<LockInfo> {
        let state = self.lock();
        info(name, state.locks.get(name)?)
    }

    pub(crate) fn list(&self, prefix: &str) -> Vec<LockInfo> {
        let state = self.lock();
        let mut all: Vec<LockInfo> = state
            .locks
            .iter()
            .filter(|(name, _)| name.as_str().starts_with(prefix))
            .filter_map(|(name, q)| info(name, q))
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

fn granted_event(name: &LockName, grant: &Grant, lease: u64) -> StoreEvent {
    StoreEvent::Granted {
        name: name.clone(),
        token: grant.token,
        lease: LeaseId::new(lease),
    }
}

/// Takes entry `index` out of `name`'s queue; a holder's guard turns lost with
/// `cause`. Returns whether it was a holder. The caller settles the queue afterwards.
fn take_entry(
    state: &mut State,
    name: &LockName,
    index: usize,
    events: &mut Vec<StoreEvent>,
    cause: LossCause,
) -> bool {
    let Some(queue) = state.locks.get_mut(name) else {
        return false;
    };
    queue.claims.remove(index);
    match queue.entries.remove(index).slot {
        Slot::Held {
            token, liveness, ..
        } => {
            liveness.lose_with(cause);
            events.push(StoreEvent::Freed {
                name: name.clone(),
                token,
            });
            true
        }
        Slot::Waiting(_) => false,
    }
}

/// Grants every waiting entry [`decide`] now grants (the granted entries are a prefix,
/// so the walk stops at the first entry still waiting): a release wakes exactly the
/// entries it unblocks. A waiter whose future is gone without having removed itself
/// is dropped from the queue. Drops the queue once empty.
fn settle(state: &mut State, name: &LockName, events: &mut Vec<StoreEvent>) {
    let State {
        next_token, locks, ..
    } = state;
    let Some(queue) = locks.get_mut(name) else {
        return;
    };
    let mut index = 0;
    while decide(&queue.claims, index) == Some(Decision::Granted) {
        let entry = &mut queue.entries[index];
        if matches!(entry.slot, Slot::Held { .. }) {
            index += 1;
            continue;
        }
        let (slot, grant) = new_grant(next_token, queue.free_slot(queue.claims[index]));
        let entry = &mut queue.entries[index];
        let event = granted_event(name, &grant, entry.lease);
        let Slot::Waiting(tx) = std::mem::replace(&mut entry.slot, slot) else {
            unreachable!("checked above: the entry was waiting");
        };
        match tx.send(grant) {
            Ok(()) => {
                events.push(event);
                index += 1;
            }
            // The waiter's future is gone without having removed itself: drop it
            // (its token is never seen) and decide again at the same index.
            Err(_) => {
                queue.claims.remove(index);
                queue.entries.remove(index);
            }
        }
    }
    if queue.entries.is_empty() {
        locks.remove(name);
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
        while let Some(index) = state
            .locks
            .get(&name)
            .and_then(|q| q.entries.iter().position(|e| e.lease == lease))
        {
            take_entry(state, &name, index, &mut events, cause);
        }
        settle(state, &name, &mut events);
    }
    events
}
