//! `fencelock run`: acquire, run the command, watch the lock, release.

use crate::{
    child::{exit_code, Group},
    exit::{Exit, COMMAND_NOT_EXECUTABLE, COMMAND_NOT_FOUND, LOCK_LOST, UNAVAILABLE},
};
use clap::Args;
use fencelock::{ErrorKind, LockClient, LockGuard, LockName, LockState, StateWatch};
use std::time::Duration;
use tokio::{
    signal::unix::{signal, Signal, SignalKind},
    time::Instant,
};

/// How long closing the connection may take before fencelock exits anyway.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Never wait: if the lock is held, exit with the -E code at once.
    #[arg(short = 'n', long = "nonblock", conflicts_with = "wait")]
    nonblock: bool,
    /// Wait at most SECS for the lock, then exit with the -E code.
    #[arg(short = 'w', long = "wait", value_name = "SECS")]
    wait: Option<f64>,
    /// Exit code when the lock is not obtained with -n or -w.
    #[arg(
        short = 'E',
        long = "conflict-exit-code",
        value_name = "CODE",
        default_value_t = 1
    )]
    conflict_exit_code: u8,
    /// Lease TTL in seconds (default: the backend's, e.g. ?ttl= in the URL).
    #[arg(long, value_name = "SECS")]
    ttl: Option<f64>,
    /// On lock loss, SIGKILL the command this many seconds after SIGTERM (default ttl/4;
    /// at most ttl/2; never later than the lease's local deadline).
    #[arg(long, value_name = "SECS")]
    kill_after: Option<f64>,
    /// Text stored with the lock so others see who holds it [default: hostname:pid].
    #[arg(long, value_name = "TEXT")]
    holder: Option<String>,
    /// Take the read side of the read-write lock NAME: shares with other readers,
    /// excluded by writers and by plain (exclusive) runs.
    #[arg(long, conflicts_with_all = ["write", "limit"])]
    read: bool,
    /// Take the write side of the read-write lock NAME: the same as the default
    /// exclusive lock, named for symmetry with --read.
    #[arg(long, conflicts_with = "limit")]
    write: bool,
    /// Take one of N permits of the semaphore NAME (like `consul lock -n N`); the
    /// command sees its permit's slot in $FENCELOCK_SLOT and fences per-slot state on
    /// NAME#SLOT with $FENCELOCK_TOKEN.
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    /// The lock name.
    name: String,
    /// The command to run, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

pub(crate) fn seconds(flag: &str, value: f64) -> Result<Duration, Exit> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Exit::usage(format!(
                "{flag} must be a positive number of seconds, not {value}"
            ))
        })
}

/// Forwarded signals: interrupt, terminate, hang-up, quit.
pub(crate) struct Signals(Vec<(libc::c_int, Signal)>);

impl Signals {
    pub(crate) fn new() -> std::io::Result<Self> {
        let kinds = [
            (libc::SIGINT, SignalKind::interrupt()),
            (libc::SIGTERM, SignalKind::terminate()),
            (libc::SIGHUP, SignalKind::hangup()),
            (libc::SIGQUIT, SignalKind::quit()),
        ];
        let mut out = Vec::new();
        for (num, kind) in kinds {
            out.push((num, signal(kind)?));
        }
        Ok(Signals(out))
    }

    /// The next signal received.
    pub(crate) async fn recv(&mut self) -> libc::c_int {
        let waits = self.0.iter_mut().map(|(num, s)| {
            let num = *num;
            Box::pin(async move {
                s.recv().await;
                num
            })
        });
        futures::future::select_all(waits).await.0
    }
}

/// Checks `--ttl` and `--kill-after` (as seconds), warns about `memory://`, and
/// connects: the client, the TTL and the kill-after that `run` and `elect` use.
pub(crate) async fn connect_for_command(
    backend: &str,
    ttl: Option<f64>,
    kill_after: Option<f64>,
) -> Result<(LockClient, Duration, Duration), Exit> {
    let ttl = ttl.map(|v| seconds("--ttl", v)).transpose()?;
    let kill_after = kill_after.map(|v| seconds("--kill-after", v)).transpose()?;
    if let Some(ttl) = ttl {
        fencelock::validate_ttl(ttl)?;
    }
    if fencelock::url::scheme_of(backend).is_ok_and(|s| s == "memory") {
        eprintln!("fencelock: warning: memory:// cannot coordinate separate processes; this lock excludes nothing outside this fencelock process");
    }
    let client = fencelock::connect(backend).await?;
    let ttl = ttl.unwrap_or(client.default_ttl());
    let kill_after = kill_after.unwrap_or(ttl / 4);
    if kill_after > ttl / 2 {
        let _ = client.close().await;
        return Err(Exit::usage(format!(
            "--kill-after {kill_after:?} does not fit in the ttl {ttl:?}: the command could outlive the lease; use at most {:?}",
            ttl / 2
        )));
    }
    Ok((client, ttl, kill_after))
}

pub(crate) fn default_holder() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let host = match ok {
        true => {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        }
        false => "unknown-host".to_owned(),
    };
    format!("{host}:{}", std::process::id())
}

pub(crate) async fn run(backend: &str, args: RunArgs) -> Result<u8, Exit> {
    let name = LockName::new(&args.name)?;
    let wait = args.wait.map(|v| seconds("-w", v)).transpose()?;
    let (client, ttl, kill_after) = connect_for_command(backend, args.ttl, args.kill_after).await?;
    let mut signals = Signals::new()?;
    let result = hold_and_run(
        &client,
        backend,
        &name,
        ttl,
        wait,
        kill_after,
        &args,
        &mut signals,
    )
    .await;
    // Best effort: an unreachable server must not keep us from exiting; the lease
    // then expires by itself.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, client.close()).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn hold_and_run(
    client: &LockClient,
    backend: &str,
    name: &LockName,
    ttl: Duration,
    wait: Option<Duration>,
    kill_after: Duration,
    args: &RunArgs,
    signals: &mut Signals,
) -> Result<u8, Exit> {
    let lease = client.lease_with_ttl(ttl).await?;
    let holder = args.holder.clone().unwrap_or_else(default_holder);
    let lock = match (args.read, args.limit) {
        (true, _) => lease.rw_lock(name)?.read_lock().clone(),
        (false, Some(limit)) => lease.semaphore(name, limit)?.as_lock().clone(),
        // --write and the default: an exclusive holder, which excludes readers and
        // writers alike (and works on backends without read-write locks).
        (false, None) => lease.lock(name)?,
    }
    .with_holder(holder);
    let acquire = async {
        match (args.nonblock, wait) {
            (true, _) => lock.try_acquire().await,
            (false, Some(wait)) => match lock.acquire_timeout(wait).await {
                Err(e) if e.kind() == ErrorKind::Timeout => Ok(None),
                other => other.map(Some),
            },
            (false, None) => lock.acquire().await.map(Some),
        }
    };
    let guard = tokio::select! {
        guard = acquire => guard?,
        sig = signals.recv() => return Ok(u8::try_from(128 + sig).unwrap_or(255)),
    };
    let Some(guard) = guard else {
        // Not obtained in time: held by another, or no backend to ask. An unreachable
        // backend is 69, as with -n and plain run, not "held".
        let who = match tokio::time::timeout(CLOSE_TIMEOUT, client.inspect(name)).await {
            Ok(Ok(who)) => who,
            Ok(Err(e)) if e.is_retryable() => return Err(e.into()),
            Ok(Err(_)) => None,
            Err(_) => {
                return Err(Exit::new(
                    UNAVAILABLE,
                    format!(
                        "{name} was not obtained within the wait and the backend does not answer"
                    ),
                ))
            }
        };
        let by = who
            .map(|i| format!(" by {} (token {})", i.holder.unwrap_or_default(), i.token))
            .unwrap_or_default();
        eprintln!("fencelock: {name} is held{by}; not running the command");
        return Ok(args.conflict_exit_code);
    };
    supervise(guard, backend, kill_after, &args.command, &[], signals).await
}

/// Runs `command` while `guard` is held (with `extra_env` on top of the
/// `FENCELOCK_*` variables), releases it when the command exits, and terminates the
/// command as soon as the lock leaves `Held`.
pub(crate) async fn supervise(
    guard: LockGuard,
    backend: &str,
    kill_after: Duration,
    command: &[String],
    extra_env: &[(&str, String)],
    signals: &mut Signals,
) -> Result<u8, Exit> {
    let mut env = vec![
        ("FENCELOCK_TOKEN", guard.token().to_string()),
        ("FENCELOCK_NAME", guard.name().to_string()),
        // Never the password: the command and everything it starts can read this.
        (
            "FENCELOCK_BACKEND",
            fencelock::url::without_password(backend),
        ),
    ];
    if let Some(slot) = guard.slot() {
        env.push(("FENCELOCK_SLOT", slot.to_string()));
    }
    env.extend(extra_env.iter().cloned());
    let mut group = match Group::spawn(command, &env) {
        Ok(group) => group,
        Err(e) => {
            if let Err(release) = guard.release().await {
                eprintln!("fencelock: warning: release of {}: {release}", env[1].1);
            }
            // The shell's codes: 127 not found, 126 found but cannot be executed
            // (no permission, not an executable format, ...).
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => COMMAND_NOT_FOUND,
                _ => COMMAND_NOT_EXECUTABLE,
            };
            return Err(Exit::new(code, e.to_string()));
        }
    };
    let mut watch = guard.watch();
    let lost = loop {
        tokio::select! {
            status = group.wait() => {
                let code = exit_code(status?);
                if let Err(e) = guard.release().await {
                    eprintln!("fencelock: warning: release of {}: {e}", env[1].1);
                }
                return Ok(code);
            }
            state = watch.not_held() => break state,
            sig = signals.recv() => group.signal(sig),
        }
    };
    eprintln!(
        "fencelock: lock {} is {lost} (token {}); terminating the command before the lock can pass on",
        guard.name(),
        guard.token()
    );
    terminate(&mut group, &mut watch, lost, kill_after).await;
    drop(guard);
    Ok(LOCK_LOST)
}

/// SIGTERM the group, then SIGKILL it after `kill_after`, at the local deadline, or at
/// once when the lock is certainly lost, whichever comes first.
async fn terminate(
    group: &mut Group,
    watch: &mut StateWatch,
    state: LockState,
    kill_after: Duration,
) {
    if state == LockState::Lost {
        group.signal(libc::SIGKILL);
    } else {
        group.signal(libc::SIGTERM);
        let kill_at = (Instant::now() + kill_after).min(
            watch
                .deadline()
                .unwrap_or_else(|| Instant::now() + kill_after),
        );
        tokio::select! {
            _ = group.wait() => {}
            _ = tokio::time::sleep_until(kill_at) => {}
            _ = watch.lost() => {}
        }
        group.signal(libc::SIGKILL);
    }
    let _ = group.wait().await;
    group.signal(libc::SIGKILL);
}
