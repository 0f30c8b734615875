//! `fencelock`: run a command under a distributed lock (like `flock(1)`, `etcdctl lock`
//! or `consul lock`, on every fencelock backend), hand it the fencing token, and kill it
//! before the lock can pass on; inspect locks.
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]

mod child;
mod elect;
mod exit;
mod inspect;
mod run;

use clap::{Parser, Subcommand};
use exit::Exit;
use std::process::ExitCode;

const AFTER_HELP: &str = "\
Exit codes:
  CMD's own    run: the command ran under the lock and exited with this status
               (elect: while leader)
  1            run: the lock was not obtained with -n or -w (change with -E);
               elect: leadership not obtained within -w
  2            usage: bad flags, lock name, URL or TTL
  69           the backend could not be reached (also while waiting with -w)
  70           internal error
  77           the backend refused the credentials, a certificate or the user's rights
  75           run, elect: the lock (leadership) became suspect or lost: while waiting
               (the command never ran), or while the command ran (it was terminated:
               SIGTERM, then SIGKILL after --kill-after or at the lease's deadline if
               suspect; SIGKILL at once if certainly lost)
  126, 127     run, elect: the command cannot be executed / was not found (nothing ran)

Signals: SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to fencelock are forwarded to the
command's process group; the lock is released after the command exits. If fencelock
itself is SIGKILLed, the command keeps running and the lock frees when its lease
expires: the fencing token in $FENCELOCK_TOKEN is what keeps the resource safe.

Credentials: rather than in the URL (shell history, process lists), give the user in
the URL (etcd://app@host:2379/locks) and the password in $FENCELOCK_PASSWORD_FILE (a
file holding it), $FENCELOCK_PASSWORD, or the URL parameter password_file=PATH. The
command run sees $FENCELOCK_BACKEND without the password, and no $FENCELOCK_PASSWORD.";

/// Run commands under distributed locks with fencing tokens.
#[derive(Debug, Parser)]
#[command(name = "fencelock", version, after_help = AFTER_HELP)]
struct Cli {
    /// Lock service URL: `memory://`, `etcd://host:port[,...][/prefix]`, `zk://host:port[,...][/chroot]`, `redis://host:port[/db][?prefix=…]`.
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
    /// Campaign to lead NAME, run CMD while leader (FENCELOCK_TERM = FENCELOCK_TOKEN), resign; as `run` otherwise.
    Elect(elect::ElectArgs),
    /// Print NAME's leader (term and value) now and on each change, one line each, until interrupted.
    Observe(elect::ObserveArgs),
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
        let backend = with_env_password(backend)?;
        match cli.command {
            Command::Run(args) => run::run(&backend, args).await,
            Command::Status(args) => inspect::status(&backend, args).await,
            Command::List(args) => inspect::list(&backend, args).await,
            Command::Elect(args) => elect::elect(&backend, args).await,
            Command::Observe(args) => elect::observe(&backend, args).await,
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(exit) => fail(exit),
    }
}

/// The file naming the password of the URL's user.
pub(crate) const PASSWORD_FILE_ENV: &str = "FENCELOCK_PASSWORD_FILE";
/// The password of the URL's user (never handed on to the command run).
pub(crate) const PASSWORD_ENV: &str = "FENCELOCK_PASSWORD";

/// `backend` with the password from `$FENCELOCK_PASSWORD_FILE` or
/// `$FENCELOCK_PASSWORD`, if set (the file wins).
fn with_env_password(backend: String) -> Result<String, Exit> {
    let password = match (
        std::env::var(PASSWORD_FILE_ENV)
            .ok()
            .filter(|p| !p.is_empty()),
        std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()),
    ) {
        (Some(file), _) => fencelock::url::read_password_file(&file)?,
        (None, Some(password)) => password,
        (None, None) => return Ok(backend),
    };
    Ok(fencelock::url::with_password(&backend, &password)?)
}

fn fail(exit: Exit) -> ExitCode {
    eprintln!("fencelock: {}", exit.message);
    ExitCode::from(exit.code)
}
