//! The etcd / ZooKeeper runner: holders are `fencecheck holder` processes, each
//! reaching every server member through its own fault proxy; the nemesis signals
//! them by PID, drives the proxies and fails the servers.

use super::{finish, pick_holder, servers::Servers, Collected, RunConfig};
use crate::{
    history::mono_ns,
    nemesis::{FaultKind, FaultRecord, Schedule},
    proxy::{Mode, Proxy},
    register::Register,
    report::{Report, RunInfo},
    truth,
};
use fencelock::LockClient;
use fencelock_integration_tests::servers::Link;
use rand::Rng;
use std::{io, net::SocketAddr, process::Stdio, time::Duration};
use tokio::{
    process::{Child, Command},
    time::sleep,
};

const NAME: &str = "fc-lock";

struct Slot {
    id: u32,
    child: Child,
    proxies: Vec<Proxy>,
}

impl Slot {
    fn pid(&self) -> Option<libc::pid_t> {
        self.child.id().and_then(|p| libc::pid_t::try_from(p).ok())
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) has no memory-safety preconditions; the child is not
            // reaped while we hold it, so the PID is still ours.
            unsafe { libc::kill(pid, sig) };
        }
    }

    fn set(&self, mode: Mode) {
        for p in &self.proxies {
            p.set(mode);
        }
    }
}

struct Ctx<'a> {
    cfg: &'a RunConfig,
    servers: Servers,
    register: Register,
    root: String,
    next_id: u32,
    /// The proxies of the run's own connection (truth poller, operator faults, leak
    /// check) when the servers can fail over: switched with the holders'.
    front: Vec<Proxy>,
}

impl Ctx<'_> {
    async fn spawn(&mut self, slot: u32, proxies: Vec<Proxy>) -> io::Result<Slot> {
        self.next_id += 1;
        let id = self.next_id;
        let bin = self.cfg.holder_bin.clone().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no fencecheck binary for holder processes",
            )
        })?;
        let hosts: Vec<String> = proxies.iter().map(|p| p.addr().to_string()).collect();
        let url = self.servers.url(&hosts, &self.root, self.cfg.ttl);
        let direct = self
            .servers
            .url(&self.servers.endpoints(), &self.root, self.cfg.ttl);
        let dir = &self.cfg.out_dir;
        let stderr = std::fs::File::create(dir.join(format!("holder-{id}.stderr")))?;
        let child = Command::new(bin)
            .arg("holder")
            .args(["--url", &url, "--direct-url", &direct])
            .args(["--register", &self.register.addr().to_string()])
            .args([
                "--id",
                &id.to_string(),
                "--slot",
                &slot.to_string(),
                "--name",
                NAME,
            ])
            .args(["--ttl-ms", &self.cfg.ttl.as_millis().to_string()])
            .args([
                "--writes",
                &self.cfg.writes.to_string(),
                "--seed",
                &self.cfg.seed.to_string(),
            ])
            .arg("--out")
            .arg(dir.join(format!("holder-{id}.jsonl")))
            .args(["--token-mode", token_mode(self.cfg)])
            .args(["--mode", self.cfg.mode.as_str()])
            .args(["--limit", &self.cfg.limit.to_string()])
            .args(self.cfg.election.then_some("--election"))
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()?;
        Ok(Slot { id, child, proxies })
    }
}

fn token_mode(cfg: &RunConfig) -> &'static str {
    match cfg.token_mode {
        crate::holder::TokenMode::Real => "real",
        crate::holder::TokenMode::Constant => "constant",
        crate::holder::TokenMode::Lease => "lease",
    }
}

async fn proxies_for(endpoints: &[String]) -> io::Result<Vec<Proxy>> {
    let mut out = Vec::new();
    for e in endpoints {
        let addr: SocketAddr = e
            .parse()
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, format!("{e}: {err}")))?;
        out.push(Proxy::start(addr).await?);
    }
    Ok(out)
}

/// The slot whose holder owns the lock now (per the server), else a random one.
/// A writer (or exclusive holder) is preferred; a reader is taken when no writer
/// shows within the tries.
async fn victim(admin: &LockClient, slots: &[Slot], rng: &mut impl Rng) -> (usize, Option<u64>) {
    let mut reader = None;
    // Up to ~4 s: in rw mode 7 cycles in 10 are reads, and a paused reader writes
    // nothing, so the control bites only if a writer is found.
    for _ in 0..60 {
        if let Ok(Ok(Some(info))) =
            tokio::time::timeout(Duration::from_secs(1), admin.inspect(NAME)).await
        {
            let (w, r) = pick_holder(&info, |id| slots.iter().position(|s| s.id == id));
            if let Some((i, token)) = w {
                return (i, Some(token));
            }
            reader = reader.or(r);
        }
        sleep(Duration::from_millis(50)).await;
    }
    match reader {
        Some((i, token)) => (i, Some(token)),
        None => (rng.gen_range(0..slots.len()), None),
    }
}

/// How long a member fault waits for the whole cluster to serve, before it starts
/// (so that one fault never lands on the tail of the last) and after it ends.
const READY_LIMIT: Duration = Duration::from_secs(30);

/// A member other than the leader.
fn follower(servers: &Servers, rng: &mut impl Rng) -> (usize, usize) {
    let leader = servers.leader().unwrap_or(0);
    let n = servers.size();
    (leader, (leader + 1 + rng.gen_range(0..n - 1)) % n)
}

/// Cuts member `m`'s `link` for `how_long`, then heals it.
async fn cut_for(servers: &Servers, m: usize, link: Link, how_long: Duration) -> io::Result<()> {
    servers.set_link(m, link, false)?;
    sleep(how_long).await;
    servers.set_link(m, link, true)
}

/// Injects a fault that hits server members (see [`FaultKind::hits_members`]).
async fn inject_member_fault(
    ctx: &mut Ctx<'_>,
    slots: &mut [Slot],
    kind: FaultKind,
    rng: &mut impl Rng,
    rec: &mut FaultRecord,
) -> io::Result<()> {
    let ttl = ctx.cfg.ttl;
    let servers = &mut ctx.servers;
    match kind {
        FaultKind::FollowerPause => {
            let (leader, m) = follower(servers, rng);
            rec.t = mono_ns();
            servers.pause(m);
            sleep(ttl * 2).await;
            servers.resume(m);
            rec.detail = format!("member {m} (leader {leader})");
        }
        FaultKind::FollowerIsolate => {
            let (leader, m) = follower(servers, rng);
            rec.t = mono_ns();
            cut_for(servers, m, Link::Both, ttl * 2).await?;
            rec.detail = format!("member {m} (leader {leader})");
        }
        FaultKind::LeaderPartition => {
            let m = servers.leader().unwrap_or(0);
            rec.t = mono_ns();
            cut_for(servers, m, Link::Peers, ttl * 2).await?;
            rec.detail = format!("member {m}; new leader {:?}", servers.leader());
        }
        FaultKind::LinkFlap => {
            let (leader, m) = follower(servers, rng);
            rec.t = mono_ns();
            let mut flaps = 0;
            while mono_ns() - rec.t < (ttl * 2).as_nanos() as u64 {
                cut_for(servers, m, Link::Both, Duration::from_millis(400)).await?;
                flaps += 1;
                sleep(Duration::from_millis(400)).await;
            }
            rec.detail = format!("member {m} (leader {leader}), {flaps} flaps");
        }
        FaultKind::SlowLink => {
            let m = rng.gen_range(0..servers.size());
            let delay = Duration::from_millis(250);
            rec.t = mono_ns();
            for s in slots.iter() {
                s.proxies[m].set(Mode::Latency(delay));
            }
            sleep(ttl * 2).await;
            for s in slots.iter() {
                s.proxies[m].set(Mode::Pass);
            }
            rec.detail = format!("member {m}, {delay:?} per chunk each way");
        }
        FaultKind::Failover => failover(ctx, slots, rec).await?,
        FaultKind::ClusterRestart => {
            rec.t = mono_ns();
            rec.detail = match servers.restart_all() {
                Ok(()) => "all members".into(),
                Err(e) => format!("restart failed: {e}"),
            };
        }
        FaultKind::LeaderKill | FaultKind::FollowerKill => {
            let leader = servers.leader().unwrap_or(0);
            let m = if kind == FaultKind::LeaderKill {
                leader
            } else {
                (leader + 1 + rng.gen_range(0..2)) % servers.size()
            };
            servers.kill(m);
            rec.t = mono_ns();
            sleep(Duration::from_secs(1)).await;
            rec.detail = match servers.restart(m) {
                Ok(()) => format!("member {m} (leader was {leader})"),
                Err(e) => format!("member {m}: restart failed: {e}"),
            };
        }
        FaultKind::LeaderPause => {
            let m = servers.leader().unwrap_or(0);
            servers.pause(m);
            rec.t = mono_ns();
            sleep(ttl).await;
            servers.resume(m);
            rec.detail = format!("member {m}");
        }
        other => unreachable!("{other} does not hit members"),
    }
    rec.end = mono_ns();
    Ok(())
}

/// The failover fault (a master with a replica: `redis`'s, `redlock`'s first):
/// promote the replica, let the clients go on with the old master for 1.5 x TTL (the
/// promoted replica misses every write of that time, and every entry it has
/// expires), hold every client's traffic to that master, read its token counter
/// (`redis`: the highest token it granted, `rec.token`), switch every proxy of that
/// endpoint (holders' and the run's own) to the promoted replica, resetting their
/// connections, then kill the old master and bring it back empty as the new replica.
/// `rec.t` is the moment the clients were cut off the old master.
async fn failover(ctx: &mut Ctx<'_>, slots: &[Slot], rec: &mut FaultRecord) -> io::Result<()> {
    let ttl = ctx.cfg.ttl;
    let (slot, old, new) = ctx.servers.promote_replica()?;
    let promoted = mono_ns();
    sleep(ttl + ttl / 2).await;
    let proxies = || {
        slots
            .iter()
            .map(|s| &s.proxies[slot])
            .chain(ctx.front.get(slot))
    };
    for p in proxies() {
        p.set(Mode::Blackhole);
    }
    rec.t = mono_ns();
    // Requests already forwarded get their answers from the old master first.
    sleep(Duration::from_millis(100)).await;
    // The counter key of lock NAME under the run's prefix (`<prefix>{NAME}:t`).
    // (Redlock's token is a quorum max-register: one master's counter bounds
    // nothing, so the checker counts the grants made before the cut-off instead.)
    let counter = format!("{}:{{{NAME}}}:t", ctx.root);
    let redlock = ctx.cfg.backend == "redlock";
    let last = if redlock {
        Ok(None)
    } else {
        ctx.servers.get(old, &counter)
    };
    let target: SocketAddr = ctx
        .servers
        .address(new)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| io::Error::other("no address for the promoted replica"))?;
    for p in proxies() {
        p.retarget(target);
        p.set(Mode::Pass);
    }
    let switched = mono_ns();
    let demoted = ctx.servers.demote_old_master(slot, old, new);
    rec.token = last.as_ref().ok().and_then(|t| t.as_deref()?.parse().ok());
    rec.detail = format!(
        "member {new} promoted {} ms before the switch; member {old} killed, {}; old master's last token {}",
        (rec.t - promoted) / 1_000_000,
        match demoted {
            Ok(()) => format!("back as the replica after {} ms", (mono_ns() - switched) / 1_000_000),
            Err(e) => format!("NOT back as the replica: {e}"),
        },
        match &last {
            Ok(Some(t)) => t.clone(),
            Ok(None) if redlock => "not read (Redlock)".into(),
            Ok(None) => "none (no counter)".into(),
            Err(e) => format!("unread: {e}"),
        }
    );
    Ok(())
}

fn ready_text(waited: Option<Duration>) -> String {
    match waited {
        Some(d) => format!("after {} ms", d.as_millis()),
        None => format!("NOT within {} s", READY_LIMIT.as_secs()),
    }
}

async fn inject(
    ctx: &mut Ctx<'_>,
    slots: &mut [Slot],
    admin: &LockClient,
    kind: FaultKind,
    rng: &mut impl Rng,
) -> io::Result<FaultRecord> {
    let ttl = ctx.cfg.ttl;
    if kind.hits_members() {
        let before = ctx.servers.wait_all_ready(READY_LIMIT).await;
        let t = mono_ns();
        let mut rec = FaultRecord {
            kind,
            t,
            end: t,
            target: None,
            token: None,
            detail: String::new(),
        };
        inject_member_fault(ctx, slots, kind, rng, &mut rec).await?;
        let after = ctx.servers.wait_all_ready(READY_LIMIT).await;
        rec.detail.push_str(&format!(
            "; cluster ready {} before, {} after",
            ready_text(before),
            ready_text(after)
        ));
        sleep(Duration::from_secs(1)).await;
        return Ok(rec);
    }
    let (i, token) = if kind.is_targeted() {
        victim(admin, slots, rng).await
    } else {
        (0, None)
    };
    let t = mono_ns();
    let mut rec = FaultRecord {
        kind,
        t,
        end: t,
        target: kind.is_targeted().then_some(slots[i].id),
        token: None,
        detail: String::new(),
    };
    match kind {
        FaultKind::Kill => {
            rec.t = mono_ns();
            slots[i].signal(libc::SIGKILL);
            let _ = slots[i].child.wait().await;
            let proxies = std::mem::take(&mut slots[i].proxies);
            slots[i] = ctx.spawn(i as u32, proxies).await?;
            rec.end = mono_ns();
            sleep(ttl + Duration::from_millis(500)).await;
        }
        FaultKind::Pause => {
            slots[i].signal(libc::SIGSTOP);
            sleep(ttl * 2).await;
            slots[i].signal(libc::SIGCONT);
            rec.end = mono_ns();
        }
        FaultKind::Partition | FaultKind::PartitionShort => {
            slots[i].set(Mode::Blackhole);
            sleep(if kind == FaultKind::Partition {
                ttl * 2
            } else {
                ttl / 3
            })
            .await;
            slots[i].set(Mode::Pass);
            rec.end = mono_ns();
        }
        FaultKind::Reset => {
            for p in &slots[i].proxies {
                p.reset();
            }
        }
        FaultKind::Latency => {
            slots[i].set(Mode::Latency(Duration::from_millis(100)));
            rec.detail = "100 ms per chunk".into();
            sleep(ttl * 2).await;
            slots[i].set(Mode::Pass);
            rec.end = mono_ns();
        }
        FaultKind::Revoke | FaultKind::Delete => {
            rec.t = mono_ns();
            let r = if kind == FaultKind::Revoke {
                ctx.servers.revoke(admin, NAME).await
            } else {
                ctx.servers.delete(admin, NAME).await
            };
            rec.end = mono_ns();
            match r {
                Ok(tok) => {
                    rec.token = tok;
                    if tok != token {
                        rec.target = None;
                        rec.detail = format!("owner changed: expected {token:?}, hit {tok:?}");
                    }
                }
                Err(e) => rec.detail = format!("failed: {e}"),
            }
            sleep(Duration::from_millis(1500)).await;
        }
        FaultKind::Expire => {
            // Hold the victim's own traffic so it cannot take its session back, expire
            // it from a second connection inside the victim (it knows the password).
            slots[i].set(Mode::Blackhole);
            rec.token = token;
            rec.t = mono_ns();
            slots[i].signal(libc::SIGUSR1);
            sleep(Duration::from_millis(1500)).await;
            slots[i].set(Mode::Pass);
            rec.end = mono_ns();
            sleep(Duration::from_millis(500)).await;
        }
        // Handled above.
        _ => unreachable!("{kind} hits members"),
    }
    Ok(rec)
}

pub(super) async fn run(cfg: &RunConfig) -> io::Result<Report> {
    let servers = Servers::start(
        &cfg.backend,
        cfg.ttl,
        cfg.faults.contains(&FaultKind::Failover),
    )?;
    let root = format!("fc{}x{}", cfg.seed, std::process::id());
    // With a replica to fail over to, the run's own connection goes through proxies
    // too, switched with the holders' (it must follow the master).
    let front = if servers.has_replica() {
        proxies_for(&servers.endpoints()).await?
    } else {
        Vec::new()
    };
    let direct = if front.is_empty() {
        servers.url(&servers.endpoints(), &root, cfg.ttl)
    } else {
        let hosts: Vec<String> = front.iter().map(|p| p.addr().to_string()).collect();
        servers.url(&hosts, &root, cfg.ttl)
    };
    let admin = fencelock::connect(&direct)
        .await
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut ctx = Ctx {
        cfg,
        servers,
        register: Register::start_with(cfg.register).await?,
        root: root.clone(),
        next_id: 0,
        front,
    };
    let (truth, poller) =
        truth::spawn_poller(admin.clone(), NAME.into(), Duration::from_millis(50));
    let (stop_observers, observers) = spawn_observers(cfg, &direct).await?;
    let mut slots = Vec::new();
    for s in 0..cfg.holders.max(1) {
        let proxies = proxies_for(&ctx.servers.endpoints()).await?;
        slots.push(ctx.spawn(s as u32, proxies).await?);
    }
    let started = std::time::Instant::now();
    let mut schedule = Schedule::new(cfg.seed, cfg.faults.clone());
    let mut faults = Vec::new();
    sleep(cfg.ttl * 3).await;
    while started.elapsed() < Duration::from_secs(cfg.seconds)
        || schedule.min_count() < cfg.min_per_fault
    {
        let Some(kind) = schedule.next_fault() else {
            sleep(Duration::from_secs(cfg.seconds)).await;
            break;
        };
        let mut rng =
            <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(schedule.rng().gen());
        faults.push(inject(&mut ctx, &mut slots, &admin, kind, &mut rng).await?);
        sleep(Duration::from_millis(200 + rng.gen_range(0..300))).await;
    }
    let duration_s = started.elapsed().as_secs_f64();
    for s in &slots {
        s.set(Mode::Pass);
        s.signal(libc::SIGCONT);
        s.signal(libc::SIGTERM);
    }
    let mut panics = 0;
    for s in &mut slots {
        if tokio::time::timeout(cfg.ttl * 3 + Duration::from_secs(2), s.child.wait())
            .await
            .is_err()
        {
            s.signal(libc::SIGKILL);
            let _ = s.child.wait().await;
        }
    }
    let _ = stop_observers.send(true);
    for (client, task) in observers {
        let _ = task.await;
        let _ = client.close().await;
    }
    sleep(cfg.ttl + Duration::from_secs(2)).await;
    poller.abort();
    let leaks = ctx.servers.leaks(&admin, &root).await;
    for entry in std::fs::read_dir(&cfg.out_dir)?.flatten() {
        if entry.path().extension().is_some_and(|e| e == "stderr") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            panics += text.matches("panicked at").count() as u32;
        }
    }
    let info = RunInfo {
        backend: cfg.backend.clone(),
        server_version: ctx.servers.version(),
        cluster_size: ctx.servers.size(),
        requested_ttl_ms: cfg.ttl.as_millis() as u64,
        granted_ttl_ms: 0,
        seed: cfg.seed,
        duration_s,
        holders: cfg.holders,
        token_mode: token_mode(cfg).into(),
        mode: cfg.mode.as_str().into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), admin.close()).await;
    let collected = Collected {
        info,
        register: ctx.register.log(),
        faults,
        truth: truth::snapshot(&truth),
        truth_exact: false,
        leaks,
        panics,
    };
    drop(slots);
    drop(ctx);
    finish(cfg, collected)
}

type Observers = Vec<(LockClient, tokio::task::JoinHandle<io::Result<()>>)>;

/// In election mode, the followers: each its own direct connection (no fault proxy),
/// logging every leader it is shown until told to stop.
async fn spawn_observers(
    cfg: &RunConfig,
    direct: &str,
) -> io::Result<(tokio::sync::watch::Sender<bool>, Observers)> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut out = Vec::new();
    for k in 0..if cfg.election { super::OBSERVERS } else { 0 } {
        let id = super::observer_id(k);
        let file =
            crate::history::JsonlWriter::create(&cfg.out_dir.join(format!("holder-{id}.jsonl")))?;
        let client = fencelock::connect(direct)
            .await
            .map_err(|e| io::Error::other(e.to_string()))?;
        let rec = crate::history::Recorder::new(file, id, NAME);
        let task = tokio::spawn(crate::holder::observe(
            client.clone(),
            NAME,
            rec,
            stopped.clone(),
        ));
        out.push((client, task));
    }
    Ok((stop, out))
}
