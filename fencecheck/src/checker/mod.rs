//! The checker: reads holder histories, the register log, the fault log and the
//! server's view, and counts S1-S7 (safety, all must be 0; S7 in election mode) and L1-L3 (liveness) as
//! defined in `shared/RELIABILITY.md`.

mod grants;
mod liveness;
mod safety;
#[cfg(test)]
mod tests;

pub use grants::Grant;

use crate::{
    history::Event, nemesis::FaultKind, nemesis::FaultRecord, register::RegEntry, truth::Snapshot,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything a run produced.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// Every holder event, any order.
    pub events: Vec<Event>,
    /// The register log, in apply order.
    pub register: Vec<RegEntry>,
    /// The faults injected.
    pub faults: Vec<FaultRecord>,
    /// The server's view.
    pub truth: Vec<Snapshot>,
    /// The truth is exact (every grant observed), not sampled.
    pub truth_exact: bool,
    /// Allowed staleness of a sampled server read (ns).
    pub truth_tolerance_ns: u64,
    /// Leaked keys, nodes, leases, sessions found after the run (S6).
    pub leaks: Vec<String>,
    /// Holder panics found (S6).
    pub panics: u32,
    /// The largest TTL the server granted (ns), for bounds.
    pub granted_ttl_ns: u64,
    /// The backend grants without a FIFO queue (Redlock: waiters poll, and the
    /// releaser may win again), or does not wake a waiter on every release (the
    /// etcd and ZooKeeper semaphores): the release hand-off bound is reported, not
    /// enforced.
    pub unqueued: bool,
    /// A semaphore run's limit: more permits believed at once is a policy overlap.
    pub limit: Option<usize>,
    /// The servers keep no data across a restart (Redis without persistence): a
    /// leader-kill or cluster-restart loses every entry, like a failover.
    pub restart_loses_data: bool,
}

/// Whether `f` lost the server's entries: a failover (to a replica that missed the
/// latest writes), or a restart of servers without persistence. The holders it
/// took the lock from may believe they hold until their next renewal: lock-redis
/// promises exclusion only while the server keeps its data.
pub(crate) fn loses_data(input: &Input, f: &FaultRecord) -> bool {
    f.kind == FaultKind::Failover
        || (input.restart_loses_data
            && matches!(f.kind, FaultKind::LeaderKill | FaultKind::ClusterRestart))
}

/// One violated property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// `S1` … `S6`.
    pub class: String,
    /// When (mono ns).
    pub t: u64,
    /// What.
    pub message: String,
}

/// A latency summary in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Stats {
    /// Summarises `samples` (ms).
    pub fn of(samples: &[f64]) -> Stats {
        if samples.is_empty() {
            return Stats::default();
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((s.len() as f64 - 1.0) * q).round() as usize;
            s[i.min(s.len() - 1)]
        };
        Stats {
            n: s.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: s[s.len() - 1],
        }
    }
}

/// Recovery times of one fault type against its bound.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    /// The samples' summary.
    pub stats: Stats,
    /// The bound (ms), if the type has one.
    pub bound_ms: Option<f64>,
    /// Whether exceeding the bound fails the run.
    pub enforced: bool,
    /// Samples above the bound.
    pub over_bound: usize,
}

/// The checker's findings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Violations per class S1..S7 (every class present, zeros included).
    pub safety: BTreeMap<String, usize>,
    /// The first violations (at most 50), by time.
    pub violations: Vec<Violation>,
    /// Overlaps that started at a forced server-side revocation (ms each).
    pub forced_overlaps_ms: Vec<f64>,
    /// Overlaps that started at a data loss (ms each): a failover or an empty
    /// restart took a holder's entry while it still believed it held, and the
    /// server granted the lock again (lock-redis's documented non-guarantee);
    /// allowed, reported apart.
    #[serde(default)]
    pub data_loss_overlaps_ms: Vec<f64>,
    /// Unfenced counter updates lost within a data loss's window (its span plus
    /// TTL + 1 s): what it costs a resource without a fence.
    #[serde(default)]
    pub data_loss_unfenced_lost: usize,
    /// Unfenced counter updates lost (the positive control).
    pub unfenced_lost_updates: usize,
    /// Register accesses rejected as stale.
    pub stale_rejected: usize,
    /// Register accesses accepted although stale (S3; must be 0): a read older than
    /// the highest write token accepted, any other access older than any token
    /// accepted.
    #[serde(default)]
    pub stale_accepted: usize,
    /// Beliefs that broke the lock's policy (S4; must be 0): two exclusive
    /// holders, a writer with anyone, two permits on one slot, more than `limit`
    /// permits, outside forced revocations.
    #[serde(default)]
    pub policy_overlaps: usize,
    /// Register writes accepted / rejected.
    pub writes_accepted: usize,
    /// Register writes rejected.
    pub writes_rejected: usize,
    /// Acquires ok.
    pub acquires_ok: usize,
    /// Acquires that certainly failed.
    pub acquires_failed: usize,
    /// Acquires with unknown outcome.
    pub acquires_indeterminate: usize,
    /// Cycles whose release was confirmed.
    pub cycles_completed: usize,
    /// L1: recovery per fault type (and `release`).
    pub recovery: BTreeMap<String, Recovery>,
    /// L2: stuck-waiter windows (no owner for over 1 s while a waiter exists), outside faults.
    pub stuck_waiters: usize,
    /// L3: loss-detection latency per fault type.
    pub loss_detection: BTreeMap<String, Stats>,
    /// L3: losses no fault explains.
    pub spurious_losses: usize,
    /// Guards that turned `Suspect` (or worse) during a fault that keeps a quorum
    /// and no other fault: allowed (Suspect is the conservative "deadline at risk"),
    /// reported so that false alarms show.
    pub suspects_with_quorum: usize,
    /// Faults injected per type.
    pub faults: BTreeMap<String, usize>,
    /// Election mode: leader changes the observers were shown (all observers).
    pub observed_changes: usize,
}

impl Outcome {
    /// Total safety violations.
    pub fn safety_violations(&self) -> usize {
        self.safety.values().sum()
    }

    /// Recovery samples above an enforced bound.
    pub fn bound_failures(&self) -> usize {
        self.recovery
            .values()
            .filter(|r| r.enforced)
            .map(|r| r.over_bound)
            .sum()
    }

    /// Pause faults ran but the unfenced counter never lost an update: the faults
    /// did not bite.
    pub fn inconclusive(&self) -> bool {
        self.faults.get("pause").copied().unwrap_or(0) > 0 && self.unfenced_lost_updates == 0
    }
}

/// Checks a run.
pub fn check(input: &Input) -> Outcome {
    let grants = grants::build(&input.events, &input.faults);
    let mut violations = Vec::new();
    let mut out = Outcome::default();
    safety::token_order(&grants, &mut violations);
    safety::server_truth(input, &grants, &mut violations);
    out.stale_accepted = safety::fence_integrity(input, &grants, &mut violations);
    let before = violations.len();
    (out.forced_overlaps_ms, out.data_loss_overlaps_ms) =
        safety::belief_overlap(input, &grants, &mut violations);
    safety::over_limit(input, &grants, &mut violations);
    out.policy_overlaps = violations.len() - before;
    let (fenced_lost, unfenced_lost) = safety::lost_updates(&input.register, &mut violations);
    let _ = fenced_lost;
    out.unfenced_lost_updates = unfenced_lost;
    out.data_loss_unfenced_lost = input
        .register
        .iter()
        .filter(|e| e.u_written.is_some_and(|u| u != e.u_before + 1))
        .filter(|e| {
            input.faults.iter().any(|f| {
                loses_data(input, f)
                    && e.t >= f.t
                    && e.t <= f.end + input.granted_ttl_ns + 1_000_000_000
            })
        })
        .count();
    safety::leaks(input, &mut violations);
    safety::observed_order(input, &mut violations);
    for class in ["S1", "S2", "S3", "S4", "S5", "S6", "S7"] {
        out.safety.insert(class.to_owned(), 0);
    }
    for v in &violations {
        *out.safety.entry(v.class.clone()).or_default() += 1;
    }
    violations.sort_by_key(|v| v.t);
    violations.truncate(50);
    out.violations = violations;

    for e in &input.register {
        let write = e.op == "write";
        if !e.accepted {
            out.stale_rejected += 1;
        }
        match (write, e.accepted) {
            (true, true) => out.writes_accepted += 1,
            (true, false) => out.writes_rejected += 1,
            _ => {}
        }
    }
    for e in &input.events {
        use crate::history::Op;
        match e.op {
            Op::AcquireOk { .. } => out.acquires_ok += 1,
            Op::AcquireFail { .. } => out.acquires_failed += 1,
            Op::AcquireIndeterminate { .. } => out.acquires_indeterminate += 1,
            Op::ReleaseOk => out.cycles_completed += 1,
            Op::Observed { .. } => out.observed_changes += 1,
            _ => {}
        }
    }
    for f in &input.faults {
        *out.faults.entry(f.kind.to_string()).or_default() += 1;
    }
    out.recovery = liveness::recovery(input, &grants);
    out.stuck_waiters = liveness::stuck_waiters(input);
    let (detection, spurious) = liveness::loss_detection(input, &grants);
    out.loss_detection = detection;
    out.spurious_losses = spurious;
    out.suspects_with_quorum = liveness::suspects_with_quorum(input, &grants);
    out
}

/// The recovery bound of `kind` given the granted TTL: `(bound ms, enforced)`.
pub fn bound(kind: &str, granted_ttl_ns: u64) -> Option<(f64, bool)> {
    let ttl_ms = granted_ttl_ns as f64 / 1e6;
    match kind {
        "release" => Some((500.0, true)),
        "kill" => Some((ttl_ms + 1000.0, true)),
        "pause" | "partition" => Some((ttl_ms + 1000.0, false)),
        _ => None,
    }
}

/// `true` when `kind` names a fault whose victim loses its lock.
pub(crate) fn takes_lock(kind: FaultKind) -> bool {
    kind.takes_lock()
}
