//! Crash-takeover support shared by `lock-etcd/benches/etcd_cycle.rs` and
//! `lock-zk/benches/zk_cycle.rs` (included with `#[path]`; this directory has no
//! `main.rs`, so it is no bench target of its own).
//!
//! A holder is the bench binary re-executed in a holder role (the environment
//! variable [`ROLE`]): it takes the lock (or the raw node/key), prints one line
//! `held <fields…>` and then only keeps its session alive until the bench SIGKILLs it
//! by PID at a random moment after the grant. The waiter stays in the bench process.
//!
//! Environment:
//!
//! - `FENCELOCK_BENCH_CRASH_KILLS`: kills per run (default 10);
//! - `FENCELOCK_BENCH_CRASH_TTL_MS`: the TTL / session timeout requested by every
//!   holder and waiter (default 5000);
//! - `FENCELOCK_BENCH_ONLY=crash`: run only the crash-takeover section.

#![allow(dead_code)] // each bench uses a part

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// The environment variable that makes the bench binary a holder process.
pub const ROLE: &str = "FENCELOCK_BENCH_ROLE";

/// The environment variable with the requested TTL in milliseconds.
pub const TTL_MS: &str = "FENCELOCK_BENCH_CRASH_TTL_MS";

/// The holder role this process was started in, if any.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// Whether only the crash-takeover section should run.
pub fn only_crash() -> bool {
    std::env::var("FENCELOCK_BENCH_ONLY").is_ok_and(|v| v == "crash")
}

/// Kills per run.
pub fn kills() -> usize {
    std::env::var("FENCELOCK_BENCH_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

/// The TTL every holder and waiter requests.
pub fn ttl() -> Duration {
    Duration::from_millis(
        std::env::var(TTL_MS)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5000),
    )
}

/// Holder side: tells the bench that the lock is held (`fields` after `held `).
pub fn report_held(fields: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "held {fields}");
    let _ = out.flush();
}

/// A holder process, SIGKILLed (by PID) on [`kill`](Self::kill) or drop.
pub struct Holder {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Holder {
    /// Starts this bench binary again in `role`, with `env` on top of ours.
    pub fn spawn(role: &str, env: &[(&str, String)]) -> std::io::Result<Holder> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(ROLE, role)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Holder { child, lines })
    }

    /// Waits (blocking, at most `limit`) for the holder's `held` line; its fields.
    pub fn held(&mut self, limit: Duration) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("held ") {
                        return Ok(rest.split_whitespace().map(str::to_owned).collect());
                    }
                }
                Err(e) => return Err(format!("holder process did not report the grant: {e}")),
            }
        }
    }

    /// SIGKILLs the holder (by its PID); the moment right after the signal was sent.
    pub fn kill(&mut self) -> Instant {
        let _ = self.child.kill(); // SIGKILL on Unix
        Instant::now()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small xorshift generator for the kill delays (no dependency needed).
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Rng {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Rng(nanos | 1)
    }

    /// A uniformly random duration in `[lo, hi)`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let span = (hi - lo).as_micros() as u64;
        lo + Duration::from_micros(self.0 % span.max(1))
    }
}

/// Median, min, max (zero for none).
pub fn summary(v: &[Duration]) -> (Duration, Duration, Duration) {
    let mut v = v.to_vec();
    v.sort();
    let median = if v.is_empty() {
        Duration::ZERO
    } else if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2
    };
    (
        median,
        v.first().copied().unwrap_or_default(),
        v.last().copied().unwrap_or_default(),
    )
}

/// `median s (min–max)`, or `n/a` for none.
pub fn seconds(v: &[Duration]) -> String {
    if v.is_empty() {
        return "n/a".into();
    }
    let (median, min, max) = summary(v);
    format!(
        "{:.2} s ({:.2}–{:.2})",
        median.as_secs_f64(),
        min.as_secs_f64(),
        max.as_secs_f64()
    )
}

/// `median (min…max)` of `v` minus `t`, signed seconds.
pub fn beyond(v: &[Duration], t: Duration) -> String {
    let (median, min, max) = summary(v);
    let d = |x: Duration| x.as_secs_f64() - t.as_secs_f64();
    format!("{:+.2} s ({:+.2}…{:+.2})", d(median), d(min), d(max))
}
