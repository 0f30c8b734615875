//! `fencecheck`: run the safety harness (`run`, `ci`) or be one of its holder
//! processes (`holder`).

use clap::{Parser, Subcommand};
use fencecheck::{
    holder::{Mode, TokenMode},
    nemesis::{supported, FaultKind},
    register::RegisterKind,
    run::{run, RunConfig},
};
use std::{path::PathBuf, process::ExitCode, time::Duration};

#[derive(Parser, Debug)]
#[command(
    name = "fencecheck",
    about = "Jepsen-style safety harness for fencelock"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one backend under faults and judge it.
    Run(RunArgs),
    /// The CI size: every backend, every fault type at least 3 times.
    Ci {
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Backends (default: all).
        #[arg(long, value_delimiter = ',')]
        backends: Vec<String>,
    },
    /// One holder process (started by `run`).
    Holder(fencecheck::run::HolderArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// memory, etcd, etcd3, zk, zk3, redis (one server; with the failover fault a
    /// master and its replica) or redlock (three masters, the first with a replica
    /// for the failover fault); etcd3-net and zk3-net run
    /// the 3 members in network namespaces of their own (root only) for the member
    /// faults.
    #[arg(long, default_value = "memory")]
    backend: String,
    /// Minimum duration of the workload.
    #[arg(long, env = "FENCECHECK_SECONDS", default_value_t = 30)]
    seconds: u64,
    /// Seed of the schedule and the holders.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Concurrent holders.
    #[arg(long, default_value_t = 4)]
    holders: usize,
    /// Faults, comma separated: `all` (every one the backend supports), `none`, or
    /// names (kill, pause, partition, partition-short, reset, latency, leader-kill,
    /// leader-pause, follower-kill, revoke, delete, expire, follower-pause,
    /// follower-isolate, leader-partition, link-flap, slow-link, cluster-restart,
    /// failover). redis: kill, pause, partition, partition-short, delete, leader-kill
    /// (server killed, restarted empty), leader-pause, failover (to a replica that
    /// missed the last 1.5 x TTL of writes); redlock: kill, pause, partition, delete,
    /// failover (of the first master).
    #[arg(long, default_value = "all", value_delimiter = ',')]
    faults: Vec<String>,
    /// Keep going until every fault type ran this often.
    #[arg(long, default_value_t = 1)]
    min_per_fault: u32,
    /// TTL / session timeout in ms (default: 1000 memory, 2000 servers, 3000 servers
    /// in namespaces).
    #[arg(long)]
    ttl_ms: Option<u64>,
    /// Read-modify-writes per cycle.
    #[arg(long, default_value_t = 3)]
    writes: u32,
    /// **Test only**: the token holders send (constant and lease are broken on purpose).
    #[arg(long, value_enum, default_value = "real")]
    token_mode: TokenMode,
    /// Where the fenced register keeps its cells: `memory`, or `postgres` (a table in a
    /// PostgreSQL server started in a temp dir: the database refuses stale tokens).
    #[arg(long, value_enum, default_value = "memory")]
    register: RegisterKind,
    /// What the holders lock: `mutex`, `rw` (70 % reader cycles) or `semaphore`
    /// (`--limit` permits). rw and semaphore inject the holder faults by default.
    #[arg(long, value_enum, default_value = "mutex")]
    mode: Mode,
    /// The semaphore's limit.
    #[arg(long, default_value_t = 2)]
    limit: u32,
    /// Histories directory (default: a temp dir, removed on a pass).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep histories even on a pass.
    #[arg(long)]
    keep: bool,
    /// Print the JSON report instead of the table.
    #[arg(long)]
    json: bool,
    /// Election mode: holders campaign for leadership and write with their term;
    /// followers observe (S7: an observer saw terms out of order).
    #[arg(long)]
    election: bool,
}

fn parse_faults(backend: &str, names: &[String]) -> Result<Vec<FaultKind>, String> {
    match names {
        [] => Ok(supported(backend)),
        [one] if one == "all" => Ok(supported(backend)),
        [one] if one == "none" => Ok(Vec::new()),
        names => names.iter().map(|n| n.parse()).collect(),
    }
}

fn config(args: &RunArgs) -> Result<RunConfig, String> {
    let mut cfg = RunConfig::new(&args.backend, args.seed);
    cfg.seconds = args.seconds;
    cfg.holders = args.holders;
    cfg.faults = parse_faults(&args.backend, &args.faults)?;
    cfg.mode = args.mode;
    cfg.limit = args.limit;
    if args.mode != Mode::Mutex && matches!(args.faults.as_slice(), [one] if one == "all") {
        cfg.faults = fencecheck::run::holder_faults(&args.backend);
    }
    cfg.min_per_fault = args.min_per_fault;
    if let Some(ms) = args.ttl_ms {
        cfg.ttl = Duration::from_millis(ms);
    }
    cfg.writes = args.writes;
    cfg.token_mode = args.token_mode;
    cfg.register = args.register;
    if let Some(out) = &args.out {
        cfg.out_dir = out.clone();
    }
    cfg.keep = args.keep;
    cfg.election = args.election;
    cfg.holder_bin = std::env::current_exe().ok();
    Ok(cfg)
}

async fn run_one(cfg: &RunConfig, json: bool) -> bool {
    if cfg.register != RegisterKind::Memory && !json {
        println!("register: {:?} (fenced by the database)", cfg.register);
    }
    match run(cfg).await {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                println!("{}", report.table());
            }
            report.passed()
        }
        Err(e) => {
            eprintln!("fencecheck: {} run failed to set up: {e}", cfg.backend);
            false
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fencecheck: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ok = runtime.block_on(async {
        match cli.command {
            Command::Holder(args) => fencecheck::run::holder_main(args).await,
            Command::Run(args) => match config(&args) {
                Ok(cfg) => run_one(&cfg, args.json).await,
                Err(e) => {
                    eprintln!("fencecheck: {e}");
                    false
                }
            },
            Command::Ci { seed, backends } => {
                let backends = if backends.is_empty() {
                    fencecheck::run::ci_backends()
                } else {
                    backends
                };
                let mut ok = true;
                for backend in backends {
                    let mut cfg = fencecheck::run::ci_config(&backend, seed);
                    cfg.holder_bin = std::env::current_exe().ok();
                    ok &= run_one(&cfg, false).await;
                }
                ok
            }
        }
    });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
