//! fencelock's conformance suite, the real-server harness, and the pieces each
//! backend's runner (`tests/memory.rs`, `tests/etcd.rs`, `tests/zk.rs`) is built from.
//!
//! Every conformance case is a plain `async fn` over a [`Harness`]; a runner builds its
//! harness and turns [`conformance::trials`] into separately named tests.
#![deny(missing_docs)]

pub mod conformance;
pub mod foreign;
mod harness;
pub mod holder;
pub mod latency;
mod memory_harness;
mod runner;
pub mod secrets;
pub mod servers;

#[cfg(feature = "etcd")]
pub mod etcd_harness;
#[cfg(feature = "redis")]
pub mod redis_harness;
#[cfg(feature = "zk")]
pub mod zk_harness;

pub use harness::{Harness, NativeFence, TestError, TestResult};
pub use memory_harness::MemoryHarness;
pub use runner::{async_trial, async_trial_within, run_main, CASE_TIMEOUT};
