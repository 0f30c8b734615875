//! The Redis backend of fencelock: locks on one Redis server with FIFO, herd-free
//! waiting, server-side TTLs renewed by one script per lease, and a fencing token
//! that survives the loss of its counter as long as the server clock does not step
//! back.
//!
//! Applications normally reach it through `fencelock::connect("redis://…")` and never
//! name a type of this crate; use it directly for [`RedisConfig`] or the operator
//! controls.
//!
//! # Layout
//!
//! One job per file. Imports run one way, down this list, with no circle:
//!
//! - `lib.rs`: these docs and the re-exports.
//! - `backend.rs`: the plug into lock-core ([`RedisBackend`]'s `Backend` impl, the
//!   `LeaseBackend` impl of [`RedisLease`]); `admin.rs` beside it: operator and
//!   fault controls, as methods on [`RedisBackend`].
//! - `lock.rs`: the recipe, I/O only: enqueue, wait on the own wake list, inspect.
//! - `held.rs`: one grant, [`RedisHeldLock`], and its fenced release.
//! - `session.rs`: the lease, [`RedisLease`]: its renewal, the release script on one
//!   entry, revoke.
//! - `conn.rs`: the connection: connect, bounded and retried requests, blocking
//!   connections, the rights probe.
//! - Leaves: `scripts.rs` (the Lua scripts and the key names) → `rights.rs` (the ACL
//!   rights, the probe script) → `config.rs` (URL, builder, defaults); `tls.rs` (the
//!   rustls client, the port mix-up probe) → `error.rs` (every redis-rs error
//!   mapped), `config.rs`.
//! - `redlock/`: [`RedlockBackend`], the same file set one level down (`mod.rs` for
//!   its docs and re-exports, `backend.rs`, `admin.rs`, `lock.rs`, `held.rs`,
//!   `session.rs`, `conn.rs` for the masters, `scripts.rs`, `config.rs`), importing
//!   only `conn.rs` and the leaves from here.
//!
//! There is no `fenced.rs`: Redis has no native fenced writes (see Capabilities).
//!
//! # URL
//!
//! ```text
//! redis://[user:password@]host:port[/db][?prefix=fl:&ttl=10s&connect_timeout=3s&request_timeout=2s]
//! ```
//!
//! See [`RedisConfig`] for the keys and their defaults. Unknown parameters are
//! rejected; the password never appears in `Debug` output or error messages.
//!
//! The server must be Redis ≥ 6.2: the acquire script writes the token counter with
//! `SET … PX … GET`. Connecting to an older one fails with
//! [`ErrorKind::Unsupported`](lock_core::ErrorKind::Unsupported) naming its version
//! (read from `INFO server`; a user refused `INFO` on Redis < 7 gets a warning).
//!
//! An ACL user (`redis://user@host:port?prefix=P&password_file=…`) needs the key
//! pattern `~P*` and the commands of [`ACL_COMMANDS`], nothing else; connecting
//! checks them (Redis ≥ 7) and fails with
//! [`ErrorKind::PermissionDenied`](lock_core::ErrorKind::PermissionDenied) naming what
//! is refused. A right taken away later fails the next request the same way.
//!
//! `rediss://host:port[?ca=…&cert=…&key=…]` speaks TLS to the server's `tls-port`
//! (rustls); `redlock://…?tls=true` does so to every master. A refused handshake is
//! [`ErrorKind::Unauthenticated`](lock_core::ErrorKind::Unauthenticated) with a message
//! naming the side that refused (see [`RedisConfig`]).
//!
//! # Capabilities
//!
//! | property | value |
//! |---|---|
//! | FIFO waiting | yes: order of the entries' tokens in the lock's queue (a sorted set) |
//! | herd-free | yes: a release pushes one wake-up to the new head's own list, which only that waiter `BLPOP`s (on a dedicated connection) |
//! | token source | per-name counter with a server-time floor ([`TokenSource::Counter`](lock_core::TokenSource::Counter)): `max(counter + 1, server time in µs)` |
//! | detects external deletion | yes: at the next renewal (a third of the TTL) |
//! | native fenced writes | no |
//! | read-write locks, semaphores | no: [`ErrorKind::Unsupported`](lock_core::ErrorKind::Unsupported) |
//! | across processes and machines | yes |
//!
//! # How it works
//!
//! Lock `N` lives in keys sharing the hash tag `{N}` (`<prefix>{N}:q` the queue,
//! `:t` the token counter, `:e:<id>` one entry per acquisition, `:w:<id>` a waiter's
//! wake list).
//!
//! - A **lease** is a random 64-bit id with no server object: each of its entries has
//!   the lease's TTL on the server (`PEXPIRE`), and one task renews them all with one
//!   script every third of the TTL. An entry the renewal finds missing turns that
//!   guard `Lost` ([`LossCause::EntryDeleted`](lock_core::LossCause::EntryDeleted)).
//! - **Acquire** is one script: it takes the next token, adds the entry to the queue
//!   scored by it and answers granted (head of the queue, dead entries ahead
//!   pruned), or the time left to the entry just ahead. A waiter then `BLPOP`s its
//!   own wake list for at most that time (and at most 1 s) and re-runs the check
//!   script; a missed wake-up therefore costs at most a second, never a hang.
//! - **Release** is one script: delete the entry only if it still carries the
//!   token, remove it from the queue, and when that changes the head, push one
//!   wake-up to the new head. Dropping an `acquire` future removes its entry.
//!
//! # Guarantees
//!
//! - Mutual exclusion while the server keeps its data and no entry is evicted.
//! - FIFO order, one wake-up per release, nothing left behind by released guards
//!   and cancelled acquires (except the token counters, below).
//! - Tokens strictly increase per name while the counter lives, and after it is lost
//!   (restart without persistence, failover, expiry of an idle counter) as long as
//!   the server clock did not step back past the last token.
//!
//! # Non-guarantees
//!
//! - **Failover loses locks.** Replication is asynchronous: a replica promoted before
//!   it received an entry (or its latest renewals, so that the entry expired there)
//!   lets a second client acquire while the first still believes it holds. The first
//!   learns at its next renewal that reaches the new master, within a third of the TTL
//!   once its connection goes there; a client still connected to the old master keeps
//!   renewing there. Only the resource's check of the token protects data.
//!   fencecheck's `failover` fault runs exactly this (overlaps of up to a few hundred
//!   ms at a 2 s TTL, every stale write refused by the fence, tokens still increasing).
//! - **Tokens after a counter loss depend on the server clock.** A server restarted
//!   without persistence, or a promoted replica that missed the last counter
//!   write, hands out server time in µs, which is above every earlier token unless
//!   the clock stepped back (or the new master's clock is behind the old one's by
//!   more than the time the failover took). Then a token can go backwards, and a
//!   fence may reject the rightful holder (never accept a stale one it has seen).
//! - **Counters stay.** Each lock's counter key `<prefix>{N}:t` outlives its last
//!   acquisition by 7 days (its TTL), so counters never pile up forever, but they
//!   are there after every guard is gone.
//! - **Lease timing uses the server's clock** for expiry and the client's monotonic
//!   clock for its local deadline (the conservative rule on
//!   [`LockState`](lock_core::LockState)).
//! - **Eviction frees locks**: with a `maxmemory-policy` other than `noeviction`
//!   (`volatile-*` evicts exactly the keys with a TTL) the server may delete held
//!   entries under memory pressure. Connecting reads the policy, logs a warning and
//!   keeps it in [`RedisBackend::eviction_policy`].
//! - **No Redis Cluster**: the scripts build key names from the lock's base, which
//!   a cluster would refuse across nodes; all keys of one lock share one hash slot.
//! - A holder paused longer than its TTL still believes it holds the lock when it
//!   wakes up, until it looks at its state: protect resources with the token.
//! - **No read-write lock or semaphore here** (capabilities `false`,
//!   [`ErrorKind::Unsupported`](lock_core::ErrorKind::Unsupported) before anything is
//!   written). The queue could carry the claims, but each would need its own scripts
//!   (a scan of the queue ahead for the nearest writer or the permits ahead, per-slot
//!   token counters, a grant signal to the next permit waiter) and its own fencecheck
//!   mode, all on a store that loses locks on failover; use etcd or ZooKeeper for
//!   them. Elections campaign, run and resign like locks, but `proclaim` (no
//!   `set_value`) and watching (`status --watch`, `Election::observe`) are
//!   `Unsupported` as well.
//!
//! # Examples
//!
//! ```no_run
//! use lock_core::LockClient;
//! use lock_redis::RedisBackend;
//!
//! # #[tokio::main] async fn main() -> lock_core::Result<()> {
//! let client = LockClient::new(RedisBackend::from_url("redis://127.0.0.1:6379?ttl=10s").await?);
//! let guard = client.acquire("reports/daily").await?;
//! println!("holding with token {}", guard.token());
//! guard.release().await
//! # }
//! ```
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod admin;
mod backend;
mod config;
mod conn;
mod error;
mod held;
mod lock;
mod redlock;
mod rights;
mod scripts;
mod session;
mod tls;

pub use backend::{RedisBackend, CAPABILITIES};
pub use config::{
    RedisConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_PREFIX, DEFAULT_REQUEST_TIMEOUT, DEFAULT_TTL,
    SCHEME, TLS_SCHEME,
};
pub use held::RedisHeldLock;
pub use redlock::{
    RedlockBackend, RedlockConfig, RedlockHeldLock, RedlockLease, REDLOCK_CAPABILITIES,
    REDLOCK_SCHEME,
};
pub use rights::ACL_COMMANDS;
pub use session::RedisLease;
