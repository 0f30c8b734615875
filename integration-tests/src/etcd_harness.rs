//! The conformance harness for the etcd backend, on a real etcd cluster.

use crate::Harness;
use async_trait::async_trait;
use fencelock::{
    etcd::{EtcdBackend, EtcdConfig, CAPABILITIES},
    Capabilities, Error, ErrorKind, Lease, LockClient, LockName,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

/// The key prefix of every test namespace.
pub const TEST_PREFIX: &str = "/fencelock-test";

/// Clients of one namespace share the key prefix `/fencelock-test/<namespace>` on
/// one etcd cluster. Operator actions (revoke a lease, delete a holder's key) go
/// through a separate connection, as another process would do them.
#[derive(Debug)]
pub struct EtcdHarness {
    name: String,
    endpoints: Vec<String>,
    /// The backends made per namespace (for the stall hook and lease leak checks).
    backends: Mutex<HashMap<String, Vec<EtcdBackend>>>,
}

impl EtcdHarness {
    /// A harness on the cluster at `endpoints`, named `etcd` (one member) or
    /// `etcd-N` (N members).
    pub fn new(endpoints: Vec<String>) -> Self {
        let name = match endpoints.len() {
            1 => "etcd".to_owned(),
            n => format!("etcd-{n}"),
        };
        EtcdHarness {
            name,
            endpoints,
            backends: Mutex::default(),
        }
    }

    /// The `host:port` of every member.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The URL of a client of `namespace`.
    pub fn url(&self, namespace: &str) -> String {
        format!("etcd://{}{}", self.endpoints.join(","), prefix(namespace))
    }

    /// A fresh connection with the namespace's prefix, not handed to any case.
    pub async fn operator(&self, namespace: &str) -> fencelock::Result<EtcdBackend> {
        EtcdBackend::connect(
            EtcdConfig::new(self.endpoints.clone()).with_prefix(&prefix(namespace)),
        )
        .await
    }

    fn backends(&self, namespace: &str) -> Vec<EtcdBackend> {
        self.backends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(namespace)
            .cloned()
            .unwrap_or_default()
    }
}

/// The key prefix of `namespace`.
pub fn prefix(namespace: &str) -> String {
    format!("{TEST_PREFIX}/{namespace}")
}

#[async_trait]
impl Harness for EtcdHarness {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn client(&self, namespace: &str) -> fencelock::Result<LockClient> {
        // Through the facade's URL dispatch, as an application would connect.
        let client = fencelock::connect(&format!("{}?ttl=5s", self.url(namespace))).await?;
        let backend = client
            .backend::<EtcdBackend>()
            .ok_or_else(|| Error::new(ErrorKind::Backend, "etcd:// did not give an etcd backend"))?
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
        match self
            .operator(namespace)
            .await?
            .revoke_lease(lease.id())
            .await?
        {
            true => Ok(()),
            false => Err(Error::new(
                ErrorKind::Backend,
                format!("lease {} does not exist", lease.id()),
            )),
        }
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
        let operator = self.operator(namespace).await?;
        let mut left = operator.stored_keys().await?;
        for backend in self.backends(namespace) {
            for lease in backend.granted_leases() {
                if operator.lease_exists(lease).await? {
                    left.push(format!("lease {lease}"));
                }
            }
        }
        Ok(left)
    }
}

/// Shares a harness as the trait object the suite takes.
pub fn shared(harness: EtcdHarness) -> Arc<dyn Harness> {
    Arc::new(harness)
}
