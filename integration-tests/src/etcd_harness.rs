//! The conformance harness for the etcd backend, on a real etcd cluster.

use crate::Harness;
use async_trait::async_trait;
use fencelock::{
    etcd::{EtcdBackend, EtcdConfig, CAPABILITIES},
    Capabilities, Error, ErrorKind, Lease, LockClient, LockName,
};
use std::{
    collections::HashMap,
    path::PathBuf,
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
    /// TLS and auth of a secured cluster.
    security: Option<EtcdSecurity>,
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
            security: None,
            backends: Mutex::default(),
        }
    }

    /// A harness named `etcd-tls` (`etcd-N-tls`) on a secured cluster: clients
    /// connect over TLS with a client certificate as `security.user`, whose role may
    /// read and write only [`TEST_PREFIX`]; the harness's own operator connection is
    /// root.
    pub fn secured(endpoints: Vec<String>, security: EtcdSecurity) -> Self {
        let mut harness = EtcdHarness::new(endpoints);
        harness.name.push_str("-tls");
        harness.security = Some(security);
        harness
    }

    /// The `host:port` of every member.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The URL of a client of `namespace`.
    pub fn url(&self, namespace: &str) -> String {
        match &self.security {
            None => format!("etcd://{}{}", self.endpoints.join(","), prefix(namespace)),
            Some(s) => format!(
                "etcd://{}:{}@{}{}?ca={}&cert={}&key={}",
                s.user,
                s.password,
                self.endpoints.join(","),
                prefix(namespace),
                s.ca.display(),
                s.client_cert.display(),
                s.client_key.display()
            ),
        }
    }

    /// A fresh connection with the namespace's prefix, not handed to any case (as
    /// root on a secured cluster).
    pub async fn operator(&self, namespace: &str) -> fencelock::Result<EtcdBackend> {
        let mut config = EtcdConfig::new(self.endpoints.clone()).with_prefix(&prefix(namespace));
        if let Some(s) = &self.security {
            config = config
                .with_user("root", &s.root_password)
                .with_tls_ca(&s.ca)
                .with_tls_identity(&s.client_cert, &s.client_key);
        }
        EtcdBackend::connect(config).await
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

/// What a client of a secured cluster presents.
#[derive(Clone)]
pub struct EtcdSecurity {
    /// The lock user (its role: readwrite on [`TEST_PREFIX`] only).
    pub user: String,
    /// Its password (URL-safe).
    pub password: String,
    /// The root password, for the operator connection.
    pub root_password: String,
    /// The CA certificate that signed the members' certificates.
    pub ca: PathBuf,
    /// The client certificate.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

impl std::fmt::Debug for EtcdSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdSecurity")
            .field("user", &self.user)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
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
        let url = self.url(namespace);
        let sep = if url.contains('?') { '&' } else { '?' };
        let client = fencelock::connect(&format!("{url}{sep}ttl=5s")).await?;
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
