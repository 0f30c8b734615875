//! Benchmarks of the ZooKeeper backend against a real server.
//!
//! `cargo bench -p lock-zk --bench zk_cycle` uses the server in `FENCELOCK_BENCH_ZK`
//! (`host:port[,host:port…]`) or starts a standalone ZooKeeper from the Debian jars
//! (`/usr/share/java/zookeeper.jar`, or `FENCELOCK_ZK_CLASSPATH`) on a free loopback
//! port, and prints a markdown table:
//!
//! 1. uncontended acquire+release through `LockClient` vs the raw requests the recipe
//!    needs (create ephemeral sequential + get_children + delete) issued directly with
//!    zookeeper-client on one session, interleaved in the same run (target ratio ≤ 1.15);
//! 2. contended handoff: 8 sessions on one lock for 10 s (cycles/s, wait p50/p99,
//!    fairness, predecessor-watch wake-ups per release; target 1), and the raw
//!    handoff it cannot beat (one session deletes a node another watches) with the
//!    ratio of the two;
//! 3. one session acquires 1000 distinct locks concurrently, then releases them.

use lock_core::LockClient;
use lock_zk::{ZkBackend, ZkConfig};
use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use zookeeper_client::{Acls, Client, CreateMode};

type BenchResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A standalone ZooKeeper started for the run; killed (by PID) and removed on drop.
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_server() -> BenchResult<(Server, String)> {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port();
    let dir =
        std::env::temp_dir().join(format!("fencelock-zk-bench-{}-{port}", std::process::id()));
    std::fs::create_dir_all(dir.join("data"))?;
    std::fs::write(
        dir.join("zoo.cfg"),
        format!(
            "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\nforceSync=no\nmaxClientCnxns=0\n",
            dir.join("data").display()
        ),
    )?;
    let classpath = std::env::var("FENCELOCK_ZK_CLASSPATH").unwrap_or_else(|_| {
        [
            "/usr/share/java/zookeeper.jar",
            "/usr/share/java/zookeeper-jute.jar",
            "/usr/share/java/slf4j-nop.jar",
        ]
        .join(":")
    });
    let log = std::fs::File::create(dir.join("zk.log"))?;
    let child = Command::new(std::env::var("FENCELOCK_JAVA").unwrap_or_else(|_| "java".into()))
        .args(["-Xmx512m", "-XX:+UseSerialGC", "-cp", &classpath])
        .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
        .arg(dir.join("zoo.cfg"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let server = Server { child, dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !serving(port) {
        if Instant::now() > deadline {
            return Err("zookeeper did not start within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((server, format!("127.0.0.1:{port}")))
}

/// Whether the server on `port` answers `srvr` with its mode (it serves sessions).
fn serving(port: u16) -> bool {
    let ask = || -> std::io::Result<String> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        stream.write_all(b"srvr")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    };
    ask().is_ok_and(|a| a.contains("Mode:"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn uncontended(hosts: &str, rows: &mut Vec<(String, String)>) -> BenchResult {
    const BLOCKS: usize = 20;
    const PER_BLOCK: usize = 300;
    let backend =
        ZkBackend::connect(ZkConfig::new(hosts.split(',')).with_chroot("/bench-uncontended")?)
            .await?;
    let client = LockClient::new(backend);
    let lock = client.lease().await?.lock("cycle")?;
    let raw = Client::connect(hosts).await?;
    raw.mkdir(
        "/bench-raw/cycle",
        &CreateMode::Persistent.with_acls(Acls::anyone_all()),
    )
    .await?;
    let node = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
    let (mut ours, mut theirs, mut watched) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut ratios = Vec::with_capacity(BLOCKS);
    for block in 0..=BLOCKS {
        let t = Instant::now();
        for _ in 0..PER_BLOCK {
            lock.acquire().await?.release().await?;
        }
        let a = t.elapsed();
        let t = Instant::now();
        for _ in 0..PER_BLOCK {
            let (_, seq) = raw.create("/bench-raw/cycle/n-lock-", b"", &node).await?;
            let children = raw.list_children("/bench-raw/cycle").await?;
            assert!(!children.is_empty());
            raw.delete(&format!("/bench-raw/cycle/n-lock-{seq}"), None)
                .await?;
        }
        let b = t.elapsed();
        // The same requests, the read also setting the directory watch the recipe
        // needs to notice a deleted lock node.
        let t = Instant::now();
        for _ in 0..PER_BLOCK {
            let (_, seq) = raw.create("/bench-raw/cycle/n-lock-", b"", &node).await?;
            let (children, watch) = raw.list_and_watch_children("/bench-raw/cycle").await?;
            assert!(!children.is_empty());
            raw.delete(&format!("/bench-raw/cycle/n-lock-{seq}"), None)
                .await?;
            drop(watch.changed().await);
        }
        let c = t.elapsed();
        if block > 0 {
            // block 0 warms up the JIT and connections
            ours += a;
            theirs += b;
            watched += c;
            ratios.push(a.as_secs_f64() / b.as_secs_f64());
        }
    }
    ratios.sort_by(f64::total_cmp);
    let n = (BLOCKS * PER_BLOCK) as u32;
    let (ours, theirs, watched) = (ours / n, theirs / n, watched / n);
    rows.push((
        "uncontended cycle, fencelock (mean)".into(),
        format!("{:.0} µs", micros(ours)),
    ));
    rows.push((
        "uncontended cycle, raw create+get_children+delete (mean)".into(),
        format!("{:.0} µs", micros(theirs)),
    ));
    rows.push((
        "uncontended cycle, raw with the directory watch (mean; ratio fencelock/it)".into(),
        format!(
            "{:.0} µs; {:.3}",
            micros(watched),
            ours.as_secs_f64() / watched.as_secs_f64()
        ),
    ));
    rows.push((
        "uncontended ratio fencelock/raw (target ≤ 1.15): of the means / median of 20 interleaved blocks".into(),
        format!(
            "{:.3} / {:.3}",
            ours.as_secs_f64() / theirs.as_secs_f64(),
            ratios[ratios.len() / 2]
        ),
    ));
    client.close().await?;
    raw.delete("/bench-raw/cycle", None).await?;
    Ok(())
}

/// The raw handoff, what one lock handoff cannot beat: session `a` deletes a node that
/// session `b` watches; the time from sending the delete to `b`'s watch firing.
async fn raw_handoff(hosts: &str) -> BenchResult<Duration> {
    let (a, b) = (Client::connect(hosts).await?, Client::connect(hosts).await?);
    let node = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    let path = "/bench-raw-handoff";
    let mut total = Duration::ZERO;
    const N: u32 = 1000;
    for i in 0..N + 100 {
        a.create(path, b"", &node).await?;
        let (stat, watch) = b.check_and_watch_stat(path).await?;
        assert!(stat.is_some());
        let t = Instant::now();
        a.delete(path, None).await?;
        drop(watch.changed().await);
        if i >= 100 {
            total += t.elapsed(); // the first 100 warm up the JIT and connections
        }
    }
    drop((a, b)); // dropping a client closes its session
    Ok(total / N)
}

async fn contended(hosts: &str, rows: &mut Vec<(String, String)>) -> BenchResult {
    const SESSIONS: usize = 8;
    const RUN: Duration = Duration::from_secs(10);
    let backend =
        ZkBackend::connect(ZkConfig::new(hosts.split(',')).with_chroot("/bench-contended")?)
            .await?;
    let client = LockClient::new(backend);
    let stop = Arc::new(AtomicBool::new(false));
    let wakeups_before = client.stats().waiter_wakeups.unwrap_or(0);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..SESSIONS {
        let lock = client.lease().await?.lock("hot")?;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut waits = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let asked = Instant::now();
                let guard = lock.acquire().await?;
                waits.push(asked.elapsed());
                guard.release().await?;
            }
            Ok::<_, lock_core::Error>(waits)
        }));
    }
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut per_session = Vec::new();
    for t in tasks {
        let waits = t.await??;
        per_session.push(waits.len());
        all.extend(waits);
    }
    let elapsed = started.elapsed();
    let wakeups = client.stats().waiter_wakeups.unwrap_or(0) - wakeups_before;
    all.sort_unstable();
    let cycles = all.len();
    let rate = cycles as f64 / elapsed.as_secs_f64();
    let handoff = raw_handoff(hosts).await?;
    rows.push((
        "contended: 8 sessions, cycles/s".into(),
        format!("{rate:.0}"),
    ));
    rows.push((
        "raw handoff (delete → watch fired at another session), mean".into(),
        format!("{:.0} µs", micros(handoff)),
    ));
    rows.push((
        "contended cycles/s ÷ (1 / raw handoff) (target ≥ 0.7)".into(),
        format!("{:.2}", rate * handoff.as_secs_f64()),
    ));
    rows.push((
        "contended: wait p50 / p99".into(),
        format!(
            "{:.1} ms / {:.1} ms",
            micros(percentile(&all, 0.5)) / 1e3,
            micros(percentile(&all, 0.99)) / 1e3
        ),
    ));
    rows.push((
        "contended: fairness min / max cycles per session".into(),
        format!(
            "{} / {}",
            per_session.iter().min().unwrap_or(&0),
            per_session.iter().max().unwrap_or(&0)
        ),
    ));
    rows.push((
        "contended: predecessor-watch wake-ups per release (target 1)".into(),
        format!(
            "{:.3} ({wakeups} / {cycles})",
            wakeups as f64 / cycles.max(1) as f64
        ),
    ));
    client.close().await?;
    Ok(())
}

async fn many_locks(hosts: &str, rows: &mut Vec<(String, String)>) -> BenchResult {
    const LOCKS: usize = 1000;
    let backend =
        ZkBackend::connect(ZkConfig::new(hosts.split(',')).with_chroot("/bench-many")?).await?;
    let client = LockClient::new(backend);
    let lease = client.lease().await?;
    let locks: Vec<_> = (0..LOCKS)
        .map(|i| lease.lock(format!("many/{i}")))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let guards = futures::future::try_join_all(locks.iter().map(|l| l.acquire())).await?;
    let acquired = started.elapsed();
    let released = Instant::now();
    futures::future::try_join_all(guards.into_iter().map(|g| g.release())).await?;
    let released = released.elapsed();
    rows.push((
        "1000 distinct locks on one session: acquire all / release all".into(),
        format!(
            "{:.0} ms / {:.0} ms (total {:.0} ms)",
            acquired.as_secs_f64() * 1e3,
            released.as_secs_f64() * 1e3,
            (acquired + released).as_secs_f64() * 1e3
        ),
    ));
    client.close().await?;
    Ok(())
}

fn main() -> BenchResult {
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo test --benches` probes with --list; nothing to list
    }
    let (server, hosts) = match std::env::var("FENCELOCK_BENCH_ZK") {
        Ok(hosts) => (None, hosts),
        Err(_) => {
            let (server, hosts) = start_server()?;
            (Some(server), hosts)
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    rt.block_on(async {
        uncontended(&hosts, &mut rows).await?;
        contended(&hosts, &mut rows).await?;
        many_locks(&hosts, &mut rows).await
    })?;
    println!("zookeeper at {hosts}\n\n| benchmark | result |\n|---|---|");
    for (name, value) in rows {
        println!("| {name} | {value} |");
    }
    drop(rt);
    drop(server);
    Ok(())
}
