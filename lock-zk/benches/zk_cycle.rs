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
//! 3. one session acquires 1000 distinct locks concurrently, then releases them;
//! 4. crash takeover (issue 11): a holder process (this binary re-executed with
//!    `FENCELOCK_BENCH_ROLE`) takes the lock and is SIGKILLed at a random moment
//!    0.5–2.5 s after the grant; a waiter in this process measures the time from the
//!    kill until it holds the lock. In the same kill a raw holder process (one
//!    zookeeper-client session, same requested timeout, one ephemeral node) is
//!    killed and a raw watcher times its node's deletion. The server's `cons` shows
//!    each holder session's negotiated timeout, packet rate and last packet, and how
//!    many sessions each holder process opened. Kills, TTL and "only this section":
//!    see `benches/support/crash.rs` (`FENCELOCK_BENCH_CRASH_KILLS`,
//!    `FENCELOCK_BENCH_CRASH_TTL_MS`, `FENCELOCK_BENCH_ONLY=crash`). The started
//!    server uses `tickTime=2000` and answers `cons`; with `FENCELOCK_BENCH_ZK` the
//!    target row still assumes a 2 s tick, and the `cons` rows are `n/a` unless the
//!    server whitelists `cons`.

#[path = "../../benches/support/crash.rs"]
mod crash;

use lock_core::{LockClient, LockName};
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
            "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\nforceSync=no\nmaxClientCnxns=0\n4lw.commands.whitelist=srvr,cons\n",
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

/// The tickTime of the server [`start_server`] starts.
const TICK: Duration = Duration::from_secs(2);
const CRASH_CHROOT: &str = "/bench-crash";
const CRASH_LOCK: &str = "crash";
const CRASH_RAW_NODE: &str = "/bench-crash-raw";

/// Holder side of the crash bench (this binary re-executed with `FENCELOCK_BENCH_ROLE`):
/// takes the lock (or creates the raw node), prints `held <negotiated ms> <session id
/// hex>` and keeps the session alive until it is killed.
async fn crash_holder(role: &str) -> BenchResult {
    let hosts = std::env::var("FENCELOCK_BENCH_ZK")?;
    let ttl = crash::ttl();
    match role {
        "zk-fencelock" => {
            let config = ZkConfig::new(hosts.split(','))
                .with_chroot(CRASH_CHROOT)?
                .with_session_timeout(ttl);
            let client = LockClient::new(ZkBackend::connect(config).await?);
            let lease = client.lease_with_ttl(ttl).await?;
            let _guard = lease.lock(CRASH_LOCK)?.acquire().await?;
            crash::report_held(&format!("{} {}", lease.ttl().as_millis(), lease.id()));
            std::future::pending::<()>().await;
        }
        "zk-raw" => {
            let client = Client::connector()
                .with_session_timeout(ttl)
                .connect(&hosts)
                .await?;
            let node = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
            client.create(CRASH_RAW_NODE, b"", &node).await?;
            crash::report_held(&format!(
                "{} {:x}",
                client.session_timeout().as_millis(),
                client.session_id().0 as u64
            ));
            std::future::pending::<()>().await;
        }
        other => return Err(format!("unknown {} {other:?}", crash::ROLE).into()),
    }
    Ok(())
}

/// One connection in the server's `cons` listing.
#[derive(Debug, Clone)]
struct Cnxn {
    sid: String,
    /// The negotiated session timeout (`to`), ms.
    timeout: i64,
    /// Packets received on this connection.
    received: i64,
    /// When the server last answered it, ms on the server's monotonic clock.
    last_response: i64,
}

/// The server's `cons` four-letter command (whitelisted in the bench's zoo.cfg); `None`
/// when the server does not answer it.
fn cons(hosts: &str) -> Option<Vec<Cnxn>> {
    let host = hosts.split(',').next()?;
    let mut stream = TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"cons").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let field = |line: &str, key: &str| -> Option<String> {
        let start = line.find(&format!("{key}="))? + key.len() + 1;
        let rest = &line[start..];
        let end = rest.find([',', ')']).unwrap_or(rest.len());
        Some(rest[..end].to_owned())
    };
    let num = |line: &str, key: &str| field(line, key).and_then(|v| v.parse::<i64>().ok());
    let cnxns = answer
        .lines()
        .filter_map(|line| {
            Some(Cnxn {
                sid: field(line, "sid")?.trim_start_matches("0x").to_owned(),
                timeout: num(line, "to")?,
                received: num(line, "recved")?,
                last_response: num(line, "lresp")?,
            })
        })
        .collect::<Vec<_>>();
    (!cnxns.is_empty()).then_some(cnxns)
}

/// A `cons` listing taken right after a request of `probe` (a session of this process)
/// was answered: the moment of that answer anchors the server's `lresp` clock.
struct Snapshot {
    at: Instant,
    anchor: i64,
    cnxns: Vec<Cnxn>,
}

async fn snapshot(hosts: &str, probe: &Client) -> Option<Snapshot> {
    probe.check_stat("/").await.ok()?;
    let at = Instant::now();
    let sid = format!("{:x}", probe.session_id().0 as u64);
    let cnxns = tokio::task::block_in_place(|| cons(hosts))?;
    let anchor = cnxns.iter().find(|c| c.sid == sid)?.last_response;
    Some(Snapshot { at, anchor, cnxns })
}

impl Snapshot {
    fn get(&self, sid: &str) -> Option<&Cnxn> {
        self.cnxns.iter().find(|c| c.sid == sid)
    }

    /// When the server last answered session `sid`, on this process's clock.
    fn last_response(&self, sid: &str) -> Option<Instant> {
        let behind = self.anchor - self.get(sid)?.last_response;
        self.at.checked_sub(ms(behind))
    }
}

#[derive(Default)]
struct Side {
    /// kill → node deleted (a raw watcher's notification).
    deleted: Vec<Duration>,
    /// kill → the waiter holds the lock (fencelock only).
    held: Vec<Duration>,
    /// kill − the holder session's last packet (server `cons`).
    last_packet: Vec<Duration>,
    /// The holder session's last packet → node deleted: the server's expiry.
    expiry: Vec<Duration>,
    /// The session's mean interval between packets (server `cons`).
    packet_interval: Vec<Duration>,
    negotiated: Vec<Duration>,
    sessions: Vec<usize>,
}

fn ms(v: i64) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

async fn crash_takeover(hosts: &str, out: &mut Vec<String>) -> BenchResult {
    let (ttl, kills) = (crash::ttl(), crash::kills());
    let raw = Client::connect(hosts).await?;
    let config = ZkConfig::new(hosts.split(','))
        .with_chroot(CRASH_CHROOT)?
        .with_session_timeout(ttl);
    let client = LockClient::new(ZkBackend::connect(config).await?);
    let lease = client.lease_with_ttl(ttl).await?;
    let lock = lease.lock(CRASH_LOCK)?;
    let name = LockName::new(CRASH_LOCK)?;
    let env = [
        ("FENCELOCK_BENCH_ZK", hosts.to_owned()),
        (crash::TTL_MS, ttl.as_millis().to_string()),
    ];
    // Opens this client's own session for `inspect` now, so that the sessions new in
    // a kill's first `cons` listing are the two holder processes' alone.
    client.inspect(name.clone()).await?;
    let mut rng = crash::Rng::seeded();
    let (mut ours, mut theirs) = (Side::default(), Side::default());
    let limit = ttl * 3 + TICK;
    for _ in 0..kills {
        let before: Vec<String> = snapshot(hosts, &raw)
            .await
            .map(|s| s.cnxns.into_iter().map(|c| c.sid).collect())
            .unwrap_or_default();
        let mut fl = crash::Holder::spawn("zk-fencelock", &env)?;
        let mut rw = crash::Holder::spawn("zk-raw", &env)?;
        let fl_fields = tokio::task::block_in_place(|| fl.held(Duration::from_secs(30)))?;
        let granted = Instant::now();
        let rw_fields = tokio::task::block_in_place(|| rw.held(Duration::from_secs(30)))?;
        let first = snapshot(hosts, &raw).await;
        // The waiter queues behind the holder.
        let waiter = tokio::spawn({
            let lock = lock.clone();
            async move {
                let guard = lock.acquire().await?;
                Ok::<_, lock_core::Error>((Instant::now(), guard))
            }
        });
        let queued = Instant::now();
        while client
            .inspect(name.clone())
            .await?
            .is_none_or(|info| info.waiters == 0)
        {
            if queued.elapsed() > Duration::from_secs(10) {
                return Err("the waiter did not queue within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Raw watchers: the raw node, and the lock directory (whose next change is
        // the deletion of the fencelock holder's node: the waiter is queued already).
        let (stat, raw_watch) = raw.check_and_watch_stat(CRASH_RAW_NODE).await?;
        assert!(stat.is_some(), "the raw holder's node exists");
        let raw_deleted = tokio::spawn(async move {
            raw_watch.changed().await;
            Instant::now()
        });
        let dirs = raw.list_children(CRASH_CHROOT).await?;
        let dir = format!(
            "{CRASH_CHROOT}/{}",
            dirs.first().ok_or("no lock directory")?
        );
        let (_, dir_watch) = raw.list_and_watch_children(&dir).await?;
        let fl_deleted = tokio::spawn(async move {
            dir_watch.changed().await;
            Instant::now()
        });
        tokio::time::sleep_until(
            (granted + rng.between(Duration::from_millis(500), Duration::from_millis(2500))).into(),
        )
        .await;
        let last = snapshot(hosts, &raw).await;
        let fl_killed = fl.kill();
        let rw_killed = rw.kill();
        let (acquired, guard) = tokio::time::timeout(limit, waiter).await???;
        let fl_gone = tokio::time::timeout(limit, fl_deleted).await??;
        let rw_gone = tokio::time::timeout(limit, raw_deleted).await??;
        ours.held.push(acquired - fl_killed);
        ours.deleted.push(fl_gone - fl_killed);
        theirs.deleted.push(rw_gone - rw_killed);
        for (side, fields, killed, gone) in [
            (&mut ours, &fl_fields, fl_killed, fl_gone),
            (&mut theirs, &rw_fields, rw_killed, rw_gone),
        ] {
            let negotiated: i64 = fields.first().and_then(|v| v.parse().ok()).unwrap_or(0);
            side.negotiated.push(ms(negotiated));
            let sid = fields.get(1).cloned().unwrap_or_default();
            let (Some(first), Some(last)) = (&first, &last) else {
                continue;
            };
            if let Some(packet) = last.last_response(&sid) {
                side.last_packet
                    .push(killed.saturating_duration_since(packet));
                side.expiry.push(gone.saturating_duration_since(packet));
            }
            if let (Some(a), Some(b)) = (first.get(&sid), last.get(&sid)) {
                let packets = (b.received - a.received).max(1) as u32;
                side.packet_interval.push((last.at - first.at) / packets);
                assert_eq!(b.timeout, negotiated, "cons shows the negotiated timeout");
            }
            let new = last
                .cnxns
                .iter()
                .filter(|c| !before.contains(&c.sid))
                .count();
            side.sessions.push(new);
        }
        guard.release().await?;
        drop((fl, rw));
    }
    // Sessions per holder process: the new connections minus the other holder's one.
    let per_process = |v: &[usize]| -> String {
        v.iter()
            .map(|n| n.saturating_sub(1))
            .max()
            .map_or("n/a".into(), |n| n.to_string())
    };
    let median = |v: &[Duration]| crash::summary(v).0;
    let negotiated = median(&ours.negotiated);
    let after_expiry: Vec<Duration> = ours
        .held
        .iter()
        .zip(&ours.deleted)
        .map(|(h, d)| h.saturating_sub(*d))
        .collect();
    let worst = crash::summary(&ours.held).2;
    out.push(format!(
        "\ncrash takeover: {kills} kills, holder SIGKILLed 0.5–2.5 s after the grant, requested session timeout {} ms, tickTime {} ms; median (min–max)\n",
        ttl.as_millis(),
        TICK.as_millis()
    ));
    out.push("| crash takeover | fencelock | raw ephemeral node (zookeeper-client) |".into());
    out.push("|---|---|---|".into());
    let mut row = |what: &str, a: String, b: String| out.push(format!("| {what} | {a} | {b} |"));
    row(
        "negotiated session timeout (holder's session)",
        format!("{} ms", negotiated.as_millis()),
        format!("{} ms", median(&theirs.negotiated).as_millis()),
    );
    row(
        "sessions the holder process keeps open",
        per_process(&ours.sessions),
        "1".into(),
    );
    row(
        "holder session's interval between packets from the grant to the kill (server `cons`)",
        crash::seconds(&ours.packet_interval),
        crash::seconds(&theirs.packet_interval),
    );
    row(
        "kill − holder session's last packet (server `cons` `lresp`)",
        crash::seconds(&ours.last_packet),
        crash::seconds(&theirs.last_packet),
    );
    row(
        "holder session's last packet → node deleted (server expiry; in (timeout, timeout + tick])",
        crash::seconds(&ours.expiry),
        crash::seconds(&theirs.expiry),
    );
    row(
        "kill → holder's node deleted (a raw watcher notified)",
        crash::seconds(&ours.deleted),
        crash::seconds(&theirs.deleted),
    );
    row(
        "node deleted → fencelock waiter holds the lock",
        crash::seconds(&after_expiry),
        "—".into(),
    );
    row(
        "**kill → takeover** (fencelock: waiter holds; raw: watcher notified)",
        crash::seconds(&ours.held),
        crash::seconds(&theirs.deleted),
    );
    row(
        "takeover − negotiated timeout",
        crash::beyond(&ours.held, negotiated),
        crash::beyond(&theirs.deleted, median(&theirs.negotiated)),
    );
    row(
        "target: ≤ negotiated timeout + one tick; fencelock median ≤ raw median + 0.1 s",
        format!(
            "max {:.2} s ≤ {:.2} s: {}",
            worst.as_secs_f64(),
            (negotiated + TICK).as_secs_f64(),
            if worst <= negotiated + TICK {
                "met"
            } else {
                "MISSED"
            }
        ),
        if median(&ours.held) <= median(&theirs.deleted) + Duration::from_millis(100) {
            "met".into()
        } else {
            "MISSED".into()
        },
    );
    client.close().await?;
    Ok(())
}

fn main() -> BenchResult {
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo test --benches` probes with --list; nothing to list
    }
    if let Some(role) = crash::role() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        return rt.block_on(crash_holder(&role));
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
    let mut crash_rows = Vec::new();
    rt.block_on(async {
        if !crash::only_crash() {
            uncontended(&hosts, &mut rows).await?;
            contended(&hosts, &mut rows).await?;
            many_locks(&hosts, &mut rows).await?;
        }
        crash_takeover(&hosts, &mut crash_rows).await
    })?;
    println!("zookeeper at {hosts}\n\n| benchmark | result |\n|---|---|");
    for (name, value) in rows {
        println!("| {name} | {value} |");
    }
    for line in crash_rows {
        println!("{line}");
    }
    drop(rt);
    drop(server);
    Ok(())
}
