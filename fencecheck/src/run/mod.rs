//! Runners: set up a backend, the register and the holders, drive the nemesis, stop,
//! check for leaks, and judge. Memory holders are tasks in this process; etcd and
//! ZooKeeper holders are `fencecheck holder` processes behind per-holder fault proxies.

mod holder_proc;
mod memory;
#[cfg(any(feature = "etcd", feature = "zk", feature = "redis"))]
mod procs;
#[cfg(any(feature = "etcd", feature = "zk", feature = "redis"))]
mod servers;

use crate::{
    checker::{self, Input},
    history::{read_jsonl, Event, JsonlWriter},
    holder::{Mode, TokenMode},
    nemesis::{FaultKind, FaultRecord},
    register::{RegEntry, RegisterKind},
    report::{Report, RunInfo},
    truth::Snapshot,
};
use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};

pub use holder_proc::{holder_main, HolderArgs};

/// The backends of the CI size, each compiled in.
pub fn ci_backends() -> Vec<String> {
    let mut out = vec!["memory".to_owned()];
    if cfg!(feature = "etcd") {
        out.extend(["etcd", "etcd3", "etcd3-net"].map(str::to_owned));
    }
    if cfg!(feature = "zk") {
        out.extend(["zk", "zk3", "zk3-net"].map(str::to_owned));
    }
    if cfg!(feature = "redis") {
        out.extend(["redis", "redlock"].map(str::to_owned));
    }
    out
}

/// The CI size of `backend`: every supported fault at least 3 times, 4 holders, a
/// short minimum duration (the faults set the length).
pub fn ci_config(backend: &str, seed: u64) -> RunConfig {
    let mut cfg = RunConfig::new(backend, seed);
    cfg.seconds = 10;
    cfg.min_per_fault = 3;
    cfg
}

/// The CI size of `backend` in `mode` (rw or semaphore): about a minute, the
/// backend's holder faults once each.
pub fn ci_mode_config(backend: &str, mode: Mode, seed: u64) -> RunConfig {
    let mut cfg = RunConfig::new(backend, seed);
    cfg.mode = mode;
    cfg.faults = holder_faults(backend);
    cfg.seconds = 10;
    // Two of each: a pause bites the unfenced control only when its victim is a
    // writer that holds, and one pause in a short run missed now and then (the
    // verdict was then inconclusive, and the CI size failed).
    cfg.min_per_fault = 2;
    cfg
}

/// The faults of `backend` that hit one holder (no server-side revocation, no
/// member fault): the ones `rw` and `semaphore` runs inject by default.
pub fn holder_faults(backend: &str) -> Vec<FaultKind> {
    crate::nemesis::supported(backend)
        .into_iter()
        .filter(|f| !f.is_forced_revocation() && !f.hits_members())
        .collect()
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// `memory`, `etcd`, `etcd3`, `zk` or `zk3`.
    pub backend: String,
    /// Minimum workload duration.
    pub seconds: u64,
    /// The seed of the schedule and the holders.
    pub seed: u64,
    /// Concurrent holders.
    pub holders: usize,
    /// The faults to inject, round-robin in seeded order (empty: none).
    pub faults: Vec<FaultKind>,
    /// Keep going until every fault ran at least this often.
    pub min_per_fault: u32,
    /// The TTL (session timeout) requested.
    pub ttl: Duration,
    /// Read-modify-writes per cycle.
    pub writes: u32,
    /// The token holders send (`real` unless testing the checker).
    pub token_mode: TokenMode,
    /// Where the fenced register keeps its cells (memory, or a PostgreSQL table).
    pub register: RegisterKind,
    /// What the holders lock (mutex, rw, semaphore).
    pub mode: Mode,
    /// The semaphore's limit (semaphore mode).
    pub limit: u32,
    /// Where histories go.
    pub out_dir: PathBuf,
    /// Keep the histories even when the run passes.
    pub keep: bool,
    /// The `fencecheck` binary, for holder processes.
    pub holder_bin: Option<PathBuf>,
    /// Election mode: holders campaign (a fresh lease per term, the term as token)
    /// and [`OBSERVERS`] followers log every leader they are shown.
    pub election: bool,
}

/// How many observers follow the election in election mode.
pub const OBSERVERS: u32 = 2;

/// The holder id of observer `k` (far above any holder's).
pub(crate) fn observer_id(k: u32) -> u32 {
    1_000_000 + k
}

/// The CI size of the election mode on `backend`: every supported fault once.
pub fn ci_election_config(backend: &str, seed: u64) -> RunConfig {
    let mut cfg = RunConfig::new(backend, seed);
    cfg.seconds = 10;
    cfg.min_per_fault = 1;
    cfg.election = true;
    cfg
}

impl RunConfig {
    /// A default configuration for `backend`: TTL 1 s on memory, 2 s on servers, 3 s
    /// on servers in network namespaces (their faults keep a quorum, and the TTL
    /// must leave room for an election and a reconnect).
    pub fn new(backend: &str, seed: u64) -> RunConfig {
        let ttl = match backend {
            "memory" => 1000,
            b if b.ends_with("-net") => 3000,
            _ => 2000,
        };
        RunConfig {
            backend: backend.to_owned(),
            seconds: 30,
            seed,
            holders: 4,
            faults: crate::nemesis::supported(backend),
            min_per_fault: 1,
            ttl: Duration::from_millis(ttl),
            writes: 3,
            token_mode: TokenMode::Real,
            register: RegisterKind::Memory,
            mode: Mode::Mutex,
            limit: 2,
            out_dir: std::env::temp_dir().join(format!(
                "fencecheck-{backend}-{seed}-{}",
                std::process::id()
            )),
            keep: false,
            holder_bin: None,
            election: false,
        }
    }
}

/// Runs one configuration and returns its report (also written as `report.json` into
/// the histories directory, which is kept on anything but a pass or with `keep`).
///
/// # Errors
///
/// Set-up failures (no server binary, no port, unwritable directory).
pub async fn run(cfg: &RunConfig) -> io::Result<Report> {
    std::fs::create_dir_all(&cfg.out_dir)?;
    let unsupported: Vec<_> = cfg
        .faults
        .iter()
        .filter(|f| !crate::nemesis::supported(&cfg.backend).contains(f))
        .collect();
    if cfg.mode != Mode::Mutex && cfg.register != RegisterKind::Memory {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the rw and semaphore modes need the memory register",
        ));
    }
    if cfg.mode != Mode::Mutex && cfg.election {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--election runs the mutex mode only",
        ));
    }
    if cfg.mode == Mode::Semaphore && cfg.limit == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a semaphore needs a limit of at least 1",
        ));
    }
    if !unsupported.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "backend {} does not support faults {unsupported:?}",
                cfg.backend
            ),
        ));
    }
    match cfg.backend.as_str() {
        "memory" => memory::run(cfg).await,
        #[cfg(any(feature = "etcd", feature = "zk", feature = "redis"))]
        "etcd" | "etcd3" | "etcd3-net" | "zk" | "zk3" | "zk3-net" | "redis" | "redlock" => {
            procs::run(cfg).await
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown or disabled backend {other:?}"),
        )),
    }
}

/// What a runner collected, besides the holder history files in `out_dir`.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub(crate) info: RunInfo,
    pub(crate) register: Vec<RegEntry>,
    pub(crate) faults: Vec<FaultRecord>,
    pub(crate) truth: Vec<Snapshot>,
    pub(crate) truth_exact: bool,
    pub(crate) leaks: Vec<String>,
    pub(crate) panics: u32,
}

/// Reads every `holder-*.jsonl` in `dir`.
fn read_histories(dir: &Path) -> io::Result<Vec<Event>> {
    let mut events = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("holder-") && name.ends_with(".jsonl") {
            events.extend(read_jsonl::<Event>(&path)?);
        }
    }
    events.sort_by_key(|e| e.t);
    Ok(events)
}

fn write_all<T: serde::Serialize>(path: &Path, items: &[T]) -> io::Result<()> {
    let w = JsonlWriter::create(path)?;
    for item in items {
        w.write(item);
    }
    Ok(())
}

/// Checks, reports, writes the artefacts and removes them on a pass.
pub(crate) fn finish(cfg: &RunConfig, mut c: Collected) -> io::Result<Report> {
    let events = read_histories(&cfg.out_dir)?;
    let granted_ms = events
        .iter()
        .filter_map(|e| match e.op {
            crate::history::Op::Lease { granted_ttl_ms, .. } => Some(granted_ttl_ms),
            _ => None,
        })
        .max()
        .unwrap_or(cfg.ttl.as_millis() as u64);
    c.info.granted_ttl_ms = granted_ms;
    c.info.mode = cfg.mode.as_str().to_owned();
    if cfg.mode != Mode::Mutex {
        // The server's view names one owner per lock; shared holders have several.
        c.truth.clear();
        c.truth_exact = false;
    }
    let input = Input {
        limit: (cfg.mode == Mode::Semaphore).then_some(cfg.limit as usize),
        events,
        register: c.register,
        faults: c.faults,
        truth: c.truth,
        truth_exact: c.truth_exact,
        // The memory store stamps its events just after the change (its observers run
        // after its lock is released); server reads may be slightly stale.
        truth_tolerance_ns: if c.truth_exact {
            5_000_000
        } else {
            100_000_000
        },
        leaks: c.leaks,
        panics: c.panics,
        granted_ttl_ns: granted_ms * 1_000_000,
        // Redlock has no queue: its release hand-off is reported, not enforced.
        unqueued: !crate::nemesis::queued(&cfg.backend),
        // Redis runs without persistence: a restart loses every entry.
        restart_loses_data: matches!(cfg.backend.as_str(), "redis" | "redlock"),
    };
    let outcome = checker::check(&input);
    let mut report = Report::new(c.info, outcome, &input);
    write_all(&cfg.out_dir.join("register.jsonl"), &input.register)?;
    write_all(&cfg.out_dir.join("faults.jsonl"), &input.faults)?;
    write_all(&cfg.out_dir.join("truth.jsonl"), &input.truth)?;
    if report.passed() && !cfg.keep {
        let _ = std::fs::remove_dir_all(&cfg.out_dir);
    } else {
        report.histories = Some(cfg.out_dir.display().to_string());
        let json = serde_json::to_string_pretty(&report).map_err(io::Error::other)?;
        std::fs::write(cfg.out_dir.join("report.json"), json)?;
    }
    Ok(report)
}

/// A holder's slot index and its token.
pub(crate) type SlotToken = (usize, u64);

/// The fault victim among `info`'s holders: the first holder with a write or
/// exclusive claim whose id `slot_of` knows (its slot index and token), else the
/// first reader it knows (second). A paused reader writes nothing, so a pause
/// bites (the unfenced control loses an update) only on a writer.
pub(crate) fn pick_holder(
    info: &fencelock::LockInfo,
    slot_of: impl Fn(u32) -> Option<usize>,
) -> (Option<SlotToken>, Option<SlotToken>) {
    let known = |h: &&fencelock::HolderInfo| {
        holder_id(h.holder.as_deref())
            .and_then(&slot_of)
            .map(|i| (i, h.token.get()))
    };
    let reads = |h: &&fencelock::HolderInfo| h.claim == fencelock::backend::Claim::Read;
    let writer = info
        .holders
        .iter()
        .filter(|h| !reads(h))
        .find_map(|h| known(&h));
    let reader = info.holders.iter().filter(reads).find_map(|h| known(&h));
    (writer, reader)
}

/// The holder id in a lock's holder text (`fencecheck-ID`).
pub(crate) fn holder_id(text: Option<&str>) -> Option<u32> {
    text?.strip_prefix("fencecheck-")?.parse().ok()
}
