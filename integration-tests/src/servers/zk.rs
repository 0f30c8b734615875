//! A ZooKeeper ensemble made of real ZooKeeper server JVMs on `127.0.0.1`.

use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use tempfile::TempDir;

use super::pki::CertFiles;
use super::{
    find_executable, free_port, memory_temp_dir, not_found, retry_port_clash, tcp_exchange,
    temp_dir, wait_until, with_log_tails, Fabric, Link, ServerProcess, READY_TIMEOUT,
};

/// Environment variable naming the java binary.
const JAVA_ENV: &str = "FENCELOCK_JAVA";

/// Environment variable that replaces the default server classpath.
const CLASSPATH_ENV: &str = "FENCELOCK_ZK_CLASSPATH";

/// The Debian `libzookeeper-java` server jar. Its manifest's `Class-Path`
/// names the jars it needs (netty, jute, jetty, metrics, slf4j-api, ...).
const DEBIAN_ZK_JAR: &str = "/usr/share/java/zookeeper.jar";

/// Optional Debian jars added after the server jar when present:
/// `slf4j-simple` sends ZooKeeper's log to stderr, i.e. the log file.
/// `netty-codec` and `netty-resolver` (from `libnetty-java`, which the server jar's
/// manifest leaves out) hold classes Netty's `SslHandler` needs on the secure port.
const DEBIAN_EXTRA_JARS: &[&str] = &[
    "/usr/share/java/zookeeper-jute.jar",
    "/usr/share/java/slf4j-simple.jar",
    "/usr/share/java/netty-codec.jar",
    "/usr/share/java/netty-resolver.jar",
];

/// The connection factory that serves TLS (the default NIO one cannot).
const NETTY_FACTORY: &str = "org.apache.zookeeper.server.NettyServerCnxnFactory";

/// Whether a TLS server asks for client certificates (`ssl.clientAuth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Refuses clients without a certificate of the CA.
    Need,
    /// Asks for one, accepts clients without.
    Want,
    /// Does not ask.
    None,
}

/// Client TLS of an ensemble started with [`ZkEnsemble::start_secured`]: every
/// server serves `server` on a `secureClientPort` and checks client certificates
/// against `ca` as `client_auth` says. Quorum traffic stays plain.
#[derive(Debug, Clone)]
pub struct ZkTls {
    /// The servers' certificate and key.
    pub server: CertFiles,
    /// The CA that client certificates must chain to.
    pub ca: PathBuf,
    /// Whether client certificates are required.
    pub client_auth: ClientAuth,
}

/// The server's main class, for standalone and quorum mode alike.
const MAIN_CLASS: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";

/// JVM flags: a small heap, and quick startup over peak speed.
const JVM_FLAGS: &[&str] = &[
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Djava.net.preferIPv4Stack=true",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
];

/// Settings of a [`ZkEnsemble`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkOptions {
    /// `tickTime` in milliseconds, ZooKeeper's time unit (default 200).
    pub tick_time_ms: u32,
    /// `maxSessionTimeout` in milliseconds; `None` keeps ZooKeeper's
    /// default of 20 ticks.
    pub max_session_timeout_ms: Option<u32>,
    /// `syncLimit` in ticks (default 5): how long a follower may be out of
    /// touch with its leader, and so roughly how long a cut-off leader goes
    /// unnoticed.
    pub sync_limit: u32,
    /// How often the server looks for empty CONTAINER nodes to delete
    /// (`znode.container.checkIntervalMs`); `None` keeps ZooKeeper's default of
    /// 60 s.
    pub container_check_interval_ms: Option<u32>,
}

impl Default for ZkOptions {
    fn default() -> Self {
        ZkOptions {
            tick_time_ms: 200,
            max_session_timeout_ms: None,
            sync_limit: 5,
            container_check_interval_ms: None,
        }
    }
}

impl ZkOptions {
    /// The `maxSessionTimeout` in force, in milliseconds.
    pub fn max_session_timeout(&self) -> u32 {
        self.max_session_timeout_ms
            .unwrap_or(self.tick_time_ms.saturating_mul(20))
    }
}

/// A running ZooKeeper ensemble for tests: one standalone server, or a
/// quorum of several.
///
/// Dropping it kills every server JVM (by PID) and then removes its
/// temporary directory, which holds each server's config, data and log.
#[derive(Debug)]
pub struct ZkEnsemble {
    /// The java binary.
    java: PathBuf,
    /// The server classpath.
    classpath: String,
    /// The options it was started with.
    options: ZkOptions,
    /// The servers, in order; indexes are server numbers (`myid` is index+1).
    servers: Vec<Server>,
    /// The servers' namespaces and links, for ensembles started with
    /// [`ZkEnsemble::start_in_namespaces`].
    fabric: Option<Fabric>,
    /// Client TLS, for ensembles started with [`ZkEnsemble::start_secured`].
    tls: Option<ZkTls>,
    /// Declared last so it is removed after the servers are killed.
    dir: TempDir,
}

/// What one server needs to start, and start again.
#[derive(Debug)]
struct ServerSpec {
    /// `myid`, from 1.
    id: usize,
    /// Address of the client port.
    client_ip: Ipv4Addr,
    /// Address of the quorum and election ports.
    peer_ip: Ipv4Addr,
    /// `clientPort`.
    client_port: u16,
    /// `secureClientPort`, for a server with client TLS.
    secure_port: Option<u16>,
    /// Quorum port, for followers to talk to the leader.
    peer_port: u16,
    /// Leader election port.
    election_port: u16,
    /// The server's directory: `zoo.cfg`, `data/`, `zk.log`.
    dir: PathBuf,
}

/// A server and its process.
#[derive(Debug)]
struct Server {
    /// How to start it.
    spec: ServerSpec,
    /// The current process, killed or not.
    process: ServerProcess,
}

impl ZkEnsemble {
    /// True when java and the ZooKeeper server jar can be found (see the
    /// module docs).
    pub fn available() -> bool {
        find_executable(JAVA_ENV, "java").is_ok() && classpath().is_ok()
    }

    /// Starts `servers` servers (1 = standalone, 3 = quorum) with default
    /// [`ZkOptions`]; see [`ZkEnsemble::start_with`].
    pub fn start(servers: usize) -> io::Result<ZkEnsemble> {
        Self::start_with(servers, ZkOptions::default())
    }

    /// Starts `servers` servers with `options` on free `127.0.0.1` ports
    /// and waits, at most [`READY_TIMEOUT`], until every server serves
    /// requests (for a quorum: one of them as leader).
    ///
    /// Fails with [`io::ErrorKind::NotFound`] when java or ZooKeeper is not
    /// found; a failed start's error includes the servers' log tails.
    pub fn start_with(servers: usize, options: ZkOptions) -> io::Result<ZkEnsemble> {
        if servers == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a ZooKeeper ensemble needs at least one server",
            ));
        }
        let java = find_executable(JAVA_ENV, "java")?;
        let classpath = classpath()?;
        let started = Instant::now();
        let ensemble = retry_port_clash("zookeeper", || {
            Self::try_start(&java, &classpath, servers, &options, None, None)
        })?;
        tracing::info!(
            "zookeeper ensemble of {servers} ready in {:?} at {}",
            started.elapsed(),
            ensemble.connect_string()
        );
        Ok(ensemble)
    }

    /// Starts `servers` servers like [`ZkEnsemble::start_with`] that also serve
    /// client TLS with `tls` on a `secureClientPort` each
    /// ([`ZkEnsemble::secure_connect_string`]), through Netty's connection factory.
    /// The plain client port stays open for the harness's probes and for tests of
    /// a TLS client against a plain-text port.
    pub fn start_secured(servers: usize, options: ZkOptions, tls: ZkTls) -> io::Result<ZkEnsemble> {
        let java = find_executable(JAVA_ENV, "java")?;
        let classpath = classpath()?;
        let started = Instant::now();
        let ensemble = retry_port_clash("zookeeper", || {
            Self::try_start(
                &java,
                &classpath,
                servers,
                &options,
                None,
                Some(tls.clone()),
            )
        })?;
        tracing::info!(
            "secured zookeeper ensemble of {servers} ready in {:?} at {}",
            started.elapsed(),
            ensemble.secure_connect_string()
        );
        Ok(ensemble)
    }

    /// Starts `servers` servers with `options`, each in a network namespace
    /// of its own (see [`Fabric`]), so that [`ZkEnsemble::cut`] can partition
    /// them; their data lives in memory (`/dev/shm`). Clients in the calling
    /// process reach them on [`ZkEnsemble::connect_string`] as usual.
    ///
    /// Needs root (see [`Fabric::available`]).
    pub fn start_in_namespaces(servers: usize, options: ZkOptions) -> io::Result<ZkEnsemble> {
        let java = find_executable(JAVA_ENV, "java")?;
        let classpath = classpath()?;
        let fabric = Fabric::create(servers)?;
        Self::try_start(&java, &classpath, servers, &options, Some(fabric), None)
    }

    /// One start attempt with freshly chosen ports.
    fn try_start(
        java: &Path,
        classpath: &str,
        count: usize,
        options: &ZkOptions,
        fabric: Option<Fabric>,
        tls: Option<ZkTls>,
    ) -> io::Result<ZkEnsemble> {
        let dir = match fabric {
            Some(_) => memory_temp_dir("fencelock-zk-")?,
            None => temp_dir("fencelock-zk-")?,
        };
        let specs = (0..count)
            .map(|i| ServerSpec::new(i, dir.path(), fabric.as_ref(), tls.is_some()))
            .collect::<io::Result<Vec<_>>>()?;
        for spec in &specs {
            spec.write_files(options, &specs, tls.as_ref())?;
        }
        let servers = specs
            .into_iter()
            .map(|spec| {
                let process =
                    spec.spawn(java, classpath, options, fabric.as_ref(), tls.is_some())?;
                Ok(Server { spec, process })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut ensemble = ZkEnsemble {
            java: java.to_owned(),
            classpath: classpath.to_owned(),
            options: options.clone(),
            servers,
            fabric,
            tls,
            dir,
        };
        ensemble.wait_all_serving()?;
        Ok(ensemble)
    }

    /// Waits until every server serves and, in a quorum, one leads.
    fn wait_all_serving(&mut self) -> io::Result<()> {
        let servers = &mut self.servers;
        wait_until("all zookeeper servers to serve", READY_TIMEOUT, || {
            for server in servers.iter_mut() {
                server.process.check_running()?;
            }
            let modes = servers
                .iter()
                .map(|s| mode(s.spec.client_addr()))
                .collect::<Option<Vec<_>>>();
            let ready = modes.is_some_and(|m| m.iter().any(|m| is_leading(m)));
            Ok(ready.then_some(()))
        })
        .map_err(|e| with_log_tails(e, self.servers.iter().map(|s| &s.process)))
    }

    /// The options the ensemble was started with.
    pub fn options(&self) -> &ZkOptions {
        &self.options
    }

    /// `IP:PORT,IP:PORT` for every server (killed ones included), in server
    /// order; the IP is `127.0.0.1` unless the ensemble runs in namespaces.
    pub fn connect_string(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.spec.client_addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `127.0.0.1:PORT,…` of every server's `secureClientPort`, for an ensemble
    /// started with [`ZkEnsemble::start_secured`] (else the plain
    /// [`ZkEnsemble::connect_string`]).
    pub fn secure_connect_string(&self) -> String {
        self.servers
            .iter()
            .map(|s| match s.spec.secure_port {
                Some(port) => SocketAddr::from((s.spec.client_ip, port)).to_string(),
                None => s.spec.client_addr().to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A `zk://HOST:PORT,HOST:PORT/chroot` URL for all servers; a leading
    /// `/` of `chroot` is dropped.
    pub fn url(&self, chroot: &str) -> String {
        format!(
            "zk://{}/{}",
            self.connect_string(),
            chroot.trim_start_matches('/')
        )
    }

    /// The temporary directory that holds every server's files
    /// (`server-N/zoo.cfg`, `server-N/data`, `server-N/zk.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The PID of server `i`'s JVM, unless it was killed.
    ///
    /// # Panics
    /// If `i` is not a server index.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.servers[i].process.pid()
    }

    /// Kills server `i` with `SIGKILL` and waits for it to exit.
    ///
    /// # Panics
    /// If `i` is not a server index.
    pub fn kill(&mut self, i: usize) {
        self.servers[i].process.kill();
    }

    /// Stops server `i` with `SIGSTOP`: it keeps its ports but answers
    /// nothing.
    ///
    /// # Panics
    /// If `i` is not a server index.
    pub fn pause(&self, i: usize) {
        self.servers[i].process.pause();
    }

    /// Continues a paused server `i` with `SIGCONT`.
    ///
    /// # Panics
    /// If `i` is not a server index.
    pub fn resume(&self, i: usize) {
        self.servers[i].process.resume();
    }

    /// Starts server `i` again (killing it first if it still runs) with the
    /// same config, data and ports, and waits until it is ready.
    ///
    /// Ready means serving requests when a quorum of servers runs; without
    /// a quorum no server can serve, so then it only waits for `ruok`.
    ///
    /// # Panics
    /// If `i` is not a server index.
    pub fn restart(&mut self, i: usize) -> io::Result<()> {
        self.servers[i].process.kill();
        self.servers[i].process = self.servers[i].spec.spawn(
            &self.java,
            &self.classpath,
            &self.options,
            self.fabric.as_ref(),
            self.tls.is_some(),
        )?;
        let quorum = self.running_count() > self.servers.len() / 2;
        let target = &mut self.servers[i];
        let port = target.spec.client_addr();
        let what = format!("restarted zookeeper server {i} to be ready");
        wait_until(&what, READY_TIMEOUT, || {
            target.process.check_running()?;
            let ready = if quorum {
                mode(port).is_some()
            } else {
                four_letter(port, "ruok").is_ok_and(|answer| answer == "imok")
            };
            Ok(ready.then_some(()))
        })
        .map_err(|e| with_log_tails(e, [&target.process]))
    }

    /// Kills every server, starts them all again with their data, and waits
    /// until every server serves (one as leader): a whole-ensemble restart.
    pub fn restart_all(&mut self) -> io::Result<()> {
        for server in &mut self.servers {
            server.process.kill();
        }
        for server in &mut self.servers {
            server.process = server.spec.spawn(
                &self.java,
                &self.classpath,
                &self.options,
                self.fabric.as_ref(),
                self.tls.is_some(),
            )?;
        }
        self.wait_all_serving()
    }

    /// True when every server runs, unpaused, and serves requests, and one of
    /// them leads.
    pub fn all_serving(&self) -> bool {
        let modes = self
            .servers
            .iter()
            .map(|s| {
                if s.process.is_paused() {
                    None
                } else {
                    mode(s.spec.client_addr())
                }
            })
            .collect::<Option<Vec<_>>>();
        modes.is_some_and(|m| m.iter().any(|m| is_leading(m)))
    }

    /// Cuts server `i`'s `link` (see [`Fabric`]): packets are dropped silently
    /// until [`ZkEnsemble::heal`].
    ///
    /// # Errors
    /// [`io::ErrorKind::Unsupported`] unless the ensemble was started with
    /// [`ZkEnsemble::start_in_namespaces`]; the failing `ip` command.
    pub fn cut(&self, i: usize, link: Link) -> io::Result<()> {
        self.fabric()?.cut(i, link)
    }

    /// Heals server `i`'s `link`.
    ///
    /// # Errors
    /// As [`ZkEnsemble::cut`].
    pub fn heal(&self, i: usize, link: Link) -> io::Result<()> {
        self.fabric()?.heal(i, link)
    }

    fn fabric(&self) -> io::Result<&Fabric> {
        self.fabric.as_ref().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "links can be cut only in an ensemble started in namespaces",
            )
        })
    }

    /// How many servers have a live (possibly paused) process.
    fn running_count(&self) -> usize {
        self.servers
            .iter()
            .filter(|s| s.process.pid().is_some())
            .count()
    }

    /// The index of the server whose `srvr` answer says `Mode: leader` (or
    /// `Mode: standalone` for a single server), asking only running,
    /// unpaused servers; `None` when none does.
    pub fn leader(&self) -> Option<usize> {
        self.servers.iter().position(|s| {
            s.process.pid().is_some()
                && !s.process.is_paused()
                && mode(s.spec.client_addr()).is_some_and(|m| is_leading(&m))
        })
    }

    /// The server version from `srvr`, e.g. `3.8.0-<git sha>`; `unknown`
    /// when no server answers.
    pub fn version(&self) -> String {
        self.servers
            .iter()
            .filter(|s| s.process.pid().is_some() && !s.process.is_paused())
            .find_map(|s| {
                let answer = four_letter(s.spec.client_addr(), "srvr").ok()?;
                let line = answer
                    .lines()
                    .find_map(|l| l.strip_prefix("Zookeeper version:"))?;
                line.split(',').next().map(|v| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

impl ServerSpec {
    /// Chooses addresses, ports and the directory of server number `index`
    /// under `dir`.
    fn new(
        index: usize,
        dir: &Path,
        fabric: Option<&Fabric>,
        secured: bool,
    ) -> io::Result<ServerSpec> {
        let server_dir = dir.join(format!("server-{index}"));
        std::fs::create_dir_all(server_dir.join("data"))?;
        Ok(ServerSpec {
            id: index + 1,
            client_ip: fabric.map_or(Ipv4Addr::LOCALHOST, |f| f.client_ip(index)),
            peer_ip: fabric.map_or(Ipv4Addr::LOCALHOST, |f| f.peer_ip(index)),
            client_port: free_port()?,
            secure_port: if secured { Some(free_port()?) } else { None },
            peer_port: free_port()?,
            election_port: free_port()?,
            dir: server_dir,
        })
    }

    /// The client address.
    fn client_addr(&self) -> SocketAddr {
        SocketAddr::from((self.client_ip, self.client_port))
    }

    /// The config file.
    fn config_path(&self) -> PathBuf {
        self.dir.join("zoo.cfg")
    }

    /// The data directory.
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The file that receives the server's output.
    fn log_path(&self) -> PathBuf {
        self.dir.join("zk.log")
    }

    /// Writes `zoo.cfg`, in a quorum `data/myid`, and with `tls` the key store
    /// (`keystore.pem`: the server's key, then its certificate).
    fn write_files(
        &self,
        options: &ZkOptions,
        all: &[ServerSpec],
        tls: Option<&ZkTls>,
    ) -> io::Result<()> {
        let mut config = self.config(options, all);
        if let (Some(tls), Some(port)) = (tls, self.secure_port) {
            let keystore = self.dir.join("keystore.pem");
            let pem = std::fs::read_to_string(&tls.server.key)?
                + &std::fs::read_to_string(&tls.server.cert)?;
            std::fs::write(&keystore, pem)?;
            let client_auth = match tls.client_auth {
                ClientAuth::Need => "need",
                ClientAuth::Want => "want",
                ClientAuth::None => "none",
            };
            let _ = write!(
                config,
                "secureClientPort={port}\n\
                 secureClientPortAddress={ip}\n\
                 serverCnxnFactory={NETTY_FACTORY}\n\
                 ssl.keyStore.location={keystore}\n\
                 ssl.keyStore.type=PEM\n\
                 ssl.trustStore.location={ca}\n\
                 ssl.trustStore.type=PEM\n\
                 ssl.clientAuth={client_auth}\n",
                ip = self.client_ip,
                keystore = keystore.display(),
                ca = tls.ca.display(),
            );
        }
        std::fs::write(self.config_path(), config)?;
        if all.len() > 1 {
            std::fs::write(self.data_dir().join("myid"), format!("{}\n", self.id))?;
        }
        Ok(())
    }

    /// The `zoo.cfg` text; `server.N` lines only for a quorum.
    fn config(&self, options: &ZkOptions, all: &[ServerSpec]) -> String {
        let mut config = format!(
            "tickTime={tick}\n\
             initLimit=10\n\
             syncLimit={sync}\n\
             dataDir={data}\n\
             clientPort={port}\n\
             clientPortAddress={ip}\n\
             maxSessionTimeout={max_session}\n\
             admin.enableServer=false\n\
             4lw.commands.whitelist=*\n\
             forceSync=no\n\
             maxClientCnxns=0\n",
            tick = options.tick_time_ms,
            sync = options.sync_limit,
            ip = self.client_ip,
            data = self.data_dir().display(),
            port = self.client_port,
            max_session = options.max_session_timeout(),
        );
        if all.len() > 1 {
            for server in all {
                // Writing to a String cannot fail.
                let _ = writeln!(
                    config,
                    "server.{}={}:{}:{}",
                    server.id, server.peer_ip, server.peer_port, server.election_port
                );
            }
        }
        config
    }

    /// Starts the server's JVM, in its namespace if there is a fabric.
    fn spawn(
        &self,
        java: &Path,
        classpath: &str,
        options: &ZkOptions,
        fabric: Option<&Fabric>,
        secured: bool,
    ) -> io::Result<ServerProcess> {
        let mut command = match fabric {
            Some(f) => f.command(self.id - 1, java),
            None => Command::new(java),
        };
        command.args(JVM_FLAGS);
        if let Some(ms) = options.container_check_interval_ms {
            command.arg(format!("-Dznode.container.checkIntervalMs={ms}"));
        }
        if secured {
            command.arg(format!("-Dzookeeper.serverCnxnFactory={NETTY_FACTORY}"));
        }
        command
            .args(["-cp", classpath, MAIN_CLASS])
            .arg(self.config_path())
            .current_dir(&self.dir);
        let name = format!("zookeeper server {}", self.id - 1);
        ServerProcess::spawn(&name, command, &self.log_path())
    }
}

/// The server classpath: `FENCELOCK_ZK_CLASSPATH` if set (entries such as
/// `/opt/zookeeper/lib/*` work), else the Debian jars.
fn classpath() -> io::Result<String> {
    if let Ok(classpath) = std::env::var(CLASSPATH_ENV) {
        return Ok(classpath);
    }
    if !Path::new(DEBIAN_ZK_JAR).is_file() {
        return Err(not_found(format!(
            "{DEBIAN_ZK_JAR} not found (install zookeeper or set {CLASSPATH_ENV})"
        )));
    }
    let extras = DEBIAN_EXTRA_JARS
        .iter()
        .copied()
        .filter(|jar| Path::new(jar).is_file());
    Ok(std::iter::once(DEBIAN_ZK_JAR)
        .chain(extras)
        .collect::<Vec<_>>()
        .join(":"))
}

/// Sends the four-letter command `command` and returns the trimmed answer.
fn four_letter(addr: SocketAddr, command: &str) -> io::Result<String> {
    Ok(tcp_exchange(addr, command.as_bytes())?.trim().to_owned())
}

/// The `Mode:` of the server on `addr` (`leader`, `follower`, `standalone`,
/// ...), or `None` while it does not serve requests.
fn mode(addr: SocketAddr) -> Option<String> {
    let answer = four_letter(addr, "srvr").ok()?;
    answer
        .lines()
        .find_map(|line| line.strip_prefix("Mode:"))
        .map(|m| m.trim().to_owned())
}

/// True for the mode of the server that leads: a quorum's leader, or a
/// standalone server.
fn is_leading(mode: &str) -> bool {
    mode == "leader" || mode == "standalone"
}
