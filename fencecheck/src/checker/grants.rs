//! Grants: one per successful acquire, with the interval its holder believed it held.

use crate::{
    history::{Event, Op},
    nemesis::{FaultKind, FaultRecord},
};
use std::collections::BTreeMap;

/// One successful acquisition and the holder's belief in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The holder incarnation.
    pub holder: u32,
    /// Its cycle.
    pub cycle: u64,
    /// The lock, or the register cell it fences on (`name#slot` for a permit).
    pub name: String,
    /// The lock the holder asked for (`name` without a permit's `#slot`).
    pub lock: String,
    /// `read`, `write` or `permit` for a read-write lock or semaphore grant; empty
    /// for a mutex.
    pub role: String,
    /// The real token.
    pub token: u64,
    /// When the acquire was invoked.
    pub invoke: u64,
    /// When it succeeded.
    pub ok: u64,
    /// When the release was invoked.
    pub release: Option<u64>,
    /// The first time the guard was seen not `Held` (suspect, lost, abandon).
    pub not_held: Option<u64>,
    /// The first time the guard was seen `Lost`.
    pub lost: Option<u64>,
    /// When the holder was killed.
    pub death: Option<u64>,
    /// When its local deadline passed without renewal.
    pub deadline_end: Option<u64>,
    /// The end of the belief: min(release, not held, deadline, death).
    pub belief_end: u64,
}

/// Builds the grants of `events`, using `faults` for deaths.
pub(super) fn build(events: &[Event], faults: &[FaultRecord]) -> Vec<Grant> {
    let mut by_cycle: BTreeMap<(u32, u64), Vec<&Event>> = BTreeMap::new();
    for e in events {
        by_cycle.entry((e.holder, e.cycle)).or_default().push(e);
    }
    let mut deaths: BTreeMap<u32, u64> = BTreeMap::new();
    for f in faults.iter().filter(|f| f.kind == FaultKind::Kill) {
        if let Some(h) = f.target {
            deaths.entry(h).or_insert(f.t);
        }
    }
    let mut grants = Vec::new();
    for ((holder, cycle), mut evs) in by_cycle {
        evs.sort_by_key(|e| e.t);
        let invoke = evs.iter().find(|e| e.op == Op::AcquireInvoke).map(|e| e.t);
        let Some((ok, token, deadline)) = evs.iter().find_map(|e| match e.op {
            Op::AcquireOk {
                token, deadline, ..
            } => Some((e.t, token, deadline)),
            _ => None,
        }) else {
            continue;
        };
        let mut g = Grant {
            holder,
            cycle,
            name: evs[0].name.clone(),
            lock: evs[0].name.clone(),
            role: String::new(),
            token,
            invoke: invoke.unwrap_or(ok),
            ok,
            release: None,
            not_held: None,
            lost: None,
            death: deaths.get(&holder).copied().filter(|&d| d >= ok),
            deadline_end: None,
            belief_end: u64::MAX,
        };
        let mut cur = deadline;
        for e in evs.iter().filter(|e| e.t >= ok) {
            if let Some(d) = cur {
                if e.t > d && g.deadline_end.is_none() {
                    g.deadline_end = Some(d);
                }
            }
            match &e.op {
                Op::Role { role, key } => {
                    g.role = role.clone();
                    g.name = key.clone();
                }
                Op::ReleaseInvoke => {
                    g.release.get_or_insert(e.t);
                }
                Op::State { state, deadline } => {
                    if state != "held" {
                        g.not_held.get_or_insert(e.t);
                    }
                    if state == "lost" {
                        g.lost.get_or_insert(e.t);
                    }
                    if let Some(d) = deadline {
                        cur = Some(cur.map_or(*d, |c| c.max(*d)));
                    }
                }
                Op::Abandon { .. } => {
                    g.not_held.get_or_insert(e.t);
                }
                Op::Deadline { deadline } => {
                    cur = Some(cur.map_or(*deadline, |c| c.max(*deadline)));
                }
                _ => {}
            }
        }
        if g.deadline_end.is_none() {
            g.deadline_end = cur;
        }
        g.belief_end = [g.release, g.not_held, g.death, g.deadline_end]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(u64::MAX)
            .max(g.ok);
        grants.push(g);
    }
    grants.sort_by_key(|g| (g.ok, g.holder));
    grants
}
