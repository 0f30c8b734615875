//! The checker on synthetic histories: clean ones pass, each broken one fails its class.

use super::*;
use crate::{
    history::{Event, Op},
    nemesis::{FaultKind, FaultRecord},
    register::{RegisterState, Request},
    truth::Snapshot,
};

const MS: u64 = 1_000_000;

fn ev(t_ms: u64, holder: u32, cycle: u64, op: Op) -> Event {
    Event {
        t: t_ms * MS,
        holder,
        cycle,
        name: "lk".into(),
        op,
    }
}

/// A cycle: invoke, ok (token, deadline = ok + 1 s), release at `rel`.
fn cycle(
    out: &mut Vec<Event>,
    holder: u32,
    cycle_no: u64,
    inv: u64,
    ok: u64,
    token: u64,
    rel: u64,
) {
    out.push(ev(inv, holder, cycle_no, Op::AcquireInvoke));
    out.push(ev(
        ok,
        holder,
        cycle_no,
        Op::AcquireOk {
            token,
            lease: u64::from(holder),
            deadline: Some((ok + 1000) * MS),
        },
    ));
    out.push(ev(rel, holder, cycle_no, Op::ReleaseInvoke));
    out.push(ev(rel + 1, holder, cycle_no, Op::ReleaseOk));
}

fn access(
    reg: &mut RegisterState,
    t_ms: u64,
    holder: u32,
    cycle: u64,
    op: &str,
    token: u64,
    value: u64,
) {
    reg.apply(
        &Request {
            op: op.into(),
            name: "lk".into(),
            holder,
            cycle,
            token,
            value,
            uvalue: value,
            shared: false,
        },
        t_ms * MS,
    );
}

/// A read-write or semaphore cycle: [`cycle`] plus its role and register cell.
fn role_cycle(
    out: &mut Vec<Event>,
    holder: u32,
    cycle_no: u64,
    (inv, ok, rel): (u64, u64, u64),
    token: u64,
    role: &str,
    key: &str,
) {
    cycle(out, holder, cycle_no, inv, ok, token, rel);
    out.push(ev(
        ok,
        holder,
        cycle_no,
        Op::Role {
            role: role.into(),
            key: key.into(),
        },
    ));
}

/// A register access on cell `key`, shared (a read under a read lock) or not.
#[allow(clippy::too_many_arguments)]
fn keyed(
    reg: &mut RegisterState,
    t_ms: u64,
    holder: u32,
    key: &str,
    shared: bool,
    op: &str,
    token: u64,
    value: u64,
) {
    reg.apply(
        &Request {
            op: op.into(),
            name: key.into(),
            holder,
            cycle: 1,
            token,
            value,
            uvalue: value,
            shared,
        },
        t_ms * MS,
    );
}

/// rw: two readers share (tokens 5 and 6, reading in token-inverted order), then a
/// writer (7) reads and writes.
fn rw_clean() -> (Vec<Event>, RegisterState) {
    let mut events = Vec::new();
    role_cycle(&mut events, 1, 1, (0, 10, 100), 5, "read", "lk");
    role_cycle(&mut events, 2, 1, (5, 12, 90), 6, "read", "lk");
    role_cycle(&mut events, 3, 1, (20, 102, 200), 7, "write", "lk");
    let mut reg = RegisterState::new(true);
    keyed(&mut reg, 20, 2, "lk", true, "read", 6, 0);
    keyed(&mut reg, 30, 1, "lk", true, "read", 5, 0);
    keyed(&mut reg, 110, 3, "lk", false, "read", 7, 0);
    keyed(&mut reg, 120, 3, "lk", false, "write", 7, 1);
    (events, reg)
}

fn input_of(events: Vec<Event>, reg: &RegisterState, limit: Option<usize>) -> Input {
    Input {
        events,
        register: reg.log().to_vec(),
        granted_ttl_ns: 1000 * MS,
        limit,
        ..Input::default()
    }
}

#[test]
fn rw_readers_share_and_reads_check_against_writes_only() {
    let (events, reg) = rw_clean();
    assert!(reg.log().iter().all(|e| e.accepted), "{:#?}", reg.log());
    let out = check(&input_of(events, &reg, None));
    assert_eq!(out.safety_violations(), 0, "{:#?}", out.violations);
    assert_eq!((out.policy_overlaps, out.stale_accepted), (0, 0));
    assert_eq!(out.writes_accepted, 1);
}

#[test]
fn rw_writer_believing_with_a_reader_is_a_policy_overlap() {
    let (mut events, reg) = rw_clean();
    // The writer's grant now starts while reader 1 still believes it holds.
    for e in events.iter_mut().filter(|e| e.holder == 3) {
        if matches!(e.op, Op::AcquireOk { .. } | Op::Role { .. }) {
            e.t = 50 * MS;
        }
    }
    let out = check(&input_of(events, &reg, None));
    assert!(out.policy_overlaps >= 1, "{:#?}", out.violations);
    assert!(out.safety["S4"] >= 1);
}

#[test]
fn rw_stale_read_accepted_is_caught() {
    let (events, _) = rw_clean();
    // An unfenced register lets reader 1 (token 5) read after writer 7 wrote.
    let mut reg = RegisterState::new(false);
    keyed(&mut reg, 110, 3, "lk", false, "read", 7, 0);
    keyed(&mut reg, 120, 3, "lk", false, "write", 7, 1);
    keyed(&mut reg, 130, 1, "lk", true, "read", 5, 0);
    let out = check(&input_of(events, &reg, None));
    assert_eq!(out.stale_accepted, 1, "{:#?}", out.violations);
    assert!(out.safety["S3"] >= 1);
}

#[test]
fn rw_write_older_than_an_accepted_read_is_caught() {
    let (events, _) = rw_clean();
    let mut reg = RegisterState::new(false);
    keyed(&mut reg, 20, 2, "lk", true, "read", 6, 0);
    keyed(&mut reg, 30, 1, "lk", false, "write", 5, 1);
    let out = check(&input_of(events, &reg, None));
    assert_eq!(out.stale_accepted, 1, "{:#?}", out.violations);
}

/// Semaphore, limit 2: permits on slots 0 and 1 at once, then a third on slot 0.
fn sem_clean() -> (Vec<Event>, RegisterState) {
    let mut events = Vec::new();
    role_cycle(&mut events, 1, 1, (0, 10, 100), 3, "permit", "lk#0");
    role_cycle(&mut events, 2, 1, (0, 12, 100), 4, "permit", "lk#1");
    role_cycle(&mut events, 3, 1, (20, 102, 200), 5, "permit", "lk#0");
    let mut reg = RegisterState::new(true);
    keyed(&mut reg, 20, 1, "lk#0", false, "read", 3, 0);
    keyed(&mut reg, 21, 2, "lk#1", false, "read", 4, 0);
    keyed(&mut reg, 30, 1, "lk#0", false, "write", 3, 1);
    keyed(&mut reg, 31, 2, "lk#1", false, "write", 4, 1);
    keyed(&mut reg, 110, 3, "lk#0", false, "read", 5, 0);
    keyed(&mut reg, 120, 3, "lk#0", false, "write", 5, 2);
    (events, reg)
}

#[test]
fn semaphore_permits_up_to_the_limit_pass() {
    let (events, reg) = sem_clean();
    let out = check(&input_of(events, &reg, Some(2)));
    assert_eq!(out.safety_violations(), 0, "{:#?}", out.violations);
    assert_eq!(out.writes_accepted, 3);
}

#[test]
fn semaphore_two_permits_on_one_slot_is_a_policy_overlap() {
    let (mut events, reg) = sem_clean();
    for e in events.iter_mut().filter(|e| e.holder == 3) {
        if matches!(e.op, Op::AcquireOk { .. } | Op::Role { .. }) {
            e.t = 50 * MS;
        }
    }
    let out = check(&input_of(events, &reg, Some(3)));
    assert_eq!(out.policy_overlaps, 1, "{:#?}", out.violations);
}

#[test]
fn semaphore_more_permits_than_the_limit_is_a_policy_overlap() {
    let (mut events, reg) = sem_clean();
    role_cycle(&mut events, 4, 1, (0, 40, 80), 9, "permit", "lk#2");
    let out = check(&input_of(events.clone(), &reg, Some(2)));
    assert_eq!(out.policy_overlaps, 1, "{:#?}", out.violations);
    assert!(out.violations[0].message.contains("limit 2"));
    let out = check(&input_of(events, &reg, Some(3)));
    assert_eq!(out.policy_overlaps, 0, "{:#?}", out.violations);
}

#[test]
fn semaphore_stale_permit_write_on_its_slot_is_caught() {
    let (events, _) = sem_clean();
    let mut reg = RegisterState::new(false);
    keyed(&mut reg, 110, 3, "lk#0", false, "write", 5, 1);
    keyed(&mut reg, 130, 1, "lk#0", false, "write", 3, 2);
    keyed(&mut reg, 131, 2, "lk#1", false, "write", 4, 1);
    let out = check(&input_of(events, &reg, Some(2)));
    assert_eq!(out.stale_accepted, 1, "{:#?}", out.violations);
}

fn truth(points: &[(u64, Option<u64>)]) -> Vec<Snapshot> {
    points
        .iter()
        .map(|&(t, owner)| Snapshot {
            start: t * MS,
            end: t * MS,
            name: "lk".into(),
            owner,
        })
        .collect()
}

/// Two holders, one after the other, with fenced read-modify-writes.
fn clean() -> Input {
    let mut events = Vec::new();
    cycle(&mut events, 1, 1, 0, 10, 5, 100);
    events.push(ev(20, 2, 1, Op::AcquireInvoke)); // waits
    cycle(&mut events, 2, 2, 90, 102, 7, 200);
    events.retain(|e| !(e.holder == 2 && e.cycle == 1));
    let mut reg = RegisterState::new(true);
    access(&mut reg, 20, 1, 1, "read", 5, 0);
    access(&mut reg, 30, 1, 1, "write", 5, 1);
    access(&mut reg, 110, 2, 2, "read", 7, 0);
    access(&mut reg, 120, 2, 2, "write", 7, 2);
    Input {
        events,
        register: reg.log().to_vec(),
        truth: truth(&[(10, Some(5)), (101, None), (102, Some(7)), (201, None)]),
        truth_exact: true,
        granted_ttl_ns: 1000 * MS,
        ..Input::default()
    }
}

#[test]
fn clean_history_passes() {
    let out = check(&clean());
    assert_eq!(out.safety_violations(), 0, "{:#?}", out.violations);
    assert_eq!(out.acquires_ok, 2);
    assert_eq!(out.cycles_completed, 2);
    assert_eq!(out.writes_accepted, 2);
}

#[test]
fn s1_catches_a_decreasing_token() {
    let mut input = clean();
    for e in &mut input.events {
        if let Op::AcquireOk { token, .. } = &mut e.op {
            if *token == 7 {
                *token = 4;
            }
        }
    }
    let out = check(&input);
    assert!(out.safety["S1"] >= 1, "{:#?}", out.violations);
}

#[test]
fn s1_catches_a_shared_token() {
    let mut input = clean();
    for e in &mut input.events {
        if let Op::AcquireOk { token, .. } = &mut e.op {
            *token = 5;
        }
    }
    assert!(check(&input).safety["S1"] >= 1);
}

#[test]
fn s2_catches_a_token_the_server_never_granted() {
    let mut input = clean();
    input.truth = truth(&[(10, Some(5)), (101, None), (102, Some(8)), (201, None)]);
    assert!(check(&input).safety["S2"] >= 1);
}

#[test]
fn s3_catches_an_out_of_order_register_log() {
    let mut input = clean();
    // A register without a fence accepts the paused holder's late write.
    let mut reg = RegisterState::new(false);
    access(&mut reg, 20, 1, 1, "read", 5, 0);
    access(&mut reg, 110, 2, 2, "read", 7, 0);
    access(&mut reg, 115, 1, 1, "write", 5, 1);
    input.register = reg.log().to_vec();
    let out = check(&input);
    assert!(out.safety["S3"] >= 1, "{:#?}", out.violations);
}

#[test]
fn s3_catches_a_constant_token_by_the_real_one() {
    // Broken holders send token 1 always: the register sees equal tokens and accepts.
    let mut input = clean();
    let mut reg = RegisterState::new(true);
    access(&mut reg, 20, 1, 1, "read", 1, 0);
    access(&mut reg, 110, 2, 2, "read", 1, 0);
    access(&mut reg, 115, 1, 1, "write", 1, 1);
    input.register = reg.log().to_vec();
    let out = check(&input);
    assert!(out.safety["S3"] >= 1, "{:#?}", out.violations);
}

#[test]
fn s4_catches_overlapping_beliefs() {
    let mut input = clean();
    // Holder 2 is granted while holder 1 still holds and believes it.
    input.events.retain(|e| e.holder != 2);
    cycle(&mut input.events, 2, 2, 40, 50, 7, 200);
    let out = check(&input);
    assert!(out.safety["S4"] >= 1, "{:#?}", out.violations);
}

#[test]
fn s4_reports_forced_revocation_overlaps_apart() {
    let mut input = clean();
    input.events.retain(|e| e.holder != 2);
    cycle(&mut input.events, 2, 2, 40, 50, 7, 200);
    input.truth.clear();
    input.faults.push(FaultRecord {
        kind: FaultKind::Delete,
        t: 45 * MS,
        end: 45 * MS,
        target: Some(1),
        token: Some(5),
        detail: String::new(),
    });
    let out = check(&input);
    assert_eq!(out.safety["S4"], 0, "{:#?}", out.violations);
    assert_eq!(out.forced_overlaps_ms.len(), 1);
}

/// Holder 1 (token 5, granted by the old master) believes it holds until its
/// release at 100 ms; a failover cuts the clients off the old master at 45 ms and
/// the promoted replica grants holder 2 (token 7) at 50 ms. Holder 1 writes after
/// holder 2 did: the fenced register rejects it, the unfenced counter loses an update.
fn failover_overlap() -> Input {
    let mut input = clean();
    input.events.retain(|e| e.holder != 2);
    cycle(&mut input.events, 2, 2, 40, 50, 7, 200);
    input.truth = truth(&[(10, Some(5)), (60, Some(7)), (150, Some(7))]);
    input.register = failover_register(true);
    input.faults.push(FaultRecord {
        kind: FaultKind::Failover,
        t: 45 * MS,
        end: 46 * MS,
        target: None,
        token: Some(5),
        detail: String::new(),
    });
    input
}

/// The register log of [`failover_overlap`]: holder 2 reads and writes, then holder
/// 1 writes what it read before (refused by a `fenced` register).
fn failover_register(fenced: bool) -> Vec<crate::register::RegEntry> {
    let mut reg = RegisterState::new(fenced);
    access(&mut reg, 20, 1, 1, "read", 5, 0);
    access(&mut reg, 55, 2, 2, "read", 7, 0);
    access(&mut reg, 60, 2, 2, "write", 7, 1);
    access(&mut reg, 70, 1, 1, "write", 5, 1);
    reg.log().to_vec()
}

#[test]
fn failover_overlaps_are_reported_apart_and_the_fence_still_decides() {
    let out = check(&failover_overlap());
    assert_eq!(out.safety_violations(), 0, "{:#?}", out.violations);
    assert_eq!(out.data_loss_overlaps_ms.len(), 1);
    assert!(out.forced_overlaps_ms.is_empty());
    assert_eq!(out.stale_accepted, 0);
    assert_eq!(out.stale_rejected, 1);
    assert_eq!(out.unfenced_lost_updates, 1);
    assert_eq!(out.data_loss_unfenced_lost, 1);
    // The same history without the failover is an overlap (S4) and a server view
    // naming another owner (S2).
    let mut input = failover_overlap();
    input.faults.clear();
    let out = check(&input);
    assert!(out.safety["S4"] >= 1, "{:#?}", out.violations);
    assert!(out.safety["S2"] >= 1, "{:#?}", out.violations);
}

#[test]
fn a_failover_excuses_only_grants_of_the_old_master() {
    // The old master's last token was 4: holder 1's token 5 came from the new one.
    let mut input = failover_overlap();
    input.faults[0].token = Some(4);
    assert!(check(&input).safety["S4"] >= 1);
    // Counter unread: grants made before the cut-off count as the old master's.
    input.faults[0].token = None;
    assert_eq!(check(&input).safety["S4"], 0);
    input.faults[0].t = 5 * MS;
    assert!(check(&input).safety["S4"] >= 1);
}

#[test]
fn an_empty_restart_is_a_data_loss_only_on_servers_without_persistence() {
    // The server is killed at 45 ms and comes back empty: holder 1's entry is gone.
    let mut input = failover_overlap();
    input.faults[0].kind = FaultKind::LeaderKill;
    input.faults[0].token = None;
    // etcd and ZooKeeper restart with their data: the overlap is a violation.
    let out = check(&input);
    assert!(out.safety["S4"] >= 1, "{:#?}", out.violations);
    // Redis without persistence: lock-redis's exclusion holds only while the
    // server keeps its data; the fence still decides.
    input.restart_loses_data = true;
    let out = check(&input);
    assert_eq!(out.safety_violations(), 0, "{:#?}", out.violations);
    assert_eq!(out.data_loss_overlaps_ms.len(), 1);
    assert_eq!(out.stale_accepted, 0);
    // A grant made after the restart is not excused.
    input.faults[0].t = 5 * MS;
    assert!(check(&input).safety["S4"] >= 1);
}

#[test]
fn a_failover_excuses_no_stale_access_and_no_token_going_back() {
    // A register without a fence accepts holder 1's write after holder 2's: S3.
    let mut input = failover_overlap();
    input.register = failover_register(false);
    let out = check(&input);
    assert!(out.stale_accepted >= 1, "{:#?}", out.violations);
    assert!(out.safety["S3"] >= 1);
    // On one clock the promoted replica's server-time floor puts its tokens above
    // the old master's: a token going back across a failover is S1.
    let mut input = failover_overlap();
    for e in &mut input.events {
        if let Op::AcquireOk { token, .. } = &mut e.op {
            if *token == 7 {
                *token = 4;
            }
        }
    }
    input.truth.clear();
    input.register.clear();
    assert!(check(&input).safety["S1"] >= 1);
}

#[test]
fn s4_ends_a_belief_at_the_local_deadline() {
    let mut input = clean();
    // Holder 1 never releases (paused); its deadline ends the belief at 1010 ms.
    input
        .events
        .retain(|e| !(e.holder == 1 && matches!(e.op, Op::ReleaseInvoke | Op::ReleaseOk)));
    input.events.retain(|e| e.holder != 2);
    cycle(&mut input.events, 2, 2, 40, 1500, 7, 1600);
    input.truth.clear();
    assert_eq!(check(&input).safety["S4"], 0);
    // … but a grant before that deadline overlaps.
    input.events.retain(|e| e.holder != 2);
    cycle(&mut input.events, 2, 2, 40, 900, 7, 1600);
    assert!(check(&input).safety["S4"] >= 1);
}

#[test]
fn s5_catches_a_lost_update_on_the_fenced_counter() {
    let mut input = clean();
    let mut reg = RegisterState::new(false);
    access(&mut reg, 20, 1, 1, "read", 5, 0);
    access(&mut reg, 110, 2, 2, "read", 7, 0);
    access(&mut reg, 111, 2, 2, "write", 7, 1);
    access(&mut reg, 115, 1, 1, "write", 5, 1);
    input.register = reg.log().to_vec();
    let out = check(&input);
    assert!(out.safety["S5"] >= 1);
    assert_eq!(out.unfenced_lost_updates, 1);
}

#[test]
fn s6_counts_leaks_and_panics() {
    let mut input = clean();
    input.leaks.push("/fc/lk/abc".into());
    input.panics = 1;
    assert_eq!(check(&input).safety["S6"], 2);
}

#[test]
fn pause_without_lost_unfenced_update_is_inconclusive() {
    let mut input = clean();
    input.faults.push(FaultRecord {
        kind: FaultKind::Pause,
        t: 5000 * MS,
        end: 7000 * MS,
        target: Some(1),
        token: None,
        detail: String::new(),
    });
    assert!(check(&input).inconclusive());
}

#[test]
fn recovery_of_a_kill_is_measured_against_its_bound() {
    let mut input = clean();
    input
        .events
        .retain(|e| !(e.holder == 1 && matches!(e.op, Op::ReleaseInvoke | Op::ReleaseOk)));
    input.events.retain(|e| e.holder != 2);
    cycle(&mut input.events, 2, 2, 40, 3000, 7, 3100);
    input.truth.clear();
    input.faults.push(FaultRecord {
        kind: FaultKind::Kill,
        t: 50 * MS,
        end: 50 * MS,
        target: Some(1),
        token: None,
        detail: String::new(),
    });
    let out = check(&input);
    let r = &out.recovery["kill"];
    assert_eq!(r.stats.n, 1);
    assert_eq!(r.bound_ms, Some(2000.0));
    assert_eq!(out.bound_failures(), 1, "2950 ms > 2000 ms");
}

/// A slow hand-off is a release sample over its bound, unless a fault began while it
/// was under way (the waiter cut off just after the release: the fault explains it).
#[test]
fn a_release_hand_off_overlapping_a_fault_is_not_a_clean_sample() {
    let slow = || {
        let mut input = clean();
        input.events.retain(|e| e.holder != 2);
        cycle(&mut input.events, 2, 2, 20, 800, 7, 900);
        input.events.sort_by_key(|e| e.t);
        input
    };
    let out = check(&slow());
    assert_eq!(out.recovery["release"].stats.n, 1);
    assert_eq!(out.recovery["release"].over_bound, 1, "700 ms > 500 ms");
    let mut input = slow();
    input.faults.push(FaultRecord {
        kind: FaultKind::PartitionShort,
        t: 105 * MS,
        end: 700 * MS,
        target: Some(2),
        token: None,
        detail: String::new(),
    });
    let out = check(&input);
    assert_eq!(out.recovery["release"].stats.n, 0, "{:?}", out.recovery);
}

/// `clean()` with holder 1 reporting its lock lost at 50 ms.
fn lost_at_50ms() -> Input {
    let mut input = clean();
    input.events.push(ev(
        50,
        1,
        1,
        Op::State {
            state: "lost".into(),
            deadline: None,
        },
    ));
    input.events.sort_by_key(|e| e.t);
    input
}

/// [`lost_at_50ms`] during `kind` (a server fault from 40 ms to 60 ms).
fn lost_during(kind: FaultKind) -> Outcome {
    let mut input = lost_at_50ms();
    input.faults.push(FaultRecord {
        kind,
        t: 40 * MS,
        end: 60 * MS,
        target: None,
        token: None,
        detail: String::new(),
    });
    check(&input)
}

#[test]
fn a_loss_during_a_fault_that_keeps_a_quorum_is_spurious() {
    for kind in FaultKind::ALL.into_iter().filter(|k| k.keeps_quorum()) {
        assert!(kind.hits_members(), "{kind}");
        let out = lost_during(kind);
        assert_eq!(out.spurious_losses, 1, "{kind}");
        assert_eq!(out.suspects_with_quorum, 1, "{kind}");
    }
    // A leader kill may take the lock: the loss is explained.
    assert_eq!(lost_during(FaultKind::LeaderKill).spurious_losses, 0);
    assert_eq!(lost_during(FaultKind::ClusterRestart).spurious_losses, 0);
}

#[test]
fn a_delete_that_hit_another_owner_explains_its_loss() {
    // The nemesis aimed at holder 2, but holder 1 (token 5) owned the lock by the time
    // the key was deleted: the record names no target, only the token it took.
    let mut input = lost_at_50ms();
    input.faults.push(FaultRecord {
        kind: FaultKind::Delete,
        t: 45 * MS,
        end: 46 * MS,
        target: None,
        token: Some(5),
        detail: "owner changed".into(),
    });
    assert_eq!(check(&input).spurious_losses, 0);
    input.faults[0].token = Some(7);
    assert_eq!(
        check(&input).spurious_losses,
        1,
        "a delete of another token"
    );
}

#[test]
fn s2_allows_a_read_in_flight_across_a_forced_revocation() {
    // Holder 1 (token 5) believes it holds until it sees the loss at 50 ms. The nemesis
    // sends a delete of its key at 45 ms; a truth read sent at 44.8 ms and answered at
    // 47 ms names the next owner (token 7). The server may have read after the delete.
    let mut input = lost_at_50ms();
    input.truth_exact = false;
    input.truth.push(Snapshot {
        start: 44 * MS + 800_000,
        end: 47 * MS,
        name: "lk".into(),
        owner: Some(7),
    });
    input.truth.sort_by_key(|s| s.start);
    input.faults.push(FaultRecord {
        kind: FaultKind::Delete,
        t: 45 * MS,
        end: 46 * MS,
        target: Some(1),
        token: Some(5),
        detail: String::new(),
    });
    assert_eq!(check(&input).safety["S2"], 0);
    // A read answered before the delete was sent cannot have seen its effect.
    input.faults[0].t = 48 * MS;
    input.faults[0].end = 49 * MS;
    assert_eq!(check(&input).safety["S2"], 1);
}

#[test]
fn observers_seeing_terms_out_of_order_is_s7() {
    let observed = |t, holder, term| {
        ev(
            t,
            holder,
            0,
            Op::Observed {
                term,
                value: String::new(),
            },
        )
    };
    let mut input = Input {
        events: vec![
            observed(1, 900, None),
            observed(2, 900, Some(5)),
            observed(3, 900, Some(5)),
            observed(4, 900, None),
            observed(5, 900, Some(7)),
            // Another observer may lag: only each one's own order counts.
            observed(6, 901, Some(5)),
        ],
        ..Input::default()
    };
    let clean = check(&input);
    assert_eq!(clean.safety["S7"], 0);
    assert_eq!(clean.observed_changes, 6);
    input.events.push(observed(7, 900, Some(6)));
    let broken = check(&input);
    assert_eq!(broken.safety["S7"], 1, "{:?}", broken.violations);
    assert!(broken.violations[0].message.contains("term 6 after term 7"));
}
