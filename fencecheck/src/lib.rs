//! **fencecheck**: a Jepsen-style safety harness for fencelock.
//!
//! Holders loop acquire → fenced read-modify-writes → release against a real backend
//! while a seeded nemesis kills, pauses and partitions them and fails the servers;
//! a checker then reads the holders' histories, the fenced register's log, the fault
//! log and the server's own view and counts the safety properties S1–S6 (all must be
//! zero) and the liveness measures L1–L3 of `shared/RELIABILITY.md`.
//!
//! | module | job |
//! |---|---|
//! | [`history`] | JSON-lines events on `CLOCK_MONOTONIC` |
//! | [`register`] | the fenced register and the unfenced control counter |
//! | [`holder`] | the holder loop |
//! | [`proxy`] | the TCP fault proxy |
//! | [`nemesis`] | fault kinds, the seeded schedule, the fault log |
//! | [`truth`] | the server's view of ownership |
//! | [`checker`] | S1–S6, L1–L3 |
//! | [`report`] | JSON summary, table, timeline |
//! | [`run`] | the runners per backend |
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![warn(unreachable_pub, missing_debug_implementations)]

pub mod checker;
pub mod history;
pub mod holder;
pub mod nemesis;
mod pg_register;
pub mod proxy;
pub mod register;
pub mod report;
pub mod run;
pub mod truth;
