//! `connect(url)`: an explicit match on the scheme, one arm per backend.

use lock_core::{url::scheme_of, Error, ErrorKind, LockClient, Result};

/// The schemes fencelock knows, whether or not their feature is enabled.
pub const SCHEMES: [&str; 5] = ["memory", "etcd", "zk", "redis", "redlock"];

/// Connects to the lock service named by `url` and returns the backend-independent
/// [`LockClient`].
///
/// | URL | backend | cargo feature |
/// |---|---|---|
/// | `memory://[STORE][?ttl=10s]` | in-process | `memory` (default) |
/// | `etcd://host:port[,host:port…][/prefix][?ttl=…]` | etcd v3 | `etcd` |
/// | `zk://host:port[,host:port…][/chroot][?session_timeout=…]` | ZooKeeper | `zk` |
/// | `redis://[user:password@]host:port[/db][?prefix=…&ttl=…]` | one Redis server | `redis` |
/// | `redlock://host:port,host:port,host:port[?prefix=…&ttl=…]` | Redlock over independent Redis masters | `redis` |
///
/// Each backend crate documents its full set of URL options.
///
/// # Errors
///
/// - [`ErrorKind::UnsupportedScheme`] for a scheme fencelock does not know;
/// - [`ErrorKind::FeatureDisabled`] for a known scheme whose cargo feature is off (the
///   message names the feature to enable);
/// - [`ErrorKind::InvalidConfig`] for a malformed URL or option;
/// - [`ErrorKind::Unavailable`] when the servers cannot be reached within the connect
///   timeout.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> fencelock::Result<()> {
/// let client = fencelock::connect("memory://").await?;
/// let guard = client.acquire("daily-report").await?;
/// guard.release().await?;
///
/// let err = fencelock::connect("consul://127.0.0.1:8500").await.unwrap_err();
/// assert_eq!(err.kind(), fencelock::ErrorKind::UnsupportedScheme);
/// # Ok(()) }
/// ```
///
/// # Cancel safety
///
/// Cancel safe: a dropped connect leaves nothing behind on the server.
pub async fn connect(url: &str) -> Result<LockClient> {
    let scheme = scheme_of(url)?;
    match scheme.as_str() {
        "memory" => connect_memory(url),
        "etcd" => connect_etcd(url).await,
        "zk" => connect_zk(url).await,
        "redis" => connect_redis(url).await,
        "redlock" => connect_redlock(url).await,
        other => Err(Error::new(
            ErrorKind::UnsupportedScheme,
            format!(
                "unknown scheme {other:?}; fencelock knows {}",
                SCHEMES.join(", ")
            ),
        )),
    }
}

#[cfg(not(all(
    feature = "memory",
    feature = "etcd",
    feature = "zk",
    feature = "redis"
)))]
fn feature_disabled(feature: &str, scheme: &str) -> Error {
    Error::new(
        ErrorKind::FeatureDisabled,
        format!(
            "{scheme}:// needs fencelock's cargo feature `{feature}` (features = [\"{feature}\"])"
        ),
    )
}

#[cfg(feature = "memory")]
fn connect_memory(url: &str) -> Result<LockClient> {
    lock_memory::MemoryBackend::from_url(url).map(LockClient::new)
}

#[cfg(not(feature = "memory"))]
fn connect_memory(_url: &str) -> Result<LockClient> {
    Err(feature_disabled("memory", "memory"))
}

#[cfg(feature = "etcd")]
async fn connect_etcd(url: &str) -> Result<LockClient> {
    lock_etcd::EtcdBackend::from_url(url)
        .await
        .map(LockClient::new)
}

#[cfg(not(feature = "etcd"))]
async fn connect_etcd(_url: &str) -> Result<LockClient> {
    Err(feature_disabled("etcd", "etcd"))
}

#[cfg(feature = "zk")]
async fn connect_zk(url: &str) -> Result<LockClient> {
    lock_zk::ZkBackend::from_url(url).await.map(LockClient::new)
}

#[cfg(not(feature = "zk"))]
async fn connect_zk(_url: &str) -> Result<LockClient> {
    Err(feature_disabled("zk", "zk"))
}

#[cfg(feature = "redis")]
async fn connect_redis(url: &str) -> Result<LockClient> {
    lock_redis::RedisBackend::from_url(url)
        .await
        .map(LockClient::new)
}

#[cfg(not(feature = "redis"))]
async fn connect_redis(_url: &str) -> Result<LockClient> {
    Err(feature_disabled("redis", "redis"))
}

#[cfg(feature = "redis")]
async fn connect_redlock(url: &str) -> Result<LockClient> {
    lock_redis::RedlockBackend::from_url(url)
        .await
        .map(LockClient::new)
}

#[cfg(not(feature = "redis"))]
async fn connect_redlock(_url: &str) -> Result<LockClient> {
    Err(feature_disabled("redis", "redlock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scheme_errors_are_typed() {
        let kind = |url: &'static str| async move { connect(url).await.unwrap_err().kind() };
        assert_eq!(kind("consul://h:1").await, ErrorKind::UnsupportedScheme);
        assert_eq!(kind("not a url").await, ErrorKind::InvalidConfig);
        assert_eq!(kind("memory://?ttl=0s").await, ErrorKind::InvalidConfig);
        assert_eq!(kind("memory://?bogus=1").await, ErrorKind::InvalidConfig);
        #[cfg(not(feature = "etcd"))]
        {
            let err = connect("etcd://127.0.0.1:2379").await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::FeatureDisabled);
            assert!(err.to_string().contains("`etcd`"), "{err}");
        }
        #[cfg(not(feature = "zk"))]
        assert_eq!(
            kind("zk://127.0.0.1:2181").await,
            ErrorKind::FeatureDisabled
        );
    }

    #[tokio::test]
    async fn named_memory_stores_are_shared_and_plain_ones_private() {
        let a = connect("memory://shared-test").await.unwrap();
        let b = connect("memory://shared-test").await.unwrap();
        let c = connect("memory://").await.unwrap();
        let held = a.acquire("x").await.unwrap();
        assert!(b.try_acquire("x").await.unwrap().is_none());
        assert!(c.try_acquire("x").await.unwrap().is_some());
        held.release().await.unwrap();
    }
}
