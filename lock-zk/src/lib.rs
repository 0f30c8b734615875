//! The ZooKeeper backend of fencelock: FIFO, herd-free locks on ephemeral sequential
//! nodes, leases that are ZooKeeper sessions, session-state loss detection and
//! `czxid` fencing tokens, built on `zookeeper-client`.
//!
//! Applications normally reach it through the facade, `fencelock::connect("zk://…")`
//! (cargo feature `zk`), and never name a type of this crate; only the
//! ZooKeeper-specific extension ([`fenced_write`]) and the test fault controls need it.
//!
//! # Layout
//!
//! One job per file; imports run one way, down this list, with no circle inside the
//! crate: `lib.rs` (docs and re-exports only) → `admin.rs` (fault controls and leak
//! checks, on [`ZkBackend`]) → `backend.rs` (the trait impls: `Backend` for
//! [`ZkBackend`], `LeaseBackend` for [`ZkLease`]) → `watch_lock.rs` (persistent
//! watches behind `watch_lock` and `watch_list`) → `inspect.rs` (`inspect`, `list`)
//! → `fenced.rs` ([`fenced_write`]) → `lock.rs` (the recipe) → `held.rs` (one grant:
//! [`ZkHeldLock`], its node watch, release, drop) → `permit.rs` (semaphore slot
//! nodes) → `session.rs` (lease = session: [`ZkLease`], keep-alive, request retries
//! and node watches) → `conn.rs` (opening a client: servers, credentials, chroot,
//! ACLs) → `tls.rs` → the leaves `queue.rs` (node names, data and queue order),
//! `error.rs` (every zookeeper-client error mapped, in one place) and `config.rs`
//! ([`ZkConfig`], URL parsing).
//!
//! # URL
//!
//! `zk://[user:password@]host:port[,host:port…][/chroot][?session_timeout=10s&connect_timeout=3s&acl=open|creator&node_style=curator|kazoo&ca=…&cert=…&key=…]`
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `session_timeout` | 10s | session timeout requested for each lease; the server clamps it to `[2, 20] × tickTime` (`[4 s, 40 s]` with the default tickTime of 2 s) |
//! | `connect_timeout` | 3s | connecting fails with [`ErrorKind::Unavailable`](lock_core::ErrorKind::Unavailable) after this, never hangs |
//! | `acl` | `open` | ACL of created nodes: `open` (anyone) or `creator` (only the authenticated user may change or delete them; everyone may read) |
//! | `node_style` | `curator` | lock node names: `curator` (`<uuid>-lock-<seq>`, seen by Curator and ZooKeeper's `WriteLock` recipe) or `kazoo` (`<uuid>__lock__<seq>`, seen by a default kazoo `Lock`); see [`ZkNodeStyle`] |
//! | `ca`, `cert`, `key` | none | TLS to the servers' secure client port: the CA's PEM file, and the client certificate and key for `ssl.clientAuth=need` (the names etcd URLs use); see [`ZkConfig`] |
//!
//! `user:password` authenticates every session with the `digest` scheme. Unknown keys
//! are rejected. Credentials never appear in `Debug` output or error messages. See
//! [`ZkConfig`] for the builder.
//!
//! # Layout on the server
//!
//! Lock `billing/charge` lives in the directory `<chroot>/billing%2Fcharge` (`/` is
//! escaped, so locks `a` and `a/b` never share a directory), a **container** node the
//! server deletes once it is empty (a directory that already exists, e.g. a persistent
//! one made by kazoo's `ensure_path`, is used as it is). Each acquisition is a
//! *protected* `EPHEMERAL_SEQUENTIAL` node `<uuid>-lock-<seq>` (or `<uuid>__lock__<seq>`
//! with `node_style=kazoo`) in it, holding the acquisition time and the holder text.
//!
//! # Mixed fleets
//!
//! Every well-known contender in a lock directory counts, ordered by its sequence
//! suffix (the children of one directory share its counter): fencelock's nodes of both
//! styles, Curator's `_c_<uuid>-lock-<seq>`, kazoo's `<uuid>__lock__<seq>` and
//! `<uuid>__rlock__<seq>` (a read lock: a mutex waits for it, readers share only with
//! each other), and ZooKeeper's `WriteLock` recipe's `x-<session>-<seq>`. Other
//! children are ignored. `inspect`/`list` report a foreign holder with its czxid, its
//! session and the client's name as the holder text. Which foreign client sees
//! fencelock's nodes depends on [`ZkNodeStyle`]; the README's "Mixed fleets" section
//! has the table and each client's token rule (the czxid of its own node).
//!
//! # The recipe (Curator's `InterProcessMutex`, kazoo's `Lock`)
//!
//! 1. Create the node (creating the directory on `NoNode`). If the connection drops
//!    before the reply, find the own node by its uuid before trying again, so one
//!    acquisition never leaves two nodes.
//! 2. Read the children, setting a watch on the directory: the lowest sequence holds.
//!    Uncontended, that is all: create and read, two round trips, and that watch is
//!    the held lock's first deletion watch, at no extra request.
//! 3. Otherwise watch **only the predecessor** (a data watch) and read again when it
//!    goes: a release wakes exactly one waiter, and waiters are served in arrival
//!    order. A waiter never re-arms the directory watch.
//! 4. The token is the `czxid` of the own node, taken from the create reply (never from
//!    a multi-op create, whose stat is wrong on servers before 3.8.2, ZOOKEEPER-4026).
//!
//! A waiter whose node (or the whole lock directory) is deleted from outside, e.g.
//! by an operator's `deleteall <chroot>/<lock>`, enqueues again at the back of the
//! queue with a new node (up to 5 times per acquisition, then
//! [`ErrorKind::LeaseLost`](lock_core::ErrorKind::LeaseLost)); a holder whose node is
//! deleted turns `Lost`.
//!
//! A dropped, failed or timed-out acquisition deletes its node from a spawned task
//! (finding it by uuid when the create's reply was lost). Release deletes the own node
//! by its unique path, so it can never delete a newer holder's node.
//!
//! # Leases are sessions
//!
//! [`Backend::grant_lease`](lock_core::backend::Backend::grant_lease) opens a **new
//! session** (one lease = one session = one connection) asking for the lease's TTL as
//! the session timeout; the lease's TTL is the timeout the server *negotiated*. Revoking
//! a lease closes its session, which deletes all its lock nodes in one step. A session
//! that expired is dead for good: [`LockClient::session`](lock_core::LockClient::session)
//! (used by `client.acquire(…)`) then grants a fresh one for new acquisitions.
//!
//! | session state | lease state |
//! |---|---|
//! | connected | `Held`, local deadline moved by each answered heartbeat |
//! | disconnected | `Suspect` (like Curator's SUSPENDED); `Held` again if a heartbeat is answered before the deadline |
//! | expired, closed, auth failed | `Lost` (final) |
//!
//! The local deadline is `heartbeat sent + 0.9 × negotiated timeout`; heartbeats (an
//! `exists` read) go out every quarter of the timeout. Past the deadline the lease is
//! `Lost` even if the client has not heard of an expiry: after a server-side expiry
//! the old holder may learn of it seconds after other clients saw its node vanish.
//!
//! # Capabilities
//!
//! | property | value |
//! |---|---|
//! | FIFO waiting | yes |
//! | herd-free (one wake-up per release) | yes |
//! | token source | `czxid` of the lock node: global, strictly increasing, higher after leader elections (the epoch is in its high bits) |
//! | detects external deletion | yes: the directory watch of the acquiring read, then a data watch on the own node once anything in the directory changes |
//! | native fenced writes | yes ([`fenced_write`]: a multi-op with a `check` on the lock node) |
//! | across processes | yes |
//!
//! # Guarantees
//!
//! - Mutual exclusion among guards in `Held` (ZooKeeper's writes are linearizable).
//! - Tokens strictly increase across holders of a name (the sequence suffix does not:
//!   it restarts when the container directory is deleted; the token is not it).
//! - A guard leaves `Held` as soon as its session disconnects, and is `Lost` by its
//!   local deadline at the latest.
//!
//! # Non-guarantees
//!
//! - A `Held` guard may already be lost on the server (process pause, partition):
//!   check the token at the resource ([`Fence`](lock_core::Fence)) or use
//!   [`fenced_write`] for data in ZooKeeper.
//! - If the connection drops while a create is in flight and the create commits after
//!   the recovery read, the orphan node lives until its session ends (closing the
//!   lease removes it).
//! - Sequence numbers are 32-bit per directory; a directory that sees more than 2³¹
//!   acquisitions without ever becoming empty wraps around.
//!
//! # Fenced write example
//!
//! ```no_run
//! use lock_core::{ErrorKind, LockClient};
//! use lock_zk::{fenced_write, FencedWrite, ZkBackend};
//!
//! # async fn run() -> lock_core::Result<()> {
//! let client = LockClient::new(ZkBackend::from_url("zk://127.0.0.1:2181/app").await?);
//! let guard = client.acquire("config").await?;
//! let write = FencedWrite::new().set_data("/config/current", b"v2".to_vec(), None);
//! match fenced_write(&guard, &write).await {
//!     Ok(_) => println!("written under token {}", guard.token()),
//!     Err(e) if e.kind() == ErrorKind::NotHeld => println!("lock lost: nothing written"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```
//!
//! # Quick start (memory backend, same API)
//!
//! ```
//! use lock_core::LockClient;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
//! // With ZooKeeper: LockClient::new(lock_zk::ZkBackend::from_url("zk://127.0.0.1:2181/app").await?)
//! let client = LockClient::new(lock_memory::MemoryBackend::new());
//! let guard = client.acquire("daily-report").await?;
//! guard.release().await?;
//! assert!(lock_zk::CAPABILITIES.herd_free);
//! # Ok(()) }
//! ```
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod admin;
mod backend;
mod config;
mod conn;
mod error;
mod fenced;
mod held;
mod inspect;
mod lock;
mod permit;
mod queue;
mod session;
mod tls;
mod watch_lock;

pub use admin::ZkSessionRef;
pub use backend::{ZkBackend, CAPABILITIES};
pub use config::{
    ZkAcl, ZkConfig, ZkNodeStyle, DEFAULT_CONNECT_TIMEOUT, DEFAULT_SESSION_TIMEOUT,
    MAX_CONNECT_TIMEOUT, MIN_CONNECT_TIMEOUT, MIN_PER_HOST_TIMEOUT, MIN_REQUESTED_SESSION_TIMEOUT,
    SCHEME,
};
pub use fenced::{fenced_write, FencedOp, FencedOutcome, FencedWrite};
pub use held::ZkHeldLock;
pub use session::ZkLease;
