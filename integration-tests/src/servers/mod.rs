//! Real etcd, ZooKeeper and PostgreSQL server processes for integration tests.
//!
//! [`EtcdCluster`] and [`ZkEnsemble`] start servers as child processes that
//! listen on free `127.0.0.1` ports, keep their data and logs in a temporary
//! directory and wait until the servers are ready. Dropping a cluster kills
//! every process it started (by PID, with `SIGKILL`) and then removes its
//! temporary directory, so a panicking test cleans up too.
//!
//! When a server binary is missing, `start` fails with
//! [`std::io::ErrorKind::NotFound`]. Tests use [`require`] to skip in that
//! case, except under CI (see [`ci`]) where a missing server is a failure.
//!
//! Environment overrides (never named `ETCD_*`: etcd reads every such
//! variable as a flag):
//! - `FENCELOCK_ETCD_BIN`: the etcd binary (default: `etcd` on `PATH`);
//! - `FENCELOCK_JAVA`: the java binary (default: `java` on `PATH`);
//! - `FENCELOCK_ZK_CLASSPATH`: the ZooKeeper server classpath (default: the
//!   Debian jars under `/usr/share/java`);
//! - `FENCELOCK_PG_BINDIR`: the directory holding `initdb` and `postgres`
//!   (default: the newest `/usr/lib/postgresql/*/bin`, else `PATH`).

pub mod etcd;
pub mod netns;
pub mod pki;
pub mod postgres;
pub mod redis;
pub mod zk;

pub use etcd::{EtcdCluster, EtcdTls};
pub use netns::{Fabric, Link};
pub use pki::{CertFiles, Flaw, Pki};
pub use postgres::PgServer;
pub use redis::{RedisOptions, RedisServer};
pub use zk::{ClientAuth, ZkEnsemble, ZkOptions, ZkTls};

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a start or restart waits for the servers to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How many times a start is tried, with fresh ports, when a server could
/// not bind its port because another process took it in the meantime.
const START_ATTEMPTS: usize = 3;

/// Pause between two readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Connect, read and write timeout of one probe request.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// How many bytes of a log file an error message shows at most.
const LOG_TAIL_BYTES: u64 = 8192;

/// True when the environment variable `CI` is `true` (or `1`).
///
/// Under CI a missing server binary must fail the test; elsewhere tests may
/// skip.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Decides whether a test that needs `what` can run.
///
/// Returns `true` when `available`. Otherwise it panics under CI (see
/// [`ci`]) and, outside CI, prints a skip notice and returns `false`, so a
/// test reads `if !require(EtcdCluster::available(), "etcd") { return; }`.
pub fn require(available: bool, what: &str) -> bool {
    if available {
        return true;
    }
    assert!(!ci(), "{what} is required under CI but is not installed");
    eprintln!("skipping: {what} is not installed");
    false
}

/// Ports already handed out by [`free_port`] in this process.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Returns a free TCP port on `127.0.0.1` that this process has not handed
/// out before.
///
/// The port is found by binding port 0; another process may still take it
/// before the server binds it, which the cluster starts detect and retry.
pub fn free_port() -> io::Result<u16> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    // Keep the listeners open until the end so the OS cannot return the same
    // port twice while we skip ports handed out earlier.
    let mut listeners = Vec::new();
    for _ in 0..64 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        if handed_out.insert(port) {
            return Ok(port);
        }
        listeners.push(listener);
    }
    Err(io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        "no free loopback port found",
    ))
}

/// Creates a temporary directory whose name starts with `prefix`; it is
/// removed when the returned value is dropped.
pub fn temp_dir(prefix: &str) -> io::Result<TempDir> {
    tempfile::Builder::new().prefix(prefix).tempdir()
}

/// Like [`temp_dir`], but in memory (`/dev/shm`) when the machine has it: servers
/// whose fsyncs must not stall on a shared disk (fault runs that time recoveries)
/// keep their data there.
pub fn memory_temp_dir(prefix: &str) -> io::Result<TempDir> {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix(prefix).tempdir_in(shm) {
            return Ok(dir);
        }
    }
    temp_dir(prefix)
}

/// Calls `probe` every few milliseconds until it returns `Ok(Some(value))`
/// or an error, for at most `timeout`.
///
/// A probe error ends the wait at once; running out of time gives an error
/// of kind [`io::ErrorKind::TimedOut`] that names `what`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> io::Result<Option<T>>,
) -> io::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe()? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out after {timeout:?} waiting for {what}"),
            ));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Runs `attempt` again, up to a few times, while it fails with
/// [`io::ErrorKind::AddrInUse`] (a port taken between choosing and binding).
pub(crate) fn retry_port_clash<T>(
    what: &str,
    mut attempt: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let mut tries = 1;
    loop {
        match attempt() {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries < START_ATTEMPTS => {
                tracing::warn!("{what}: port clash, retrying with new ports: {e}");
                tries += 1;
            }
            other => return other,
        }
    }
}

/// Finds an executable: the path in environment variable `env_var` if set,
/// otherwise `name` on `PATH`.
pub(crate) fn find_executable(env_var: &str, name: &str) -> io::Result<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(not_found(format!(
                "{env_var}={} does not exist",
                path.display()
            )))
        };
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| not_found(format!("`{name}` not found on PATH (or set {env_var})")))
}

/// An error of kind [`io::ErrorKind::NotFound`].
pub(crate) fn not_found(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, message)
}

/// Sends `request` to `addr` and returns everything the server sends back
/// until it closes the connection.
///
/// Every step has a short timeout, so a paused server cannot hang a probe.
pub(crate) fn tcp_exchange(addr: SocketAddr, request: &[u8]) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    // Connecting to a port of the ephemeral range where nothing listens yet
    // can connect the socket to itself (TCP simultaneous open).
    if stream.local_addr()? == stream.peer_addr()? {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "socket connected to itself",
        ));
    }
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    stream.write_all(request)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// True when something accepts TCP connections on `addr`.
pub(crate) fn port_accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)
        .and_then(|s| Ok(s.local_addr()? != s.peer_addr()?))
        .unwrap_or(false)
}

/// The last few KiB of the file at `path`, or a note why it can't be read.
pub fn log_tail(path: &Path) -> String {
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// Adds the log tails of `processes` to a timed-out wait's error; other
/// errors (such as an early exit, which carries its own log) pass unchanged.
pub(crate) fn with_log_tails<'a>(
    error: io::Error,
    processes: impl IntoIterator<Item = &'a ServerProcess>,
) -> io::Error {
    if error.kind() != io::ErrorKind::TimedOut {
        return error;
    }
    let mut message = error.to_string();
    for process in processes {
        message.push_str(&format!(
            "\n--- {} log tail:\n{}",
            process.name,
            log_tail(&process.log)
        ));
    }
    io::Error::new(error.kind(), message)
}

/// A server child process that is killed (by PID) when dropped.
///
/// Its stdout and stderr are appended to a log file.
#[derive(Debug)]
pub struct ServerProcess {
    /// Name used in messages, e.g. `etcd member 1`.
    name: String,
    /// The child; `None` once it has been reaped.
    child: Option<Child>,
    /// The file that receives stdout and stderr.
    log: PathBuf,
    /// Whether the process was stopped with `SIGSTOP`.
    paused: AtomicBool,
}

impl ServerProcess {
    /// Starts `command` with stdin closed and stdout/stderr appended to the
    /// file at `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> io::Result<Self> {
        let out = OpenOptions::new().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = command.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("cannot start {name} ({command:?}): {e}"))
        })?;
        tracing::debug!("started {name} as pid {}", child.id());
        Ok(ServerProcess {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
            paused: AtomicBool::new(false),
        })
    }

    /// The PID while the process has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log file that receives the process's output.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Whether the process was paused with [`ServerProcess::pause`] and not
    /// resumed since.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Errors if the process has exited, with its status and log tail.
    ///
    /// The error has kind [`io::ErrorKind::AddrInUse`] when the log says a
    /// port was taken, so that the start can be retried with other ports.
    pub fn check_running(&mut self) -> io::Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Err(io::Error::other(format!("{} is not running", self.name)));
        };
        let Some(status) = child.try_wait()? else {
            return Ok(());
        };
        self.child = None;
        let tail = log_tail(&self.log);
        let kind = if tail.to_ascii_lowercase().contains("address already in use") {
            io::ErrorKind::AddrInUse
        } else {
            io::ErrorKind::Other
        };
        Err(io::Error::new(
            kind,
            format!("{} exited ({status}); log tail:\n{tail}", self.name),
        ))
    }

    /// Kills the process with `SIGKILL` and waits for it; does nothing if it
    /// has already exited.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Killing an already exited (but unreaped) child fails harmlessly.
            let _ = child.kill();
            if let Err(e) = child.wait() {
                tracing::warn!("waiting for {} failed: {e}", self.name);
            }
            tracing::debug!("killed {} (pid {})", self.name, child.id());
        }
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Sends `signal` (a server's own shutdown signal), waits up to `grace` for the
    /// process to exit, then kills it as [`ServerProcess::kill`] does.
    pub fn stop(&mut self, signal: libc::c_int, grace: Duration) {
        if self.child.is_some() && self.signal(signal) {
            let deadline = Instant::now() + grace;
            while let Some(child) = self.child.as_mut() {
                match child.try_wait() {
                    Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
                    Ok(None) => break,
                    _ => {
                        self.child = None;
                        break;
                    }
                }
            }
        }
        self.kill();
    }

    /// Stops the process with `SIGSTOP`, as a hung server would be.
    pub fn pause(&self) {
        if self.signal(libc::SIGSTOP) {
            self.paused.store(true, Ordering::SeqCst);
        }
    }

    /// Continues a paused process with `SIGCONT`.
    pub fn resume(&self) {
        if self.signal(libc::SIGCONT) {
            self.paused.store(false, Ordering::SeqCst);
        }
    }

    /// Sends `signal` to the process; false if it is gone or the call failed.
    fn signal(&self, signal: libc::c_int) -> bool {
        // The child is not reaped while `self.child` is `Some`, so its PID
        // cannot have been reused by another process.
        let Some(pid) = self.pid().and_then(|p| libc::pid_t::try_from(p).ok()) else {
            return false;
        };
        // SAFETY: kill(2) has no memory-safety preconditions.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc != 0 {
            tracing::warn!(
                "signal {signal} to {} failed: {}",
                self.name,
                io::Error::last_os_error()
            );
        }
        rc == 0
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
