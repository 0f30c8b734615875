//! `zk://` URLs, the [`ZkConfig`] builder and defaults.

use lock_core::{url::BackendUrl, validate_ttl, Error, ErrorKind, Result};
use std::{fmt, path::PathBuf, time::Duration};

/// The URL scheme of the ZooKeeper backend.
pub const SCHEME: &str = "zk";

/// The session timeout (lease TTL) requested when none is given.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connecting may take before it fails with
/// [`ErrorKind::Unavailable`] when none is given.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest connect timeout accepted.
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(600);
/// The shortest connect timeout accepted: below it no ZooKeeper handshake fits.
pub const MIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(100);

/// Session timeouts below this are raised to it before asking the server (which then
/// clamps to its `[2, 20] × tickTime`): zookeeper-client derives its connection
/// timeouts from the requested value, and a few milliseconds make every connect fail.
pub const MIN_REQUESTED_SESSION_TIMEOUT: Duration = Duration::from_millis(500);

/// The shortest per-server connection timeout fencelock gives zookeeper-client (see
/// [`ZkConfig::per_host_timeout`]): below it a loaded server or network would
/// be taken for dead on every hiccup.
pub const MIN_PER_HOST_TIMEOUT: Duration = Duration::from_millis(200);

/// The ACL of the znodes this backend creates (lock directories, lock nodes, the
/// chroot if missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ZkAcl {
    /// `world:anyone` may do everything (ZooKeeper's `OPEN_ACL_UNSAFE`). The default.
    #[default]
    Open,
    /// Full rights only for the authenticated user that created the node
    /// (`auth::` = ZooKeeper's `CREATOR_ALL_ACL`), read rights for everyone. Other
    /// users cannot create, delete or change lock nodes; every client sharing the
    /// locks must use the same credentials. Needs `user:password`.
    Creator,
}

impl ZkAcl {
    fn parse(value: &str) -> Result<Self> {
        match value {
            "open" => Ok(ZkAcl::Open),
            "creator" => Ok(ZkAcl::Creator),
            other => Err(invalid(format!(
                "acl {other:?} is not one of: open, creator"
            ))),
        }
    }
}

/// How this backend names its lock nodes: which other clients' recipes count them as
/// contenders (see "Mixed fleets" in the README).
///
/// fencelock itself counts the nodes of every style (and those of Curator, kazoo and
/// ZooKeeper's `WriteLock` recipe) whichever style it writes, so fencelock clients
/// with different styles exclude each other. No single name can be seen by both
/// Curator and a default kazoo `Lock`: Curator sorts children by the text after the
/// last `lock-`, kazoo keeps only names ending in `__lock__` + sequence and compares
/// the sequence text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ZkNodeStyle {
    /// `<uuid>-lock-<seq>`, the layout of Curator's `InterProcessMutex`
    /// (`_c_<uuid>-lock-<seq>`). Seen by Curator, by ZooKeeper's `WriteLock` recipe
    /// and by kazoo with `extra_lock_patterns=["-lock-"]`; **not** by a default kazoo
    /// `Lock`. The default, and the only style earlier fencelock versions wrote.
    #[default]
    Curator,
    /// `<uuid>__lock__<seq>`, kazoo's own `Lock` / `WriteLock` node name: seen by
    /// every kazoo lock (`Lock`, `WriteLock`, `ReadLock`) with default settings;
    /// **not** seen correctly by Curator or ZooKeeper's `WriteLock` recipe, and not by
    /// earlier fencelock versions (which count only `-lock-` nodes).
    Kazoo,
}

impl ZkNodeStyle {
    fn parse(value: &str) -> Result<Self> {
        match value {
            "curator" => Ok(ZkNodeStyle::Curator),
            "kazoo" => Ok(ZkNodeStyle::Kazoo),
            other => Err(invalid(format!(
                "node_style {other:?} is not one of: curator, kazoo"
            ))),
        }
    }

    /// The text between the uuid and the sequence number of a node of this style.
    pub fn marker(self) -> &'static str {
        match self {
            ZkNodeStyle::Curator => "-lock-",
            ZkNodeStyle::Kazoo => "__lock__",
        }
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidConfig, msg)
}

/// Configuration of a [`ZkBackend`](crate::ZkBackend): servers, chroot, timeouts,
/// digest auth and ACL.
///
/// URL form:
/// `zk://[user:password@]host:port[,host:port…][/chroot][?key=value&…]`
///
/// | key | default | meaning |
/// |---|---|---|
/// | `session_timeout` | 10s | session timeout requested for each lease (the server clamps it to `[2, 20] × tickTime`) |
/// | `connect_timeout` | 3s | how long connecting may take before [`ErrorKind::Unavailable`]; each server gets a share of it ([`per_host_timeout`](ZkConfig::per_host_timeout)) |
/// | `acl` | `open` | `open` or `creator` (see [`ZkAcl`]; `creator` needs `user:password`) |
/// | `password_file` | none | read the digest password from this file instead of the URL |
/// | `node_style` | `curator` | `curator` (`<uuid>-lock-<seq>`) or `kazoo` (`<uuid>__lock__<seq>`): which foreign clients see this client's nodes (see [`ZkNodeStyle`]) |
/// | `ca` | none | PEM file of the CA that signed the servers' certificates: enables TLS to every host (their `secureClientPort`) |
/// | `cert`, `key` | none | PEM client certificate and key, for servers with `ssl.clientAuth=need` (needs `ca`) |
///
/// The names of the TLS keys are those of `etcd://` URLs. The server certificate must
/// be valid for the host name or IP address in the URL.
///
/// `user:password` authenticates every session with ZooKeeper's `digest` scheme. The
/// chroot (default: none) is created as persistent nodes if missing when the first
/// lease is granted (never by read-only calls such as `inspect` and `list`); lock
/// directories live directly under it. A chroot in ZooKeeper's reserved tree (`/zookeeper`,
/// `/zookeeper/…`) is rejected. Unknown keys are rejected.
///
/// `Debug` never shows the password.
///
/// # Examples
///
/// ```
/// use lock_zk::{ZkAcl, ZkConfig};
/// use std::time::Duration;
///
/// let cfg = ZkConfig::from_url("zk://app:s3cret@10.0.0.1:2181,10.0.0.2:2181/locks?session_timeout=4s&acl=creator")?;
/// assert_eq!(cfg.hosts(), ["10.0.0.1:2181", "10.0.0.2:2181"]);
/// assert_eq!(cfg.chroot(), "/locks");
/// assert_eq!(cfg.session_timeout(), Duration::from_secs(4));
/// assert_eq!(cfg.acl(), ZkAcl::Creator);
/// assert!(!format!("{cfg:?}").contains("s3cret"));
///
/// let built = ZkConfig::new(["127.0.0.1:2181"]).with_chroot("/locks")?.with_connect_timeout(Duration::from_secs(1));
/// assert_eq!(built.connect_timeout(), Duration::from_secs(1));
/// assert!(ZkConfig::from_url("zk://h:2181?sesion_timeout=4s").is_err(), "typo rejected");
/// # Ok::<(), lock_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ZkConfig {
    hosts: Vec<String>,
    chroot: String,
    session_timeout: Duration,
    connect_timeout: Duration,
    auth: Option<(String, String)>,
    acl: ZkAcl,
    node_style: ZkNodeStyle,
    ca: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
}

impl ZkConfig {
    /// A configuration for the servers `hosts` (`host:port` each) with every other
    /// setting at its default.
    pub fn new<I, S>(hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ZkConfig {
            hosts: hosts.into_iter().map(Into::into).collect(),
            chroot: String::new(),
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            auth: None,
            acl: ZkAcl::Open,
            node_style: ZkNodeStyle::Curator,
            ca: None,
            identity: None,
        }
    }

    /// Parses a `zk://` URL (see the type docs).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] for another scheme, no host, a bad chroot, an
    /// unknown parameter or a bad value (the message never contains the password).
    pub fn from_url(url: &str) -> Result<Self> {
        let parsed = BackendUrl::parse(url)?;
        if parsed.scheme != SCHEME {
            return Err(invalid(format!(
                "{:?} is not a {SCHEME}:// url",
                parsed.scheme
            )));
        }
        parsed.reject_unknown_params(&[
            "session_timeout",
            "connect_timeout",
            "acl",
            "node_style",
            "ca",
            "cert",
            "key",
        ])?;
        let mut config = ZkConfig::new(parsed.hosts.clone()).with_chroot(&parsed.path)?;
        match (&parsed.username, &parsed.password) {
            (None, None) => {}
            (Some(user), Some(password)) => config = config.with_digest_auth(user, password),
            _ => {
                return Err(invalid(
                    "zk digest auth needs both a user and a password (user:password@)",
                ))
            }
        }
        if let Some(t) = parsed.duration_param("session_timeout")? {
            config = config.with_session_timeout(t);
        }
        if let Some(t) = parsed.duration_param("connect_timeout")? {
            config = config.with_connect_timeout(t);
        }
        if let Some(acl) = parsed.param("acl") {
            config = config.with_acl(ZkAcl::parse(acl)?);
        }
        if let Some(style) = parsed.param("node_style") {
            config = config.with_node_style(ZkNodeStyle::parse(style)?);
        }
        if let Some(ca) = parsed.param("ca") {
            config = config.with_tls_ca(ca);
        }
        match (parsed.param("cert"), parsed.param("key")) {
            (Some(cert), Some(key)) => config = config.with_tls_identity(cert, key),
            (None, None) => {}
            _ => return Err(invalid("zk url: `cert` and `key` must be given together")),
        }
        config.validate()?;
        Ok(config)
    }

    /// Sets the chroot: an absolute path (`/app/locks`) under which every node lives;
    /// `""` or `"/"` for none.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] for a relative path, an empty, `.` or `..`
    /// segment, a character ZooKeeper rejects, or a path in ZooKeeper's reserved
    /// tree (`/zookeeper` and below; `/zookeeper2` is fine).
    pub fn with_chroot(mut self, chroot: &str) -> Result<Self> {
        let chroot = chroot.trim_end_matches('/');
        if !chroot.is_empty() {
            let rest = chroot
                .strip_prefix('/')
                .ok_or_else(|| invalid(format!("zk chroot {chroot:?} must start with '/'")))?;
            for segment in rest.split('/') {
                if matches!(segment, "" | "." | "..")
                    || segment.chars().any(|c| c.is_control() || c == '\u{0}')
                {
                    return Err(invalid(format!(
                        "zk chroot {chroot:?} has a bad segment {segment:?}"
                    )));
                }
            }
            if rest.split('/').next() == Some("zookeeper") {
                return Err(invalid(format!(
                    "zk chroot {chroot:?} is inside /zookeeper, the tree ZooKeeper reserves for itself"
                )));
            }
        }
        self.chroot = chroot.to_owned();
        Ok(self)
    }

    /// Sets the session timeout requested for each lease (its TTL). The server clamps
    /// it to `[2, 20] × tickTime`; leases report the negotiated value.
    ///
    /// It is also what a holder's crash costs the next waiter: between 0.9 ×
    /// the negotiated timeout and the timeout plus one `tickTime` (the server expires
    /// sessions on tick boundaries; see "Crash takeover" on
    /// [`ZkLease`](crate::ZkLease)).
    #[must_use]
    pub fn with_session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// Sets how long connecting may take before it fails with
    /// [`ErrorKind::Unavailable`].
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Authenticates every session with ZooKeeper's `digest` scheme as `user`.
    #[must_use]
    pub fn with_digest_auth(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.auth = Some((user.into(), password.into()));
        self
    }

    /// Sets the ACL of created nodes.
    #[must_use]
    pub fn with_acl(mut self, acl: ZkAcl) -> Self {
        self.acl = acl;
        self
    }

    /// Sets how lock nodes are named (see [`ZkNodeStyle`]).
    #[must_use]
    pub fn with_node_style(mut self, style: ZkNodeStyle) -> Self {
        self.node_style = style;
        self
    }

    /// Uses TLS to every server, trusting the CA certificate(s) in the PEM file `ca`.
    #[must_use]
    pub fn with_tls_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.ca = Some(ca.into());
        self
    }

    /// Presents the client certificate `cert` with its key `key` (PEM files) in the
    /// TLS handshake; needs [`with_tls_ca`](Self::with_tls_ca).
    #[must_use]
    pub fn with_tls_identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// The CA file, when TLS is on.
    pub fn tls_ca(&self) -> Option<&PathBuf> {
        self.ca.as_ref()
    }

    /// The client certificate and key files, if any (only their paths: the key is
    /// read when connecting and kept nowhere else).
    pub fn tls_identity(&self) -> Option<(&PathBuf, &PathBuf)> {
        self.identity.as_ref().map(|(c, k)| (c, k))
    }

    /// How lock nodes are named.
    pub fn node_style(&self) -> ZkNodeStyle {
        self.node_style
    }

    /// The servers, `host:port` each.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The chroot, `""` for none.
    pub fn chroot(&self) -> &str {
        &self.chroot
    }

    /// The session timeout requested for leases.
    pub fn session_timeout(&self) -> Duration {
        self.session_timeout
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The digest user, if any (the password is never exposed).
    pub fn user(&self) -> Option<&str> {
        self.auth.as_ref().map(|(u, _)| u.as_str())
    }

    /// The ACL of created nodes.
    pub fn acl(&self) -> ZkAcl {
        self.acl
    }

    /// Checks the whole configuration.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`]: no host, a session timeout outside
    /// [`MIN_TTL`](lock_core::MIN_TTL)..=[`MAX_TTL`](lock_core::MAX_TTL), a zero or
    /// huge connect timeout, `acl=creator` without credentials, or a client certificate
    /// without `ca`.
    pub fn validate(&self) -> Result<()> {
        if self.hosts.is_empty() {
            return Err(invalid("zk url needs at least one host:port"));
        }
        if let Some(bad) = self
            .hosts
            .iter()
            .find(|h| h.is_empty() || h.contains(['/', ',', '@']))
        {
            return Err(invalid(format!("zk host {bad:?} is not host:port")));
        }
        validate_ttl(self.session_timeout)
            .map_err(|e| invalid(format!("session_timeout: {}", e.message())))?;
        if !(MIN_CONNECT_TIMEOUT..=MAX_CONNECT_TIMEOUT).contains(&self.connect_timeout) {
            return Err(invalid(format!(
                "connect_timeout {:?} is outside [{MIN_CONNECT_TIMEOUT:?}, {MAX_CONNECT_TIMEOUT:?}]",
                self.connect_timeout
            )));
        }
        if self.acl == ZkAcl::Creator && self.auth.is_none() {
            return Err(invalid(
                "acl=creator needs digest credentials (zk://user:password@…)",
            ));
        }
        if self.identity.is_some() && self.ca.is_none() {
            return Err(invalid(
                "a zk client certificate (cert=, key=) needs the servers' ca= as well",
            ));
        }
        Ok(())
    }

    /// The per-server connection timeout fencelock gives zookeeper-client for a
    /// session asking for `session_timeout`: how long one server may take to accept a
    /// connection and answer the session handshake before the next server is tried,
    /// and how long an established connection may stay silent before it counts as
    /// lost and the session moves to another server.
    ///
    /// It is the smaller of
    ///
    /// - `connect_timeout / (hosts + 1)`, so that trying every host once fits inside
    ///   the [connect timeout](Self::connect_timeout) with room to spare: a server
    ///   that accepts TCP connections but never answers (wedged, `SIGSTOP`ped, behind
    ///   a half-dead load balancer) costs one share, not the whole connect; and
    /// - `session_timeout / 5`, so that a session whose server stops answering
    ///   notices within a fifth of its timeout and, even when the next server tried
    ///   is another wedged one, reaches a live server well before the lease turns
    ///   `Suspect` (0.8 of the timeout after the last confirmed heartbeat, the rule on
    ///   `LockState`);
    ///
    /// raised to [`MIN_PER_HOST_TIMEOUT`] and capped at `3/5 × session_timeout`
    /// (zookeeper-client ignores larger values). zookeeper-client's own default
    /// (`2/5 × session_timeout`, e.g. 4 s for a 10 s session) exceeds the default 3 s
    /// connect timeout, which made one wedged server fail most connects.
    ///
    /// zookeeper-client shuffles the host list at every (re)connect, so the position
    /// of a wedged host in the URL does not matter; hosts are tried one after the
    /// other, not in parallel.
    ///
    /// Not guaranteed: with a very short connect timeout and many hosts the floor
    /// wins, and not every host may be tried before the connect timeout; a server
    /// that stalls longer than this (a long GC pause) drops its connections, which
    /// then reconnect (to it or another server) without losing the session.
    pub fn per_host_timeout(&self, session_timeout: Duration) -> Duration {
        let hosts = u32::try_from(self.hosts.len().max(1)).unwrap_or(u32::MAX);
        let share = self.connect_timeout / hosts.saturating_add(1);
        share
            .min(session_timeout / 5)
            .max(MIN_PER_HOST_TIMEOUT)
            .min(session_timeout * 3 / 5)
    }

    /// The connect string for zookeeper-client, without chroot (no credentials in it).
    pub(crate) fn servers(&self) -> String {
        self.hosts.join(",")
    }

    /// `user:password` for the digest scheme.
    pub(crate) fn digest(&self) -> Option<Vec<u8>> {
        self.auth
            .as_ref()
            .map(|(u, p)| format!("{u}:{p}").into_bytes())
    }
}

impl fmt::Debug for ZkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZkConfig")
            .field("hosts", &self.hosts)
            .field("chroot", &self.chroot)
            .field("session_timeout", &self.session_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("user", &self.user())
            .field("password", &self.auth.as_ref().map(|_| "***"))
            .field("acl", &self.acl)
            .field("node_style", &self.node_style)
            .field("ca", &self.ca)
            .field("identity", &self.identity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_without_parameters() {
        let cfg = ZkConfig::from_url("zk://127.0.0.1:2181").unwrap();
        assert_eq!(cfg.hosts(), ["127.0.0.1:2181"]);
        assert_eq!(cfg.chroot(), "");
        assert_eq!(cfg.session_timeout(), DEFAULT_SESSION_TIMEOUT);
        assert_eq!(cfg.connect_timeout(), DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(cfg.acl(), ZkAcl::Open);
        assert_eq!(cfg.user(), None);
        assert_eq!(cfg.servers(), "127.0.0.1:2181");
        assert_eq!(cfg.node_style(), ZkNodeStyle::Curator);
    }

    #[test]
    fn node_style_is_read_from_the_url() {
        let cfg = ZkConfig::from_url("zk://h:1/x?node_style=kazoo").unwrap();
        assert_eq!(cfg.node_style(), ZkNodeStyle::Kazoo);
        assert_eq!(cfg.node_style().marker(), "__lock__");
        let cfg = ZkConfig::from_url("zk://h:1?node_style=curator").unwrap();
        assert_eq!(cfg.node_style(), ZkNodeStyle::Curator);
        assert_eq!(cfg.node_style().marker(), "-lock-");
        let err = ZkConfig::from_url("zk://h:1?node_style=python").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.message().contains("curator, kazoo"), "{err}");
    }

    #[test]
    fn bad_urls_are_invalid_config() {
        for bad in [
            "zk://",
            "etcd://h:1",
            "zk://h:1?bogus=1",
            "zk://h:1?session_timeout=0s",
            "zk://h:1?session_timeout=2h",
            "zk://h:1?connect_timeout=0s",
            "zk://h:1?connect_timeout=1ns",
            "zk://h:1?connect_timeout=soon",
            "zk://h:1?acl=everyone",
            "zk://h:1?acl=creator",
            "zk://user@h:1",
            "zk://h:1/a//b",
            "zk://h:1/a/../b",
            "zk://h:1/zookeeper",
            "zk://h:1/zookeeper/",
            "zk://h:1/zookeeper/quota",
            "zk://h:1/zookeeper/locks/a",
            "zk://h:1?cert=/c",
            "zk://h:1?ca=/a&key=/k",
            "zk://h:1?cert=/c&key=/k",
        ] {
            let err = ZkConfig::from_url(bad).expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{bad}: {err}");
        }
    }

    #[test]
    fn tls_files_are_read_from_the_url() {
        let cfg = ZkConfig::from_url("zk://h:1/x?ca=/etc/ca.pem&cert=/c.pem&key=/k.pem").unwrap();
        assert_eq!(cfg.tls_ca(), Some(&PathBuf::from("/etc/ca.pem")));
        let (cert, key) = cfg.tls_identity().unwrap();
        assert_eq!(
            (cert.to_str(), key.to_str()),
            (Some("/c.pem"), Some("/k.pem"))
        );
        let server_only = ZkConfig::from_url("zk://h:1?ca=/etc/ca.pem").unwrap();
        assert!(server_only.tls_identity().is_none());
        assert!(ZkConfig::from_url("zk://h:1").unwrap().tls_ca().is_none());
    }

    #[test]
    fn credentials_never_show() {
        let cfg = ZkConfig::from_url("zk://app:pa%40ss@h:1/x?acl=creator").unwrap();
        assert_eq!(cfg.user(), Some("app"));
        assert_eq!(cfg.digest().as_deref(), Some(&b"app:pa@ss"[..]));
        assert!(!format!("{cfg:?}").contains("pa@ss"));
        let err = ZkConfig::from_url("zk://app:secret@h:1?acl=nope").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        let err = ZkConfig::from_url("zk://app:secret@h:bad").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn per_host_timeout_fits_every_host_into_the_connect_timeout() {
        let three = ZkConfig::from_url("zk://a:1,b:1,c:1").unwrap();
        let t = three.per_host_timeout(DEFAULT_SESSION_TIMEOUT);
        assert_eq!(t, Duration::from_millis(750));
        assert!(t * 3 < three.connect_timeout());
        // A short session: a fifth of it.
        assert_eq!(
            three.per_host_timeout(Duration::from_secs(3)),
            Duration::from_millis(600)
        );
        // Floor, but never above 3/5 of the session timeout.
        assert_eq!(
            three
                .clone()
                .with_connect_timeout(Duration::from_millis(100))
                .per_host_timeout(DEFAULT_SESSION_TIMEOUT),
            MIN_PER_HOST_TIMEOUT
        );
        assert_eq!(
            three.per_host_timeout(MIN_REQUESTED_SESSION_TIMEOUT),
            Duration::from_millis(200)
        );
        assert_eq!(
            three.per_host_timeout(Duration::from_millis(300)),
            Duration::from_millis(180)
        );
        let one = ZkConfig::from_url("zk://a:1").unwrap();
        assert_eq!(
            one.per_host_timeout(DEFAULT_SESSION_TIMEOUT),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn chroot_is_normalised() {
        assert_eq!(
            ZkConfig::from_url("zk://h:1/a/b/").unwrap().chroot(),
            "/a/b"
        );
        assert_eq!(
            ZkConfig::new(["h:1"]).with_chroot("/").unwrap().chroot(),
            ""
        );
        assert!(ZkConfig::new(["h:1"]).with_chroot("rel").is_err());
        let reserved = ZkConfig::new(["h:1"])
            .with_chroot("/zookeeper/config")
            .unwrap_err();
        assert_eq!(reserved.kind(), ErrorKind::InvalidConfig);
        assert!(reserved.message().contains("reserves"), "{reserved}");
        for fine in ["/zookeeper2", "/zoo/zookeeper", "/apps/zookeeper/locks"] {
            assert_eq!(
                ZkConfig::new(["h:1"]).with_chroot(fine).unwrap().chroot(),
                fine
            );
        }
    }
}
