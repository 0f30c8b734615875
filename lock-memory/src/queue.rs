//! One lock's queue in the store: its entries in arrival order, what each holds or
//! waits for, and the pure steps on it (a fresh grant, the permit limit check, the
//! inspected view). No locking here: the store calls these under its mutex.

use lock_core::backend::Liveness;
use lock_core::{
    backend::Claim, Error, ErrorKind, FencingToken, HolderInfo, LeaseId, LockInfo, LockName, Result,
};
use std::time::SystemTime;
use tokio::sync::oneshot;

/// What a waiter receives when its turn comes.
#[derive(Debug)]
pub(crate) struct Grant {
    pub(crate) token: FencingToken,
    pub(crate) liveness: Liveness,
    /// The permit's slot, for a `Shared` claim.
    pub(crate) slot: Option<u32>,
}

/// Where one queue entry stands.
#[derive(Debug)]
pub(crate) enum Slot {
    /// Granted: the holder's token and liveness.
    Held {
        token: FencingToken,
        liveness: Liveness,
        acquired_at: SystemTime,
        slot: Option<u32>,
    },
    /// Waiting for [`decide`](lock_core::backend::decide) to grant it.
    Waiting(oneshot::Sender<Grant>),
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: u64,
    pub(crate) lease: u64,
    pub(crate) holder: Option<String>,
    pub(crate) slot: Slot,
}

/// One lock's queue in arrival order: `claims[i]` is what `entries[i]` claims (kept
/// apart so [`decide`](lock_core::backend::decide) reads a slice without copying). The granted entries are always
/// a prefix of the queue.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub(crate) claims: Vec<Claim>,
    pub(crate) entries: Vec<Entry>,
}

impl Queue {
    pub(crate) fn holders(&self) -> impl Iterator<Item = (&Entry, Claim)> + '_ {
        self.entries
            .iter()
            .zip(&self.claims)
            .take_while(|(e, _)| matches!(e.slot, Slot::Held { .. }))
            .map(|(e, c)| (e, *c))
    }

    pub(crate) fn position(&self, id: u64) -> Option<usize> {
        self.entries.iter().position(|e| e.id == id)
    }

    /// The slot a new grant of `claim` takes: for a permit, the lowest one no holder
    /// uses (there is one, since `decide` grants at most `limit` permits); `None` for
    /// every other claim.
    pub(crate) fn free_slot(&self, claim: Claim) -> Option<u32> {
        let Claim::Shared { limit } = claim else {
            return None;
        };
        let used: Vec<u32> = self
            .entries
            .iter()
            .filter_map(|e| match e.slot {
                Slot::Held { slot, .. } => slot,
                Slot::Waiting(_) => None,
            })
            .collect();
        (0..limit.max(1)).find(|s| !used.contains(s))
    }
}

/// What [`LockClient::inspect`](lock_core::LockClient::inspect) reports of `queue`.
pub(crate) fn info(name: &LockName, queue: &Queue) -> Option<LockInfo> {
    let mut holders = queue.holders().filter_map(|(e, claim)| match &e.slot {
        Slot::Held {
            token,
            acquired_at,
            slot,
            ..
        } => Some(
            HolderInfo::new(*token, LeaseId::new(e.lease))
                .with_holder(e.holder.clone())
                .with_acquired_at(Some(*acquired_at))
                .with_claim(claim)
                .with_slot(*slot),
        ),
        Slot::Waiting(_) => None,
    });
    let first = holders.next()?;
    let others: Vec<HolderInfo> = holders.collect();
    let waiters = queue.entries.len() - 1 - others.len();
    Some(LockInfo::from_holders(name.clone(), first, others, waiters))
}

/// A fresh grant with the store's next token (and permit slot `permit`).
pub(crate) fn new_grant(next_token: &mut u64, permit: Option<u32>) -> (Slot, Grant) {
    *next_token += 1;
    let token = FencingToken::new(*next_token);
    let liveness = Liveness::new(None);
    let slot = Slot::Held {
        token,
        liveness: liveness.clone(),
        acquired_at: SystemTime::now(),
        slot: permit,
    };
    let grant = Grant {
        token,
        liveness,
        slot: permit,
    };
    (slot, grant)
}

/// Refuses a permit whose limit differs from a queued permit's: clients that disagree
/// on a semaphore's size get a typed error instead of an over-grant.
pub(crate) fn check_limit(queue: &[Claim], claim: Claim, name: &LockName) -> Result<()> {
    let Claim::Shared { limit } = claim else {
        return Ok(());
    };
    match queue.iter().find_map(|c| match c {
        Claim::Shared { limit: other } if *other != limit => Some(*other),
        _ => None,
    }) {
        None => Ok(()),
        Some(other) => Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("semaphore {name} has limit {other}, not {limit}"),
        )),
    }
}
