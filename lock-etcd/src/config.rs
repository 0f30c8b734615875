//! `etcd://` URLs, the builder and the defaults.

use lock_core::{url::BackendUrl, validate_ttl, Error, ErrorKind, Result};
use std::{fmt, path::PathBuf, time::Duration};

/// The URL scheme of the etcd backend.
pub const SCHEME: &str = "etcd";

/// The default key prefix: none, so lock `N` is the key range `N/`, the same lock as
/// `etcdctl lock N` and Go's `concurrency.NewMutex(session, "N")`.
pub const DEFAULT_PREFIX: &str = "";
/// The default lease TTL (etcd grants whole seconds, at least its minimum of about 2 s).
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// The default bound on connecting and checking that the cluster answers.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The default bound on one request, retries of transient failures included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest connect or request timeout accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// The shortest connect or request timeout accepted: below it no etcd round trip
/// fits, and every request (releases included) would time out.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);

const PARAMS: [&str; 6] = [
    "ttl",
    "connect_timeout",
    "request_timeout",
    "ca",
    "cert",
    "key",
];

/// Configuration of an [`EtcdBackend`](crate::EtcdBackend): endpoints, key prefix,
/// timeouts, credentials and TLS.
///
/// URL form (see [`from_url`](Self::from_url)):
///
/// ```text
/// etcd://[user:password@]host:port[,host:port…][/prefix][?key=value&…]
/// ```
///
/// | key | default | meaning |
/// |---|---|---|
/// | path (`/prefix`) | none | key prefix: lock `N` is the range `/prefix/N/`, or `N/` with no prefix (see below) |
/// | `ttl` | `10s` | lease TTL when none is given (rounded up to whole seconds) |
/// | `connect_timeout` | `3s` | bound on connecting and the first round trip (100 ms to 600 s) |
/// | `request_timeout` | `5s` | bound on each request, retries of transient failures included (100 ms to 600 s) |
/// | `ca` | none | PEM file of the CA that signed the servers' certificates (enables TLS) |
/// | `cert`, `key` | none | PEM client certificate and key (TLS client authentication) |
/// | `password_file` | none | read the password from this file instead of the URL |
///
/// **Slow links.** One attempt on one member is bounded by a share of
/// `request_timeout` so that a stalled member is left quickly: `request_timeout / 8`
/// (kept within 0.5–2 s) with several members, `request_timeout / 3` (at least 1 s)
/// with one. Over a round trip longer than that share (e.g. 1 s against the default
/// 5 s with three members: 625 ms per attempt), raise `request_timeout` too, to about
/// 8 × the round trip; raising `connect_timeout` alone does not help: the connect
/// succeeds, but every request after it is bounded this way and times out.
///
/// User name and password authenticate with etcd's auth; `Debug` and every error
/// message leave the password out. A least-privilege user needs `readwrite` on the
/// prefix only (`etcdctl role grant-permission R readwrite --prefix=true /prefix/`),
/// so give one: with no prefix the locks live at the root.
///
/// # Key prefix and etcd's own lock recipe
///
/// Lock `N` with prefix `/P` is the same lock as `etcdctl lock /P/N` and Go's
/// `concurrency.NewMutex(session, "/P/N")`; with no prefix (the default, also what
/// `etcd://host:port/` says) it is the same lock as `etcdctl lock N`. The prefix
/// gets one leading `/` and loses trailing ones (`locks/` is `/locks`). A foreign
/// lock whose name starts with `/` is met by moving all but its last segment into
/// the prefix (`/jobs/nightly`: prefix `/jobs`, name `nightly`); a single segment
/// with a leading `/` (`etcdctl lock /nightly`) cannot be named.
///
/// # Examples
///
/// ```
/// use lock_etcd::EtcdConfig;
/// use std::time::Duration;
///
/// let cfg = EtcdConfig::from_url("etcd://app:s3cret@10.0.0.1:2379,10.0.0.2:2379/locks?ttl=15s")?;
/// assert_eq!(cfg.endpoints(), ["10.0.0.1:2379", "10.0.0.2:2379"]);
/// assert_eq!(cfg.prefix(), "/locks");
/// assert_eq!(cfg.default_ttl(), Duration::from_secs(15));
/// assert!(!format!("{cfg:?}").contains("s3cret"));
///
/// let built = EtcdConfig::new(["127.0.0.1:2379"])
///     .with_prefix("/jobs")
///     .with_request_timeout(Duration::from_secs(2));
/// assert_eq!(built.prefix(), "/jobs");
/// # Ok::<(), lock_core::Error>(())
/// ```
#[derive(Clone)]
pub struct EtcdConfig {
    endpoints: Vec<String>,
    prefix: String,
    default_ttl: Duration,
    connect_timeout: Duration,
    request_timeout: Duration,
    user: Option<(String, String)>,
    ca: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
}

impl EtcdConfig {
    /// A configuration for `endpoints` (`host:port` each) with every default.
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: DEFAULT_PREFIX.to_owned(),
            default_ttl: DEFAULT_TTL,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            user: None,
            ca: None,
            identity: None,
        }
    }

    /// Parses an `etcd://` URL (see the type docs for the keys).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] for another scheme, no host, an unknown parameter,
    /// a malformed duration, a bad TTL or timeout, or `cert` without `key`. The message
    /// never contains the password.
    pub fn from_url(url: &str) -> Result<Self> {
        let parsed = BackendUrl::parse(url)?;
        if parsed.scheme != SCHEME {
            return Err(invalid(format!(
                "not an {SCHEME}:// url (scheme {:?})",
                parsed.scheme
            )));
        }
        parsed.reject_unknown_params(&PARAMS)?;
        let mut config = EtcdConfig::new(parsed.hosts.iter().cloned());
        // No path, `/` and `/locks/` all say what they mean: an explicit empty
        // prefix is no prefix (it used to be replaced by the default).
        config = config.with_prefix(&parsed.path);
        if let Some(ttl) = parsed.duration_param("ttl")? {
            config.default_ttl = ttl;
        }
        if let Some(t) = parsed.duration_param("connect_timeout")? {
            config.connect_timeout = t;
        }
        if let Some(t) = parsed.duration_param("request_timeout")? {
            config.request_timeout = t;
        }
        if let Some(user) = parsed.username.clone() {
            config.user = Some((user, parsed.password.clone().unwrap_or_default()));
        }
        config.ca = parsed.param("ca").map(PathBuf::from);
        match (parsed.param("cert"), parsed.param("key")) {
            (Some(cert), Some(key)) => config.identity = Some((cert.into(), key.into())),
            (None, None) => {}
            _ => return Err(invalid("etcd url: `cert` and `key` must be given together")),
        }
        config.validate()?;
        Ok(config)
    }

    /// Sets the key prefix (a leading `/` is added, trailing ones removed; `""` and
    /// `"/"` mean no prefix).
    #[must_use]
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = format!("/{}", prefix.trim_matches('/'));
        if self.prefix == "/" {
            self.prefix = String::new();
        }
        self
    }

    /// Sets the TTL of leases made without an explicit one.
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// Sets the bound on connecting and checking that the cluster answers.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the bound on each request, retries of transient failures included.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Authenticates as `user` with `password` (etcd auth).
    #[must_use]
    pub fn with_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((user.into(), password.into()));
        self
    }

    /// Uses TLS, trusting the CA certificate in the PEM file at `ca`.
    #[must_use]
    pub fn with_tls_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.ca = Some(ca.into());
        self
    }

    /// Uses TLS with client authentication: certificate and key in PEM files.
    #[must_use]
    pub fn with_tls_identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// The endpoints, `host:port` each.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The key prefix (`""` for none, otherwise starting with `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The TTL of leases made without an explicit one.
    pub fn default_ttl(&self) -> Duration {
        self.default_ttl
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The user name, if any (never the password).
    pub fn user(&self) -> Option<&str> {
        self.user.as_ref().map(|(u, _)| u.as_str())
    }

    pub(crate) fn credentials(&self) -> Option<&(String, String)> {
        self.user.as_ref()
    }

    pub(crate) fn tls_files(&self) -> (Option<&PathBuf>, Option<&(PathBuf, PathBuf)>) {
        (self.ca.as_ref(), self.identity.as_ref())
    }

    /// Checks every value.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] for no endpoint, a malformed endpoint, a TTL
    /// outside [`MIN_TTL`](lock_core::MIN_TTL)..=[`MAX_TTL`](lock_core::MAX_TTL), or a
    /// zero or absurd timeout.
    pub fn validate(&self) -> Result<()> {
        if self.endpoints.is_empty() {
            return Err(invalid(
                "etcd config needs at least one endpoint (host:port)",
            ));
        }
        for e in &self.endpoints {
            let bare = e
                .trim_start_matches("http://")
                .trim_start_matches("https://");
            let ok = bare
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok || bare.contains(['/', '@', ' ']) {
                return Err(invalid(format!("etcd endpoint {e:?} is not host:port")));
            }
        }
        validate_ttl(self.default_ttl)?;
        for (name, t) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&t) {
                return Err(invalid(format!(
                    "{name} {t:?} is outside [{MIN_TIMEOUT:?}, {MAX_TIMEOUT:?}]"
                )));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("default_ttl", &self.default_ttl)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("user", &self.user())
            .field("password", &self.user.as_ref().map(|_| "***"))
            .field("ca", &self.ca)
            .field("identity", &self.identity)
            .finish()
    }
}

/// HTTP/2 keep-alive pings: find dead or paused members. etcd refuses pings more
/// often than every 5 s by default (`--grpc-keepalive-min-time`).
const HTTP2_KEEPALIVE: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(5));

/// etcd-client's options for `config`: timeouts, HTTP/2 keep-alive, auth, TLS.
pub(crate) fn connect_options(config: &EtcdConfig) -> Result<etcd_client::ConnectOptions> {
    let mut options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(config.connect_timeout())
        .with_keep_alive(HTTP2_KEEPALIVE.0, HTTP2_KEEPALIVE.1)
        .with_keep_alive_while_idle(false)
        .with_require_leader(true);
    if let Some((user, password)) = config.credentials() {
        options = options.with_user(user, password);
    }
    let (ca, identity) = config.tls_files();
    if ca.is_some() || identity.is_some() {
        let read = |path: &std::path::PathBuf| {
            std::fs::read(path).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!("cannot read tls file {}: {e}", path.display()),
                )
                .with_source(e)
            })
        };
        let mut tls = etcd_client::TlsOptions::new();
        if let Some(ca) = ca {
            tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
        }
        if let Some((cert, key)) = identity {
            tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
        }
        options = options.with_tls(tls);
    }
    Ok(options)
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidConfig, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_keys_and_defaults() {
        let cfg = EtcdConfig::from_url("etcd://127.0.0.1:2379").unwrap();
        assert_eq!(cfg.prefix(), DEFAULT_PREFIX);
        assert_eq!(cfg.prefix(), "");
        // An explicit root or empty prefix is no prefix, not the default replaced.
        for url in ["etcd://h:1/", "etcd://h:1//", "etcd://h:1/?ttl=3s"] {
            assert_eq!(EtcdConfig::from_url(url).unwrap().prefix(), "", "{url}");
        }
        assert_eq!(
            EtcdConfig::from_url("etcd://h:1/fencelock")
                .unwrap()
                .prefix(),
            "/fencelock"
        );
        assert_eq!(cfg.default_ttl(), DEFAULT_TTL);
        assert_eq!(cfg.connect_timeout(), DEFAULT_CONNECT_TIMEOUT);
        let cfg = EtcdConfig::from_url(
            "etcd://u:p@h1:1,h2:2/a/b/?ttl=3s&connect_timeout=250ms&request_timeout=2&ca=/c&cert=/x&key=/y",
        )
        .unwrap();
        assert_eq!(cfg.endpoints(), ["h1:1", "h2:2"]);
        assert_eq!(cfg.prefix(), "/a/b");
        assert_eq!(cfg.default_ttl(), Duration::from_secs(3));
        assert_eq!(cfg.connect_timeout(), Duration::from_millis(250));
        assert_eq!(cfg.request_timeout(), Duration::from_secs(2));
        assert_eq!(cfg.user(), Some("u"));
        assert!(cfg.tls_files().0.is_some() && cfg.tls_files().1.is_some());
    }

    #[test]
    fn bad_urls_are_invalid_config_without_password() {
        for bad in [
            "etcd://",
            "etcd://h:1?ttl=0s",
            "etcd://h:1?ttl=100000h",
            "etcd://h:1?tll=1s",
            "etcd://h:1?ttl=soon",
            "etcd://h:1?request_timeout=0s",
            "etcd://h:1?request_timeout=1ns",
            "etcd://h:1?connect_timeout=99ms",
            "etcd://h:1?cert=/x",
            "zk://h:1",
            "etcd://u:hunter2@h:1?bogus=1",
        ] {
            let err = EtcdConfig::from_url(bad).expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{bad}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn builder_validates_endpoints_and_prefix() {
        assert!(EtcdConfig::new(Vec::<String>::new()).validate().is_err());
        assert!(EtcdConfig::new(["nohost"]).validate().is_err());
        assert!(EtcdConfig::new(["h:1"]).validate().is_ok());
        assert_eq!(EtcdConfig::new(["h:1"]).with_prefix("x/").prefix(), "/x");
        assert_eq!(EtcdConfig::new(["h:1"]).with_prefix("/").prefix(), "");
        let dbg = format!("{:?}", EtcdConfig::new(["h:1"]).with_user("u", "pw-secret"));
        assert!(!dbg.contains("pw-secret"), "{dbg}");
    }
}
