//! An etcd cluster made of real `etcd` processes on `127.0.0.1`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use tempfile::TempDir;

use super::pki::CertFiles;
use super::{
    find_executable, free_port, memory_temp_dir, port_accepts, retry_port_clash, tcp_exchange,
    temp_dir, wait_until, with_log_tails, Fabric, Link, ServerProcess, READY_TIMEOUT,
};

/// Environment variable naming the etcd binary. Not `ETCD_*`: etcd would
/// read such a variable as a flag.
const BIN_ENV: &str = "FENCELOCK_ETCD_BIN";

/// Environment variable naming the etcdctl binary (installed with etcd).
const CTL_ENV: &str = "FENCELOCK_ETCDCTL_BIN";

/// Raft heartbeat interval in milliseconds: short, for quick elections.
const HEARTBEAT_MS: u32 = 100;

/// Raft election timeout in milliseconds.
const ELECTION_TIMEOUT_MS: u32 = 1000;

/// A running etcd cluster of one or more members, for tests.
///
/// Members run with `--pre-vote` (the default from etcd 3.5 on), so a member
/// that was cut off does not depose a healthy leader when it comes back.
///
/// Dropping it kills every member (by PID), deletes its network namespaces if
/// it has any, and then removes its temporary directory, which holds each
/// member's data directory and log file.
#[derive(Debug)]
pub struct EtcdCluster {
    /// What every member's command line shares.
    spec: ClusterSpec,
    /// The members, in start order; indexes are member numbers.
    members: Vec<Member>,
    /// The members' namespaces and links, for clusters started with
    /// [`EtcdCluster::start_in_namespaces`].
    fabric: Option<Fabric>,
    /// Declared last so it is removed after the members are killed.
    dir: TempDir,
}

/// Settings shared by all members.
#[derive(Debug)]
struct ClusterSpec {
    /// The etcd binary.
    binary: PathBuf,
    /// `--initial-cluster-token`, unique per cluster.
    token: String,
    /// `--initial-cluster`: `name=peer-url` for every member.
    initial_cluster: String,
    /// Client TLS, for clusters started with [`EtcdCluster::start_secured`].
    tls: Option<EtcdTls>,
    /// The root password once [`EtcdCluster::enable_auth`] turned auth on.
    root_password: Option<String>,
}

/// Client TLS of a secured cluster: every member serves `server` on its client
/// URL and requires client certificates signed by `ca`
/// (`--cert-file --key-file --trusted-ca-file --client-cert-auth`).
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// The members' certificate and key.
    pub server: CertFiles,
    /// The CA that client certificates must chain to.
    pub ca: PathBuf,
}

/// What one member needs to start, and start again.
#[derive(Debug)]
struct MemberSpec {
    /// `--name`.
    name: String,
    /// Member number.
    index: usize,
    /// Address of the client URL.
    client_ip: Ipv4Addr,
    /// Address of the peer URL.
    peer_ip: Ipv4Addr,
    /// Port of the client URL.
    client_port: u16,
    /// Port of a second, plain-text client URL that secured clusters also listen
    /// on, for the harness's own probes (health, status, etcdctl).
    plain_port: u16,
    /// Port of the peer URL.
    peer_port: u16,
    /// `--data-dir`, kept across restarts.
    data_dir: PathBuf,
    /// File that receives the member's output.
    log: PathBuf,
}

/// A member and its process.
#[derive(Debug)]
struct Member {
    /// How to start it.
    spec: MemberSpec,
    /// Raft member ID, learnt once the cluster is healthy.
    id: u64,
    /// The current process, killed or not.
    process: ServerProcess,
}

/// The parts of `/v3/maintenance/status` that leader detection needs.
#[derive(Debug)]
struct Status {
    /// ID of the member that answered.
    member_id: u64,
    /// ID of the leader it knows, 0 for none.
    leader: u64,
    /// Its raft term: the highest term has the freshest view.
    raft_term: u64,
}

impl EtcdCluster {
    /// True when an etcd binary can be found (see the module docs).
    pub fn available() -> bool {
        find_executable(BIN_ENV, "etcd").is_ok()
    }

    /// The `etcdctl` binary (v3 API), for tests that drive etcd's own lock
    /// recipe: `FENCELOCK_ETCDCTL_BIN` if set, else `etcdctl` on `PATH`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] when there is none.
    pub fn etcdctl() -> io::Result<PathBuf> {
        find_executable(CTL_ENV, "etcdctl")
    }

    /// Starts a cluster of `members` members (1 or 3 are typical) on free
    /// `127.0.0.1` ports and waits, at most [`READY_TIMEOUT`], until every
    /// member reports itself healthy.
    ///
    /// Fails with [`io::ErrorKind::NotFound`] when no etcd binary is found;
    /// a failed start's error includes the members' log tails.
    pub fn start(members: usize) -> io::Result<EtcdCluster> {
        if members == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an etcd cluster needs at least one member",
            ));
        }
        let binary = find_executable(BIN_ENV, "etcd")?;
        let started = Instant::now();
        let cluster = retry_port_clash("etcd", || Self::try_start(&binary, members, None, None))?;
        tracing::info!(
            "etcd cluster of {members} ready in {:?} at {}",
            started.elapsed(),
            cluster.endpoints().join(",")
        );
        Ok(cluster)
    }

    /// Starts a cluster of `members` members, each in a network namespace of
    /// its own (see [`Fabric`]), so that [`EtcdCluster::cut`] can partition
    /// them; their data lives in memory (`/dev/shm`) so that recoveries are not
    /// timed against a shared disk's fsyncs. Clients in the calling process
    /// reach the members on [`EtcdCluster::endpoints`] as usual.
    ///
    /// Needs root (see [`Fabric::available`]).
    pub fn start_in_namespaces(members: usize) -> io::Result<EtcdCluster> {
        let binary = find_executable(BIN_ENV, "etcd")?;
        let fabric = Fabric::create(members)?;
        Self::try_start(&binary, members, Some(fabric), None)
    }

    /// Starts a cluster of `members` members on `127.0.0.1` whose client URLs
    /// (those of [`EtcdCluster::endpoints`]) speak only TLS with `tls` and require
    /// client certificates; peers talk plain text. Each member also listens on a
    /// plain-text client port ([`EtcdCluster::plain_endpoints`]) for the harness's
    /// probes and for tests of a TLS client against a plain-text port. Turn auth
    /// on with [`EtcdCluster::enable_auth`].
    pub fn start_secured(members: usize, tls: EtcdTls) -> io::Result<EtcdCluster> {
        let binary = find_executable(BIN_ENV, "etcd")?;
        let started = Instant::now();
        let cluster = retry_port_clash("etcd", || {
            Self::try_start(&binary, members, None, Some(tls.clone()))
        })?;
        tracing::info!(
            "secured etcd cluster of {members} ready in {:?} at {}",
            started.elapsed(),
            cluster.endpoints().join(",")
        );
        Ok(cluster)
    }

    /// Turns etcd auth on: a `root` user (role `root`) with `root_password`;
    /// every later [`EtcdCluster::ctl`] call authenticates as root.
    ///
    /// # Errors
    /// The failing etcdctl command with its output.
    pub fn enable_auth(&mut self, root_password: &str) -> io::Result<()> {
        self.ctl(&["user", "add", &format!("root:{root_password}")])?;
        self.ctl(&["user", "grant-role", "root", "root"])?;
        self.ctl(&["auth", "enable"])?;
        self.spec.root_password = Some(root_password.to_owned());
        Ok(())
    }

    /// The README's least-privilege recipe: a role named `user` with
    /// `permission` (`read`, `write` or `readwrite`) on the key prefix `prefix`, and
    /// the user `user` with `password` holding that role. Call again with the same
    /// user to grant it more prefixes.
    ///
    /// # Errors
    /// The failing etcdctl command.
    pub fn add_prefix_user(
        &self,
        user: &str,
        password: &str,
        permission: &str,
        prefix: &str,
    ) -> io::Result<()> {
        let known = self.ctl(&["user", "list"])?;
        if !known.lines().any(|l| l.trim() == user) {
            self.ctl(&["role", "add", user])?;
            self.ctl(&["user", "add", &format!("{user}:{password}")])?;
            self.ctl(&["user", "grant-role", user, user])?;
        }
        self.ctl(&[
            "role",
            "grant-permission",
            user,
            permission,
            "--prefix=true",
            prefix,
        ])?;
        Ok(())
    }

    /// Runs `etcdctl` (v3) with `args` against the plain-text client ports
    /// (the TLS ones when the cluster has no others), as root once auth is on,
    /// and returns its standard output.
    ///
    /// # Errors
    /// When etcdctl is missing or exits non-zero (its stderr in the message; the
    /// root password is never part of it).
    pub fn ctl(&self, args: &[&str]) -> io::Result<String> {
        let mut command = Command::new(Self::etcdctl()?);
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.plain_endpoints().join(",")))
            .args(["--dial-timeout=3s", "--command-timeout=5s"]);
        if let Some(password) = &self.spec.root_password {
            command.arg(format!("--user=root:{password}"));
        }
        let output = command.args(args).output()?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "etcdctl {} failed: {}",
                args.first().copied().unwrap_or_default(),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The plain-text client endpoint, `IP:PORT`, of every member: the same as
    /// [`EtcdCluster::endpoints`] unless the cluster was started with
    /// [`EtcdCluster::start_secured`].
    pub fn plain_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| m.spec.probe_addr().to_string())
            .collect()
    }

    /// One start attempt with freshly chosen ports.
    fn try_start(
        binary: &Path,
        count: usize,
        fabric: Option<Fabric>,
        tls: Option<EtcdTls>,
    ) -> io::Result<EtcdCluster> {
        let dir = match fabric {
            Some(_) => memory_temp_dir("fencelock-etcd-")?,
            None => temp_dir("fencelock-etcd-")?,
        };
        let specs = (0..count)
            .map(|i| MemberSpec::new(i, dir.path(), fabric.as_ref(), tls.is_some()))
            .collect::<io::Result<Vec<_>>>()?;
        let spec = ClusterSpec {
            binary: binary.to_owned(),
            token: dir.path().to_string_lossy().into_owned(),
            initial_cluster: specs
                .iter()
                .map(MemberSpec::initial_cluster_entry)
                .collect::<Vec<_>>()
                .join(","),
            tls,
            root_password: None,
        };
        let members = specs
            .into_iter()
            .map(|member| {
                let process = member.spawn(&spec, fabric.as_ref())?;
                Ok(Member {
                    spec: member,
                    id: 0,
                    process,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut cluster = EtcdCluster {
            spec,
            members,
            fabric,
            dir,
        };
        cluster.wait_all_healthy()?;
        cluster.learn_member_ids()?;
        Ok(cluster)
    }

    /// Waits until every member answers `/health` with `true`.
    fn wait_all_healthy(&mut self) -> io::Result<()> {
        let members = &mut self.members;
        wait_until("all etcd members to be healthy", READY_TIMEOUT, || {
            for member in members.iter_mut() {
                member.process.check_running()?;
            }
            Ok(members
                .iter()
                .all(|m| is_healthy(m.spec.probe_addr()))
                .then_some(()))
        })
        .map_err(|e| with_log_tails(e, self.members.iter().map(|m| &m.process)))
    }

    /// Asks every member for its raft member ID.
    fn learn_member_ids(&mut self) -> io::Result<()> {
        for member in &mut self.members {
            member.id = status(member.spec.probe_addr())?.member_id;
        }
        Ok(())
    }

    /// The client endpoint, `IP:PORT`, of every member (killed ones
    /// included), in member order; the IP is `127.0.0.1` unless the cluster
    /// runs in namespaces.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| m.spec.client_addr().to_string())
            .collect()
    }

    /// A `etcd://HOST:PORT,HOST:PORT/prefix` URL for all members; a leading
    /// `/` of `prefix` is dropped.
    pub fn url(&self, prefix: &str) -> String {
        format!(
            "etcd://{}/{}",
            self.endpoints().join(","),
            prefix.trim_start_matches('/')
        )
    }

    /// The temporary directory that holds every member's data and log
    /// (`member-N/data`, `member-N/etcd.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The PID of `member`'s process, unless it was killed.
    ///
    /// # Panics
    /// If `member` is not a member index.
    pub fn pid(&self, member: usize) -> Option<u32> {
        self.members[member].process.pid()
    }

    /// Kills `member` with `SIGKILL` and waits for it to exit.
    ///
    /// # Panics
    /// If `member` is not a member index.
    pub fn kill(&mut self, member: usize) {
        self.members[member].process.kill();
    }

    /// Stops `member` with `SIGSTOP`: it keeps its ports but answers nothing.
    ///
    /// # Panics
    /// If `member` is not a member index.
    pub fn pause(&self, member: usize) {
        self.members[member].process.pause();
    }

    /// Continues a paused `member` with `SIGCONT`.
    ///
    /// # Panics
    /// If `member` is not a member index.
    pub fn resume(&self, member: usize) {
        self.members[member].process.resume();
    }

    /// Starts `member` again (killing it first if it still runs) with the
    /// same data directory and ports, and waits until it is ready.
    ///
    /// Ready means healthy when a quorum of members runs; without a quorum
    /// etcd cannot become healthy, so then it only waits until the member
    /// accepts connections.
    ///
    /// # Panics
    /// If `member` is not a member index.
    pub fn restart(&mut self, member: usize) -> io::Result<()> {
        self.members[member].process.kill();
        self.members[member].process = self.members[member]
            .spec
            .spawn(&self.spec, self.fabric.as_ref())?;
        let quorum = self.running_count() > self.members.len() / 2;
        let target = &mut self.members[member];
        let port = target.spec.probe_addr();
        let what = format!("restarted etcd member {member} to be ready");
        wait_until(&what, READY_TIMEOUT, || {
            target.process.check_running()?;
            let ready = if quorum {
                is_healthy(port)
            } else {
                port_accepts(port)
            };
            Ok(ready.then_some(()))
        })
        .map_err(|e| with_log_tails(e, [&target.process]))
    }

    /// Kills every member, starts them all again with their data, and waits
    /// until every member is healthy: a whole-cluster restart.
    pub fn restart_all(&mut self) -> io::Result<()> {
        for member in &mut self.members {
            member.process.kill();
        }
        for member in &mut self.members {
            member.process = member.spec.spawn(&self.spec, self.fabric.as_ref())?;
        }
        self.wait_all_healthy()
    }

    /// True when every member runs and answers `/health` with `true`.
    pub fn all_healthy(&self) -> bool {
        self.members
            .iter()
            .all(|m| !m.process.is_paused() && is_healthy(m.spec.probe_addr()))
    }

    /// Cuts `member`'s `link` (see [`Fabric`]): packets are dropped silently
    /// until [`EtcdCluster::heal`].
    ///
    /// # Errors
    /// [`io::ErrorKind::Unsupported`] unless the cluster was started with
    /// [`EtcdCluster::start_in_namespaces`]; the failing `ip` command.
    pub fn cut(&self, member: usize, link: Link) -> io::Result<()> {
        self.fabric()?.cut(member, link)
    }

    /// Heals `member`'s `link`.
    ///
    /// # Errors
    /// As [`EtcdCluster::cut`].
    pub fn heal(&self, member: usize, link: Link) -> io::Result<()> {
        self.fabric()?.heal(member, link)
    }

    fn fabric(&self) -> io::Result<&Fabric> {
        self.fabric.as_ref().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "links can be cut only in a cluster started in namespaces",
            )
        })
    }

    /// How many members have a live (possibly paused) process.
    fn running_count(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.process.pid().is_some())
            .count()
    }

    /// The index of the current leader, as seen by the running, unpaused
    /// member with the highest raft term; `None` when no member knows one.
    ///
    /// A paused or killed leader is still returned while the others have
    /// not yet elected a new one.
    pub fn leader(&self) -> Option<usize> {
        let freshest = self
            .members
            .iter()
            .filter(|m| m.process.pid().is_some() && !m.process.is_paused())
            .filter_map(|m| status(m.spec.probe_addr()).ok())
            .filter(|s| s.leader != 0)
            .max_by_key(|s| s.raft_term)?;
        self.members.iter().position(|m| m.id == freshest.leader)
    }

    /// The etcd server version, e.g. `3.4.23`, from a running member, or
    /// else from `etcd --version`; `unknown` if neither answers.
    pub fn version(&self) -> String {
        self.members
            .iter()
            .filter(|m| !m.process.is_paused())
            .find_map(|m| {
                let body = http(m.spec.probe_addr(), "GET", "/version", "").ok()?;
                json_field(&body, "etcdserver").map(str::to_owned)
            })
            .or_else(|| binary_version(&self.spec.binary))
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

impl MemberSpec {
    /// Chooses addresses, ports and paths for member `index` under `dir`.
    fn new(
        index: usize,
        dir: &Path,
        fabric: Option<&Fabric>,
        secured: bool,
    ) -> io::Result<MemberSpec> {
        let member_dir = dir.join(format!("member-{index}"));
        std::fs::create_dir(&member_dir)?;
        let client_port = free_port()?;
        Ok(MemberSpec {
            name: format!("member-{index}"),
            index,
            client_ip: fabric.map_or(Ipv4Addr::LOCALHOST, |f| f.client_ip(index)),
            peer_ip: fabric.map_or(Ipv4Addr::LOCALHOST, |f| f.peer_ip(index)),
            client_port,
            plain_port: if secured { free_port()? } else { client_port },
            peer_port: free_port()?,
            data_dir: member_dir.join("data"),
            log: member_dir.join("etcd.log"),
        })
    }

    /// The client address.
    fn client_addr(&self) -> SocketAddr {
        SocketAddr::from((self.client_ip, self.client_port))
    }

    /// The address the harness probes: the plain-text client port of a
    /// secured member, else the client port.
    fn probe_addr(&self) -> SocketAddr {
        SocketAddr::from((self.client_ip, self.plain_port))
    }

    /// `http://IP:PORT` (`https://` with TLS) for the client port.
    fn client_url(&self, tls: bool) -> String {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://{}", self.client_addr())
    }

    /// `http://IP:PORT` for the peer port.
    fn peer_url(&self) -> String {
        format!("http://{}:{}", self.peer_ip, self.peer_port)
    }

    /// This member's `name=peer-url` entry of `--initial-cluster`.
    fn initial_cluster_entry(&self) -> String {
        format!("{}={}", self.name, self.peer_url())
    }

    /// Starts the member's process, in its namespace if there is a fabric.
    fn spawn(&self, cluster: &ClusterSpec, fabric: Option<&Fabric>) -> io::Result<ServerProcess> {
        let name = format!("etcd {}", self.name);
        ServerProcess::spawn(&name, self.command(cluster, fabric), &self.log)
    }

    /// The member's command line, with no `ETCD_*` variable inherited.
    fn command(&self, cluster: &ClusterSpec, fabric: Option<&Fabric>) -> Command {
        let mut command = match fabric {
            Some(f) => f.command(self.index, &cluster.binary),
            None => Command::new(&cluster.binary),
        };
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                command.env_remove(key);
            }
        }
        let tls = cluster.tls.as_ref();
        let client_url = self.client_url(tls.is_some());
        let listen = match tls {
            Some(tls) => {
                command
                    .arg("--cert-file")
                    .arg(&tls.server.cert)
                    .arg("--key-file")
                    .arg(&tls.server.key)
                    .arg("--trusted-ca-file")
                    .arg(&tls.ca)
                    .arg("--client-cert-auth");
                format!("{client_url},http://{}", self.probe_addr())
            }
            None => client_url.clone(),
        };
        let heartbeat = HEARTBEAT_MS.to_string();
        let election = ELECTION_TIMEOUT_MS.to_string();
        command
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &listen])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &self.peer_url()])
            .args(["--initial-advertise-peer-urls", &self.peer_url()])
            .args(["--initial-cluster", &cluster.initial_cluster])
            .args(["--initial-cluster-token", &cluster.token])
            .args(["--initial-cluster-state", "new"])
            .args(["--heartbeat-interval", &heartbeat])
            .args(["--election-timeout", &election])
            .arg("--pre-vote")
            .args(["--logger", "zap"]);
        command
    }
}

/// True when the member on `addr` answers `/health` with `true`.
fn is_healthy(addr: SocketAddr) -> bool {
    http(addr, "GET", "/health", "").is_ok_and(|body| json_field(&body, "health") == Some("true"))
}

/// The member on `addr`'s answer to the gRPC gateway's maintenance status.
fn status(addr: SocketAddr) -> io::Result<Status> {
    let body = http(addr, "POST", "/v3/maintenance/status", "{}")?;
    let number = |key: &str| {
        json_field(&body, key)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| io::Error::other(format!("no {key} in etcd status {body}")))
    };
    Ok(Status {
        member_id: number("member_id")?,
        leader: number("leader")?,
        raft_term: number("raft_term")?,
    })
}

/// Sends an HTTP/1.0 request (so the answer is neither chunked nor kept
/// alive) to `addr` and returns the body of a 200 answer.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> io::Result<String> {
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = tcp_exchange(addr, request.as_bytes())?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("malformed HTTP answer: {response:?}")))?;
    match head.split_whitespace().nth(1) {
        Some("200") => Ok(body.to_owned()),
        _ => Err(io::Error::other(format!("{method} {path} answered {head}"))),
    }
}

/// The first value of `"key":` in flat JSON, without its quotes; enough for
/// etcd's status answers, whose numbers are strings.
fn json_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":");
    let start = json.find(&pattern)? + pattern.len();
    let rest = json[start..].trim_start();
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next(),
        None => rest.split([',', '}']).next().map(str::trim),
    }
}

/// The version printed by `binary --version` (`etcd Version: 3.4.23`).
fn binary_version(binary: &Path) -> Option<String> {
    let output = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix("etcd Version:"))
        .map(|v| v.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::json_field;

    #[test]
    fn json_field_reads_strings_and_bare_values() {
        let json = r#"{"header":{"member_id":"42","raft_term":"7"},"leader":"42","ok":true}"#;
        assert_eq!(json_field(json, "member_id"), Some("42"));
        assert_eq!(json_field(json, "raft_term"), Some("7"));
        assert_eq!(json_field(json, "ok"), Some("true"));
        assert_eq!(json_field(json, "missing"), None);
    }
}
