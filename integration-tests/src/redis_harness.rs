//! The conformance harness for the Redis backend, on a real `redis-server`.
//!
//! Each namespace is a key prefix (`fltest:<namespace>:`). Faults come from outside
//! the client: `kill_lease` and `delete_holder` delete the entries with a separate
//! connection, as an operator's `redis-cli DEL` would; `stall_lease` stops the
//! lease's renewals (the process paused, as the server sees it).

use crate::Harness;
use async_trait::async_trait;
use fencelock::{
    redis::{RedisBackend, RedisConfig, RedlockBackend, CAPABILITIES, REDLOCK_CAPABILITIES},
    Capabilities, Error, ErrorKind, Lease, LockClient, LockName,
};
use std::{collections::HashMap, path::Path, sync::Mutex, time::Duration};

/// Clients of one namespace share the key prefix [`prefix`]`(namespace)` on one
/// server.
#[derive(Debug)]
pub struct RedisHarness {
    name: String,
    address: String,
    /// `redis` or `rediss`.
    scheme: &'static str,
    /// The URL's TLS parameters (`&ca=…&cert=…&key=…`), empty for plain text.
    tls: String,
    /// `user:password@` of the clients handed to cases, empty for the default user;
    /// operator actions always go as the default user.
    credentials: String,
    backends: Mutex<HashMap<String, Vec<RedisBackend>>>,
}

/// The URL parameters `&ca=…[&cert=…&key=…]`.
fn tls_params(ca: &Path, identity: Option<(&Path, &Path)>) -> String {
    let mut tls = format!("&ca={}", ca.display());
    if let Some((cert, key)) = identity {
        tls += &format!("&cert={}&key={}", cert.display(), key.display());
    }
    tls
}

/// The key prefix of `namespace`.
pub fn prefix(namespace: &str) -> String {
    format!("fltest:{namespace}:")
}

impl RedisHarness {
    /// A harness named `redis` on the server at `address` (`host:port`).
    pub fn new(address: impl Into<String>) -> Self {
        RedisHarness {
            name: "redis".to_owned(),
            address: address.into(),
            scheme: "redis",
            tls: String::new(),
            credentials: String::new(),
            backends: Mutex::default(),
        }
    }

    /// The same with clients that log in as the ACL user `user` (e.g. one with only
    /// the rights the README lists), named `name` (e.g. `redis-acl`). Operator
    /// actions (fault injection, leftover checks) stay with the default user.
    #[must_use]
    pub fn with_user(mut self, name: &str, user: &str, password: &str) -> Self {
        self.name = name.to_owned();
        self.credentials = format!("{user}:{password}@");
        self
    }

    /// The same over TLS (`rediss://`) trusting `ca`, presenting `identity` (certificate
    /// and key files) if given, and named `name` (e.g. `redis-tls`).
    #[must_use]
    pub fn with_tls(mut self, name: &str, ca: &Path, identity: Option<(&Path, &Path)>) -> Self {
        self.name = name.to_owned();
        self.scheme = "rediss";
        self.tls = tls_params(ca, identity);
        self
    }

    /// The URL of a client of `namespace`.
    pub fn url(&self, namespace: &str) -> String {
        format!(
            "{}://{}{}?prefix={}{}",
            self.scheme,
            self.credentials,
            self.address,
            prefix(namespace),
            self.tls
        )
    }

    /// A fresh connection with the namespace's prefix as the default user, not
    /// handed to any case.
    pub async fn operator(&self, namespace: &str) -> fencelock::Result<RedisBackend> {
        let url = format!(
            "{}://{}?prefix={}{}",
            self.scheme,
            self.address,
            prefix(namespace),
            self.tls
        );
        RedisBackend::connect(RedisConfig::from_url(&url)?).await
    }

    fn backends(&self, namespace: &str) -> Vec<RedisBackend> {
        self.backends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(namespace)
            .cloned()
            .unwrap_or_default()
    }
}

#[async_trait]
impl Harness for RedisHarness {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn client(&self, namespace: &str) -> fencelock::Result<LockClient> {
        let client = fencelock::connect(&format!("{}&ttl=5s", self.url(namespace))).await?;
        let backend = client
            .backend::<RedisBackend>()
            .ok_or_else(|| Error::new(ErrorKind::Backend, "the url did not give a redis backend"))?
            .clone();
        self.backends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(namespace.to_owned())
            .or_default()
            .push(backend);
        Ok(client)
    }

    fn short_ttl(&self) -> Duration {
        Duration::from_secs(3)
    }

    fn cancellations(&self) -> usize {
        200
    }

    async fn kill_lease(&self, namespace: &str, lease: &Lease) -> fencelock::Result<()> {
        // Every entry of the lease, deleted from outside: what the server does when
        // the lease's TTL runs out.
        let operator = self.operator(namespace).await?;
        let (entries, own) = (
            format!(":e:{:016x}.", lease.id().get()),
            format!("lease:{:016x}", lease.id().get()),
        );
        let keys = operator.stored_keys().await?;
        let mine: Vec<&String> = keys
            .iter()
            .filter(|k| k.contains(&entries) || k.ends_with(&own))
            .collect();
        if mine.is_empty() {
            return Err(Error::new(
                ErrorKind::Backend,
                format!("lease {} has no entry", lease.id()),
            ));
        }
        for key in mine {
            operator.delete_key(key).await?;
        }
        Ok(())
    }

    async fn delete_holder(&self, namespace: &str, name: &LockName) -> fencelock::Result<()> {
        match self.operator(namespace).await?.break_lock(name).await? {
            Some(_) => Ok(()),
            None => Err(Error::new(
                ErrorKind::NotHeld,
                format!("{name} has no holder"),
            )),
        }
    }

    async fn stall_lease(&self, namespace: &str, lease: &Lease) -> fencelock::Result<bool> {
        Ok(self
            .backends(namespace)
            .iter()
            .any(|b| b.stall_keep_alive(lease.id(), true)))
    }

    async fn leftover(&self, namespace: &str) -> fencelock::Result<Vec<String>> {
        self.operator(namespace).await?.stored_keys().await
    }
}

/// The conformance harness for Redlock over independent masters: namespaces are key
/// prefixes on every master; operator actions delete keys on every master.
#[derive(Debug)]
pub struct RedlockHarness {
    name: String,
    addresses: Vec<String>,
    /// The URL's TLS parameters (`&tls=true&ca=…`), empty for plain text.
    tls: String,
    backends: Mutex<HashMap<String, Vec<RedlockBackend>>>,
}

impl RedlockHarness {
    /// A harness named `redlock` on the masters at `addresses`.
    pub fn new(addresses: Vec<String>) -> Self {
        RedlockHarness {
            name: "redlock".to_owned(),
            addresses,
            tls: String::new(),
            backends: Mutex::default(),
        }
    }

    /// The same over TLS to every master (`tls=true`), as
    /// [`RedisHarness::with_tls`].
    #[must_use]
    pub fn with_tls(mut self, name: &str, ca: &Path, identity: Option<(&Path, &Path)>) -> Self {
        self.name = name.to_owned();
        self.tls = tls_params(ca, identity);
        self.tls.insert_str(0, "&tls=true");
        self
    }

    /// The URL of a client of `namespace`.
    pub fn url(&self, namespace: &str) -> String {
        format!(
            "redlock://{}?prefix={}{}",
            self.addresses.join(","),
            prefix(namespace),
            self.tls
        )
    }

    /// A fresh connection with the namespace's prefix, not handed to any case.
    pub async fn operator(&self, namespace: &str) -> fencelock::Result<RedlockBackend> {
        RedlockBackend::from_url(&self.url(namespace)).await
    }
}

#[async_trait]
impl Harness for RedlockHarness {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn capabilities(&self) -> Capabilities {
        REDLOCK_CAPABILITIES
    }

    async fn client(&self, namespace: &str) -> fencelock::Result<LockClient> {
        let client = fencelock::connect(&format!("{}&ttl=5s", self.url(namespace))).await?;
        let backend = client
            .backend::<RedlockBackend>()
            .ok_or_else(|| Error::new(ErrorKind::Backend, "redlock:// did not give redlock"))?
            .clone();
        self.backends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(namespace.to_owned())
            .or_default()
            .push(backend);
        Ok(client)
    }

    fn short_ttl(&self) -> Duration {
        Duration::from_secs(3)
    }

    fn stress_size(&self) -> (usize, usize) {
        (4, 10)
    }

    async fn kill_lease(&self, namespace: &str, lease: &Lease) -> fencelock::Result<()> {
        self.operator(namespace).await?.kill_lease(lease.id()).await
    }

    async fn delete_holder(&self, namespace: &str, name: &LockName) -> fencelock::Result<()> {
        match self.operator(namespace).await?.break_lock(name).await? {
            Some(_) => Ok(()),
            None => Err(Error::new(
                ErrorKind::NotHeld,
                format!("{name} has no holder"),
            )),
        }
    }

    async fn stall_lease(&self, namespace: &str, lease: &Lease) -> fencelock::Result<bool> {
        let backends = self
            .backends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(namespace)
            .cloned()
            .unwrap_or_default();
        Ok(backends
            .iter()
            .any(|b| b.stall_keep_alive(lease.id(), true)))
    }

    async fn leftover(&self, namespace: &str) -> fencelock::Result<Vec<String>> {
        self.operator(namespace).await?.stored_keys().await
    }
}
