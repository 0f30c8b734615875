//! `fencelock`: run a command under a distributed lock (like `flock(1)`, `etcdctl lock`
//! or `consul lock`, on every fencelock backend), hand it the fencing token, and kill it
//! before the lock can pass on; inspect locks.
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod child;
mod exit;
mod inspect;
mod run;

use clap::{Parser, Subcommand};
use exit::Exit;
use std::process::ExitCode;

const AFTER_HELP: &str = "\
Exit codes:
  CMD's own    run: the command ran under the lock and exited with this status
  1            run: the lock was not obtained with -n or -w (change with -E)
  2            usage: bad flags, lock name, URL or TTL
  69           the backend could not be reached (also while waiting with -w)
  70           internal error
  75           run: the lock became suspect or lost: while waiting (the command never
               ran), or while the command ran (it was terminated: SIGTERM, then SIGKILL
               after --kill-after or at the lease's deadline if suspect; SIGKILL at
               once if certainly lost)
  126, 127     run: the command cannot be executed / was not found (nothing ran)

Signals: SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to fencelock are forwarded to the
command's process group; the lock is released after the command exits. If fencelock
itself is SIGKILLed, the command keeps running and the lock frees when its lease
expires: the fencing token in $FENCELOCK_TOKEN is what keeps the resource safe.";

/// Run commands under distributed locks with fencing tokens.
#[derive(Debug, Parser)]
#[command(name = "fencelock", version, after_help = AFTER_HELP)]
struct Cli {
    /// Lock service URL: `memory://`, `etcd://host:port[,...][/prefix]`, `zk://host:port[,...][/chroot]`.
    #[arg(long, global = true, env = "FENCELOCK_BACKEND", hide_env_values = true)]
    backend: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Acquire NAME, run CMD with FENCELOCK_TOKEN/NAME/BACKEND set, release, exit with CMD's status.
    Run(run::RunArgs),
    /// Show whether NAME is held, by whom, with which token, for how long, and the queue length.
    Status(inspect::StatusArgs),
    /// List the held locks whose names start with PREFIX.
    List(inspect::ListArgs),
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
            return fail(Exit::new(
                exit::SOFTWARE,
                format!("cannot start runtime: {e}"),
            ))
        }
    };
    let result = runtime.block_on(async {
        let backend = cli.backend.ok_or_else(|| {
            Exit::usage("no backend: pass --backend URL or set FENCELOCK_BACKEND")
        })?;
        match cli.command {
            Command::Run(args) => run::run(&backend, args).await,
            Command::Status(args) => inspect::status(&backend, args).await,
            Command::List(args) => inspect::list(&backend, args).await,
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(exit) => fail(exit),
    }
}

fn fail(exit: Exit) -> ExitCode {
    eprintln!("fencelock: {}", exit.message);
    ExitCode::from(exit.code)
}
