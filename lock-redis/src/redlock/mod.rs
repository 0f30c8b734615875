//! Redlock over N (odd, ≥ 3) independent Redis masters: [`RedlockBackend`].
//!
//! Lock `N` on every node: `<prefix>{N}:lock` (a hash: `i` entry id, `t` token, `l`
//! lease, `a` acquired at, `h` holder) with the lease's TTL, the token counter
//! `<prefix>{N}:t`, and `<prefix>{N}:wq`, the waiters seen lately (for `inspect`).
//! Each lease has a key `<prefix>lease:<id>` on every node.
//!
//! # Layout
//!
//! The single-instance backend's file set, one level down, so that the two
//! backends read alike: this file (docs and re-exports), `config.rs` (the
//! `redlock://` URL, the masters), `backend.rs` (the trait impls), `admin.rs`
//! (operator controls and the test hook), `lock.rs` (the recipe, I/O only: majority
//! acquire, quorum token, inspect), `held.rs` (one grant), `session.rs` (the lease,
//! renewed on every master), `conn.rs` (the masters: one connection each, bounded
//! parallel calls, the majority), `scripts.rs` (the Lua scripts). Imports run one
//! way: `backend.rs` → `lock.rs` → `held.rs` → `session.rs` → `conn.rs` →
//! `scripts.rs`, `config.rs`, with `admin.rs` beside `backend.rs`; out of this
//! directory they go only to the crate's leaves (`conn.rs`, `scripts.rs` for the
//! key base, `config.rs`, `error.rs`), never to the single-instance recipe.

mod admin;
mod backend;
mod config;
mod conn;
mod held;
mod lock;
mod scripts;
mod session;

pub use backend::{RedlockBackend, REDLOCK_CAPABILITIES};
pub use config::{RedlockConfig, REDLOCK_SCHEME};
pub use held::RedlockHeldLock;
pub use session::RedlockLease;
