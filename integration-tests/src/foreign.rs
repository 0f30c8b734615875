//! Foreign lock clients for the mixed-fleet tests, each run as a child process that
//! takes one lock, holds it, releases it and exits:
//!
//! - kazoo (`Lock`, `Lock` with `extra_lock_patterns=["-lock-"]`, `ReadLock`) from
//!   PyPI, in a venv created with Debian's `/usr/bin/python3 -m venv` under
//!   `target/foreign/` and kept there, so it is built once per machine;
//! - python-etcd3's `Lock` (etcd), from PyPI at pinned versions ([`ETCD3_PINS`]) in
//!   a venv of its own beside kazoo's;
//! - Curator's `InterProcessMutex` and ZooKeeper's `recipes.lock.WriteLock` from the
//!   Debian jars, through a small holder (`foreign/ForeignHolder.java`) compiled with
//!   `javac` into `target/foreign/` (again once, per version of its source).
//!
//! A holder appends `acquired <wall ns> <token> <node>` once it holds (the token is
//! its node's czxid on ZooKeeper, its key's create revision on etcd; the node is the
//! node's name or the key) and `released <wall ns>` just before it deletes its node,
//! so a test can check whether critical sections overlap and compare tokens. Dropping a [`ForeignHolder`]
//! kills its process (by PID) if it still runs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::servers::{find_executable, temp_dir};

/// The Debian python; never a pyenv shim that may come first on `PATH`.
const PYTHON: &str = "/usr/bin/python3";

/// The Debian JDK's compiler.
const JAVAC: &str = "/usr/bin/javac";

/// The jars the Java holder needs; their manifests name the rest (netty, jute, …).
const JARS: &[&str] = &[
    "/usr/share/java/curator-recipes.jar",
    "/usr/share/java/curator-framework.jar",
    "/usr/share/java/curator-client.jar",
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/zookeeper-jute.jar",
    "/usr/share/java/zookeeper-recipes-lock.jar",
    "/usr/share/java/guava.jar",
    "/usr/share/java/slf4j-api.jar",
    "/usr/share/java/slf4j-nop.jar",
];

const KAZOO_HOLDER: &str = include_str!("../foreign/kazoo_holder.py");
const ETCD3_HOLDER: &str = include_str!("../foreign/etcd3_holder.py");

/// What the python-etcd3 venv installs from PyPI. etcd3 0.12.0 (the last release)
/// ships protobuf code generated for protobuf 3, which protobuf 4 and later refuse
/// to load (its own requirement has no upper bound); grpcio 1.85.3 has a wheel for
/// Debian 12's python 3.11; tenacity 6 still adapts the two-argument wait callback
/// that `Lock.acquire` passes it (with tenacity 9 a contended acquire raises
/// `TypeError`). Everything is pinned, so the venv is the same on every machine.
pub const ETCD3_PINS: &[&str] = &[
    "etcd3==0.12.0",
    "protobuf==3.20.3",
    "grpcio==1.85.3",
    "tenacity==6.3.1",
    "six==1.17.0",
    "typing_extensions==4.16.0",
];
const JAVA_HOLDER: &str = include_str!("../foreign/ForeignHolder.java");

/// A foreign lock client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// kazoo's `Lock` with default settings (counts only `__lock__` nodes).
    KazooLock,
    /// kazoo's `Lock` with `extra_lock_patterns=["-lock-"]` (also counts fencelock's
    /// and Curator's nodes).
    KazooLockExtra,
    /// kazoo's `ReadLock` (waits for `__lock__` nodes only).
    KazooReadLock,
    /// Curator's `InterProcessMutex`.
    Curator,
    /// ZooKeeper's own `org.apache.zookeeper.recipes.lock.WriteLock`.
    ZkRecipe,
    /// python-etcd3's `Lock` (etcd, not ZooKeeper): puts the one key
    /// `/locks/<name>` if it is absent, on a lease of its own. Its holder's
    /// `connect` is one `host:port` and its `path` the lock's name.
    Etcd3Lock,
}

impl Foreign {
    fn mode(self) -> &'static str {
        match self {
            Foreign::KazooLock => "lock",
            Foreign::KazooLockExtra => "lock-extra",
            Foreign::KazooReadLock => "rlock",
            Foreign::Curator => "curator",
            Foreign::ZkRecipe => "zkrecipe",
            Foreign::Etcd3Lock => "lock",
        }
    }

    fn runtime(self) -> Runtime {
        match self {
            Foreign::KazooLock | Foreign::KazooLockExtra | Foreign::KazooReadLock => Runtime::Kazoo,
            Foreign::Curator | Foreign::ZkRecipe => Runtime::Java,
            Foreign::Etcd3Lock => Runtime::Etcd3,
        }
    }

    /// Whether the tools this client needs are installed (`/usr/bin/python3` for
    /// kazoo and python-etcd3; `javac` and the Curator and ZooKeeper jars for the
    /// Java clients).
    pub fn available(self) -> bool {
        if self.runtime() != Runtime::Java {
            Path::new(PYTHON).exists()
        } else {
            Path::new(JAVAC).exists()
                && find_executable("FENCELOCK_JAVA", "java").is_ok()
                && JARS.iter().all(|j| Path::new(j).exists())
        }
    }
}

/// What runs a holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runtime {
    Kazoo,
    Etcd3,
    Java,
}

/// One critical section of a foreign holder, as it reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Wall-clock nanoseconds since the epoch when it held.
    pub start_ns: u128,
    /// Wall-clock nanoseconds just before it deleted its node; `None` while it holds.
    pub end_ns: Option<u128>,
    /// Its fencing token: the czxid of its own lock node (ZooKeeper), the create
    /// revision of its key (python-etcd3).
    pub czxid: u64,
    /// Its lock node's name (ZooKeeper), its key (python-etcd3).
    pub node: String,
}

/// A running foreign holder process.
#[derive(Debug)]
pub struct ForeignHolder {
    child: Child,
    out: PathBuf,
    _dir: TempDir,
}

impl ForeignHolder {
    /// Starts `client` taking the lock at `path` (absolute, no chroot) on the servers
    /// `connect` (`host:port,…`), holding it for `hold` once granted. For
    /// [`Foreign::Etcd3Lock`], `connect` is one etcd endpoint `host:port` and `path`
    /// the name given to `Lock`.
    ///
    /// # Errors
    ///
    /// When the client cannot be set up (venv, pip, javac) or started.
    pub fn start(client: Foreign, connect: &str, path: &str, hold: Duration) -> io::Result<Self> {
        Self::spawn(client.mode(), client.runtime(), connect, path, hold)
    }

    /// Starts kazoo's container check: one `Lock` object on `path` acquires and
    /// releases (reporting `first`), waits until `path` is gone (a reaped container),
    /// acquires again with the same object (reporting `reused ok` or
    /// `reused NoNodeError`), then with a fresh `Lock` (`fresh ok`), and deletes the
    /// persistent directory that fresh `Lock` created.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_kazoo_reuse(connect: &str, path: &str) -> io::Result<Self> {
        Self::spawn("reuse", Runtime::Kazoo, connect, path, Duration::ZERO)
    }

    fn spawn(
        mode: &str,
        runtime: Runtime,
        connect: &str,
        path: &str,
        hold: Duration,
    ) -> io::Result<Self> {
        let dir = temp_dir("fencelock-foreign-")?;
        let out = dir.path().join("sections");
        let hold_ms = hold.as_millis().to_string();
        let python = |name: &str, source: &str, python: PathBuf| -> io::Result<Command> {
            let script = dir.path().join(name);
            fs::write(&script, source)?;
            let mut cmd = Command::new(python);
            cmd.arg(script);
            Ok(cmd)
        };
        let mut cmd = match runtime {
            Runtime::Kazoo => python("kazoo_holder.py", KAZOO_HOLDER, kazoo_python()?)?,
            Runtime::Etcd3 => python("etcd3_holder.py", ETCD3_HOLDER, etcd3_python()?)?,
            Runtime::Java => {
                let (java, classpath) = java_holder()?;
                let mut cmd = Command::new(java);
                cmd.args(["-Xmx128m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]);
                cmd.args(["-cp", &classpath, "ForeignHolder"]);
                cmd
            }
        };
        cmd.args([mode, connect, path, &hold_ms])
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.path().join("log"))?)
            .stderr(fs::File::create(dir.path().join("log.err"))?);
        let child = cmd.spawn()?;
        Ok(ForeignHolder {
            child,
            out,
            _dir: dir,
        })
    }

    /// The process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the holder reported so far: `None` before it held.
    ///
    /// # Errors
    ///
    /// When its report cannot be read or parsed.
    pub fn section(&self) -> io::Result<Option<Section>> {
        let text = match fs::read_to_string(&self.out) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |line: &str| io::Error::other(format!("bad holder report line {line:?}"));
        let mut section = None;
        for line in text.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["acquired", ns, czxid, node] => {
                    section = Some(Section {
                        start_ns: ns.parse().map_err(|_| bad(line))?,
                        end_ns: None,
                        czxid: czxid.parse().map_err(|_| bad(line))?,
                        node: (*node).to_owned(),
                    });
                }
                ["released", ns] => {
                    let s = section.as_mut().ok_or_else(|| bad(line))?;
                    s.end_ns = Some(ns.parse().map_err(|_| bad(line))?);
                }
                _ => return Err(bad(line)),
            }
        }
        Ok(section)
    }

    /// The raw lines the holder reported (for [`start_kazoo_reuse`](Self::start_kazoo_reuse)).
    ///
    /// # Errors
    ///
    /// When the report cannot be read.
    pub fn lines(&self) -> io::Result<Vec<String>> {
        match fs::read_to_string(&self.out) {
            Ok(text) => Ok(text.lines().map(str::to_owned).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Waits at most `timeout` until the holder holds, and returns its section.
    ///
    /// # Errors
    ///
    /// When it exits first, or does not hold in time (with its log).
    pub fn wait_held(&mut self, timeout: Duration) -> io::Result<Section> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(section) = self.section()? {
                return Ok(section);
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(self.failed(format!("exited with {status} before holding")));
            }
            if Instant::now() >= deadline {
                return Err(self.failed(format!("did not hold within {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits at most `timeout` for the process to exit successfully and returns its
    /// complete section.
    ///
    /// # Errors
    ///
    /// A non-zero exit, a timeout (the process is killed) or an incomplete report.
    pub fn finish(mut self, timeout: Duration) -> io::Result<Section> {
        self.wait_exit(timeout)?;
        match self.section()? {
            Some(s) if s.end_ns.is_some() => Ok(s),
            other => Err(self.failed(format!("incomplete report {other:?}"))),
        }
    }

    /// Waits at most `timeout` for the process to exit successfully.
    ///
    /// # Errors
    ///
    /// A non-zero exit or a timeout (the process is then killed).
    pub fn wait_exit(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if status.success() {
                    return Ok(());
                }
                return Err(self.failed(format!("exited with {status}")));
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(self.failed(format!("still running after {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn failed(&self, what: String) -> io::Error {
        let dir = self._dir.path();
        let log = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_default();
        io::Error::other(format!(
            "foreign holder {}: {what}\n--- report\n{}--- stdout\n{}--- stderr\n{}",
            self.child.id(),
            fs::read_to_string(&self.out).unwrap_or_default(),
            log("log"),
            log("log.err"),
        ))
    }
}

impl Drop for ForeignHolder {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The workspace's `target/` (or `CARGO_TARGET_DIR`), where the venv and the compiled
/// holder are kept between runs.
fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("foreign")
}

/// Builds `dest` once: if it is missing, `build` fills a fresh sibling directory,
/// which is then renamed into place, so concurrent test processes never see a
/// half-built one (the loser of a race discards its copy). Serialized in-process.
fn build_once(dest: &Path, build: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if dest.join(".ready").exists() {
        return Ok(());
    }
    let parent = dest.parent().ok_or_else(|| io::Error::other("no parent"))?;
    fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(parent)?;
    build(tmp.path())?;
    fs::write(tmp.path().join(".ready"), b"")?;
    let tmp = tmp.keep();
    if fs::rename(&tmp, dest).is_err() {
        // Built meanwhile by another process (or a stale, unready copy is in the way).
        if !dest.join(".ready").exists() {
            let _ = fs::remove_dir_all(dest);
            fs::rename(&tmp, dest)?;
        } else {
            let _ = fs::remove_dir_all(&tmp);
        }
    }
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> io::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// The python of a venv with kazoo installed, creating it on first use.
///
/// The venv lives at `target/foreign/kazoo-venv` and is made with
/// `/usr/bin/python3 -m venv` (Debian's `python3-venv`), then `pip install kazoo`
/// from PyPI. Its python is run by path, so it works from the renamed directory.
///
/// # Errors
///
/// When python, the venv module or PyPI is not available.
pub fn kazoo_python() -> io::Result<PathBuf> {
    venv_python("kazoo-venv", &["kazoo"])
}

/// The python of a venv with python-etcd3 and its pinned dependencies
/// ([`ETCD3_PINS`]), created like [`kazoo_python`]'s at
/// `target/foreign/etcd3-venv-<hash of the pins>` (a new pin set gets a new venv).
///
/// # Errors
///
/// As [`kazoo_python`].
pub fn etcd3_python() -> io::Result<PathBuf> {
    let name = format!("etcd3-venv-{:016x}", fnv1a(&ETCD3_PINS.join(" ")));
    venv_python(&name, ETCD3_PINS)
}

/// The python of the venv `target/foreign/<name>` with `packages` installed from
/// PyPI, made once with `/usr/bin/python3 -m venv` and kept.
fn venv_python(name: &str, packages: &[&str]) -> io::Result<PathBuf> {
    let venv = cache_dir().join(name);
    build_once(&venv, |dir| {
        run(
            Command::new(PYTHON).args(["-m", "venv"]).arg(dir),
            "python3 -m venv (Debian package python3-venv)",
        )?;
        run(
            Command::new(dir.join("bin/python"))
                .args(["-m", "pip", "install", "--quiet"])
                .arg("--disable-pip-version-check")
                .args(packages),
            &format!("pip install {}", packages.join(" ")),
        )
    })?;
    Ok(venv.join("bin/python"))
}

/// FNV-1a of `text`: names a cache directory after what built it.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The java binary and the classpath of the compiled holder, compiling it on first
/// use (into `target/foreign/java-<hash of the source>`).
///
/// # Errors
///
/// When javac or a jar is missing, or the source does not compile.
pub fn java_holder() -> io::Result<(PathBuf, String)> {
    let java = find_executable("FENCELOCK_JAVA", "java")?;
    let jars = JARS.join(":");
    let hash = fnv1a(JAVA_HOLDER);
    let classes = cache_dir().join(format!("java-{hash:016x}"));
    build_once(&classes, |dir| {
        let source = dir.join("ForeignHolder.java");
        fs::write(&source, JAVA_HOLDER)?;
        run(
            Command::new(JAVAC)
                .args(["-implicit:none", "-nowarn", "-d"])
                .arg(dir)
                .args(["-cp", &jars])
                .arg(&source),
            "javac ForeignHolder.java",
        )
    })?;
    Ok((java, format!("{}:{jars}", classes.display())))
}
