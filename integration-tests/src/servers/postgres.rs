//! A PostgreSQL server made of a real `postgres` process on `127.0.0.1`.
//!
//! `initdb` and `postgres` refuse to run as root. When the tests run as root (as CI
//! does), both run as the unprivileged `postgres` system user that Debian's package
//! creates, in a temporary directory handed to that user; otherwise they run as the
//! current user.

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{
    free_port, log_tail, not_found, port_accepts, retry_port_clash, temp_dir, wait_until,
    with_log_tails, ServerProcess, READY_TIMEOUT,
};

/// Environment variable naming the directory with `initdb` and `postgres`.
const BINDIR_ENV: &str = "FENCELOCK_PG_BINDIR";

/// Where Debian installs the server binaries, one directory per major version.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The unprivileged user the servers run as when the tests run as root.
const SYSTEM_USER: &str = "postgres";

/// The superuser `initdb` creates (trust authentication on loopback).
pub const PG_USER: &str = "fencelock";

/// How long a stop waits for the fast shutdown before killing.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running single PostgreSQL server, for tests.
///
/// Dropping it asks the server for an immediate shutdown (`SIGQUIT`, by PID), kills it
/// (`SIGKILL`) if it has not exited within a few seconds, then removes its temporary
/// directory (data directory, socket and log).
#[derive(Debug)]
pub struct PgServer {
    /// The postmaster.
    process: ServerProcess,
    /// Its port on `127.0.0.1`.
    port: u16,
    /// The server's version line (`postgres (PostgreSQL) 15.x`).
    version: String,
    /// Declared last so it is removed after the server is stopped.
    dir: TempDir,
}

/// The user and group to run the server as, if not the current one.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

impl PgServer {
    /// True when `initdb` and `postgres` can be found (see the module docs), and when
    /// running as root, the `postgres` user exists.
    pub fn available() -> bool {
        bindir().is_ok() && run_as().is_ok()
    }

    /// Starts a fresh server on a free `127.0.0.1` port and waits, at most
    /// [`READY_TIMEOUT`], until it accepts connections.
    ///
    /// Fails with [`io::ErrorKind::NotFound`] when the binaries or the `postgres` user
    /// are missing; a failed start's error includes the log tail.
    pub fn start() -> io::Result<PgServer> {
        let bin = bindir()?;
        let user = run_as()?;
        let started = Instant::now();
        let server = retry_port_clash("postgres", || Self::try_start(&bin, user))?;
        tracing::info!(
            "{} ready in {:?} on port {}",
            server.version,
            started.elapsed(),
            server.port
        );
        Ok(server)
    }

    fn try_start(bin: &Path, user: Option<RunAs>) -> io::Result<PgServer> {
        let dir = temp_dir("fencelock-pg-")?;
        let data = dir.path().join("data");
        let log = dir.path().join("postgres.log");
        if let Some(user) = user {
            chown(dir.path(), user)?;
        }
        let version = output(command(bin, "postgres", user, dir.path()).arg("--version"))?;
        let mut initdb = command(bin, "initdb", user, dir.path());
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", PG_USER, "-A", "trust", "-E", "UTF8", "--no-sync"]);
        run_logged(initdb, &log)?;
        let port = free_port()?;
        let mut postgres = command(bin, "postgres", user, dir.path());
        postgres
            .arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            // A test database: durability off, room for the stress tests' pools.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"]);
        let mut process = ServerProcess::spawn("postgres", postgres, &log)?;
        wait_until("postgres to accept connections", READY_TIMEOUT, || {
            process.check_running()?;
            let ready = port_accepts(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
                && log_tail(&log).contains("database system is ready to accept connections");
            Ok(ready.then_some(()))
        })
        .map_err(|e| with_log_tails(e, [&process]))?;
        Ok(PgServer {
            process,
            port,
            version: version.trim().to_owned(),
            dir,
        })
    }

    /// The port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `postgres://fencelock@127.0.0.1:PORT/DATABASE` URL (trust authentication).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// The server's version line.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The PID of the postmaster.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The temporary directory (data directory, socket, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown; the postmaster stops its backends and frees its
        // shared memory, which a SIGKILL would leave behind.
        self.process.stop(libc::SIGQUIT, STOP_GRACE);
    }
}

/// The directory with `initdb` and `postgres`.
fn bindir() -> io::Result<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(dir) = std::env::var_os(BINDIR_ENV) {
        let dir = PathBuf::from(dir);
        return if has_both(&dir) {
            Ok(dir)
        } else {
            Err(not_found(format!(
                "{BINDIR_ENV}={} has no initdb and postgres",
                dir.display()
            )))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(DEBIAN_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, d)| has_both(d))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .find(|d| has_both(d))
        .ok_or_else(|| {
            not_found(format!(
                "initdb and postgres not found in {DEBIAN_ROOT}/*/bin or on PATH (or set {BINDIR_ENV})"
            ))
        })
}

/// Whom to run the server as: `None` for the current user, the `postgres` system
/// user when running as root.
fn run_as() -> io::Result<Option<RunAs>> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new(SYSTEM_USER).expect("a constant without NUL");
    // SAFETY: getpwnam reads a NUL-terminated name and returns a pointer into static
    // storage (or null); the fields are copied out at once, before any other call.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        return Err(not_found(format!(
            "running as root, and there is no `{SYSTEM_USER}` user for initdb and postgres \
             (which refuse to run as root)"
        )));
    }
    // SAFETY: checked non-null above.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some(RunAs { uid, gid }))
}

fn chown(path: &Path, user: RunAs) -> io::Result<()> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
}

/// `bin/name`, as `user`, in `cwd`, with a clean locale.
fn command(bin: &Path, name: &str, user: Option<RunAs>, cwd: &Path) -> Command {
    let mut command = Command::new(bin.join(name));
    command
        .current_dir(cwd)
        .env("LC_ALL", "C")
        .env_remove("PGDATA")
        .env_remove("PGPORT")
        .stdin(Stdio::null());
    if let Some(user) = user {
        // std drops the supplementary groups too when switching away from root.
        command.uid(user.uid).gid(user.gid);
    }
    command
}

/// Runs `command` to completion and returns its stdout.
fn output(command: &mut Command) -> io::Result<String> {
    let out = command.output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{command:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `command` to completion with its output appended to `log`.
fn run_logged(mut command: Command, log: &Path) -> io::Result<()> {
    let out = OpenOptions::new().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    let status = command.stdout(out).stderr(err).status()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "{command:?} failed ({status}); log tail:\n{}",
            log_tail(log)
        )));
    }
    Ok(())
}
