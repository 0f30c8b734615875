//! `memory://` URLs and defaults.

use lock_core::{url::BackendUrl, validate_ttl, Error, ErrorKind, Result};
use std::time::Duration;

/// The URL scheme of the memory backend.
pub const SCHEME: &str = "memory";

/// The default lease TTL.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// Configuration of a [`MemoryBackend`](crate::MemoryBackend).
///
/// URL form: `memory://[STORE][?ttl=DURATION]`. Without `STORE`, every connect makes a
/// new private store; with it, every connect in the process naming the same store
/// shares it (so two components of one test see the same locks).
///
/// | key | default | meaning |
/// |---|---|---|
/// | `ttl` | 10s | lease TTL when none is given |
///
/// # Examples
///
/// ```
/// use lock_memory::MemoryConfig;
/// use std::time::Duration;
///
/// let cfg = MemoryConfig::from_url("memory://tests?ttl=2s")?;
/// assert_eq!(cfg.store.as_deref(), Some("tests"));
/// assert_eq!(cfg.default_ttl, Duration::from_secs(2));
/// assert!(MemoryConfig::from_url("memory://?ttl=0s").is_err());
/// # Ok::<(), lock_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// The shared store's name, or `None` for a private store.
    pub store: Option<String>,
    /// The TTL of leases made without an explicit one.
    pub default_ttl: Duration,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            store: None,
            default_ttl: DEFAULT_TTL,
        }
    }
}

impl MemoryConfig {
    /// Parses a `memory://` URL.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] for another scheme, hosts, unknown parameters or a
    /// bad TTL.
    pub fn from_url(url: &str) -> Result<Self> {
        let rest = url.strip_prefix("memory://").ok_or_else(|| {
            Error::new(ErrorKind::InvalidConfig, format!("not a {SCHEME}:// url"))
        })?;
        let (name, query) = rest.split_once('?').unwrap_or((rest, ""));
        let name = name.trim_matches('/');
        if name.contains('@') {
            // Never echo what may be a password.
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "memory:// takes no user or password",
            ));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("memory store name {name:?} may only hold letters, digits and - _ ."),
            ));
        }
        let parsed = BackendUrl::parse(&format!("memory://?{query}"))?;
        parsed.reject_unknown_params(&["ttl"])?;
        let store = (!name.is_empty()).then(|| name.to_owned());
        let mut config = MemoryConfig {
            store,
            ..Self::default()
        };
        if let Some(ttl) = parsed.duration_param("ttl")? {
            config.default_ttl = validate_ttl(ttl)?;
        }
        Ok(config)
    }
}
