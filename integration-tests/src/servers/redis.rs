//! Real `redis-server` processes on free loopback ports, each in its own temporary
//! directory, without persistence (no RDB snapshots, no AOF) unless asked: one
//! instance, several independent masters (Redlock), or a master and its replica.
//!
//! With [`RedisOptions::tls`] the server speaks TLS only (`--port 0 --tls-port …`):
//! readiness is then the port accepting, and [`RedisServer::command`] (plain text)
//! does not work on it.
//!
//! `FENCELOCK_REDIS_BIN` overrides the binary (default: `redis-server` on `PATH`).

use super::{
    find_executable, free_port, port_accepts, retry_port_clash, tcp_exchange, temp_dir, wait_until,
    with_log_tails, ServerProcess, READY_TIMEOUT,
};
use std::{
    io,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::Command,
};
use tempfile::TempDir;

/// Options of one server.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// `maxmemory-policy` (default: `noeviction`).
    pub maxmemory_policy: Option<String>,
    /// `requirepass` (the default user's password).
    pub password: Option<String>,
    /// Replicate from this master (`host:port`).
    pub replica_of: Option<String>,
    /// Serve TLS only: the port becomes the `tls-port` and the plain port is off.
    pub tls: Option<RedisTls>,
    /// ACL users, one `user` config line each without the word `user` (e.g.
    /// `locker on >pw ~fl:* -@all +evalsha`), rules separated by spaces. The
    /// default user stays as it is (no password unless [`password`](Self::password)),
    /// so [`RedisServer::command`] keeps its rights.
    pub acl_users: Vec<String>,
}

/// TLS settings of a server started with [`RedisOptions::tls`].
#[derive(Debug, Clone)]
pub struct RedisTls {
    /// The server's certificate and key.
    pub server: super::CertFiles,
    /// The CA client certificates must chain to (`tls-ca-cert-file`).
    pub ca: PathBuf,
    /// `tls-auth-clients yes` (client certificates required) or `no`.
    pub auth_clients: bool,
}

/// One `redis-server` child, killed by PID when dropped.
#[derive(Debug)]
pub struct RedisServer {
    process: ServerProcess,
    port: u16,
    options: RedisOptions,
    binary: PathBuf,
    dir: TempDir,
    starts: usize,
}

impl RedisServer {
    /// Whether a `redis-server` binary can be found.
    pub fn available() -> bool {
        find_executable("FENCELOCK_REDIS_BIN", "redis-server").is_ok()
    }

    /// Starts one server with `options` and waits until it answers `PING`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] without a binary; a timeout or early exit with the
    /// server's log tail.
    pub fn start(options: RedisOptions) -> io::Result<RedisServer> {
        let binary = find_executable("FENCELOCK_REDIS_BIN", "redis-server")?;
        let dir = temp_dir("fencelock-redis-")?;
        let (process, port) = retry_port_clash("redis", || {
            let port = free_port()?;
            let mut process = spawn(&binary, &dir, port, &options, 1)?;
            wait_ready(&mut process, port, &options)?;
            Ok((process, port))
        })?;
        Ok(RedisServer {
            process,
            port,
            options,
            binary,
            dir,
            starts: 1,
        })
    }

    /// Starts `n` independent masters.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_masters(n: usize) -> io::Result<Vec<RedisServer>> {
        (0..n)
            .map(|_| Self::start(RedisOptions::default()))
            .collect()
    }

    /// `host:port` of the server.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Kills the server (`SIGKILL`): without persistence its data is gone.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the server again on the same port (empty: nothing was persisted).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn restart(&mut self) -> io::Result<()> {
        self.process.kill();
        self.starts += 1;
        self.process = spawn(
            &self.binary,
            &self.dir,
            self.port,
            &self.options,
            self.starts,
        )?;
        wait_ready(&mut self.process, self.port, &self.options)
    }

    /// Promotes a replica to master (`REPLICAOF NO ONE`): it stops following its
    /// master at once, keeping the data it had received, and comes back as a master
    /// from a later [`restart`](Self::restart).
    ///
    /// # Errors
    ///
    /// When the server does not answer `+OK`.
    pub fn promote(&mut self) -> io::Result<()> {
        let reply = self.command(&["REPLICAOF", "NO", "ONE"])?;
        if !reply.starts_with("+OK") {
            return Err(io::Error::other(format!(
                "REPLICAOF NO ONE on {}: {reply:?}",
                self.address()
            )));
        }
        self.options.replica_of = None;
        Ok(())
    }

    /// Kills the server and starts it again, empty, as a replica of `master`
    /// (`host:port`), as an old master is brought back after a failover; later
    /// [`restart`](Self::restart)s keep that role.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn restart_as_replica_of(&mut self, master: &str) -> io::Result<()> {
        self.options.replica_of = Some(master.to_owned());
        self.restart()
    }

    /// Whether this server is a replica (started or restarted as one and not
    /// promoted since).
    pub fn is_replica(&self) -> bool {
        self.options.replica_of.is_some()
    }

    /// Whether this replica's link to its master is up (`master_link_status:up`):
    /// the initial sync is done and writes stream in.
    pub fn replica_in_sync(&self) -> bool {
        self.command(&["INFO", "replication"])
            .is_ok_and(|info| info.contains("master_link_status:up"))
    }

    /// Waits, at most `timeout`, until [`replica_in_sync`](Self::replica_in_sync).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::TimedOut`].
    pub fn wait_replica_in_sync(&self, timeout: std::time::Duration) -> io::Result<()> {
        wait_until("the replica's link to its master", timeout, || {
            Ok(self.replica_in_sync().then_some(()))
        })
    }

    /// The value of string key `key` (`None` when it does not exist).
    ///
    /// # Errors
    ///
    /// When the server does not answer within a second or answers an error.
    pub fn get(&self, key: &str) -> io::Result<Option<String>> {
        let reply = self.command(&["GET", key])?;
        let mut lines = reply.split("\r\n");
        match lines.next() {
            Some(l) if l.starts_with("$-1") => Ok(None),
            Some(l) if l.starts_with('$') => Ok(lines.next().map(str::to_owned)),
            other => Err(io::Error::other(format!("GET {key}: {other:?}"))),
        }
    }

    /// Stops the process with `SIGSTOP`, as a hung server.
    pub fn pause(&self) {
        self.process.pause();
    }

    /// Continues it with `SIGCONT`.
    pub fn resume(&self) {
        self.process.resume();
    }

    /// Runs one command given as words (no spaces inside a word) with `redis-cli`'s
    /// inline protocol and returns the raw reply.
    ///
    /// # Errors
    ///
    /// When the server does not answer within a second.
    pub fn command(&self, words: &[&str]) -> io::Result<String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut request = String::new();
        if let Some(pw) = &self.options.password {
            request.push_str(&format!("AUTH {pw}\r\n"));
        }
        request.push_str(&words.join(" "));
        request.push_str("\r\nQUIT\r\n");
        tcp_exchange(addr, request.as_bytes())
    }

    /// Runs one command as the ACL user `user` (`AUTH user password` first), the
    /// arguments sent as they are (spaces allowed), and returns the raw replies
    /// (the `AUTH` reply first).
    ///
    /// # Errors
    ///
    /// When the server does not answer within a second.
    pub fn command_as(&self, user: &str, password: &str, args: &[&str]) -> io::Result<String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let resp = |args: &[&str]| {
            let mut out = format!("*{}\r\n", args.len());
            for a in args {
                out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
            }
            out
        };
        let request = resp(&["AUTH", user, password]) + &resp(args) + &resp(&["QUIT"]);
        tcp_exchange(addr, request.as_bytes())
    }
}

fn wait_ready(process: &mut ServerProcess, port: u16, options: &RedisOptions) -> io::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let tls = options.tls.is_some();
    let auth = options
        .password
        .as_ref()
        .map(|pw| format!("AUTH {pw}\r\n"))
        .unwrap_or_default();
    wait_until("redis-server to answer PING", READY_TIMEOUT, || {
        process.check_running()?;
        if !port_accepts(addr) {
            return Ok(None);
        }
        if tls {
            // A plain PING would only be refused; the listener is up once the
            // server is ready (nothing to load without persistence).
            return Ok(Some(()));
        }
        let reply =
            tcp_exchange(addr, format!("{auth}PING\r\nQUIT\r\n").as_bytes()).unwrap_or_default();
        Ok(reply.contains("+PONG").then_some(()))
    })
    .map_err(|e| with_log_tails(e, [&*process]))
}

fn spawn(
    binary: &PathBuf,
    dir: &TempDir,
    port: u16,
    options: &RedisOptions,
    start: usize,
) -> io::Result<ServerProcess> {
    let mut command = Command::new(binary);
    match &options.tls {
        None => command.arg("--port").arg(port.to_string()),
        Some(tls) => command
            .args(["--port", "0", "--tls-port"])
            .arg(port.to_string())
            .arg("--tls-cert-file")
            .arg(&tls.server.cert)
            .arg("--tls-key-file")
            .arg(&tls.server.key)
            .arg("--tls-ca-cert-file")
            .arg(&tls.ca)
            .args([
                "--tls-auth-clients",
                if tls.auth_clients { "yes" } else { "no" },
            ]),
    };
    command
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .args(["--daemonize", "no", "--protected-mode", "no"])
        // A replica's full sync starts at once (the default waits 5 s for more
        // replicas to share one transfer).
        .args(["--repl-diskless-sync-delay", "0"])
        .args([
            "--maxmemory-policy",
            options.maxmemory_policy.as_deref().unwrap_or("noeviction"),
        ]);
    if let Some(pw) = &options.password {
        command.args(["--requirepass", pw]);
    }
    for user in &options.acl_users {
        command.arg("--user").args(user.split_whitespace());
    }
    if let Some(master) = &options.replica_of {
        let (host, mport) = master.rsplit_once(':').unwrap_or((master, "6379"));
        command.args(["--replicaof", host, mport]);
    }
    let log = dir.path().join(format!("redis-{port}-{start}.log"));
    ServerProcess::spawn(&format!("redis-server :{port}"), command, &log)
}
