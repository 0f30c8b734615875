//! [`RedisConfig`]: server address, database, key prefix, TTL and timeouts, from a
//! builder or a `redis://` URL.

use lock_core::{url::BackendUrl, validate_ttl, Error, ErrorKind, Result};
use std::{fmt, time::Duration};

/// The URL scheme of a single Redis server.
pub const SCHEME: &str = "redis";
/// The default key prefix: lock `N` lives in the keys `fl:{N}:…`.
pub const DEFAULT_PREFIX: &str = "fl:";
/// The default lease TTL.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// The default bound on connecting and the first round trip.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The default bound on one request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

const MIN_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_TIMEOUT: Duration = Duration::from_secs(600);
const PARAMS: [&str; 4] = ["prefix", "ttl", "connect_timeout", "request_timeout"];

/// Configuration of a [`RedisBackend`](crate::RedisBackend).
///
/// URL form (see [`from_url`](Self::from_url)):
///
/// ```text
/// redis://[user:password@]host:port[/db][?prefix=fl:&ttl=10s&connect_timeout=3s&request_timeout=2s]
/// ```
///
/// | key | default | meaning |
/// |---|---|---|
/// | host:port | (required) | one Redis server (the port defaults to 6379) |
/// | path (`/db`) | `0` | the logical database number |
/// | `prefix` | `fl:` | key prefix: lock `N` lives in `<prefix>{N}:q`, `<prefix>{N}:t`, `<prefix>{N}:e:<id>`, `<prefix>{N}:w:<id>` |
/// | `ttl` | `10s` | lease TTL when none is given |
/// | `connect_timeout` | `3s` | bound on connecting, authenticating and the first checks (100 ms to 600 s) |
/// | `request_timeout` | `2s` | bound on each request (100 ms to 600 s) |
/// | `password_file` | none | read the password from this file instead of the URL |
///
/// A user name and password authenticate with `AUTH` (ACL users, Redis ≥ 6); a
/// password alone (`redis://:pw@host:port`) authenticates as the default user.
/// `Debug` and every error message leave the password out.
///
/// # Examples
///
/// ```
/// use lock_redis::RedisConfig;
/// use std::time::Duration;
///
/// let cfg = RedisConfig::from_url("redis://app:s3cret@127.0.0.1:6379/2?prefix=jobs:&ttl=5s")?;
/// assert_eq!(cfg.address(), "127.0.0.1:6379");
/// assert_eq!(cfg.db(), 2);
/// assert_eq!(cfg.prefix(), "jobs:");
/// assert_eq!(cfg.default_ttl(), Duration::from_secs(5));
/// assert!(!format!("{cfg:?}").contains("s3cret"));
/// # Ok::<(), lock_core::Error>(())
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    address: String,
    db: i64,
    prefix: String,
    default_ttl: Duration,
    connect_timeout: Duration,
    request_timeout: Duration,
    user: Option<String>,
    password: Option<String>,
}

impl RedisConfig {
    /// A configuration for the server at `address` (`host:port`) with every default.
    pub fn new(address: impl Into<String>) -> Self {
        RedisConfig {
            address: address.into(),
            db: 0,
            prefix: DEFAULT_PREFIX.to_owned(),
            default_ttl: DEFAULT_TTL,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            user: None,
            password: None,
        }
    }

    /// Parses a `redis://` URL (see the type docs for the keys).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] for another scheme, no host or more than one, a bad
    /// database number, an unknown parameter, a malformed duration, a bad TTL or
    /// timeout. The message never contains the password.
    pub fn from_url(url: &str) -> Result<Self> {
        let parsed = BackendUrl::parse(url)?;
        if parsed.scheme != SCHEME {
            return Err(invalid(format!(
                "not a {SCHEME}:// url (scheme {:?})",
                parsed.scheme
            )));
        }
        let host = match parsed.hosts.as_slice() {
            [one] => one.clone(),
            [] => return Err(invalid("redis url needs a host:port")),
            _ => {
                return Err(invalid(
                    "a redis:// url names one server; use redlock://h1:p,h2:p,h3:p for several independent masters",
                ))
            }
        };
        let mut config = Self::from_parts(host, &parsed)?;
        config.db = match parsed.path.trim_start_matches('/') {
            "" => 0,
            db => db
                .parse::<i64>()
                .ok()
                .filter(|d| (0..=65_535).contains(d))
                .ok_or_else(|| {
                    invalid(format!(
                        "redis url path {:?} is not a database number",
                        parsed.path
                    ))
                })?,
        };
        config.validate()?;
        Ok(config)
    }

    /// The settings shared by `redis://` and `redlock://` URLs.
    pub(crate) fn from_parts(address: String, parsed: &BackendUrl) -> Result<Self> {
        parsed.reject_unknown_params(&PARAMS)?;
        let mut config = RedisConfig::new(address);
        if let Some(prefix) = parsed.param("prefix") {
            config.prefix = prefix.to_owned();
        }
        if let Some(ttl) = parsed.duration_param("ttl")? {
            config.default_ttl = ttl;
        }
        if let Some(t) = parsed.duration_param("connect_timeout")? {
            config.connect_timeout = t;
        }
        if let Some(t) = parsed.duration_param("request_timeout")? {
            config.request_timeout = t;
        }
        config.user = parsed.username.clone().filter(|u| !u.is_empty());
        config.password = parsed.password.clone();
        Ok(config)
    }

    /// Sets the key prefix.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the logical database number.
    #[must_use]
    pub fn with_db(mut self, db: i64) -> Self {
        self.db = db;
        self
    }

    /// Sets the TTL of leases made without an explicit one.
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// Sets the bound on connecting and the first checks.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the bound on each request.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Authenticates as `user` (empty: the default user) with `password`.
    #[must_use]
    pub fn with_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        let user = user.into();
        self.user = (!user.is_empty()).then_some(user);
        self.password = Some(password.into());
        self
    }

    /// The server, `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The logical database number.
    pub fn db(&self) -> i64 {
        self.db
    }

    /// The key prefix.
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
        self.user.as_deref()
    }

    pub(crate) fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The host and port.
    pub(crate) fn host_port(&self) -> Result<(String, u16)> {
        let (host, port) = self
            .address
            .rsplit_once(':')
            .ok_or_else(|| invalid(format!("redis address {:?} is not host:port", self.address)))?;
        let port =
            port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                invalid(format!("redis address {:?} has a bad port", self.address))
            })?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(invalid(format!(
                "redis address {:?} is not host:port",
                self.address
            )));
        }
        Ok((host.to_owned(), port))
    }

    /// Checks every value.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] for a malformed address, a database number
    /// outside 0..=65535, a TTL outside [`MIN_TTL`](lock_core::MIN_TTL)..=[`MAX_TTL`](lock_core::MAX_TTL),
    /// a zero or absurd timeout, or a prefix with `{`, `}` or `*`.
    pub fn validate(&self) -> Result<()> {
        self.host_port()?;
        if !(0..=65_535).contains(&self.db) {
            return Err(invalid(format!(
                "redis database {} is outside 0..=65535",
                self.db
            )));
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
        if self
            .prefix
            .contains(['{', '}', '*', '?', '[', ']', '\\', ' '])
        {
            return Err(invalid(format!(
                "redis key prefix {:?} may not contain braces, glob characters or spaces",
                self.prefix
            )));
        }
        Ok(())
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("address", &self.address)
            .field("db", &self.db)
            .field("prefix", &self.prefix)
            .field("default_ttl", &self.default_ttl)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidConfig, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_keys_and_defaults() {
        let cfg = RedisConfig::from_url("redis://127.0.0.1:6379").unwrap();
        assert_eq!(cfg.prefix(), DEFAULT_PREFIX);
        assert_eq!(cfg.db(), 0);
        assert_eq!(cfg.default_ttl(), DEFAULT_TTL);
        assert_eq!(cfg.user(), None);
        let cfg = RedisConfig::from_url(
            "redis://u:p@h:7/3?prefix=x:&ttl=3s&connect_timeout=250ms&request_timeout=1s",
        )
        .unwrap();
        assert_eq!(cfg.host_port().unwrap(), ("h".to_owned(), 7));
        assert_eq!(cfg.db(), 3);
        assert_eq!(cfg.prefix(), "x:");
        assert_eq!(cfg.default_ttl(), Duration::from_secs(3));
        assert_eq!(cfg.connect_timeout(), Duration::from_millis(250));
        assert_eq!(cfg.request_timeout(), Duration::from_secs(1));
        assert_eq!(cfg.user(), Some("u"));
        assert_eq!(cfg.password(), Some("p"));
        let cfg = RedisConfig::from_url("redis://:pw@h:7").unwrap();
        assert_eq!((cfg.user(), cfg.password()), (None, Some("pw")));
    }

    #[test]
    fn bad_urls_are_invalid_config_without_password() {
        for bad in [
            "redis://",
            "redis://h:1?ttl=0s",
            "redis://h:1?ttl=100000h",
            "redis://h:1?tll=1s",
            "redis://h:1?ttl=soon",
            "redis://h:1?request_timeout=1ns",
            "redis://h:1/x",
            "redis://h:1/70000",
            "redis://h:1,h:2",
            "redis://h:0",
            "redis://h:1?prefix=a{b",
            "etcd://h:1",
            "redis://u:hunter2@h:1?bogus=1",
        ] {
            let err = RedisConfig::from_url(bad).expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{bad}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let dbg = format!("{:?}", RedisConfig::new("h:1").with_user("u", "pw-secret"));
        assert!(!dbg.contains("pw-secret"), "{dbg}");
    }
}
