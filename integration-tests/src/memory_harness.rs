//! The conformance harness for the memory backend.

use crate::Harness;
use async_trait::async_trait;
use fencelock::{
    memory::{MemoryBackend, CAPABILITIES},
    Capabilities, Error, ErrorKind, Lease, LockClient, LockName,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

/// One named memory store per namespace (`memory://<namespace>`); clients of a
/// namespace share its store, as clients of one etcd cluster share the cluster, and
/// each client is its own backend, as each etcd client is its own connection (so its
/// counters, such as the waiter wake-ups, are its own).
#[derive(Debug, Default)]
pub struct MemoryHarness {
    stores: Mutex<HashMap<String, MemoryBackend>>,
}

impl MemoryHarness {
    /// A harness with no stores yet.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn store(&self, namespace: &str) -> MemoryBackend {
        self.stores
            .lock()
            .expect("store map poisoned only by a panicking case")
            .entry(namespace.to_owned())
            .or_insert_with(|| named(namespace))
            .clone()
    }
}

/// A new backend on the process-wide store named `namespace`.
fn named(namespace: &str) -> MemoryBackend {
    MemoryBackend::from_url(&format!("memory://{namespace}"))
        .expect("a namespace is a valid memory store name")
}

fn unknown(lease: &Lease) -> Error {
    Error::new(
        ErrorKind::Backend,
        format!("lease {} not in the store", lease.id()),
    )
}

#[async_trait]
impl Harness for MemoryHarness {
    fn name(&self) -> String {
        "memory".into()
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn client(&self, namespace: &str) -> fencelock::Result<LockClient> {
        // The harness's own handle keeps the named store alive between clients.
        self.store(namespace);
        Ok(LockClient::new(
            named(namespace).with_default_ttl(Duration::from_secs(5)),
        ))
    }

    fn short_ttl(&self) -> Duration {
        Duration::from_millis(600)
    }

    fn stress_size(&self) -> (usize, usize) {
        (32, 200)
    }

    fn cancellations(&self) -> usize {
        200
    }

    async fn kill_lease(&self, namespace: &str, lease: &Lease) -> fencelock::Result<()> {
        match self.store(namespace).expire_lease(lease.id()) {
            true => Ok(()),
            false => Err(unknown(lease)),
        }
    }

    async fn delete_holder(&self, namespace: &str, name: &LockName) -> fencelock::Result<()> {
        self.store(namespace)
            .delete_holder(name)
            .map(drop)
            .ok_or_else(|| Error::new(ErrorKind::NotHeld, format!("{name} has no holder")))
    }

    async fn stall_lease(&self, namespace: &str, lease: &Lease) -> fencelock::Result<bool> {
        match self.store(namespace).stall_lease(lease.id()) {
            true => Ok(true),
            false => Err(unknown(lease)),
        }
    }

    async fn resume_lease(&self, namespace: &str, lease: &Lease) -> fencelock::Result<bool> {
        // A lease that expired meanwhile has nothing left to resume.
        self.store(namespace).resume_lease(lease.id());
        Ok(true)
    }

    /// An expiry is immediate, and so is the holder's notice.
    fn kill_notice(&self, _ttl: Duration) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }

    fn delete_notice(&self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }

    fn cancel_spread(&self) -> Option<Duration> {
        Some(Duration::from_millis(8))
    }

    async fn leftover(&self, namespace: &str) -> fencelock::Result<Vec<String>> {
        let store = self.store(namespace);
        let mut left = Vec::new();
        if store.lock_count() > 0 {
            left.push(format!("{} lock queues", store.lock_count()));
        }
        if store.lease_count() > 0 {
            left.push(format!("{} leases", store.lease_count()));
        }
        Ok(left)
    }
}
