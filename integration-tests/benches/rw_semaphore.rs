//! Read-write lock and semaphore throughput, as ratios against the mutex measured in
//! the same run, on the memory backend and (when the binaries are there) a one-member
//! etcd cluster and a one-server ZooKeeper the bench starts itself.
//!
//! `cargo bench -p fencelock-integration-tests --bench rw_semaphore` (add `-- --quick`
//! for 1 s per measurement instead of 3 s). Every cycle holds its grant for 1 ms of
//! simulated work, so sharing shows as throughput.
//!
//! - RW, readers only: R sessions (1, 4, 8) cycle `read()`; the same R sessions cycle
//!   the mutex. Ratio = read cycles/s over mutex cycles/s.
//! - RW, 90 % reads: 8 sessions, each cycle a read with probability 0.9, else a write;
//!   against 8 sessions cycling the mutex.
//! - Semaphore, limit 4, 8 sessions: cycles/s against the mutex, and fairness as the
//!   fewest and most cycles of one session, and the waiter wake-ups per release
//!   (`LockStats::waiter_wakeups`: each release should wake one waiter; on etcd and
//!   ZooKeeper a permit granted after waiting also wakes the one behind it once, its
//!   hand-off signal).

use fencelock::LockClient;
use fencelock_integration_tests::servers::{etcd::EtcdCluster, ZkEnsemble};
use std::time::{Duration, Instant};

const WORK: Duration = Duration::from_millis(1);

#[derive(Clone, Copy)]
enum Mode {
    Mutex,
    Read,
    Mixed,
    Permit(u32),
}

/// Runs `sessions` tasks, each on its own lease, cycling `mode` on one name for
/// `span`; returns the cycles of each session.
async fn cycles(
    client: &LockClient,
    name: &str,
    mode: Mode,
    sessions: usize,
    span: Duration,
) -> Vec<u64> {
    let mut tasks = Vec::new();
    for i in 0..sessions {
        let lease = client.lease().await.expect("lease");
        let name = name.to_owned();
        tasks.push(tokio::spawn(async move {
            let rw = lease.rw_lock(name.as_str()).expect("name");
            let mutex = lease.lock(name.as_str()).expect("name");
            let sem = match mode {
                Mode::Permit(limit) => Some(lease.semaphore(name.as_str(), limit).expect("limit")),
                _ => None,
            };
            let end = Instant::now() + span;
            let mut n = 0u64;
            let mut state = 0x9e37_79b9_u32.wrapping_add(i as u32);
            while Instant::now() < end {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let guard = match mode {
                    Mode::Mutex => mutex.acquire().await.expect("mutex"),
                    Mode::Read => rw.read().await.expect("read"),
                    Mode::Mixed if state.is_multiple_of(10) => rw.write().await.expect("write"),
                    Mode::Mixed => rw.read().await.expect("read"),
                    Mode::Permit(_) => sem
                        .as_ref()
                        .expect("a semaphore for permits")
                        .acquire()
                        .await
                        .expect("permit")
                        .into_guard(),
                };
                tokio::time::sleep(WORK).await;
                guard.release().await.expect("release");
                n += 1;
            }
            let _ = lease.close().await;
            n
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

fn rate(counts: &[u64], span: Duration) -> f64 {
    counts.iter().sum::<u64>() as f64 / span.as_secs_f64()
}

async fn bench(label: &str, client: LockClient, span: Duration) {
    println!("{label}: cycles/s with 1 ms of work per grant, same run");
    for readers in [1, 4, 8] {
        let mutex = rate(
            &cycles(&client, "m", Mode::Mutex, readers, span).await,
            span,
        );
        let read = rate(&cycles(&client, "r", Mode::Read, readers, span).await, span);
        println!(
            "  {readers} sessions, reads only: read {read:>8.0}/s  mutex {mutex:>8.0}/s  ratio {:.2}x",
            read / mutex
        );
    }
    let mutex = rate(&cycles(&client, "m8", Mode::Mutex, 8, span).await, span);
    let mixed = rate(&cycles(&client, "x8", Mode::Mixed, 8, span).await, span);
    println!(
        "  8 sessions, 90% reads: rw {mixed:>8.0}/s  mutex {mutex:>8.0}/s  ratio {:.2}x",
        mixed / mutex
    );
    let wakeups_before = client.stats().waiter_wakeups;
    let per = cycles(&client, "s8", Mode::Permit(4), 8, span).await;
    let sem = rate(&per, span);
    let (min, max) = (
        per.iter().min().copied().unwrap_or(0),
        per.iter().max().copied().unwrap_or(0),
    );
    println!(
        "  semaphore limit 4, 8 sessions: {sem:>8.0}/s  mutex {mutex:>8.0}/s  ratio {:.2}x  fairness min/max per session {min}/{max}",
        sem / mutex
    );
    if let (Some(after), Some(before)) = (client.stats().waiter_wakeups, wakeups_before) {
        let wakeups = after - before;
        let releases = per.iter().sum::<u64>();
        println!(
            "  semaphore limit 4, 8 sessions: waiter wake-ups per release {:.2} ({wakeups} / {releases})",
            wakeups as f64 / releases.max(1) as f64
        );
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let span = Duration::from_secs(if quick { 1 } else { 3 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench(
        "memory",
        LockClient::new(fencelock::memory::MemoryBackend::new()),
        span,
    ));
    if EtcdCluster::available() {
        let etcd = EtcdCluster::start(1).expect("etcd starts");
        let client = rt
            .block_on(fencelock::connect(&etcd.url("bench")))
            .expect("connect");
        on_server(&rt, "etcd (1 member, loopback)", client, span);
    } else {
        println!("etcd: not installed, skipped");
    }
    if ZkEnsemble::available() {
        let zk = ZkEnsemble::start(1).expect("ZooKeeper starts");
        let client = rt
            .block_on(fencelock::connect(&zk.url("/bench")))
            .expect("connect");
        on_server(&rt, "zk (1 server, loopback)", client, span);
    } else {
        println!("zk: not installed, skipped");
    }
}

/// Runs [`bench`] on a server backend's client, then closes it.
fn on_server(rt: &tokio::runtime::Runtime, label: &str, client: LockClient, span: Duration) {
    rt.block_on(async {
        bench(label, client.clone(), span).await;
        let _ = client.close().await;
    });
}
