//! Liveness L1-L3: recovery per fault type, stuck waiters, loss detection.

use super::{bound, takes_lock, Grant, Input, Recovery, Stats};
use crate::{
    history::Op,
    nemesis::{FaultKind, FaultRecord},
};
use std::collections::{BTreeMap, HashMap};

const SEC: u64 = 1_000_000_000;

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The window during which `f` may disturb things: its span plus TTL + 1 s.
fn window(f: &FaultRecord, ttl: u64) -> (u64, u64) {
    (f.t, f.end.saturating_add(ttl).saturating_add(SEC))
}

fn in_any_window(input: &Input, t: u64, holder: Option<u32>) -> bool {
    in_window_of(input, t, holder, |_| true)
}

/// Whether the window of any fault intersects `[from, to]`.
fn any_window_overlaps(input: &Input, from: u64, to: u64) -> bool {
    input.faults.iter().any(|f| {
        let (a, b) = window(f, input.granted_ttl_ns);
        a <= to && b >= from
    })
}

/// Whether `t` falls in the window of a fault relevant to `holder` (any holder for
/// `None`) that `which` selects.
fn in_window_of(
    input: &Input,
    t: u64,
    holder: Option<u32>,
    which: impl Fn(FaultKind) -> bool,
) -> bool {
    input.faults.iter().any(|f| {
        let (a, b) = window(f, input.granted_ttl_ns);
        let relevant = holder.is_none() || !f.kind.is_targeted() || f.target == holder;
        relevant && which(f.kind) && t >= a && t <= b
    })
}

/// The victim's grant active at `f.t`, if the fault hit a holder holding the lock.
fn victim_grant<'a>(f: &FaultRecord, grants: &'a [Grant]) -> Option<&'a Grant> {
    let victim = f.target?;
    grants
        .iter()
        .filter(|g| g.holder == victim && g.ok <= f.t)
        .filter(|g| g.release.is_none_or(|r| r > f.t))
        .max_by_key(|g| g.ok)
}

fn next_grant_after<'a>(
    grants: &'a [Grant],
    name: &str,
    t: u64,
    not_holder: Option<u32>,
) -> Option<&'a Grant> {
    grants
        .iter()
        .filter(|g| g.name == name && g.ok > t && Some(g.holder) != not_holder)
        .min_by_key(|g| g.ok)
}

/// An acquire invocation: (holder, name, invoke, outcome time).
type Acquire<'a> = (u32, &'a str, u64, Option<u64>);

/// Acquire invocations with their outcome time.
fn acquires(input: &Input) -> Vec<Acquire<'_>> {
    let mut open: HashMap<(u32, u64), Acquire<'_>> = HashMap::new();
    for e in &input.events {
        match e.op {
            Op::AcquireInvoke => {
                open.insert((e.holder, e.cycle), (e.holder, e.name.as_str(), e.t, None));
            }
            Op::AcquireOk { .. } | Op::AcquireFail { .. } | Op::AcquireIndeterminate { .. } => {
                if let Some(a) = open.get_mut(&(e.holder, e.cycle)) {
                    a.3 = Some(e.t);
                }
            }
            _ => {}
        }
    }
    open.into_values().collect()
}

/// L1: recovery samples per fault type and for clean releases.
pub(super) fn recovery(input: &Input, grants: &[Grant]) -> BTreeMap<String, Recovery> {
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for f in &input.faults {
        let sample = if f.kind.is_targeted() {
            if !takes_lock(f.kind) {
                continue;
            }
            let Some(g) = victim_grant(f, grants) else {
                continue;
            };
            next_grant_after(grants, &g.name, f.t, f.target).map(|n| n.ok - f.t)
        } else {
            grants.iter().find(|g| g.ok > f.t).map(|n| n.ok - f.t)
        };
        if let Some(s) = sample {
            samples.entry(f.kind.to_string()).or_default().push(ms(s));
        }
    }
    let acq = acquires(input);
    for g in grants {
        let Some(r) = g.release else { continue };
        if g.not_held.is_some_and(|n| n <= r) || in_any_window(input, r, None) {
            continue;
        }
        let waiter = acq.iter().any(|&(h, name, inv, outcome)| {
            h != g.holder && name == g.lock && inv < r && outcome.is_some_and(|o| o > r)
        });
        if !waiter {
            continue;
        }
        // A read-write lock or semaphore release hands off only when it frees the
        // room a waiter needs: no other holder left (rw), fewer than `limit`
        // permits left (semaphore).
        if !g.role.is_empty() {
            let others = grants
                .iter()
                .filter(|o| o.lock == g.lock && o.holder != g.holder)
                .filter(|o| o.ok <= r && o.belief_end > r)
                .count();
            let room = if g.role == "permit" {
                input.limit.unwrap_or(1)
            } else {
                1
            };
            if others >= room {
                continue;
            }
        }
        let next = grants
            .iter()
            .filter(|n| n.lock == g.lock && n.ok > r && n.holder != g.holder)
            .min_by_key(|n| n.ok);
        // A fault that begins before the hand-off completes (the waiter cut off
        // a few ms after the release) explains its time: not a clean sample.
        if let Some(n) = next.filter(|n| !any_window_overlaps(input, r, n.ok)) {
            samples
                .entry("release".to_owned())
                .or_default()
                .push(ms(n.ok - r));
        }
    }
    let mut out = BTreeMap::new();
    let mut kinds: Vec<String> = input.faults.iter().map(|f| f.kind.to_string()).collect();
    kinds.push("release".to_owned());
    for kind in kinds {
        let s = samples.get(&kind).cloned().unwrap_or_default();
        let b = bound(&kind, input.granted_ttl_ns)
            .map(|(ms, enforced)| (ms, enforced && !(input.unqueued && kind == "release")));
        out.insert(
            kind,
            Recovery {
                stats: Stats::of(&s),
                bound_ms: b.map(|b| b.0),
                enforced: b.is_some_and(|b| b.1),
                over_bound: b.map_or(0, |(b, _)| s.iter().filter(|&&x| x > b).count()),
            },
        );
    }
    out
}

/// L2: windows over 1 s with no owner on the server while a waiter waited, outside
/// fault windows.
pub(super) fn stuck_waiters(input: &Input) -> usize {
    let acq = acquires(input);
    let mut by_name: BTreeMap<&str, Vec<&crate::truth::Snapshot>> = BTreeMap::new();
    for s in &input.truth {
        by_name.entry(s.name.as_str()).or_default().push(s);
    }
    let mut stuck = 0;
    for (name, mut snaps) in by_name {
        snaps.sort_by_key(|s| s.start);
        let mut free_since: Option<u64> = None;
        for s in snaps {
            match (s.owner, free_since) {
                (None, None) => free_since = Some(s.end),
                (Some(_), Some(since)) => {
                    let long = s.start.saturating_sub(since) > SEC;
                    let waited = acq.iter().any(|&(_, n, inv, out)| {
                        n == name && inv < since && out.is_none_or(|o| o > since + SEC)
                    });
                    if long && waited && !in_any_window(input, since, None) {
                        stuck += 1;
                    }
                    free_since = None;
                }
                _ => {}
            }
        }
    }
    stuck
}

/// Whether `t` falls in the window of a forced revocation (revoke, delete, expire)
/// that took `g`'s token: when the owner changed between choosing the victim and
/// the operator's call, the fault hit another holder than its target.
fn revoked_in_window(input: &Input, g: &Grant, t: u64) -> bool {
    input.faults.iter().any(|f| {
        let (a, b) = window(f, input.granted_ttl_ns);
        f.kind.is_forced_revocation() && f.token == Some(g.token) && t >= a && t <= b
    })
}

/// Guards first seen not `Held` inside the window of a fault that keeps a quorum,
/// and of no other fault, before their release.
pub(super) fn suspects_with_quorum(input: &Input, grants: &[Grant]) -> usize {
    grants
        .iter()
        .filter_map(|g| {
            g.not_held
                .filter(|&n| g.release.is_none_or(|r| r > n))
                .map(|n| (g, n))
        })
        .filter(|(g, n)| {
            in_window_of(input, *n, Some(g.holder), FaultKind::keeps_quorum)
                && !in_window_of(input, *n, Some(g.holder), |k| !k.keeps_quorum())
        })
        .count()
}

/// L3: loss-detection latency per fault type, and spurious losses: losses no fault
/// explains. A fault that keeps a quorum reachable within the TTL
/// ([`FaultKind::keeps_quorum`]) explains none.
pub(super) fn loss_detection(input: &Input, grants: &[Grant]) -> (BTreeMap<String, Stats>, usize) {
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for f in &input.faults {
        if !f.kind.is_targeted() || !takes_lock(f.kind) || f.kind == FaultKind::Kill {
            continue;
        }
        let Some(g) = victim_grant(f, grants) else {
            continue;
        };
        if let Some(seen) = g.not_held.filter(|&n| n >= f.t) {
            samples
                .entry(f.kind.to_string())
                .or_default()
                .push(ms(seen - f.t));
        }
    }
    let spurious = grants
        .iter()
        .filter_map(|g| {
            g.lost
                .filter(|&l| g.release.is_none_or(|r| r > l))
                .map(|l| (g, l))
        })
        .filter(|(g, l)| {
            !in_window_of(input, *l, Some(g.holder), |k| !k.keeps_quorum())
                && !revoked_in_window(input, g, *l)
        })
        .count();
    let stats = samples
        .into_iter()
        .map(|(k, v)| (k, Stats::of(&v)))
        .collect();
    (stats, spurious)
}
