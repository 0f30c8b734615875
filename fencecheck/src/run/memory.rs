//! The memory runner: holders are tasks sharing one `MemoryBackend`; `stall_lease` plus
//! a frozen task is the pause, `expire_lease` plus an aborted task is the crash.

use super::{finish, pick_holder, Collected, RunConfig};
use crate::{
    history::{mono_ns, JsonlWriter, Op, Recorder},
    holder::{self, Gate, HolderConfig, LeaseSlot},
    nemesis::{FaultKind, FaultRecord, Schedule},
    register::Register,
    report::{Report, RunInfo},
    truth,
};
use fencelock::{memory::MemoryBackend, LockClient, LockName};
use rand::Rng;
use std::{io, time::Duration};
use tokio::{sync::watch, task::JoinHandle, time::sleep};

const NAME: &str = "fc-lock";

struct Slot {
    id: u32,
    task: JoinHandle<io::Result<()>>,
    gate: watch::Sender<bool>,
    lease: LeaseSlot,
}

struct Ctx<'a> {
    cfg: &'a RunConfig,
    backend: MemoryBackend,
    register: Register,
    stop: watch::Receiver<bool>,
    next_id: u32,
    panics: u32,
}

impl Ctx<'_> {
    fn spawn(&mut self) -> io::Result<Slot> {
        self.next_id += 1;
        let id = self.next_id;
        let out = JsonlWriter::create(&self.cfg.out_dir.join(format!("holder-{id}.jsonl")))?;
        let rec = Recorder::new(out, id, NAME);
        rec.record(
            0,
            Op::Start {
                pid: std::process::id(),
                slot: id,
            },
        );
        let (gate_tx, gate) = Gate::new();
        let lease = LeaseSlot::default();
        let hc = HolderConfig {
            id,
            name: NAME.into(),
            ttl: self.cfg.ttl,
            writes: self.cfg.writes,
            seed: self.cfg.seed,
            register: self.register.addr(),
            token_mode: self.cfg.token_mode,
            mode: self.cfg.mode,
            limit: self.cfg.limit,
            election: self.cfg.election,
        };
        let client = LockClient::new(self.backend.clone());
        let task = tokio::spawn(holder::run(
            client,
            hc,
            rec,
            gate,
            self.stop.clone(),
            lease.clone(),
        ));
        Ok(Slot {
            id,
            task,
            gate: gate_tx,
            lease,
        })
    }
}

fn lease_of(slot: &Slot) -> Option<fencelock::LeaseId> {
    *slot.lease.lock().unwrap_or_else(|e| e.into_inner())
}

/// The slot whose holder owns the lock now (a writer or exclusive holder
/// preferred, else a reader), else a random one.
async fn victim(
    backend: &MemoryBackend,
    slots: &[Slot],
    rng: &mut impl Rng,
) -> (usize, Option<u64>) {
    let client = LockClient::new(backend.clone());
    let mut reader = None;
    // Up to ~1.5 s: in rw mode most cycles are reads (see procs.rs's `victim`).
    for _ in 0..60 {
        if let Ok(Some(info)) = client.inspect(NAME).await {
            let (w, r) = pick_holder(&info, |id| slots.iter().position(|s| s.id == id));
            if let Some((i, token)) = w {
                return (i, Some(token));
            }
            reader = reader.or(r);
        }
        sleep(Duration::from_millis(20)).await;
    }
    match reader {
        Some((i, token)) => (i, Some(token)),
        None => (rng.gen_range(0..slots.len()), None),
    }
}

pub(super) async fn run(cfg: &RunConfig) -> io::Result<Report> {
    let backend = MemoryBackend::new();
    let truth = truth::observe_memory(&backend);
    let (stop_tx, stop) = watch::channel(false);
    let mut ctx = Ctx {
        cfg,
        backend: backend.clone(),
        register: Register::start_with(cfg.register).await?,
        stop,
        next_id: 0,
        panics: 0,
    };
    let mut observers = Vec::new();
    for k in 0..if cfg.election { super::OBSERVERS } else { 0 } {
        let id = super::observer_id(k);
        let out = JsonlWriter::create(&cfg.out_dir.join(format!("holder-{id}.jsonl")))?;
        let client = LockClient::new(backend.clone());
        let rec = Recorder::new(out, id, NAME);
        observers.push(tokio::spawn(holder::observe(
            client,
            NAME,
            rec,
            ctx.stop.clone(),
        )));
    }
    let mut slots = Vec::new();
    for _ in 0..cfg.holders.max(1) {
        slots.push(ctx.spawn()?);
    }
    let started = std::time::Instant::now();
    let mut schedule = Schedule::new(cfg.seed, cfg.faults.clone());
    let mut faults = Vec::new();
    let ttl = cfg.ttl;
    sleep(ttl * 3).await;
    let name = LockName::new(NAME).map_err(|e| io::Error::other(e.to_string()))?;
    while started.elapsed() < Duration::from_secs(cfg.seconds)
        || schedule.min_count() < cfg.min_per_fault
    {
        let Some(kind) = schedule.next_fault() else {
            sleep(Duration::from_secs(cfg.seconds)).await;
            break;
        };
        let (i, token) = victim(&backend, &slots, schedule.rng()).await;
        let target = slots[i].id;
        let t = mono_ns();
        let mut rec = FaultRecord {
            kind,
            t,
            end: t,
            target: Some(target),
            token: None,
            detail: String::new(),
        };
        match kind {
            FaultKind::Kill => {
                if let Some(l) = lease_of(&slots[i]) {
                    backend.expire_lease(l);
                }
                slots[i].task.abort();
                rec.end = mono_ns();
                let old = std::mem::replace(&mut slots[i], ctx.spawn()?);
                if let Err(e) = old.task.await {
                    ctx.panics += u32::from(e.is_panic());
                }
                sleep(ttl).await;
            }
            FaultKind::Pause => {
                let _ = slots[i].gate.send(true);
                if let Some(l) = lease_of(&slots[i]) {
                    backend.stall_lease(l);
                }
                sleep(ttl * 2).await;
                if let Some(l) = lease_of(&slots[i]) {
                    backend.resume_lease(l);
                }
                let _ = slots[i].gate.send(false);
                rec.end = mono_ns();
            }
            FaultKind::Partition | FaultKind::PartitionShort => {
                let span = if kind == FaultKind::Partition {
                    ttl * 2
                } else {
                    ttl / 3
                };
                let lease = lease_of(&slots[i]);
                if let Some(l) = lease {
                    backend.stall_lease(l);
                }
                sleep(span).await;
                if let Some(l) = lease {
                    backend.resume_lease(l);
                }
                rec.end = mono_ns();
            }
            FaultKind::Delete => {
                rec.t = mono_ns();
                rec.token = backend.delete_holder(&name).map(|t| t.get());
                rec.end = mono_ns();
                if rec.token != token {
                    rec.target = None;
                }
            }
            other => rec.detail = format!("{other} is not supported on memory"),
        }
        faults.push(rec);
        let jitter = schedule.rng().gen_range(0..300);
        sleep(Duration::from_millis(200 + jitter)).await;
    }
    let duration_s = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    for slot in slots {
        let _ = slot.gate.send(false);
        match tokio::time::timeout(ttl * 3 + Duration::from_secs(2), slot.task).await {
            Ok(Err(e)) if e.is_panic() => ctx.panics += 1,
            _ => {}
        }
    }
    for o in observers {
        let _ = o.await;
    }
    sleep(ttl + Duration::from_secs(2)).await;
    let mut leaks = Vec::new();
    if !backend.is_empty() {
        leaks.push(format!(
            "{} lock queue(s), {} lease(s) in the memory store",
            backend.lock_count(),
            backend.lease_count()
        ));
    }
    let info = RunInfo {
        backend: "memory".into(),
        server_version: "in-process".into(),
        cluster_size: 1,
        requested_ttl_ms: ttl.as_millis() as u64,
        granted_ttl_ms: 0,
        seed: cfg.seed,
        duration_s,
        holders: cfg.holders,
        token_mode: format!("{:?}", cfg.token_mode).to_lowercase(),
        mode: cfg.mode.as_str().into(),
    };
    let collected = Collected {
        info,
        register: ctx.register.log(),
        faults,
        truth: truth::snapshot(&truth),
        truth_exact: true,
        leaks,
        panics: ctx.panics,
    };
    finish(cfg, collected)
}
