//! The run report: a JSON summary and a plain table, and on a violation a short
//! timeline around the first one.

use crate::checker::{Input, Outcome};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// What was run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// `memory`, `etcd`, `etcd3`, `zk`, `zk3`.
    pub backend: String,
    /// The server's version.
    pub server_version: String,
    /// Members or servers.
    pub cluster_size: usize,
    /// The TTL asked for (ms).
    pub requested_ttl_ms: u64,
    /// The largest TTL granted (ms).
    pub granted_ttl_ms: u64,
    /// The seed.
    pub seed: u64,
    /// Wall-clock duration of the workload (s).
    pub duration_s: f64,
    /// Concurrent holders.
    pub holders: usize,
    /// The token mode (`real` unless a broken variant).
    pub token_mode: String,
    /// What the holders lock: `mutex`, `rw` or `semaphore`.
    #[serde(default)]
    pub mode: String,
}

/// A run's report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// What was run.
    pub run: RunInfo,
    /// What the checker found.
    pub outcome: Outcome,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
    /// Why it did not pass.
    pub reasons: Vec<String>,
    /// Where the histories were kept, if they were.
    pub histories: Option<String>,
    /// Events around the first violation.
    pub timeline: Vec<String>,
}

impl Report {
    /// Judges `outcome`: any safety violation, spurious loss (L3) or enforced bound
    /// exceeded fails; no lost unfenced update under pauses is inconclusive.
    pub fn new(run: RunInfo, outcome: Outcome, input: &Input) -> Report {
        let mut reasons = Vec::new();
        for (class, n) in &outcome.safety {
            if *n > 0 {
                reasons.push(format!("{n} {class} violation(s)"));
            }
        }
        if outcome.spurious_losses > 0 {
            reasons.push(format!(
                "{} spurious loss(es): a lock reported lost with no fault to explain it \
                 (a fault that keeps a quorum explains none)",
                outcome.spurious_losses
            ));
        }
        for (kind, r) in &outcome.recovery {
            if r.enforced && r.over_bound > 0 {
                reasons.push(format!(
                    "{} {kind} recovery sample(s) above {:.0} ms (max {:.0} ms)",
                    r.over_bound,
                    r.bound_ms.unwrap_or_default(),
                    r.stats.max
                ));
            }
        }
        let verdict = if !reasons.is_empty() {
            "fail"
        } else if outcome.inconclusive() {
            reasons.push(
                "inconclusive: pause faults ran but the unfenced counter lost no update".into(),
            );
            "inconclusive"
        } else {
            "pass"
        };
        let timeline = outcome
            .violations
            .first()
            .map(|v| timeline(input, v.t))
            .unwrap_or_default();
        Report {
            run,
            outcome,
            verdict: verdict.into(),
            reasons,
            histories: None,
            timeline,
        }
    }

    /// `true` for a pass.
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }

    /// The plain table.
    pub fn table(&self) -> String {
        let r = &self.run;
        let o = &self.outcome;
        let mut s = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(s, "| {k:<32} | {v} |");
        };
        row(
            "backend",
            format!(
                "{} ({} node(s), server {})",
                r.backend, r.cluster_size, r.server_version
            ),
        );
        row(
            "ttl requested / granted",
            format!("{} ms / {} ms", r.requested_ttl_ms, r.granted_ttl_ms),
        );
        row(
            "seed / duration / holders",
            format!("{} / {:.0} s / {}", r.seed, r.duration_s, r.holders),
        );
        row("token mode", r.token_mode.clone());
        if !r.mode.is_empty() {
            row("mode", r.mode.clone());
        }
        row("cycles completed", o.cycles_completed.to_string());
        row(
            "acquires ok / failed / indeterminate",
            format!(
                "{} / {} / {}",
                o.acquires_ok, o.acquires_failed, o.acquires_indeterminate
            ),
        );
        row(
            "writes accepted / rejected",
            format!("{} / {}", o.writes_accepted, o.writes_rejected),
        );
        row("stale accesses rejected", o.stale_rejected.to_string());
        row("stale accesses accepted", o.stale_accepted.to_string());
        row("policy overlaps", o.policy_overlaps.to_string());
        row(
            "faults injected",
            join(o.faults.iter().map(|(k, n)| format!("{k} {n}"))),
        );
        if o.observed_changes > 0 {
            row("election: observed changes", o.observed_changes.to_string());
        }
        row(
            "safety S1..S7",
            join(o.safety.iter().map(|(k, n)| format!("{k}={n}"))),
        );
        row(
            "forced-revocation overlaps",
            overlap_summary(&o.forced_overlaps_ms),
        );
        if o.faults.contains_key("failover")
            || !o.data_loss_overlaps_ms.is_empty()
            || o.data_loss_unfenced_lost > 0
        {
            row(
                "data-loss overlaps",
                format!(
                    "{}; unfenced lost in their windows: {}",
                    overlap_summary(&o.data_loss_overlaps_ms),
                    o.data_loss_unfenced_lost
                ),
            );
        }
        row(
            "unfenced lost updates (control)",
            o.unfenced_lost_updates.to_string(),
        );
        for (kind, rec) in &o.recovery {
            if rec.stats.n == 0 && rec.bound_ms.is_none() {
                continue;
            }
            let bound = match rec.bound_ms {
                Some(b) => format!(
                    " (bound {b:.0}{})",
                    if rec.enforced { "" } else { ", informational" }
                ),
                None => String::new(),
            };
            row(
                &format!("L1 recovery {kind}"),
                format!(
                    "n={} p50={:.0} p99={:.0} max={:.0} ms{bound}",
                    rec.stats.n, rec.stats.p50, rec.stats.p99, rec.stats.max
                ),
            );
        }
        row("L2 stuck waiters", o.stuck_waiters.to_string());
        for (kind, st) in &o.loss_detection {
            row(
                &format!("L3 loss detection {kind}"),
                format!("n={} p50={:.0} max={:.0} ms", st.n, st.p50, st.max),
            );
        }
        row("L3 spurious losses", o.spurious_losses.to_string());
        row(
            "L3 suspect, quorum kept",
            o.suspects_with_quorum.to_string(),
        );
        row(
            "verdict",
            format!(
                "{} {}",
                self.verdict.to_uppercase(),
                self.reasons.join("; ")
            ),
        );
        if let Some(h) = &self.histories {
            row("histories", h.clone());
        }
        let mut out = String::from("| metric | value |\n|---|---|\n");
        out.push_str(&s);
        if !self.timeline.is_empty() {
            out.push_str("\ntimeline around the first violation (ms relative to it):\n");
            for line in &self.timeline {
                let _ = writeln!(out, "  {line}");
            }
            for v in self.outcome.violations.iter().take(5) {
                let _ = writeln!(out, "  ! {}: {}", v.class, v.message);
            }
        }
        out
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn overlap_summary(ms: &[f64]) -> String {
    if ms.is_empty() {
        return "0".into();
    }
    let max = ms.iter().copied().fold(0.0, f64::max);
    format!("{} (max {max:.0} ms)", ms.len())
}

/// Up to 40 events from 2 s before to 1 s after `t`, merged from every source.
pub fn timeline(input: &Input, t: u64) -> Vec<String> {
    let (from, to) = (
        t.saturating_sub(2_000_000_000),
        t.saturating_add(1_000_000_000),
    );
    let rel = |x: u64| (x as f64 - t as f64) / 1e6;
    let mut lines: Vec<(u64, String)> = Vec::new();
    for e in input.events.iter().filter(|e| e.t >= from && e.t <= to) {
        let op = serde_json::to_string(&e.op).unwrap_or_default();
        lines.push((
            e.t,
            format!("{:+9.1} holder {} c{} {op}", rel(e.t), e.holder, e.cycle),
        ));
    }
    for e in input.register.iter().filter(|e| e.t >= from && e.t <= to) {
        lines.push((
            e.t,
            format!(
                "{:+9.1} register {} from holder {} c{} token {} {} (highest {})",
                rel(e.t),
                e.op,
                e.holder,
                e.cycle,
                e.token,
                if e.accepted { "ACCEPTED" } else { "rejected" },
                e.highest_before
            ),
        ));
    }
    for f in input.faults.iter().filter(|f| f.t >= from && f.t <= to) {
        lines.push((
            f.t,
            format!(
                "{:+9.1} NEMESIS {} target {:?} {}",
                rel(f.t),
                f.kind,
                f.target,
                f.detail
            ),
        ));
    }
    lines.sort_by_key(|l| l.0);
    let center = lines.partition_point(|l| l.0 < t);
    let lo = center.saturating_sub(30);
    let hi = (center + 10).min(lines.len());
    lines[lo..hi].iter().map(|l| l.1.clone()).collect()
}
