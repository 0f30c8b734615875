//! The etcd backend of fencelock: distributed locks on etcd v3 with lease sessions,
//! herd-free FIFO waiting and create-revision fencing tokens.
//!
//! Applications normally reach it through `fencelock::connect("etcd://…")` and never
//! name a type of this crate; use it directly for [`EtcdConfig`] or the native
//! [fenced transactions](fenced_txn).
//!
//! # URL
//!
//! ```text
//! etcd://[user:password@]host:port[,host:port…][/prefix][?ttl=10s&connect_timeout=3s&request_timeout=5s&ca=PATH&cert=PATH&key=PATH]
//! ```
//!
//! | key | default | meaning |
//! |---|---|---|
//! | hosts | (required) | one or more `host:port`; requests fail over between them |
//! | `/prefix` | none | key prefix: lock `N` is the key range `/prefix/N/`, or `N/` with none (`etcd://host:port/` is none too) |
//! | `ttl` | `10s` | lease TTL when none is given; etcd grants whole seconds and at least its minimum (about 2 s) |
//! | `connect_timeout` | `3s` | an unreachable cluster gives `Unavailable` within this time |
//! | `request_timeout` | `5s` | bound on every request, retries of transient failures included |
//! | `ca` | none | PEM CA certificate; enables TLS |
//! | `cert`, `key` | none | PEM client certificate and key |
//!
//! Unknown parameters are rejected. The password never appears in `Debug` output or
//! error messages.
//!
//! # Capabilities
//!
//! | property | value |
//! |---|---|
//! | FIFO waiting | yes: order of the waiter keys' create revisions |
//! | herd-free | yes: a waiter is woken only by the release or removal of the key it waits for (each client keeps one watch per lock it waits on, and the waiter decides from it with no request) |
//! | token source | create revision of the acquisition's key ([`TokenSource::CreateRevision`](lock_core::TokenSource::CreateRevision)) |
//! | detects external deletion | yes: every key held longer than 50 ms is watched from its grant revision (one shared watch stream per backend), so a deletion is seen at most 50 ms + one round trip after the grant |
//! | native fenced writes | yes: [`fenced_txn`] |
//! | across processes and machines | yes |
//! | fault injection | no |
//!
//! # How it works
//!
//! - A **lease** is an etcd lease kept alive by one task (a keep-alive every sixth of
//!   the *granted* TTL; the local deadline runs from the *send* time of the last
//!   acknowledged keep-alive). TTL 0 in a reply or lease-not-found: lost at once.
//! - **Acquire** puts `<prefix>/<name>/<lease hex>` (`<name>/<lease hex>` with no
//!   prefix) with the lease in one Txn that also reads the queue: uncontended, that
//!   is one round trip. This is the key of etcd's own recipe (see
//!   [Mixed fleets](#mixed-fleets)); a second acquisition of the same lock on the
//!   same lease puts `<lease hex>-<n>` beside it instead of sharing the key.
//!   The key with the smallest create revision owns the lock; the others wait. A
//!   client with waiters on a lock keeps one prefix watch on the lock's range (from
//!   its first wait there until 10 s after its last) and the queue from its events;
//!   a release's delete event reaches it and wakes only the waiter behind the
//!   released key, which is granted **without a request** (the keys ahead of a
//!   waiter are fixed once its key is written, so the followed queue decides as a
//!   read would). Every event of the lock reaches each client with such a watch
//!   (one event per client, not per waiter), and so do the events of locks nested
//!   under its name (`a/b` under `a`: etcd cannot leave deeper keys out of a prefix
//!   watch). Should etcd refuse that watch, a waiter
//!   watches its predecessor's key and reads the queue when woken, as Go's recipe
//!   does. Only direct children of the range contend, so
//!   lock `a` and lock `a/b` are independent. Dropping an `acquire` future deletes
//!   its key.
//! - **Token** = the key's create revision: etcd's global revision only grows, so a
//!   later holder always has a higher token.
//! - **Release** deletes the key only if its create revision is still the token.
//!
//! # Guarantees
//!
//! Mutual exclusion as strong as etcd (linearizable); FIFO order; a guard turns
//! `Lost` when its lease is lost or its key is deleted; nothing is left behind by
//! cancelled acquires; tokens increase across holders, also across server restarts.
//!
//! # Mixed fleets
//!
//! By default a lock named `N` **is** the lock of `etcdctl lock N` and of Go's
//! `concurrency.NewMutex(session, "N")` (with prefix `/P`: of `etcdctl lock /P/N`):
//! the same key range, the same order by create revision. Their keys are
//! contenders like fencelock's own: `acquire` waits for them, `try_acquire` sees
//! the lock taken, and `inspect`/`list` (`fencelock status`/`list`) report them with
//! their lease (and no holder text, as they store an empty value). `list` reports
//! a key as a lock key when it is attached to a lease and its last segment is that
//! lease's id in hex (optionally `-<n>`); `inspect` and `acquire` count every direct
//! child of the range, whatever it is.
//!
//! **Tokens across clients.** fencelock's token is the create revision of its own
//! key; for a queue mixing clients to hand out strictly increasing numbers, every
//! client must fence on the same thing, the create revision of its own key:
//!
//! | client | its key | the number to fence on |
//! |---|---|---|
//! | fencelock | [`EtcdHeldLock::key`] | the token ([`EtcdHeldLock::create_revision`]) |
//! | `etcdctl lock N -- cmd` | `$ETCD_LOCK_KEY` | `create_revision` of `etcdctl get "$ETCD_LOCK_KEY" -w json`; **not** `$ETCD_LOCK_REV`, which is the store revision at which etcdctl saw itself owner (`Mutex.Header().Revision`) |
//! | Go `concurrency.Mutex` | `m.Key()` | `Kvs[0].CreateRevision` of `Get(ctx, m.Key())`; **not** `m.Header().Revision` |
//!
//! A header revision is at least the holder's own create revision but can pass the
//! create revision of a later holder that enqueued while it waited, so a resource
//! fencing on a mix of both would reject the rightful holder.
//!
//! **Not compatible:** python-etcd3's `Lock` (one key `/locks/<name>` put if absent,
//! no queue) does not interoperate: its key is outside every lock range, so neither
//! side sees the other. Older fencelock clients (keys
//! `/fencelock/<name, '/' as %2F>/<lease hex>-<slot>`) meet this one only when it
//! is configured with the prefix `/fencelock` and the name has no `/`.
//!
//! # Non-guarantees
//!
//! A holder paused longer than its TTL still believes it holds the lock when it
//! wakes up, until it looks at its state: protect resources with the token (a
//! `Fence`, a `fence_token` column, or [`fenced_txn`] for data in etcd).
//!
//! # Examples
//!
//! ```no_run
//! use lock_etcd::{fenced_txn, EtcdBackend, FencedOp, FencedTxn};
//! use lock_core::LockClient;
//!
//! # #[tokio::main] async fn main() -> lock_core::Result<()> {
//! let client = LockClient::new(EtcdBackend::from_url("etcd://127.0.0.1:2379/locks?ttl=10s").await?);
//! let guard = client.acquire("reports/daily").await?;
//! // Write to etcd only while the lock is held, atomically on the server:
//! fenced_txn(&guard, FencedTxn::new().and_then([FencedOp::put("/app/report", "done")])).await?;
//! guard.release().await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! The source files (private modules), each with one job. A file imports only from
//! files listed below it, so there is no import circle in the crate:
//!
//! - `lib.rs`: these docs and the re-exports.
//! - `admin.rs`: operator and fault controls on [`EtcdBackend`]; `fenced.rs`: native
//!   fenced transactions on [`EtcdHeldLock`], with this crate's own operation and
//!   outcome types.
//! - `backend.rs`: the plug into lock-core: [`EtcdBackend`]'s `Backend` impl
//!   (connect, inspect, list, watches, close) and [`EtcdLease`]'s `LeaseBackend`
//!   impl, which runs the recipe.
//! - `watch_lock.rs`: live views of locks, each on a watch stream of its own (for
//!   `watch_lock`, `observe`, and the waiters' view of a queue);
//!   `view.rs`: a lock's `LockInfo` from its contenders' keys.
//! - `lock.rs`: the recipe, I/O only: enqueue with one Txn, then `wait.rs` (wait for
//!   the turn: in the client's view of the queue, `queue_view.rs`, no I/O there;
//!   else by watching the key ahead), then `held.rs` (the grant, [`EtcdHeldLock`]: the watch on its own
//!   key, the fenced release), with `permit.rs` (a semaphore permit's slot key) and
//!   `slot.rs` (key suffixes reserved per lease and lock).
//! - `session.rs`: the lease ([`EtcdLease`]): grant, keep-alive task, revoke, and the
//!   leases a backend granted.
//! - `keys.rs`: single requests on lock keys: queue reads, fenced and retried deletes.
//! - `conn.rs`: the connection: requests bounded and retried over the members, the
//!   backoff; `watch.rs`: the backend's one shared watch stream; `members.rs`: one
//!   client per cluster member.
//! - Leaves: `queue.rs` (key layout, value codec, queue position), `queue_view.rs`
//!   (the waiters' view of a queue: state and waiting), `config.rs`
//!   ([`EtcdConfig`]), `error.rs` (etcd errors mapped into fencelock's).
//!
//! In one line: `admin`, `fenced` → `backend` → `lock` → `wait` → `watch_lock` →
//! `view` → `held` → `permit` → `slot` → `session` → `keys` → `conn` → `watch` →
//! `members` → leaves.
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
mod keys;
mod lock;
mod members;
mod permit;
mod queue;
mod queue_view;
mod session;
mod slot;
mod view;
mod wait;
mod watch;
mod watch_lock;

pub use backend::{EtcdBackend, CAPABILITIES};
pub use config::{
    EtcdConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_PREFIX, DEFAULT_REQUEST_TIMEOUT, DEFAULT_TTL,
    SCHEME,
};
pub use fenced::{
    fenced_txn, Cmp, FencedCompare, FencedOp, FencedOutcome, FencedTxn, FencedTxnResult,
};
pub use held::EtcdHeldLock;
pub use session::EtcdLease;
