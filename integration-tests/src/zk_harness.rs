//! The conformance harness for ZooKeeper: real servers, one chroot per namespace
//! (`/fencelock-test/<namespace>`), clients through the facade's erased handle, and
//! faults injected from outside the client:
//!
//! - `kill_lease`: the session is expired on the server by a second connection with
//!   the same session id and password that closes it
//!   ([`ZkBackend::expire_session`], through a backend that bypasses the proxies);
//!   the owner's proxy holds its traffic meanwhile,
//!   or the owner's reconnect would move the session straight back to it;
//! - `delete_holder`: the owner node is deleted by a separate client;
//! - `stall_lease`: every client runs through its own in-process TCP proxy; stalling
//!   turns that client's proxy into a black hole in both directions (a partition or
//!   a paused process, as the server sees it), so its sessions expire on the server
//!   while the client itself keeps running and must notice on its own.

use crate::{Harness, NativeFence, TestError};
use async_trait::async_trait;
use fencelock::{
    zk::{fenced_write, FencedOutcome, FencedWrite, ZkBackend, ZkHeldLock, CAPABILITIES},
    Capabilities, Error, ErrorKind, Lease, LeaseId, LockClient, LockGuard, LockName,
};
use std::{
    collections::HashMap,
    io::{self, Read, Write},
    net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs},
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
    time::Duration,
};

/// The parent of every namespace's chroot.
pub const TEST_ROOT: &str = "/fencelock-test";

/// The parent of every namespace's chroot for a harness with digest credentials
/// ([`ZkHarness::with_digest`]): apart from [`TEST_ROOT`], whose nodes are open, so
/// that a creator-only parent never locks the open harness out.
pub const SECURE_ROOT: &str = "/fencelock-secure";

/// A TCP forwarder from a loopback port to one server that can be turned into a
/// black hole.
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    stalled: Arc<AtomicBool>,
    replies_dropped: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
}

impl FaultProxy {
    /// Starts forwarding a new loopback port to `target` (`host:port`).
    ///
    /// # Errors
    ///
    /// When no port can be bound or `target` does not resolve.
    pub fn start(target: &str) -> io::Result<Arc<FaultProxy>> {
        let target = target.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{target} does not resolve"),
            )
        })?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let proxy = Arc::new(FaultProxy {
            port: listener.local_addr()?.port(),
            stalled: Arc::default(),
            replies_dropped: Arc::default(),
            closed: Arc::default(),
            open: Arc::default(),
        });
        let faults = Faults {
            stalled: proxy.stalled.clone(),
            replies_dropped: proxy.replies_dropped.clone(),
            closed: proxy.closed.clone(),
            open: proxy.open.clone(),
        };
        thread::Builder::new()
            .name(format!("zk-proxy-{}", proxy.port))
            .spawn(move || accept_loop(listener, target, faults))?;
        Ok(proxy)
    }

    /// The loopback port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many client connections the proxy forwards right now (one per ZooKeeper
    /// session of the client behind it).
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Drops every byte in both directions from now on (existing and new
    /// connections), or forwards again.
    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }

    /// Drops every byte from the server to the client from now on (requests still
    /// arrive and take effect; their replies are lost), or forwards again.
    pub fn set_replies_dropped(&self, dropped: bool) {
        self.replies_dropped.store(dropped, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        // Wake the blocking accept so its thread sees `closed`.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
    }
}

/// The switches shared by a proxy's threads.
#[derive(Clone)]
struct Faults {
    stalled: Arc<AtomicBool>,
    replies_dropped: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
}

/// One forwarded connection, counted in [`FaultProxy::connections`] until both of its
/// pumps have ended.
struct Forwarded(Arc<AtomicUsize>);

impl Drop for Forwarded {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, faults: Faults) {
    for inbound in listener.incoming() {
        if faults.closed.load(Ordering::SeqCst) {
            return;
        }
        let Ok(inbound) = inbound else { continue };
        let Ok(outbound) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
            let _ = inbound.shutdown(Shutdown::Both);
            continue;
        };
        let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
        faults.open.fetch_add(1, Ordering::SeqCst);
        let forwarded = Arc::new(Forwarded(faults.open.clone()));
        for (from, to, reply) in [(&inbound, &outbound, false), (&outbound, &inbound, true)] {
            let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                continue;
            };
            let (faults, forwarded) = (faults.clone(), forwarded.clone());
            let _ = thread::Builder::new()
                .name("zk-proxy-pump".into())
                .spawn(move || {
                    pump(from, to, &faults, reply);
                    drop(forwarded);
                });
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, faults: &Faults, replies: bool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) if faults.stalled.load(Ordering::SeqCst) => {} // black hole
            Ok(_) if replies && faults.replies_dropped.load(Ordering::SeqCst) => {}
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

struct Registered {
    client: LockClient,
    proxies: Vec<Arc<FaultProxy>>,
}

/// The ZooKeeper harness. Every client gets its own session(s) and its own
/// [`FaultProxy`] per server.
pub struct ZkHarness {
    name: String,
    servers: Vec<String>,
    session_timeout: Duration,
    short_ttl: Duration,
    /// `user:password@` (already percent-encoded) and `&acl=creator` when set.
    digest: Option<(String, String)>,
    /// `&ca=…&cert=…&key=…` when the servers speak TLS, else empty.
    tls: String,
    clients: Mutex<HashMap<String, Vec<Registered>>>,
}

impl ZkHarness {
    /// A harness named `zk` for the servers of `connect_string`
    /// (`host:port,host:port`), with a 4 s default session timeout (the maximum at
    /// the test servers' tickTime of 200 ms) and a 1 s short TTL.
    pub fn new(connect_string: impl AsRef<str>) -> Self {
        ZkHarness {
            name: "zk".into(),
            servers: connect_string
                .as_ref()
                .split(',')
                .map(str::to_owned)
                .collect(),
            session_timeout: Duration::from_secs(4),
            short_ttl: Duration::from_secs(1),
            digest: None,
            tls: String::new(),
            clients: Mutex::default(),
        }
    }

    /// Makes every client (and the harness's own separate clients) authenticate
    /// with digest `user:password` and create its nodes with `acl=creator`, under
    /// [`SECURE_ROOT`]. `user` and `password` must be URL-safe.
    #[must_use]
    pub fn with_digest(mut self, user: &str, password: &str) -> Self {
        self.digest = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Makes every client speak TLS (the servers of the connect string must be
    /// secure client ports), trusting `ca` and, if given, presenting `identity`
    /// (certificate and key files). The paths must be URL-safe.
    #[must_use]
    pub fn with_tls(mut self, ca: &Path, identity: Option<(&Path, &Path)>) -> Self {
        self.tls = format!("&ca={}", ca.display());
        if let Some((cert, key)) = identity {
            self.tls += &format!("&cert={}&key={}", cert.display(), key.display());
        }
        self
    }

    /// The chroot of `namespace` for this harness (under [`SECURE_ROOT`] with
    /// digest credentials, else [`ZkHarness::chroot`]).
    pub fn namespace_root(&self, namespace: &str) -> String {
        match self.digest {
            Some(_) => format!("{SECURE_ROOT}/{namespace}"),
            None => Self::chroot(namespace),
        }
    }

    /// The `zk://` URL of `namespace` on `hosts`.
    fn url_on(&self, hosts: &[String], namespace: &str) -> String {
        let (userinfo, acl) = match &self.digest {
            Some((user, password)) => (format!("{user}:{password}@"), "&acl=creator"),
            None => (String::new(), ""),
        };
        format!(
            "zk://{userinfo}{}{}?session_timeout={}ms&connect_timeout=5s{acl}{}",
            hosts.join(","),
            self.namespace_root(namespace),
            self.session_timeout.as_millis(),
            self.tls
        )
    }

    /// Renames the harness (test names start with it), e.g. `zk-3` for an ensemble.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the session timeout the harness's clients ask for (the servers'
    /// `maxSessionTimeout` must allow it).
    #[must_use]
    pub fn with_session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// The chroot of `namespace`.
    pub fn chroot(namespace: &str) -> String {
        format!("{TEST_ROOT}/{namespace}")
    }

    /// A `zk://` URL of `namespace` straight to the servers (no proxy).
    pub fn url(&self, namespace: &str) -> String {
        self.url_on(&self.servers, namespace)
    }

    /// A backend of `namespace` that bypasses the proxies: the "separate client" that
    /// injects faults and checks for leftovers.
    ///
    /// # Errors
    ///
    /// When the servers cannot be reached.
    pub async fn backend(&self, namespace: &str) -> fencelock::Result<ZkBackend> {
        ZkBackend::from_url(&self.url(namespace)).await
    }

    /// The backends of `namespace`'s clients with their proxies.
    fn registered(&self, namespace: &str) -> Vec<(ZkBackend, Vec<Arc<FaultProxy>>)> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .get(namespace)
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r.client.backend::<ZkBackend>()?.clone(), r.proxies.clone())))
            .collect()
    }

    fn owner_of(
        &self,
        namespace: &str,
        lease: LeaseId,
    ) -> fencelock::Result<(ZkBackend, Vec<Arc<FaultProxy>>)> {
        self.registered(namespace)
            .into_iter()
            .find(|(b, _)| b.leases().contains(&lease))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Backend,
                    format!("lease {lease} is not open on any client of {namespace}"),
                )
            })
    }
}

impl ZkHarness {
    /// Drops (or forwards again) the server's replies to the client that owns
    /// `lease`, while its requests still reach the server.
    ///
    /// # Errors
    ///
    /// When no client of `namespace` has `lease` open.
    pub fn set_replies_dropped(
        &self,
        namespace: &str,
        lease: LeaseId,
        dropped: bool,
    ) -> fencelock::Result<()> {
        let (_, proxies) = self.owner_of(namespace, lease)?;
        for proxy in proxies {
            proxy.set_replies_dropped(dropped);
        }
        Ok(())
    }

    /// How many connections (sessions) the client that owns `lease` has open, over
    /// all its proxies.
    ///
    /// # Errors
    ///
    /// When no client of `namespace` has `lease` open.
    pub fn connections(&self, namespace: &str, lease: LeaseId) -> fencelock::Result<usize> {
        let (_, proxies) = self.owner_of(namespace, lease)?;
        Ok(proxies.iter().map(|p| p.connections()).sum())
    }

    /// Black-holes (or forwards again) the traffic of the client that owns `lease`:
    /// all of that client's sessions stall, as in a partition or a paused process.
    ///
    /// # Errors
    ///
    /// When no client of `namespace` has `lease` open.
    pub fn set_stalled(
        &self,
        namespace: &str,
        lease: LeaseId,
        stalled: bool,
    ) -> fencelock::Result<()> {
        let (_, proxies) = self.owner_of(namespace, lease)?;
        for proxy in proxies {
            proxy.set_stalled(stalled);
        }
        Ok(())
    }
}

impl std::fmt::Debug for ZkHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkHarness")
            .field("name", &self.name)
            .field("servers", &self.servers)
            .finish()
    }
}

#[async_trait]
impl Harness for ZkHarness {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn client(&self, namespace: &str) -> fencelock::Result<LockClient> {
        let proxies = self
            .servers
            .iter()
            .map(|s| FaultProxy::start(s))
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("cannot start a fault proxy: {e}"),
                )
            })?;
        let hosts: Vec<String> = proxies
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.port()))
            .collect();
        let url = self.url_on(&hosts, namespace);
        let client = fencelock::connect(&url).await?;
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(namespace.to_owned())
            .or_default()
            .push(Registered {
                client: client.clone(),
                proxies,
            });
        Ok(client)
    }

    fn short_ttl(&self) -> Duration {
        self.short_ttl
    }

    fn stress_size(&self) -> (usize, usize) {
        (8, 25)
    }

    fn cancellations(&self) -> usize {
        200
    }

    async fn kill_lease(&self, namespace: &str, lease: &Lease) -> fencelock::Result<()> {
        let (owner, proxies) = self.owner_of(namespace, lease.id())?;
        let session = owner.session_ref(lease.id()).ok_or_else(|| {
            Error::new(ErrorKind::Backend, format!("lease {} vanished", lease.id()))
        })?;
        let direct = self.backend(namespace).await?;
        // While the second connection takes the session over, the owner would take it
        // back at once by reconnecting (the server moves a session to the newest
        // connection), so the owner's connections are held in the black hole until
        // the close went through; then it reconnects and learns of the expiry.
        for proxy in &proxies {
            proxy.set_stalled(true);
        }
        let expired = direct.expire_session(&session).await;
        for proxy in &proxies {
            proxy.set_stalled(false);
        }
        let _ = fencelock::backend::Backend::close(&direct).await;
        expired
    }

    async fn delete_holder(&self, namespace: &str, name: &LockName) -> fencelock::Result<()> {
        let backend = self.backend(namespace).await?;
        let deleted = backend.delete_holder(name).await;
        let _ = fencelock::backend::Backend::close(&backend).await;
        deleted?
            .map(drop)
            .ok_or_else(|| Error::new(ErrorKind::NotHeld, format!("{name} has no holder")))
    }

    async fn stall_lease(&self, namespace: &str, lease: &Lease) -> fencelock::Result<bool> {
        self.set_stalled(namespace, lease.id(), true)?;
        Ok(true)
    }

    async fn resume_lease(&self, namespace: &str, lease: &Lease) -> fencelock::Result<bool> {
        self.set_stalled(namespace, lease.id(), false)?;
        Ok(true)
    }

    /// The owner's traffic is held while its session is expired: it learns of the
    /// expiry when it reconnects, by its local deadline at the latest.
    fn kill_notice(&self, ttl: Duration) -> Option<Duration> {
        Some(ttl + Duration::from_secs(2))
    }

    fn delete_notice(&self) -> Option<Duration> {
        Some(Duration::from_secs(2))
    }

    /// Straight to the servers (no proxy).
    fn process_url(&self, namespace: &str) -> Option<String> {
        Some(self.url(namespace))
    }

    fn unreachable_url(&self, addr: &str) -> Option<String> {
        Some(format!("zk://{addr}/x?connect_timeout=500ms"))
    }

    async fn entries(&self, namespace: &str) -> fencelock::Result<Option<Vec<String>>> {
        let backend = self.backend(namespace).await?;
        let nodes = backend.nodes().await;
        let _ = fencelock::backend::Backend::close(&backend).await;
        Ok(Some(nodes?))
    }

    /// Over every await point of the recipe: create, read, watch.
    fn cancel_spread(&self) -> Option<Duration> {
        Some(Duration::from_millis(30))
    }

    /// Fenced multi-ops, read back through a raw zookeeper-client connection (so only
    /// without TLS and digest credentials).
    fn native_fence(&self) -> Option<&dyn NativeFence> {
        (self.digest.is_none() && self.tls.is_empty()).then_some(self as &dyn NativeFence)
    }

    async fn leftover(&self, namespace: &str) -> fencelock::Result<Vec<String>> {
        let mut left = self.entries(namespace).await?.unwrap_or_default();
        for (client, _) in self.registered(namespace) {
            left.extend(client.leases().iter().map(|l| format!("open session {l}")));
        }
        Ok(left)
    }
}

/// The fenced path of data entry `key`: within the chroot, beside the lock
/// directories.
fn data_path(key: &str) -> String {
    format!("/{key}")
}

#[async_trait]
impl NativeFence for ZkHarness {
    /// One multi-op: create the node and set its data at version 0 (so the stamp, its
    /// data version, is 1). Also checks that the lock node lives in the lock's
    /// directory.
    async fn create(
        &self,
        namespace: &str,
        guard: &LockGuard,
        key: &str,
        value: &[u8],
    ) -> Result<Option<u64>, TestError> {
        let held = guard
            .backend_lock::<ZkHeldLock>()
            .ok_or("not a zookeeper guard")?;
        let dir = format!("/{}/", guard.name());
        assert!(held.node_path().starts_with(&dir), "{}", held.node_path());
        let path = data_path(key);
        let write = FencedWrite::new()
            .create(path.clone(), value.to_vec())
            .set_data(path.clone(), value.to_vec(), Some(0));
        let err = match fenced_write(guard, &write).await {
            Ok(outcome) => {
                assert_eq!(
                    outcome,
                    [
                        FencedOutcome::Created { path },
                        FencedOutcome::DataSet { version: 1 }
                    ]
                );
                return Ok(Some(1));
            }
            Err(e) => e,
        };
        // The create failed on the existing node: nothing applied.
        if err.kind() == ErrorKind::Backend && self.read(namespace, key).await?.is_some() {
            return Ok(None);
        }
        Err(err.into())
    }

    async fn set(
        &self,
        _namespace: &str,
        guard: &LockGuard,
        key: &str,
        value: &[u8],
        stamp: Option<u64>,
    ) -> fencelock::Result<bool> {
        let version = stamp.map(|s| i32::try_from(s).unwrap_or(i32::MAX));
        let write = FencedWrite::new().set_data(data_path(key), value.to_vec(), version);
        match fenced_write(guard, &write).await {
            Ok(outcome) => Ok(matches!(outcome[..], [FencedOutcome::DataSet { .. }])),
            // A version mismatch: the operation failed, nothing applied.
            Err(e) if e.kind() == ErrorKind::Backend => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn delete(
        &self,
        _namespace: &str,
        guard: &LockGuard,
        key: &str,
        stamp: u64,
    ) -> fencelock::Result<bool> {
        let version = i32::try_from(stamp).unwrap_or(i32::MAX);
        let write = FencedWrite::new()
            .check_version(data_path(key), version)
            .delete(data_path(key), Some(version));
        match fenced_write(guard, &write).await {
            Ok(outcome) => Ok(outcome == [FencedOutcome::Checked, FencedOutcome::Deleted]),
            Err(e) if e.kind() == ErrorKind::Backend => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn check(&self, guard: &LockGuard) -> fencelock::Result<()> {
        fenced_write(guard, &FencedWrite::new()).await.map(drop)
    }

    async fn read(&self, namespace: &str, key: &str) -> Result<Option<(Vec<u8>, u64)>, TestError> {
        let raw = tokio::time::timeout(
            Duration::from_secs(10),
            zookeeper_client::Client::connect(&self.servers.join(",")),
        )
        .await??;
        let path = format!("{}{}", Self::chroot(namespace), data_path(key));
        match raw.get_data(&path).await {
            Ok((data, stat)) => Ok(Some((data, u64::try_from(stat.version)?))),
            Err(zookeeper_client::Error::NoNode) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
