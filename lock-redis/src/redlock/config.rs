//! The configuration of Redlock: the `redlock://` URL and one [`RedisConfig`] per
//! master.

use crate::config::{invalid, RedisConfig};
use lock_core::{url::BackendUrl, Result};

/// The URL scheme of Redlock.
pub const REDLOCK_SCHEME: &str = "redlock";

/// Configuration of a [`RedlockBackend`](crate::RedlockBackend): the masters and the settings of
/// [`RedisConfig`] shared by all of them.
///
/// ```text
/// redlock://[user:password@]host1:port,host2:port,host3:port[?prefix=fl:&ttl=10s&connect_timeout=3s&request_timeout=2s]
/// ```
///
/// `tls=true` speaks TLS to every master (as `rediss://` does to one), with the same
/// `ca`, `cert` and `key` files for all.
///
/// # Examples
///
/// ```
/// use lock_redis::RedlockConfig;
///
/// let cfg = RedlockConfig::from_url("redlock://h1:6379,h2:6379,h3:6379?ttl=5s")?;
/// assert_eq!(cfg.nodes().len(), 3);
/// assert!(RedlockConfig::from_url("redlock://h1:1,h2:2").is_err(), "even count");
/// # Ok::<(), lock_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RedlockConfig {
    nodes: Vec<RedisConfig>,
}

impl RedlockConfig {
    /// Parses a `redlock://` URL.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`](lock_core::ErrorKind::InvalidConfig) for another scheme, an even number or fewer than
    /// 3 hosts, a path, or any error [`RedisConfig`] would give.
    pub fn from_url(url: &str) -> Result<Self> {
        let parsed = BackendUrl::parse(url)?;
        if parsed.scheme != REDLOCK_SCHEME {
            return Err(invalid(format!(
                "not a {REDLOCK_SCHEME}:// url (scheme {:?})",
                parsed.scheme
            )));
        }
        if !parsed.path.is_empty() {
            return Err(invalid(
                "a redlock:// url has no path (database 0 on every master)",
            ));
        }
        let tls = match parsed.param("tls") {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(invalid(format!(
                    "redlock url: tls={other:?} is not true or false"
                )))
            }
        };
        let nodes = parsed
            .hosts
            .iter()
            .map(|h| RedisConfig::from_parts(h.clone(), &parsed, tls))
            .collect::<Result<Vec<_>>>()?;
        let config = RedlockConfig { nodes };
        config.validate()?;
        Ok(config)
    }

    /// A configuration of one [`RedisConfig`] per master.
    pub fn new(nodes: Vec<RedisConfig>) -> Self {
        RedlockConfig { nodes }
    }

    /// The masters.
    pub fn nodes(&self) -> &[RedisConfig] {
        &self.nodes
    }

    /// Checks every value.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`](lock_core::ErrorKind::InvalidConfig) for fewer than 3 or an even number of masters, or
    /// a bad master configuration.
    pub fn validate(&self) -> Result<()> {
        let n = self.nodes.len();
        if n < 3 || n.is_multiple_of(2) {
            return Err(invalid(format!(
                "redlock needs an odd number of at least 3 independent masters, not {n}"
            )));
        }
        self.nodes.iter().try_for_each(RedisConfig::validate)
    }

    /// The first master, whose settings (prefix, TTL, timeouts) stand for all.
    pub(super) fn first(&self) -> &RedisConfig {
        &self.nodes[0]
    }
}
