//! The conformance harness for the etcd backend, on a real etcd cluster.

use crate::{Harness, NativeFence, TestError};
use async_trait::async_trait;
use fencelock::{
    etcd::{
        fenced_txn, Cmp, EtcdBackend, EtcdConfig, FencedCompare, FencedOp, FencedOutcome,
        FencedTxn, CAPABILITIES,
    },
    Capabilities, Error, ErrorKind, Lease, LockClient, LockGuard, LockName,
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

    async fn resume_lease(&self, namespace: &str, lease: &Lease) -> fencelock::Result<bool> {
        // A lease whose keep-alive already ended (lost) has nothing left to resume.
        for backend in self.backends(namespace) {
            backend.stall_keep_alive(lease.id(), false);
        }
        Ok(true)
    }

    /// A revoke deletes the lease's keys at once: the holder's watch sees its key go.
    fn kill_notice(&self, _ttl: Duration) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }

    fn delete_notice(&self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }

    fn process_url(&self, namespace: &str) -> Option<String> {
        Some(self.url(namespace))
    }

    fn unreachable_url(&self, addr: &str) -> Option<String> {
        Some(format!("etcd://{addr}/x?connect_timeout=1s"))
    }

    async fn entries(&self, namespace: &str) -> fencelock::Result<Option<Vec<String>>> {
        Ok(Some(self.operator(namespace).await?.stored_keys().await?))
    }

    /// Over the enqueue round trip (a put of the waiter key) and the wait.
    fn cancel_spread(&self) -> Option<Duration> {
        Some(Duration::from_millis(8))
    }

    /// Fenced transactions, read back through a raw etcd-client connection (so only
    /// without TLS and auth).
    fn native_fence(&self) -> Option<&dyn NativeFence> {
        match self.security {
            None => Some(self),
            Some(_) => None,
        }
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

/// The data key `key` of `namespace`: under the namespace's prefix, beside its locks.
fn data_key(namespace: &str, key: &str) -> String {
    format!("{}/{key}", prefix(namespace))
}

#[async_trait]
impl NativeFence for EtcdHarness {
    /// One transaction: if the key has version 0, put it and read it back; else only
    /// read it.
    async fn create(
        &self,
        namespace: &str,
        guard: &LockGuard,
        key: &str,
        value: &[u8],
    ) -> Result<Option<u64>, TestError> {
        let data = data_key(namespace, key);
        let txn = FencedTxn::new()
            .when([FencedCompare::version(data.clone(), Cmp::Equal, 0)])
            .and_then([
                FencedOp::put(data.clone(), value.to_vec()),
                FencedOp::get(data.clone()),
            ])
            .or_else([FencedOp::get(data.clone())]);
        let resp = fenced_txn(guard, txn).await?;
        match (resp.succeeded(), resp.outcomes()) {
            (
                true,
                [FencedOutcome::Put, FencedOutcome::Got {
                    value: Some((v, rev)),
                }],
            ) if v == value => Ok(Some(u64::try_from(*rev)?)),
            (
                false,
                [FencedOutcome::Got {
                    value: Some((v, _)),
                }],
            ) if v == value => Ok(None),
            (succeeded, outcomes) => {
                Err(format!("unexpected outcomes {outcomes:?} (succeeded: {succeeded})").into())
            }
        }
    }

    async fn set(
        &self,
        namespace: &str,
        guard: &LockGuard,
        key: &str,
        value: &[u8],
        stamp: Option<u64>,
    ) -> fencelock::Result<bool> {
        let data = data_key(namespace, key);
        let when: Vec<FencedCompare> = stamp
            .map(|s| FencedCompare::mod_revision(data.clone(), Cmp::Equal, s as i64))
            .into_iter()
            .collect();
        let txn = FencedTxn::new()
            .when(when)
            .and_then([FencedOp::put(data, value.to_vec())]);
        let resp = fenced_txn(guard, txn).await?;
        Ok(resp.succeeded() && resp.outcomes() == [FencedOutcome::Put])
    }

    async fn delete(
        &self,
        namespace: &str,
        guard: &LockGuard,
        key: &str,
        stamp: u64,
    ) -> fencelock::Result<bool> {
        let data = data_key(namespace, key);
        let txn = FencedTxn::new()
            .when([FencedCompare::mod_revision(
                data.clone(),
                Cmp::Equal,
                stamp as i64,
            )])
            .and_then([FencedOp::delete(data)]);
        let resp = fenced_txn(guard, txn).await?;
        Ok(resp.succeeded() && resp.outcomes() == [FencedOutcome::Deleted { count: 1 }])
    }

    async fn check(&self, guard: &LockGuard) -> fencelock::Result<()> {
        fenced_txn(guard, FencedTxn::new()).await.map(drop)
    }

    async fn read(&self, namespace: &str, key: &str) -> Result<Option<(Vec<u8>, u64)>, TestError> {
        let mut raw = etcd_client::Client::connect(&self.endpoints, None).await?;
        let resp = raw.get(data_key(namespace, key), None).await?;
        Ok(match resp.kvs() {
            [] => None,
            [kv] => Some((kv.value().to_vec(), u64::try_from(kv.mod_revision())?)),
            more => return Err(format!("{} keys for one get", more.len()).into()),
        })
    }
}

/// Shares a harness as the trait object the suite takes.
pub fn shared(harness: EtcdHarness) -> Arc<dyn Harness> {
    Arc::new(harness)
}
