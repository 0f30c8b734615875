//! Benchmarks of the Redis backend against the raw requests it replaces, same run,
//! same server, same client library:
//!
//! 1. uncontended acquire + release vs raw `SET NX PX` + `DEL` (ratio);
//! 2. 8 sessions contending for one lock for 10 s: cycles/s, wait p50/p99, cycles
//!    per session (min/max and spread), wake-ups per release;
//! 3. Redlock over 3 masters: uncontended cycle vs 3 parallel raw `SET NX PX` +
//!    `DEL` (ratio).
//!
//! Starts `redis-server` (`FENCELOCK_REDIS_BIN` or `PATH`) on a free loopback port
//! without persistence and kills it at the end. Run:
//! `cargo bench -p lock-redis --bench redis_cycle`.

use lock_core::{backend::Backend, LockClient};
use lock_redis::{RedisBackend, RedisConfig, RedlockBackend};
use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

const CYCLES: usize = 2000;
const ROUNDS: usize = 3;
const SESSIONS: usize = 8;
const CONTENDED_FOR: Duration = Duration::from_secs(10);

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server() -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port");
    let bin = std::env::var("FENCELOCK_REDIS_BIN").unwrap_or_else(|_| "redis-server".into());
    let child = Command::new(bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let server = Server(child, port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = server();
    let address = format!("127.0.0.1:{}", server.1);
    let backend = RedisBackend::connect(RedisConfig::new(&address).with_prefix("bench:"))
        .await
        .expect("connect");
    let client = LockClient::new(backend);
    let raw_client = redis::Client::open(format!("redis://{address}")).expect("client");
    let mut raw = raw_client
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection");
    let lock = client
        .lease()
        .await
        .expect("lease")
        .lock("u")
        .expect("lock");

    // 1. Uncontended cycle vs raw SET NX PX + DEL, interleaved rounds.
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..CYCLES {
            lock.acquire()
                .await
                .expect("acquire")
                .release()
                .await
                .expect("release");
        }
        ours.push(t.elapsed());
        let t = Instant::now();
        for i in 0..CYCLES {
            let ok: Option<String> = redis::cmd("SET")
                .arg("raw:u")
                .arg(i)
                .arg("NX")
                .arg("PX")
                .arg(10_000)
                .query_async(&mut raw)
                .await
                .expect("set");
            assert!(ok.is_some());
            let _: i64 = redis::cmd("DEL")
                .arg("raw:u")
                .query_async(&mut raw)
                .await
                .expect("del");
        }
        theirs.push(t.elapsed());
    }
    ours.sort();
    theirs.sort();
    let (o, r) = (ours[ROUNDS / 2], theirs[ROUNDS / 2]);
    println!(
        "uncontended: fencelock {:.1} µs/cycle, raw SET NX PX + DEL {:.1} µs/cycle, ratio {:.2}x (median of {ROUNDS} rounds of {CYCLES})",
        o.as_secs_f64() * 1e6 / CYCLES as f64,
        r.as_secs_f64() * 1e6 / CYCLES as f64,
        o.as_secs_f64() / r.as_secs_f64()
    );

    // 2. Contended: SESSIONS clients (own connections) on one lock.
    let mut backends = Vec::new();
    for _ in 0..SESSIONS {
        backends.push(
            RedisBackend::connect(RedisConfig::new(&address).with_prefix("bench:"))
                .await
                .expect("connect"),
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = backends
        .iter()
        .map(|b| {
            let client = LockClient::new(b.clone());
            let stop = stop.clone();
            tokio::spawn(async move {
                let lock = client
                    .lease()
                    .await
                    .expect("lease")
                    .lock("c")
                    .expect("lock");
                let (mut cycles, mut waits) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let guard = lock.acquire().await.expect("acquire");
                    waits.push(t.elapsed());
                    guard.release().await.expect("release");
                    cycles += 1;
                }
                (cycles, waits)
            })
        })
        .collect();
    tokio::time::sleep(CONTENDED_FOR).await;
    stop.store(true, Ordering::Relaxed);
    let mut per_session = Vec::new();
    let mut waits = Vec::new();
    for t in tasks {
        let (c, w) = t.await.expect("session");
        per_session.push(c);
        waits.extend(w);
    }
    let elapsed = started.elapsed();
    waits.sort();
    let total: u64 = per_session.iter().sum();
    let wakeups: u64 = backends.iter().filter_map(|b| b.waiter_wakeups()).sum();
    let (min, max) = (
        *per_session.iter().min().unwrap_or(&0),
        *per_session.iter().max().unwrap_or(&0),
    );
    println!(
        "contended ({SESSIONS} sessions, {:.1} s): {:.0} cycles/s, wait p50 {:.2} ms p99 {:.2} ms, cycles per session min {min} max {max} (spread {:.1}%), wake-ups per release {:.2}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        percentile(&waits, 0.5).as_secs_f64() * 1e3,
        percentile(&waits, 0.99).as_secs_f64() * 1e3,
        if max == 0 { 0.0 } else { (max - min) as f64 * 100.0 / max as f64 },
        wakeups as f64 / total.max(1) as f64
    );
    drop(backends);

    // 3. Redlock over 3 masters vs 3 parallel raw SET NX PX + DEL.
    let masters = [server, self::server(), self::server()];
    let addrs: Vec<String> = masters
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.1))
        .collect();
    let redlock = RedlockBackend::from_url(&format!("redlock://{}?prefix=rl:", addrs.join(",")))
        .await
        .expect("redlock");
    let client = LockClient::new(redlock);
    let lock = client
        .lease()
        .await
        .expect("lease")
        .lock("u")
        .expect("lock");
    let mut raws = Vec::new();
    for a in &addrs {
        let c = redis::Client::open(format!("redis://{a}")).expect("client");
        raws.push(c.get_multiplexed_async_connection().await.expect("raw"));
    }
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..CYCLES / 2 {
            lock.acquire()
                .await
                .expect("acquire")
                .release()
                .await
                .expect("release");
        }
        ours.push(t.elapsed());
        let t = Instant::now();
        for i in 0..CYCLES / 2 {
            let sets = raws.iter().map(|c| {
                let mut c = c.clone();
                async move {
                    redis::cmd("SET")
                        .arg("raw:u")
                        .arg(i)
                        .arg("NX")
                        .arg("PX")
                        .arg(10_000)
                        .query_async::<Option<String>>(&mut c)
                        .await
                }
            });
            for r in futures::future::join_all(sets).await {
                assert!(r.expect("set").is_some());
            }
            let dels = raws.iter().map(|c| {
                let mut c = c.clone();
                async move {
                    redis::cmd("DEL")
                        .arg("raw:u")
                        .query_async::<i64>(&mut c)
                        .await
                }
            });
            futures::future::join_all(dels).await;
        }
        theirs.push(t.elapsed());
    }
    ours.sort();
    theirs.sort();
    let (o, r) = (ours[ROUNDS / 2], theirs[ROUNDS / 2]);
    let n = (CYCLES / 2) as f64;
    println!(
        "redlock uncontended (3 masters): fencelock {:.1} µs/cycle, 3 parallel raw SET NX PX + DEL {:.1} µs/cycle, ratio {:.2}x",
        o.as_secs_f64() * 1e6 / n,
        r.as_secs_f64() * 1e6 / n,
        o.as_secs_f64() / r.as_secs_f64()
    );
    drop(masters);
}
