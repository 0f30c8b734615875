//! The holder loop: acquire → a few fenced read-modify-writes with its token (random
//! sleeps up to a third of the TTL between read and write) → release, logging every
//! step. The same loop runs as a task (memory backend) or as its own process.

use crate::{
    history::{instant_to_ns, Op, Recorder},
    register::{RegisterClient, Reply, Request},
};
use fencelock::{ErrorKind, Lease, LeaseId, LockClient, LockGuard, LockState};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::watch;

/// Which token a holder sends to the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TokenMode {
    /// The grant's real fencing token.
    #[default]
    Real,
    /// **Broken (test only):** always 1, as a lock without fencing.
    Constant,
    /// **Broken (test only):** the lease id instead of the token.
    Lease,
}

/// What the holders lock: the mutex, a read-write lock or a semaphore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// The exclusive lock; every cycle reads and writes with its token.
    #[default]
    Mutex,
    /// `rw_lock`: each cycle is a reader ([`READ_SHARE`] of them) that only reads,
    /// fenced as a read, or a writer that reads and writes, fenced as a write.
    Rw,
    /// `semaphore(name, limit)`: each permit reads and writes the cell of its slot
    /// (`name#slot`) with its token.
    Semaphore,
}

impl Mode {
    /// The mode's name (`mutex`, `rw`, `semaphore`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Mutex => "mutex",
            Mode::Rw => "rw",
            Mode::Semaphore => "semaphore",
        }
    }
}

/// The share of reader cycles in [`Mode::Rw`].
pub const READ_SHARE: f64 = 0.7;

/// A holder's settings.
#[derive(Debug, Clone)]
pub struct HolderConfig {
    /// The holder incarnation's unique id.
    pub id: u32,
    /// The lock name.
    pub name: String,
    /// The TTL requested for its leases.
    pub ttl: Duration,
    /// Read-modify-writes per cycle.
    pub writes: u32,
    /// Random seed.
    pub seed: u64,
    /// The register's address.
    pub register: SocketAddr,
    /// The token it sends.
    pub token_mode: TokenMode,
    /// Campaign in the election `name` (a fresh lease per term, the term as token)
    /// instead of acquiring the lock on a lease of its own.
    pub election: bool,
    /// What it locks (not in an election).
    pub mode: Mode,
    /// The semaphore's limit ([`Mode::Semaphore`]).
    pub limit: u32,
}

/// Freezes an in-process holder at its next step (the memory backend's pause).
#[derive(Debug, Clone, Default)]
pub struct Gate(Option<watch::Receiver<bool>>);

impl Gate {
    /// A gate and its switch (`true` = paused).
    pub fn new() -> (watch::Sender<bool>, Gate) {
        let (tx, rx) = watch::channel(false);
        (tx, Gate(Some(rx)))
    }

    /// Waits while paused.
    pub async fn ready(&mut self) {
        if let Some(rx) = &mut self.0 {
            while *rx.borrow_and_update() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The lease a holder currently uses (for the nemesis).
pub type LeaseSlot = Arc<Mutex<Option<LeaseId>>>;

fn acquire_outcome(err: &fencelock::Error) -> Op {
    let error = err.to_string();
    match err.kind() {
        ErrorKind::LeaseLost
        | ErrorKind::NotHeld
        | ErrorKind::InvalidName
        | ErrorKind::InvalidConfig => Op::AcquireFail { error },
        _ => Op::AcquireIndeterminate { error },
    }
}

/// Logs every state change of `guard` and every move of its local deadline.
fn spawn_monitor(guard: &LockGuard, rec: Recorder, cycle: u64) -> tokio::task::JoinHandle<()> {
    let mut watch = guard.watch();
    tokio::spawn(async move {
        let mut cur = LockState::Held;
        let mut last = watch.deadline();
        loop {
            tokio::select! {
                s = watch.changed_from(cur) => {
                    cur = s;
                    last = watch.deadline();
                    rec.record(cycle, Op::State { state: s.to_string(), deadline: last.map(instant_to_ns) });
                    if s.is_lost() {
                        return;
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(20)) => {
                    let d = watch.deadline();
                    if d != last {
                        if let Some(d) = d {
                            rec.record(cycle, Op::Deadline { deadline: instant_to_ns(d) });
                        }
                        last = d;
                    }
                }
            }
        }
    })
}

/// Runs the holder loop until `stop` turns true; then releases, closes its lease and
/// records `Exit`.
///
/// # Errors
///
/// When the register cannot be reached.
pub async fn run(
    client: LockClient,
    cfg: HolderConfig,
    rec: Recorder,
    mut gate: Gate,
    mut stop: watch::Receiver<bool>,
    lease_slot: LeaseSlot,
) -> io::Result<()> {
    let mut reg = RegisterClient::connect(cfg.register).await?;
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ u64::from(cfg.id).wrapping_mul(0x9e37_79b9));
    let mut lease: Option<Lease> = None;
    let mut cycle = 0u64;
    let acquire_timeout = cfg.ttl.saturating_mul(10).max(Duration::from_secs(10));
    while !*stop.borrow() {
        gate.ready().await;
        let (guard, l, term_lease, role, key) = if cfg.election {
            cycle += 1;
            match campaign(&client, &cfg, &rec, cycle, &mut stop, &lease_slot).await {
                Campaign::Led(guard, lease) => (
                    guard,
                    lease.clone(),
                    Some(lease),
                    Role::Mutex,
                    cfg.name.clone(),
                ),
                Campaign::Retry => continue,
                Campaign::Stop => break,
            }
        } else {
            let l = match lease.as_ref().filter(|l| !l.state().is_lost()) {
                Some(l) => l.clone(),
                None => {
                    match tokio::time::timeout(cfg.ttl * 3, client.lease_with_ttl(cfg.ttl)).await {
                        Ok(Ok(l)) => {
                            rec.record(
                                cycle,
                                Op::Lease {
                                    lease: l.id().get(),
                                    granted_ttl_ms: l.ttl().as_millis() as u64,
                                },
                            );
                            *lease_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(l.id());
                            lease = Some(l.clone());
                            l
                        }
                        Ok(Err(e)) => {
                            rec.record(
                                cycle,
                                Op::LeaseFail {
                                    error: e.to_string(),
                                },
                            );
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                        Err(_) => {
                            rec.record(
                                cycle,
                                Op::LeaseFail {
                                    error: "lease grant timed out".into(),
                                },
                            );
                            continue;
                        }
                    }
                }
            };
            cycle += 1;
            let role = match cfg.mode {
                Mode::Mutex => Role::Mutex,
                Mode::Rw if rng.gen_bool(READ_SHARE) => Role::Read,
                Mode::Rw => Role::Write,
                Mode::Semaphore => Role::Permit,
            };
            let holder = format!("fencecheck-{}", cfg.id);
            let name = cfg.name.as_str();
            let bad = |e: fencelock::Error| io::Error::other(e.to_string());
            let acquire = async {
                match role {
                    Role::Mutex => {
                        let lock = l.lock(name).map_err(bad)?.with_holder(holder);
                        Ok(lock.acquire().await.map(|g| (g, cfg.name.clone())))
                    }
                    Role::Read | Role::Write => {
                        let rw = l.rw_lock(name).map_err(bad)?.with_holder(holder);
                        let g = if role == Role::Read {
                            rw.read().await
                        } else {
                            rw.write().await
                        };
                        Ok(g.map(|g| (g, cfg.name.clone())))
                    }
                    Role::Permit => {
                        let sem = l
                            .semaphore(name, cfg.limit)
                            .map_err(bad)?
                            .with_holder(holder);
                        Ok(sem.acquire().await.map(|p| {
                            let key = p.fence_key();
                            (p.into_guard(), key)
                        }))
                    }
                }
            };
            rec.record(cycle, Op::AcquireInvoke);
            let acquired = tokio::select! {
                r = tokio::time::timeout(acquire_timeout, acquire) => r,
                _ = stop.changed() => {
                    rec.record(cycle, Op::AcquireFail { error: "cancelled at stop".into() });
                    break;
                }
            };
            let (guard, key) = match acquired {
                Ok(Ok(Ok(granted))) => granted,
                Ok(Err(e)) => return Err(e),
                Ok(Ok(Err(e))) => {
                    rec.record(cycle, acquire_outcome(&e));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(_) => {
                    rec.record(
                        cycle,
                        Op::AcquireIndeterminate {
                            error: format!("no answer within {acquire_timeout:?}"),
                        },
                    );
                    continue;
                }
            };
            (guard, l, None, role, key)
        };
        let token = guard.token().get();
        rec.record(
            cycle,
            Op::AcquireOk {
                token,
                lease: l.id().get(),
                deadline: guard.watch().deadline().map(instant_to_ns),
            },
        );
        if role != Role::Mutex {
            rec.record(
                cycle,
                Op::Role {
                    role: role.as_str().into(),
                    key: key.clone(),
                },
            );
        }
        let monitor = spawn_monitor(&guard, rec.clone(), cycle);
        let sent = match cfg.token_mode {
            TokenMode::Real => token,
            TokenMode::Constant => 1,
            TokenMode::Lease => l.id().get(),
        };
        for _ in 0..cfg.writes {
            gate.ready().await;
            let mut req = Request {
                op: "read".into(),
                name: key.clone(),
                holder: cfg.id,
                cycle,
                token: sent,
                value: 0,
                uvalue: 0,
                shared: role == Role::Read,
            };
            let read = call(&mut reg, &req, &rec, cycle).await?;
            let pause = cfg.ttl.mul_f64(rng.gen_range(0.0..(1.0 / 3.0)));
            tokio::time::sleep(pause).await;
            gate.ready().await;
            if role != Role::Read {
                // Sent without looking at the guard: a process may pause between a
                // check and its write, so only the fence can protect the data.
                req.op = "write".into();
                req.value = if read.accepted { read.value + 1 } else { 0 };
                req.uvalue = read.uvalue + 1;
                call(&mut reg, &req, &rec, cycle).await?;
            }
            let state = guard.state();
            if !state.is_held() {
                rec.record(
                    cycle,
                    Op::Abandon {
                        state: state.to_string(),
                    },
                );
                break;
            }
        }
        rec.record(cycle, Op::ReleaseInvoke);
        match tokio::time::timeout(cfg.ttl * 3, guard.release()).await {
            Ok(Ok(())) => rec.record(cycle, Op::ReleaseOk),
            Ok(Err(e)) => rec.record(
                cycle,
                Op::ReleaseFail {
                    kind: e.kind().to_string(),
                },
            ),
            Err(_) => rec.record(
                cycle,
                Op::ReleaseFail {
                    kind: "timed out".into(),
                },
            ),
        }
        monitor.abort();
        if let Some(term_lease) = term_lease {
            *lease_slot.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let _ = tokio::time::timeout(cfg.ttl, term_lease.close()).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..20))).await;
    }
    if let Some(l) = lease {
        let _ = tokio::time::timeout(cfg.ttl, l.close()).await;
    }
    rec.record(cycle, Op::Exit);
    Ok(())
}

/// What one campaign of an election holder came to.
enum Campaign {
    /// Leader: the term's guard and lease.
    Led(LockGuard, Lease),
    /// Not leader this time (logged); try again.
    Retry,
    /// Stopped while campaigning.
    Stop,
}

/// Campaigns once in the election `cfg.name`, logging it as an acquire (the term is
/// the token) and the term's own lease as the holder's lease.
async fn campaign(
    client: &LockClient,
    cfg: &HolderConfig,
    rec: &Recorder,
    cycle: u64,
    stop: &mut watch::Receiver<bool>,
    lease_slot: &LeaseSlot,
) -> Campaign {
    let election = match client.election(cfg.name.as_str()) {
        Ok(e) => e.with_ttl(cfg.ttl),
        Err(e) => {
            rec.record(cycle, acquire_outcome(&e));
            return Campaign::Stop;
        }
    };
    let timeout = cfg.ttl.saturating_mul(10).max(Duration::from_secs(10));
    rec.record(cycle, Op::AcquireInvoke);
    let led = tokio::select! {
        r = tokio::time::timeout(timeout, election.campaign(format!("fencecheck-{}", cfg.id))) => r,
        _ = stop.changed() => {
            rec.record(cycle, Op::AcquireFail { error: "cancelled at stop".into() });
            return Campaign::Stop;
        }
    };
    match led {
        Ok(Ok(lead)) => {
            let (guard, lease) = lead.into_parts();
            rec.record(
                cycle,
                Op::Lease {
                    lease: lease.id().get(),
                    granted_ttl_ms: lease.ttl().as_millis() as u64,
                },
            );
            *lease_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(lease.id());
            Campaign::Led(guard, lease)
        }
        Ok(Err(e)) => {
            rec.record(cycle, acquire_outcome(&e));
            tokio::time::sleep(Duration::from_millis(50)).await;
            Campaign::Retry
        }
        Err(_) => {
            rec.record(
                cycle,
                Op::AcquireIndeterminate {
                    error: format!("no answer within {timeout:?}"),
                },
            );
            Campaign::Retry
        }
    }
}

/// Follows the election `name` until `stop`, logging every leader it is shown.
///
/// # Errors
///
/// When the observe stream cannot be opened.
pub async fn observe(
    client: LockClient,
    name: &str,
    rec: Recorder,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    use futures::StreamExt;
    let election = client
        .election(name)
        .map_err(|e| io::Error::other(e.to_string()))?;
    while !*stop.borrow() {
        let mut stream = match election.observe().await {
            Ok(stream) => stream,
            Err(e) => {
                rec.record(
                    0,
                    Op::AccessFail {
                        error: e.to_string(),
                    },
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                _ = stop.changed() => return Ok(()),
            };
            match item {
                Some(Ok(leader)) => rec.record(
                    0,
                    Op::Observed {
                        term: leader.as_ref().map(|l| l.term.get()),
                        value: leader.map(|l| l.value).unwrap_or_default(),
                    },
                ),
                // A broken stream is opened again: terms must still never go back.
                Some(Err(e)) => {
                    rec.record(
                        0,
                        Op::AccessFail {
                            error: e.to_string(),
                        },
                    );
                    break;
                }
                None => break,
            }
        }
    }
    Ok(())
}

/// What one cycle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Mutex,
    Read,
    Write,
    Permit,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Mutex => "mutex",
            Role::Read => "read",
            Role::Write => "write",
            Role::Permit => "permit",
        }
    }
}

async fn call(
    reg: &mut RegisterClient,
    req: &Request,
    rec: &Recorder,
    cycle: u64,
) -> io::Result<Reply> {
    match tokio::time::timeout(Duration::from_secs(5), reg.call(req)).await {
        Ok(Ok(reply)) => {
            rec.record(
                cycle,
                Op::Access {
                    op: req.op.clone(),
                    sent_token: req.token,
                    accepted: reply.accepted,
                },
            );
            Ok(reply)
        }
        Ok(Err(e)) => {
            rec.record(
                cycle,
                Op::AccessFail {
                    error: e.to_string(),
                },
            );
            Err(e)
        }
        Err(_) => {
            rec.record(
                cycle,
                Op::AccessFail {
                    error: "register timed out".into(),
                },
            );
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "register timed out",
            ))
        }
    }
}
