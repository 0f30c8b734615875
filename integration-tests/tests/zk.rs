//! The conformance suite and the ZooKeeper-specific tests on real ZooKeeper servers
//! (a standalone server; a 3-server ensemble, started on first use, for failover),
//! all through the facade's erased handle. Session expiry, a deleted own node, a
//! stalled holder, cancellation storms, an unreachable server and fenced writes are
//! conformance cases now, run here through [`ZkHarness`]'s hooks.
//!
//! The binary re-executes itself as a lock holder child process when
//! `fencelock_integration_tests::holder::HOLDER_ENV` is set.
//!
//! Run: `cargo test -p fencelock-integration-tests --features zk --test zk`. Without
//! java or ZooKeeper the run is skipped, except under `CI=true` where it fails.

use fencelock::{zk::ZkBackend, ErrorKind, LockClient, LockName, LockState};
use fencelock_integration_tests::{
    async_trial,
    conformance::{self, wait_for_waiters, within, Ctx},
    holder, run_main,
    servers::{self, Fabric, Link, ZkEnsemble, ZkOptions},
    zk_harness::ZkHarness,
    Harness, TestResult,
};
use libtest_mimic::Trial;
use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::Mutex as AsyncMutex;

#[path = "zk/fleet.rs"]
mod fleet;
#[path = "common/follow.rs"]
mod follow;
#[path = "common/observe.rs"]
mod observe;
#[path = "zk/security.rs"]
mod security;
#[path = "zk/tls.rs"]
mod tls;

type Ensemble = Arc<AsyncMutex<Option<ZkEnsemble>>>;

fn main() {
    // A lock holder child of the conformance case
    // `pause::a_paused_holder_is_fenced_out_in_process_and_as_a_process`.
    holder::child_main();
    // Parse the arguments before any server starts: a bad flag exits the process
    // at once, which would leave the servers running.
    let args = libtest_mimic::Arguments::from_args();
    if args.list {
        let harness = Arc::new(ZkHarness::new("127.0.0.1:2181"));
        let mut trials = conformance::trials(harness.clone());
        trials.extend(specific_trials(harness));
        let quorum = Arc::new(ZkHarness::new("127.0.0.1:2181").with_name("zk-3"));
        trials.extend(conformance::trials(quorum));
        trials.extend(failover_trials(&Arc::default()));
        run_main(trials, || {});
    }
    let single = match ZkEnsemble::start(1) {
        Ok(ensemble) => ensemble,
        Err(e) => {
            assert!(!servers::ci(), "ZooKeeper is required under CI: {e}");
            eprintln!("skipping the zk tests: cannot start ZooKeeper: {e}");
            run_main(Vec::new(), || {});
        }
    };
    eprintln!(
        "zookeeper {} at {}",
        single.version(),
        single.connect_string()
    );
    let harness = Arc::new(ZkHarness::new(single.connect_string()));
    let mut trials = conformance::trials(harness.clone());
    trials.extend(specific_trials(harness));
    // The suite and the security cases with digest auth and acl=creator.
    trials.extend(security::trials(&single.connect_string()));
    // The suite over TLS (1 server with digest auth too, and 3 servers), and the
    // bad certificates.
    let secured = tls::start(true);
    trials.extend(secured.iter().flat_map(tls::Secured::trials));
    // The whole suite once more on a 3-server ensemble (watches and reads served by
    // followers), and the failover cases on another one they may break.
    let quorum = match ZkEnsemble::start(3) {
        Ok(quorum) => {
            let harness = Arc::new(ZkHarness::new(quorum.connect_string()).with_name("zk-3"));
            trials.extend(conformance::trials(harness));
            Some(quorum)
        }
        Err(e) => {
            assert!(
                !servers::ci(),
                "a 3-server ZooKeeper ensemble is required under CI: {e}"
            );
            eprintln!("skipping the zk-3 suite: cannot start 3 servers: {e}");
            None
        }
    };
    let ensemble: Ensemble = Arc::default();
    trials.extend(failover_trials(&ensemble));
    run_main(trials, move || {
        drop(ensemble.blocking_lock().take());
        if let Some(secured) = secured {
            secured.stop();
        }
        drop(quorum);
        drop(single);
    });
}

/// A trial running `case` in a fresh namespace of `harness`, ending with the leftover
/// check.
fn trial<F, Fut>(name: &str, harness: &Arc<ZkHarness>, case: F) -> Trial
where
    F: FnOnce(Arc<ZkHarness>, Ctx) -> Fut + Send + 'static,
    Fut: Future<Output = TestResult> + Send + 'static,
{
    let harness = harness.clone();
    async_trial(format!("zk::specific::{name}"), move || async move {
        let ctx = Ctx::new(harness.clone() as Arc<dyn Harness>);
        case(harness, ctx.clone()).await?;
        ctx.finish().await
    })
}

fn specific_trials(h: Arc<ZkHarness>) -> Vec<Trial> {
    let mut trials = fleet::trials(h.clone());
    trials.extend([
        trial(
            "election_followers_read_only_the_heads_data_per_leader_change",
            &h,
            followers_read_only_the_head,
        ),
        trial(
            "create_whose_reply_is_lost_leaves_one_node",
            &h,
            lost_create_reply,
        ),
        trial(
            "session_timeout_above_server_max_uses_negotiated_deadline",
            &h,
            negotiated_timeout,
        ),
        trial(
            "observability_grant_release_and_forced_loss",
            &h,
            observability,
        ),
        trial(
            "creator_acl_keeps_other_users_from_breaking_the_lock",
            &h,
            creator_acl,
        ),
        trial(
            "read_only_calls_create_no_chroot",
            &h,
            read_only_creates_nothing,
        ),
        trial(
            "locking_client_keeps_one_session_per_lease",
            &h,
            one_session_per_lease,
        ),
        trial(
            "deleted_lock_directory_requeues_waiters",
            &h,
            deleted_lock_dir,
        ),
    ]);
    trials
}

/// An operator deletes the whole lock directory (`deleteall`) under a holder and two
/// waiters: the holder turns lost, the waiters queue again and are served in turn.
async fn deleted_lock_dir(h: Arc<ZkHarness>, ctx: Ctx) -> TestResult {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let holder = ctx.client().await?;
    let held = holder.acquire("q").await?;
    let inside = Arc::new(AtomicUsize::new(0));
    let mut waiters = Vec::new();
    for i in 0..2 {
        let (client, inside) = (ctx.client().await?, inside.clone());
        waiters.push(tokio::spawn(async move {
            let guard = client.acquire("q").await?;
            let overlap = inside.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            inside.fetch_sub(1, Ordering::SeqCst);
            assert_eq!(overlap, 0, "two waiters held q at once");
            let token = guard.token();
            guard.release().await?;
            Ok::<_, fencelock_integration_tests::TestError>(token)
        }));
        wait_for_waiters(&holder, "q", i + 1).await?;
    }
    // `deleteall <chroot>/q` from an operator's zkCli: one multi-op deleting the
    // nodes and then the directory, as ZooKeeper's ZKUtil.deleteRecursive does.
    let raw = raw_client(&h).await?;
    let dir = format!("{}/q", ZkHarness::chroot(ctx.ns()));
    let mut deleteall = raw.new_multi_writer();
    for child in raw.list_children(&dir).await? {
        deleteall.add_delete(&format!("{dir}/{child}"), None)?;
    }
    deleteall.add_delete(&dir, None)?;
    deleteall
        .commit()
        .await
        .map_err(|e| format!("deleteall {dir}: {e:?}"))?;
    within(
        Duration::from_secs(2),
        "holder sees its node deleted",
        held.watch().lost(),
    )
    .await?;
    let mut tokens = Vec::new();
    for w in waiters {
        tokens.push(within(Duration::from_secs(10), "waiter served", w).await???);
    }
    assert!(
        tokens.iter().all(|t| *t > held.token()) && tokens[0] != tokens[1],
        "tokens {tokens:?} after {}",
        held.token()
    );
    assert_eq!(
        held.release().await.map_err(|e| e.kind()),
        Err(ErrorKind::NotHeld)
    );
    let direct = h.backend(ctx.ns()).await?;
    let left = direct.nodes().await?;
    fencelock::backend::Backend::close(&direct).await?;
    assert!(left.is_empty(), "nodes left behind: {left:?}");
    Ok(())
}

/// A raw zookeeper-client connection to the harness's servers, without chroot: what
/// an operator's `zkCli.sh` is.
async fn raw_client(
    h: &ZkHarness,
) -> Result<zookeeper_client::Client, fencelock_integration_tests::TestError> {
    let servers = h
        .url("x")
        .trim_start_matches("zk://")
        .split('/')
        .next()
        .ok_or("no servers")?
        .to_owned();
    Ok(within(
        Duration::from_secs(10),
        "raw connect",
        zookeeper_client::Client::connect(&servers),
    )
    .await??)
}

async fn read_only_creates_nothing(h: Arc<ZkHarness>, ctx: Ctx) -> TestResult {
    let chroot = ZkHarness::chroot(ctx.ns());
    let raw = raw_client(&h).await?;
    assert_eq!(raw.check_stat(&chroot).await?, None, "fresh chroot exists");
    // What `fencelock status` and `fencelock list` do: connect, inspect, list.
    for _ in 0..2 {
        let client = fencelock::connect(&h.url(ctx.ns())).await?;
        assert!(client.inspect("nothing").await?.is_none());
        assert!(client.inspect("a/b").await?.is_none());
        assert!(client.list("").await?.is_empty());
        client.close().await?;
    }
    let client = ctx.client().await?;
    assert!(client.list("").await?.is_empty());
    assert_eq!(
        raw.check_stat(&chroot).await?,
        None,
        "a read-only call created the chroot"
    );
    // Taking a lock creates it.
    let guard = client.acquire("first").await?;
    assert!(
        raw.check_stat(&chroot).await?.is_some(),
        "no chroot after acquire"
    );
    assert_eq!(client.list("").await?.len(), 1);
    guard.release().await?;
    Ok(())
}

/// A client that only takes locks keeps one session (one connection through its
/// proxy) per lease: the backend's own session for `inspect`/`list` is opened on the
/// first such call, not by `connect` (issue 11: every fencelock client used to keep
/// an idle second session).
async fn one_session_per_lease(h: Arc<ZkHarness>, ctx: Ctx) -> TestResult {
    let client = ctx.client().await?;
    let guard = client.acquire("one").await?;
    let lease = guard.lease().id();
    let other = client.lease().await?;
    let second = other.lock("two")?.acquire().await?;
    // The session `connect` checked the servers with closes in the background.
    let settled = within(Duration::from_secs(5), "connect's session closed", async {
        while h.connections(ctx.ns(), lease)? != 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok::<_, fencelock::Error>(())
    })
    .await;
    let open = h.connections(ctx.ns(), lease)?;
    assert!(
        settled.is_ok(),
        "{open} sessions for 2 leases after 5 s: an idle extra session"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.connections(ctx.ns(), lease)?,
        2,
        "a session opened meanwhile"
    );
    // `inspect` opens the backend's own session, and keeps it.
    assert!(client.inspect("one").await?.is_some());
    assert!(client.inspect("two").await?.is_some());
    assert_eq!(h.connections(ctx.ns(), lease)?, 3);
    second.release().await?;
    other.close().await?;
    guard.release().await?;
    Ok(())
}

async fn lost_create_reply(h: Arc<ZkHarness>, ctx: Ctx) -> TestResult {
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let held = a.acquire("p").await?;
    let lease = b.session().await?;
    // B's create reaches the server, its reply does not: the connection times out,
    // and B must find its node by uuid instead of creating a second one.
    h.set_replies_dropped(ctx.ns(), lease.id(), true)?;
    let lock = lease.lock("p")?;
    let waiter = tokio::spawn(async move { lock.acquire().await });
    wait_for_waiters(&a, "p", 1).await?;
    // Past the connection's silence timeout (a fifth of the 4 s session), well
    // before the lease's Suspect window (0.8 x 4 s after the last heartbeat): the
    // connection is dropped and re-made while the session lives on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    h.set_replies_dropped(ctx.ns(), lease.id(), false)?;
    within(Duration::from_secs(10), "b reconnects", async {
        while lease.state() != LockState::Held {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_ne!(
        lease.state(),
        LockState::Lost,
        "a 1.5 s reply loss cost the session"
    );
    let info = a.inspect("p").await?.ok_or("not held")?;
    assert_eq!(info.waiters, 1, "the recovered create left a second node");
    assert!(!waiter.is_finished());
    held.release().await?;
    let granted = within(Duration::from_secs(5), "b granted", waiter).await???;
    assert!(granted.token() > info.token);
    granted.release().await?;
    Ok(())
}

async fn negotiated_timeout(_h: Arc<ZkHarness>, ctx: Ctx) -> TestResult {
    let a = ctx.client().await?;
    let lease = a.lease_with_ttl(Duration::from_secs(60)).await?;
    // The test server's maxSessionTimeout is 20 ticks of 200 ms.
    assert_eq!(
        lease.ttl(),
        Duration::from_secs(4),
        "granted ttl is the negotiated timeout"
    );
    let deadline = lease.deadline().ok_or("no local deadline")?;
    let latest = tokio::time::Instant::now() + Duration::from_millis(3600); // 0.9 × 4 s
    assert!(
        deadline <= latest,
        "deadline {:?} beyond the negotiated timeout",
        deadline - latest
    );
    let held = lease.lock("n")?.acquire().await?;
    tokio::time::sleep(Duration::from_secs(6)).await; // past one timeout: heartbeats renew
    assert_eq!(held.state(), LockState::Held);
    assert!(
        lease.deadline().ok_or("no deadline")? > deadline,
        "deadline not renewed"
    );
    held.release().await?;
    let tiny = a.lease_with_ttl(Duration::from_millis(10)).await?;
    assert!(
        tiny.ttl() >= Duration::from_millis(400),
        "below the server minimum: {:?}",
        tiny.ttl()
    );
    tiny.close().await?;
    lease.close().await?;
    Ok(())
}

async fn creator_acl(h: Arc<ZkHarness>, ctx: Ctx) -> TestResult {
    let url = h.url(ctx.ns()).replace("zk://", "zk://alice:s3cret@") + "&acl=creator";
    let alice = LockClient::new(ZkBackend::from_url(&url).await?);
    let guard = alice.acquire("guarded").await?;
    let intruder = h.backend(ctx.ns()).await?; // no credentials
    let err = intruder
        .delete_holder(&LockName::new("guarded")?)
        .await
        .expect_err("intruder deleted the lock");
    assert!(!err.to_string().contains("s3cret"), "{err}");
    let alice2 = LockClient::new(ZkBackend::from_url(&url).await?);
    assert_eq!(
        alice2.inspect("guarded").await?.map(|i| i.token),
        Some(guard.token())
    );
    assert!(
        LockClient::new(intruder)
            .inspect("guarded")
            .await?
            .is_some(),
        "everyone may read"
    );
    assert_eq!(guard.state(), LockState::Held);
    guard.release().await?;
    alice.close().await?;
    alice2.close().await?;
    let wrong = url.replace("s3cret", "wrong");
    let other = LockClient::new(ZkBackend::from_url(&wrong).await?);
    let err = other
        .acquire("guarded")
        .await
        .expect_err("wrong password may not enqueue");
    assert!(!err.to_string().contains("wrong"), "{err}");
    other.close().await?;
    Ok(())
}

fn failover_trials(ensemble: &Ensemble) -> Vec<Trial> {
    let mut trials: Vec<Trial> = [("follower_killed", false), ("leader_killed", true)]
        .into_iter()
        .map(|(name, leader)| {
            let ensemble = ensemble.clone();
            async_trial(
                format!("zk-3::failover::{name}_while_locks_held_loses_nothing"),
                move || server_killed(ensemble, leader),
            )
        })
        .collect();
    let wedged = ensemble.clone();
    trials.push(async_trial(
        "zk-3::failover::wedged_first_host_does_not_break_connect",
        move || wedged_first_host(wedged),
    ));
    let paused = ensemble.clone();
    trials.push(async_trial(
        "zk-3::failover::server_paused_30s_costs_nobody_their_lock",
        move || server_paused(paused),
    ));
    trials.push(async_trial(
        "zk-3::failover::server_isolated_30s_costs_nobody_their_lock",
        server_isolated,
    ));
    trials
}

/// Starts the failover ensemble in `slot` if it is not running; `None` when it cannot
/// start outside CI (the case is then skipped).
async fn failover_ensemble(
    slot: &mut Option<ZkEnsemble>,
) -> Result<Option<&mut ZkEnsemble>, fencelock_integration_tests::TestError> {
    if slot.is_none() {
        // Sessions of 10 s (allowed by maxSessionTimeout) ride out an election on a
        // loaded machine; the claim is about reconnecting within the timeout.
        let options = ZkOptions {
            max_session_timeout_ms: Some(20_000),
            ..ZkOptions::default()
        };
        match tokio::task::spawn_blocking(|| ZkEnsemble::start_with(3, options)).await? {
            Ok(started) => *slot = Some(started),
            Err(e) if !servers::ci() => {
                eprintln!("skipping: cannot start a 3-server ZooKeeper ensemble: {e}");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(slot.as_mut())
}

/// A server that accepts TCP connections but never answers (a wedged or stopped
/// server) listed first in a multi-host URL: connecting and locking still succeed
/// quickly, every time, and the session stays held.
async fn wedged_first_host(ensemble: Ensemble) -> TestResult {
    let mut slot = ensemble.lock().await;
    let Some(servers) = failover_ensemble(&mut slot).await? else {
        return Ok(());
    };
    let harness = Arc::new(ZkHarness::new(servers.connect_string()).with_name("zk-3"));
    let ctx = Ctx::new(harness as Arc<dyn Harness>);
    // Bound but never accepting: the kernel completes the handshakes, nothing answers.
    let wedged = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!(
        "zk://127.0.0.1:{},{}{}",
        wedged.local_addr()?.port(),
        servers.connect_string(),
        ZkHarness::chroot(ctx.ns())
    );
    let mut last = None;
    for attempt in 0..5 {
        let started = Instant::now();
        let client = within(Duration::from_secs(2), "connect", fencelock::connect(&url))
            .await
            .map_err(|e| format!("attempt {attempt}: {e}"))??;
        let guard = client.acquire("wedged").await?;
        assert_eq!(guard.state(), LockState::Held);
        guard.release().await?;
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "attempt {attempt}: connect + acquire + release took {took:?}"
        );
        if let Some(previous) = last.replace(client) {
            previous.close().await?;
        }
    }
    let client = last.ok_or("no client")?;
    let guard = client.acquire("wedged").await?;
    let mut lost = guard.watch();
    // Several idle connection timeouts: the session keeps its live server.
    let idle = within(Duration::from_secs(3), "lost", lost.lost()).await;
    assert!(idle.is_err(), "the guard turned lost while idle");
    assert_eq!(guard.state(), LockState::Held);
    guard.release().await?;
    client.close().await?;
    drop(wedged);
    ctx.finish().await
}

/// The session ids (lowercase hex) of the clients connected to the server at `port`,
/// from its `cons` command.
fn sessions_on(port: &str) -> std::io::Result<Vec<String>> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(port)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"cons")?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    Ok(out
        .split("sid=0x")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_hexdigit)
                .collect::<String>()
        })
        .collect())
}

/// What takes one server out for 30 s.
#[derive(Debug, Clone, Copy)]
enum Outage {
    /// `SIGSTOP`: it keeps its connections but answers nothing.
    Pause,
    /// Both of its links cut (network namespaces): packets to it vanish.
    Isolate,
}

/// Pauses (`SIGSTOP`) for 30 s a follower that serves some of the sessions of three
/// holders with a 3 s TTL: their sessions move to the other servers, and nobody
/// loses a lock.
async fn server_paused(ensemble: Ensemble) -> TestResult {
    let mut slot = ensemble.lock().await;
    let Some(servers) = failover_ensemble(&mut slot).await? else {
        return Ok(());
    };
    server_out_for_30s(servers, Outage::Pause).await
}

/// The same with the follower cut off from everyone (its own ensemble, each server
/// in a network namespace): the clients' connections to it hang rather than fail.
async fn server_isolated() -> TestResult {
    if !servers::require(Fabric::available(), "root (network namespaces)") {
        return Ok(());
    }
    let options = ZkOptions {
        sync_limit: 2,
        ..ZkOptions::default()
    };
    let servers =
        tokio::task::spawn_blocking(move || ZkEnsemble::start_in_namespaces(3, options)).await??;
    server_out_for_30s(&servers, Outage::Isolate).await
}

/// Takes a follower that serves some of the sessions of three holders (TTL 3 s) out
/// for 30 s: nobody loses a lock, and every lock keeps its holder.
async fn server_out_for_30s(servers: &ZkEnsemble, outage: Outage) -> TestResult {
    let ttl = Duration::from_secs(3);
    let harness = Arc::new(ZkHarness::new(servers.connect_string()).with_name("zk-3"));
    let ctx = Ctx::new(harness as Arc<dyn Harness>);
    let url = format!(
        "zk://{}{}?session_timeout=3s",
        servers.connect_string(),
        ZkHarness::chroot(ctx.ns())
    );
    let hosts: Vec<String> = servers
        .connect_string()
        .split(',')
        .map(str::to_owned)
        .collect();
    let leader = tokio::task::block_in_place(|| servers.leader()).ok_or("no leader")?;
    let mut held = Vec::new();
    let mut victim = None;
    // Three holders; more if none of them happens to be on a follower.
    for i in 0..20 {
        let client = fencelock::connect(&url).await?;
        let lease = client.lease_with_ttl(ttl).await?;
        let guard = lease.lock(format!("paused-{i}"))?.acquire().await?;
        let sid = format!("{:x}", lease.id().get());
        held.push((client, lease, guard));
        if victim.is_none() {
            for (s, host) in hosts.iter().enumerate() {
                if s != leader && tokio::task::block_in_place(|| sessions_on(host))?.contains(&sid)
                {
                    victim = Some(s);
                }
            }
        }
        if held.len() >= 3 && victim.is_some() {
            break;
        }
    }
    let victim = victim.ok_or("no session landed on a follower")?;
    let watchers: Vec<_> = held
        .iter()
        .map(|(_, _, g)| {
            let mut watch = g.watch();
            tokio::spawn(async move { watch.lost().await })
        })
        .collect();
    match outage {
        Outage::Pause => servers.pause(victim),
        Outage::Isolate => servers.cut(victim, Link::Both)?,
    }
    let paused = Instant::now();
    let mut result = Ok(());
    while paused.elapsed() < Duration::from_secs(30) {
        if let Some(i) = held
            .iter()
            .position(|(_, _, g)| g.state() == LockState::Lost)
        {
            result = Err(format!(
                "holder {i} lost its lock {:?} into the pause",
                paused.elapsed()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match outage {
        Outage::Pause => servers.resume(victim),
        Outage::Isolate => servers.heal(victim, Link::Both)?,
    }
    result?;
    for (i, w) in watchers.iter().enumerate() {
        assert!(!w.is_finished(), "holder {i} turned lost during the pause");
    }
    within(Duration::from_secs(10), "every holder held", async {
        while held.iter().any(|(_, _, g)| g.state() != LockState::Held) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;
    for (client, lease, guard) in &held {
        let info = client.inspect(guard.name()).await?.ok_or("lock not held")?;
        assert_eq!(
            (info.token, info.lease),
            (guard.token(), lease.id()),
            "{} changed hands",
            guard.name()
        );
    }
    for w in watchers {
        w.abort();
    }
    for (client, lease, guard) in held {
        guard.release().await?;
        lease.close().await?;
        client.close().await?;
    }
    ctx.finish().await
}

/// Kills one server of a 3-server ensemble while a lock is held with two waiters:
/// the holder never turns lost, and the waiters are still served in order.
async fn server_killed(ensemble: Ensemble, kill_leader: bool) -> TestResult {
    let mut slot = ensemble.lock().await; // one failover case at a time
    let Some(servers) = failover_ensemble(&mut slot).await? else {
        return Ok(());
    };
    let harness = Arc::new(
        ZkHarness::new(servers.connect_string())
            .with_name("zk-3")
            .with_session_timeout(Duration::from_secs(10)),
    );
    let ctx = Ctx::new(harness as Arc<dyn Harness>);
    let holder = ctx.client().await?;
    let held = holder.acquire("failover").await?;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..2 {
        let (client, order) = (ctx.client().await?, order.clone());
        waiters.push(tokio::spawn(async move {
            let guard = client.acquire("failover").await?;
            order
                .lock()
                .map_err(|_| "poisoned")?
                .push((i, guard.token()));
            guard.release().await?;
            Ok::<_, fencelock_integration_tests::TestError>(())
        }));
        wait_for_waiters(&holder, "failover", i + 1).await?;
    }
    let mut lost = held.watch();
    let lost = tokio::spawn(async move { lost.lost().await });
    let leader = servers.leader().ok_or("no leader")?;
    let victim = if kill_leader {
        leader
    } else {
        (leader + 1) % 3
    };
    servers.kill(victim);
    tokio::time::sleep(Duration::from_millis(500)).await;
    within(
        Duration::from_secs(10),
        "holder confirmed again after the kill",
        async {
            while held.state() != LockState::Held {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await?;
    wait_for_waiters(&holder, "failover", 2)
        .await
        .map_err(|e| format!("{e}; holder {:?}", held.state()))?;
    tokio::task::block_in_place(|| servers.restart(victim))?;
    assert!(
        !lost.is_finished(),
        "the holder turned lost during the failover"
    );
    assert_eq!(held.state(), LockState::Held);
    let token = held.token();
    held.release().await?;
    for w in waiters {
        within(Duration::from_secs(10), "waiter served", w).await???;
    }
    let order = order.lock().map_err(|_| "poisoned")?.clone();
    assert_eq!(
        order.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [0, 1],
        "not served in order"
    );
    assert!(
        token < order[0].1 && order[0].1 < order[1].1,
        "tokens not increasing: {token} {order:?}"
    );
    lost.abort();
    ctx.finish().await
}

async fn observability(h: Arc<ZkHarness>, ctx: Ctx) -> TestResult {
    let base = ctx.client().await?;
    let zk = base
        .backend::<ZkBackend>()
        .cloned()
        .ok_or("not a zk client")?;
    observe::grant_release_and_forced_loss(&*h, ctx.ns(), "zk", || LockClient::new(zk)).await
}

/// Followers keep the election's children from their persistent watch and read only
/// the head's data, once per new head or new value.
async fn followers_read_only_the_head(_: Arc<ZkHarness>, ctx: Ctx) -> TestResult {
    fn sent(client: &LockClient) -> u64 {
        client
            .backend::<ZkBackend>()
            .map_or(u64::MAX, ZkBackend::requests_sent)
    }
    follow::followers_send_no_request_per_change(&ctx, sent, 1).await
}
