//! The CI size of fencecheck: every backend (memory, etcd single + 3-member,
//! ZooKeeper standalone + 3-server, and 3-member etcd and ZooKeeper with each member
//! in a network namespace of its own for the member faults: follower pause and
//! isolation, leader cut off from its majority, a flapping link, a slow link, a
//! whole-cluster restart), every supported fault type at least 3 times.
//! Fails on any safety violation, a spurious loss (a lock reported lost with no
//! fault to explain it; faults that keep a quorum explain none), an inconclusive run
//! (the unfenced control lost no update under pauses) or a recovery above its
//! enforced bound. A deliberately broken variant (holders send a constant token)
//! must be caught. The read-write lock (`rw`) and the semaphore run on memory, etcd
//! and ZooKeeper (single node) with the holder faults once each.
//!
//! `FENCECHECK_SECONDS` raises the minimum duration of each run (soak size).
//! Without etcd or ZooKeeper installed those runs are skipped, except under `CI=true`.

use fencecheck::{
    holder::{Mode, TokenMode},
    run::{ci_config, ci_election_config, ci_mode_config, run, RunConfig},
};
use fencelock_integration_tests::{
    async_trial_within,
    servers::{require, EtcdCluster, Fabric, RedisServer, ZkEnsemble},
};
use libtest_mimic::{Arguments, Trial};
use std::{future::Future, time::Duration};

type TestResult = Result<(), String>;

/// A trial failing after the run's own length plus ten minutes (the shared
/// `async_trial` stops at 120 s, too short for a soak).
fn trial<Fut>(name: &str, case: impl FnOnce() -> Fut + Send + 'static) -> Trial
where
    Fut: Future<Output = TestResult>,
{
    let limit = Duration::from_secs(600 + config("memory").seconds * 2);
    async_trial_within(name, limit, case)
}

fn config(backend: &str) -> RunConfig {
    let mut cfg = ci_config(backend, 1);
    if let Some(secs) = std::env::var("FENCECHECK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        cfg.seconds = secs;
    }
    cfg.holder_bin = Some(env!("CARGO_BIN_EXE_fencecheck").into());
    cfg
}

fn available(backend: &str) -> bool {
    if backend.ends_with("-net") && !require(Fabric::available(), "root (network namespaces)") {
        return false;
    }
    match backend {
        "memory" => true,
        "redis" | "redlock" => require(RedisServer::available(), "redis-server"),
        b if b.starts_with("etcd") => require(EtcdCluster::available(), "etcd"),
        _ => require(ZkEnsemble::available(), "ZooKeeper"),
    }
}

async fn judged(cfg: RunConfig) -> TestResult {
    let report = run(&cfg).await.map_err(|e| e.to_string())?;
    println!("{}", report.table());
    if report.passed() {
        Ok(())
    } else {
        Err(format!(
            "{} run {}: {}",
            cfg.backend,
            report.verdict,
            report.reasons.join("; ")
        ))
    }
}

async fn broken_is_caught() -> TestResult {
    let mut cfg = config("memory");
    cfg.seconds = 8;
    cfg.min_per_fault = 1;
    cfg.token_mode = TokenMode::Constant;
    let report = run(&cfg).await.map_err(|e| e.to_string())?;
    let s3 = report.outcome.safety.get("S3").copied().unwrap_or(0);
    let s5 = report.outcome.safety.get("S5").copied().unwrap_or(0);
    if report.verdict == "fail" && s3 > 0 && s5 > 0 {
        if let Some(dir) = &report.histories {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(())
    } else {
        println!("{}", report.table());
        Err(format!(
            "the checker missed the constant-token holders: S3={s3} S5={s5} verdict {}",
            report.verdict
        ))
    }
}

/// The same broken holders in rw mode: stale accesses must be accepted and caught.
async fn broken_rw_is_caught() -> TestResult {
    let mut cfg = ci_mode_config("memory", Mode::Rw, 1);
    cfg.seconds = 8;
    cfg.token_mode = TokenMode::Constant;
    let report = run(&cfg).await.map_err(|e| e.to_string())?;
    let stale = report.outcome.stale_accepted;
    if report.verdict == "fail" && stale > 0 {
        if let Some(dir) = &report.histories {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(())
    } else {
        println!("{}", report.table());
        Err(format!(
            "the checker missed the constant-token rw holders: {stale} stale accepted, verdict {}",
            report.verdict
        ))
    }
}

fn main() {
    let mut trials = vec![
        trial("checker_catches_constant_token_holders", broken_is_caught),
        trial(
            "checker_catches_constant_token_holders_rw",
            broken_rw_is_caught,
        ),
    ];
    for backend in [
        "memory",
        "etcd",
        "etcd3",
        "etcd3-net",
        "zk",
        "zk3",
        "zk3-net",
        "redis",
        "redlock",
    ] {
        let name = format!("ci_size_{backend}");
        trials.push(trial(&name, move || async move {
            if !available(backend) {
                return Ok(());
            }
            judged(config(backend)).await
        }));
    }
    // The read-write lock and the semaphore: single node, holder faults, about a
    // minute each.
    for backend in ["memory", "etcd", "zk"] {
        for mode in [Mode::Rw, Mode::Semaphore] {
            let name = format!("ci_size_{backend}_{}", mode.as_str());
            trials.push(trial(&name, move || async move {
                if !available(backend) {
                    return Ok(());
                }
                // FENCECHECK_SECONDS (soak size) applies here too.
                let base = config(backend);
                let mut cfg = ci_mode_config(backend, mode, 1);
                cfg.seconds = base.seconds;
                cfg.holder_bin = base.holder_bin;
                judged(cfg).await
            }));
        }
    }
    // Election mode (issue 14): leaders write with their term, followers observe.
    for backend in ["memory", "etcd", "zk"] {
        let name = format!("ci_size_election_{backend}");
        trials.push(trial(&name, move || async move {
            if !available(backend) {
                return Ok(());
            }
            let mut cfg = ci_election_config(backend, 1);
            let base = config(backend);
            (cfg.seconds, cfg.holder_bin) = (base.seconds, base.holder_bin);
            let observers = u64::from(fencecheck::run::OBSERVERS);
            let report = run(&cfg).await.map_err(|e| e.to_string())?;
            println!("{}", report.table());
            let seen = report.outcome.observed_changes as u64;
            if !report.passed() {
                return Err(format!(
                    "{backend} election run {}: {}",
                    report.verdict,
                    report.reasons.join("; ")
                ));
            }
            // Each observer sees at least the first leader and a later one.
            if seen < 2 * observers {
                return Err(format!(
                    "the observers were shown only {seen} leader changes"
                ));
            }
            Ok(())
        }));
    }
    let mut args = Arguments::from_args();
    // One run at a time: runs measure recovery times and share two cores.
    args.test_threads = Some(1);
    libtest_mimic::run(&args, trials).exit();
}
