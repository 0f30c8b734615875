//! Safety properties S1-S7.

use super::{Grant, Input, Violation};
use crate::register::RegEntry;
use std::collections::{BTreeMap, HashMap, HashSet};

const MS: u64 = 1_000_000;

fn violation(out: &mut Vec<Violation>, class: &str, t: u64, message: String) {
    out.push(Violation {
        class: class.to_owned(),
        t,
        message,
    });
}

fn by_name(grants: &[Grant]) -> BTreeMap<&str, Vec<&Grant>> {
    let mut map: BTreeMap<&str, Vec<&Grant>> = BTreeMap::new();
    for g in grants {
        map.entry(g.name.as_str()).or_default().push(g);
    }
    map
}

/// S1: a grant completed before another was invoked has a lower token; no shared tokens.
pub(super) fn token_order(grants: &[Grant], out: &mut Vec<Violation>) {
    for (name, gs) in by_name(grants) {
        let mut by_ok: Vec<&Grant> = gs.clone();
        by_ok.sort_by_key(|g| g.ok);
        // prefix max of tokens in ok order, with who holds it
        let mut prefix: Vec<(u64, &Grant)> = Vec::with_capacity(by_ok.len());
        for g in &by_ok {
            let best = match prefix.last() {
                Some(&(m, w)) if m >= g.token => (m, w),
                _ => (g.token, *g),
            };
            prefix.push(best);
        }
        for b in &gs {
            let n = by_ok.partition_point(|a| a.ok < b.invoke);
            if n == 0 {
                continue;
            }
            let (max, a) = prefix[n - 1];
            if max >= b.token && !(a.holder == b.holder && a.cycle == b.cycle) {
                violation(
                    out,
                    "S1",
                    b.ok,
                    format!(
                        "{name}: holder {} cycle {} got token {} after holder {} cycle {} had completed with token {max}",
                        b.holder, b.cycle, b.token, a.holder, a.cycle
                    ),
                );
            }
        }
        let mut seen: HashMap<u64, &Grant> = HashMap::new();
        for g in &gs {
            if let Some(first) = seen.insert(g.token, g) {
                violation(
                    out,
                    "S1",
                    g.ok,
                    format!(
                        "{name}: token {} granted twice (holder {} cycle {} and holder {} cycle {})",
                        g.token, first.holder, first.cycle, g.holder, g.cycle
                    ),
                );
            }
        }
    }
}

/// When a forced revocation hit grant `g` (if one did): a revocation that took its
/// token, or the first data loss after it ([`super::loses_data`]: a failover, or on
/// servers without persistence a restart) that took its entry. A failover's `token`
/// is the old master's counter read after the clients were cut off (the highest
/// token it granted: a grant of the promoted replica has a higher one, as
/// lock-redis's server-time floor promises on one clock, and S1 checks); without
/// it (Redlock, restarts), every grant made before the fault counts.
fn forced_at(input: &Input, g: &Grant) -> Option<u64> {
    forced_by(input, g).map(|(t, _)| t)
}

/// As [`forced_at`], with whether it was a data loss.
fn forced_by(input: &Input, g: &Grant) -> Option<(u64, bool)> {
    input
        .faults
        .iter()
        .filter_map(|f| {
            if f.kind.is_forced_revocation() && f.token == Some(g.token) {
                Some((f.t, false))
            } else if super::loses_data(input, f)
                && f.token.map_or(g.ok < f.t, |last| g.token <= last)
            {
                Some((f.t, true))
            } else {
                None
            }
        })
        .min()
}

/// S2: while a holder believed it held, the server named it owner.
pub(super) fn server_truth(input: &Input, grants: &[Grant], out: &mut Vec<Violation>) {
    if input.truth_exact {
        let granted: HashSet<(&str, u64)> = input
            .truth
            .iter()
            .filter_map(|s| s.owner.map(|o| (s.name.as_str(), o)))
            .collect();
        for g in grants {
            if !granted.contains(&(g.name.as_str(), g.token)) {
                violation(
                    out,
                    "S2",
                    g.ok,
                    format!(
                        "{}: holder {} cycle {} got token {} the server never granted",
                        g.name, g.holder, g.cycle, g.token
                    ),
                );
            }
        }
    }
    let mut snaps: BTreeMap<&str, Vec<&crate::truth::Snapshot>> = BTreeMap::new();
    for s in &input.truth {
        snaps.entry(s.name.as_str()).or_default().push(s);
    }
    for list in snaps.values_mut() {
        list.sort_by_key(|s| s.start);
    }
    let tol = input.truth_tolerance_ns;
    for g in grants {
        let Some(list) = snaps.get(g.name.as_str()) else {
            continue;
        };
        let forced = forced_at(input, g);
        let from = list.partition_point(|s| s.start < g.ok.saturating_add(tol));
        for s in &list[from..] {
            if s.end >= g.belief_end {
                break;
            }
            // A read still in flight when the forced revocation was sent may have been
            // served after it: only its answer time bounds when the server read.
            if s.owner == Some(g.token) || forced.is_some_and(|f| s.end >= f) {
                continue;
            }
            violation(
                out,
                "S2",
                s.start,
                format!(
                    "{}: holder {} cycle {} believed it held token {} but the server named {:?} the owner",
                    g.name, g.holder, g.cycle, g.token, s.owner
                ),
            );
            break;
        }
    }
}

/// S3: accepted tokens per register cell never go back in register order, by the
/// token sent and by the real token of the grant that sent it: a shared read must
/// be at least every exclusive (write-lock, mutex, permit) token accepted before
/// it, any other access at least every token accepted before it. Returns the
/// number of stale accesses accepted.
pub(super) fn fence_integrity(input: &Input, grants: &[Grant], out: &mut Vec<Violation>) -> usize {
    let real: HashMap<(u32, u64), u64> = grants
        .iter()
        .map(|g| ((g.holder, g.cycle), g.token))
        .collect();
    #[derive(Default)]
    struct Marks {
        any: (u64, u32),
        write: (u64, u32),
    }
    let mut sent_max: HashMap<&str, Marks> = HashMap::new();
    let mut real_max: HashMap<&str, Marks> = HashMap::new();
    let mut stale = 0;
    for e in input.register.iter().filter(|e| e.accepted) {
        let mut bad = false;
        let what = if e.shared {
            "shared read"
        } else {
            e.op.as_str()
        };
        let m = sent_max.entry(e.name.as_str()).or_default();
        let (max, _) = if e.shared { m.write } else { m.any };
        if e.token < max {
            bad = true;
            violation(
                out,
                "S3",
                e.t,
                format!(
                    "{}: register accepted {what} token {} after token {max} (holder {})",
                    e.name, e.token, e.holder
                ),
            );
        }
        m.any.0 = m.any.0.max(e.token);
        if !e.shared {
            m.write.0 = m.write.0.max(e.token);
        }
        if let Some(&token) = real.get(&(e.holder, e.cycle)) {
            let m = real_max.entry(e.name.as_str()).or_default();
            let (max, by) = if e.shared { m.write } else { m.any };
            if token < max {
                bad = true;
                violation(
                    out,
                    "S3",
                    e.t,
                    format!(
                        "{}: stale {what} accepted: holder {} cycle {} holds token {token} (sent {}) but holder {by} had already accessed with token {max}",
                        e.name, e.holder, e.cycle, e.token
                    ),
                );
            } else {
                if token >= m.any.0 {
                    m.any = (token, e.holder);
                }
                if !e.shared && token >= m.write.0 {
                    m.write = (token, e.holder);
                }
            }
        }
        stale += usize::from(bad);
    }
    stale
}

/// S4: belief intervals of different grants on one name (one slot of a semaphore)
/// never overlap by more than 1 ms, unless both are reads; overlaps starting at a
/// forced revocation of the earlier grant are returned (in ms) instead: (operator
/// revocations, data losses).
pub(super) fn belief_overlap(
    input: &Input,
    grants: &[Grant],
    out: &mut Vec<Violation>,
) -> (Vec<f64>, Vec<f64>) {
    let (mut forced, mut data_loss) = (Vec::new(), Vec::new());
    for (name, mut gs) in by_name(grants) {
        gs.sort_by_key(|g| g.ok);
        for (i, a) in gs.iter().enumerate() {
            for b in &gs[i + 1..] {
                if b.ok >= a.belief_end {
                    break;
                }
                if a.role == "read" && b.role == "read" {
                    continue;
                }
                let start = b.ok.max(a.ok);
                let end = a.belief_end.min(b.belief_end);
                if end <= start.saturating_add(MS) {
                    continue;
                }
                let ms = (end - start) as f64 / 1e6;
                match forced_by(input, a) {
                    Some((f, false)) if start >= f => {
                        forced.push(ms);
                        continue;
                    }
                    Some((f, true)) if start >= f => {
                        data_loss.push(ms);
                        continue;
                    }
                    _ => {}
                }
                violation(
                    out,
                    "S4",
                    start,
                    format!(
                        "{name}: holder {} (token {}) and holder {} (token {}) both believed they held it for {ms:.1} ms",
                        a.holder, a.token, b.holder, b.token
                    ),
                );
            }
        }
    }
    (forced, data_loss)
}

/// S4 for a semaphore: more than `limit` permits believed at once for over 1 ms
/// (every slot together), unless a forced revocation hit one of them before.
pub(super) fn over_limit(input: &Input, grants: &[Grant], out: &mut Vec<Violation>) {
    let Some(limit) = input.limit else {
        return;
    };
    let permits: Vec<&Grant> = grants.iter().filter(|g| g.role == "permit").collect();
    let mut edges: Vec<(u64, bool)> = permits
        .iter()
        .flat_map(|g| [(g.ok, true), (g.belief_end, false)])
        .collect();
    // Ends before starts at the same instant.
    edges.sort_by_key(|&(t, start)| (t, start));
    let mut n = 0usize;
    let mut over_since: Option<u64> = None;
    for (t, start) in edges {
        if start {
            n += 1;
            if n > limit && over_since.is_none() {
                over_since = Some(t);
            }
            continue;
        }
        n -= 1;
        let Some(since) = over_since.filter(|_| n <= limit) else {
            continue;
        };
        over_since = None;
        if t <= since.saturating_add(MS) {
            continue;
        }
        let held: Vec<&&Grant> = permits
            .iter()
            .filter(|g| g.ok <= since && g.belief_end > since)
            .collect();
        if held
            .iter()
            .any(|g| forced_at(input, g).is_some_and(|f| f <= since))
        {
            continue;
        }
        let who: Vec<String> = held
            .iter()
            .map(|g| format!("holder {} {} token {}", g.holder, g.name, g.token))
            .collect();
        violation(
            out,
            "S4",
            since,
            format!(
                "{} permits believed at once (limit {limit}) for {:.1} ms: {}",
                held.len(),
                (t - since) as f64 / 1e6,
                who.join(", ")
            ),
        );
    }
}

/// S5 on the fenced counter; returns (fenced lost, unfenced lost).
pub(super) fn lost_updates(register: &[RegEntry], out: &mut Vec<Violation>) -> (usize, usize) {
    let (mut fenced, mut unfenced) = (0, 0);
    for e in register {
        if let Some(v) = e.value_written {
            if v != e.value_before + 1 {
                fenced += 1;
                violation(
                    out,
                    "S5",
                    e.t,
                    format!(
                        "{}: fenced counter went {} -> {v} (holder {}, token {}): an update was lost",
                        e.name, e.value_before, e.holder, e.token
                    ),
                );
            }
        }
        if let Some(u) = e.u_written {
            if u != e.u_before + 1 {
                unfenced += 1;
            }
        }
    }
    (fenced, unfenced)
}

/// S6: leaks and panics.
pub(super) fn leaks(input: &Input, out: &mut Vec<Violation>) {
    let t = input.events.iter().map(|e| e.t).max().unwrap_or_default();
    for leak in &input.leaks {
        violation(out, "S6", t, format!("left behind: {leak}"));
    }
    for _ in 0..input.panics {
        violation(out, "S6", t, "a holder panicked".to_owned());
    }
}

/// S7 (election mode): each observer's stream shows terms in order, never an older
/// term after a newer one. (Two leaders believing at once is S4, as for any lock.)
pub(super) fn observed_order(input: &Input, out: &mut Vec<Violation>) {
    let mut last: HashMap<u32, u64> = HashMap::new();
    for e in &input.events {
        if let crate::history::Op::Observed {
            term: Some(term), ..
        } = e.op
        {
            let seen = last.entry(e.holder).or_insert(term);
            if term < *seen {
                violation(
                    out,
                    "S7",
                    e.t,
                    format!("observer {} saw term {term} after term {}", e.holder, *seen),
                );
            }
            *seen = (*seen).max(term);
        }
    }
}
