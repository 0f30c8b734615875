//! Mixed fleets: fencelock and the real foreign ZooKeeper lock clients (kazoo from
//! PyPI, Curator's `InterProcessMutex`, ZooKeeper's `WriteLock` recipe) on the same
//! lock directory. Each side records its critical section (wall-clock nanoseconds);
//! the cases assert that no two overlap, that tokens (czxids) strictly increase
//! along the mixed queue, and that `inspect`/`list`/`try_acquire` (the CLI's
//! `status`/`list`/`run -n`) see the foreign holder.
//!
//! Without python or javac and the Debian jars a case is skipped, except under
//! `CI=true` where it fails (`scripts/sysdeps.sh install` installs them).

use fencelock::{zk::ZkNodeStyle, LockClient};
use fencelock_integration_tests::{
    async_trial,
    conformance::{self, within, Ctx},
    foreign::{Foreign, ForeignHolder},
    servers::{self, ZkEnsemble, ZkOptions},
    zk_harness::ZkHarness,
    Harness, TestError, TestResult,
};
use libtest_mimic::Trial;
use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// How long a foreign holder holds once granted.
const HOLD: Duration = Duration::from_millis(800);

/// The lock every case uses.
const NAME: &str = "demo";

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The mixed-fleet trials on the servers of `h`.
pub fn trials(h: Arc<ZkHarness>) -> Vec<Trial> {
    let cases: [(&str, Foreign, ZkNodeStyle); 5] = [
        ("curator_mutex", Foreign::Curator, ZkNodeStyle::Curator),
        (
            "zookeeper_write_lock_recipe",
            Foreign::ZkRecipe,
            ZkNodeStyle::Curator,
        ),
        (
            "kazoo_lock_with_extra_lock_patterns",
            Foreign::KazooLockExtra,
            ZkNodeStyle::Curator,
        ),
        (
            "kazoo_lock_with_kazoo_style",
            Foreign::KazooLock,
            ZkNodeStyle::Kazoo,
        ),
        (
            "kazoo_read_lock_with_kazoo_style",
            Foreign::KazooReadLock,
            ZkNodeStyle::Kazoo,
        ),
    ];
    let mut trials: Vec<Trial> = cases
        .into_iter()
        .map(|(name, client, style)| {
            trial(
                &format!("{name}_excludes_both_ways_with_increasing_tokens"),
                &h,
                move |h, ctx| mixed_queue(h, ctx, client, style),
            )
        })
        .collect();
    // The pairs that exclude one way only: fencelock waits for the client, the
    // client does not see fencelock's nodes of that style.
    let one_way: [(&str, Foreign, ZkNodeStyle); 4] = [
        (
            "default_kazoo_lock_misses_curator_style_nodes_but_is_seen",
            Foreign::KazooLock,
            ZkNodeStyle::Curator,
        ),
        (
            "kazoo_read_lock_misses_curator_style_nodes_but_is_seen",
            Foreign::KazooReadLock,
            ZkNodeStyle::Curator,
        ),
        (
            "curator_mutex_misses_kazoo_style_nodes_but_is_seen",
            Foreign::Curator,
            ZkNodeStyle::Kazoo,
        ),
        (
            "zookeeper_write_lock_recipe_misses_kazoo_style_nodes_but_is_seen",
            Foreign::ZkRecipe,
            ZkNodeStyle::Kazoo,
        ),
    ];
    for (name, foreign, style) in one_way {
        trials.push(trial(name, &h, move |h, ctx| {
            one_way_only(h, ctx, foreign, style)
        }));
    }
    trials.push(trial(
        "kazoo_read_lock_shares_with_fencelock_readers_and_a_writer_waits_for_both",
        &h,
        kazoo_readers_share,
    ));
    trials.push(async_trial(
        "zk::fleet::kazoo_lock_object_reused_after_container_reaped_fails_fresh_one_works",
        reused_kazoo_lock,
    ));
    trials
}

fn trial<F, Fut>(name: &str, harness: &Arc<ZkHarness>, case: F) -> Trial
where
    F: FnOnce(Arc<ZkHarness>, Ctx) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = TestResult> + Send + 'static,
{
    let harness = harness.clone();
    async_trial(format!("zk::fleet::{name}"), move || async move {
        let ctx = Ctx::new(harness.clone() as Arc<dyn Harness>);
        case(harness, ctx.clone()).await?;
        ctx.finish().await
    })
}

/// Whether the case can run: the client's tools are installed (else skip, or fail
/// under CI).
fn available(client: Foreign) -> bool {
    servers::require(
        client.available(),
        &format!("{client:?} (python3 / javac and jars)"),
    )
}

/// The connect string of the harness's servers.
fn connect_string(h: &ZkHarness) -> String {
    h.url("x")
        .trim_start_matches("zk://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A fencelock client of the case's namespace writing nodes of `style`.
async fn client(h: &ZkHarness, ctx: &Ctx, style: ZkNodeStyle) -> Result<LockClient, TestError> {
    let style = match style {
        ZkNodeStyle::Kazoo => "kazoo",
        _ => "curator",
    };
    Ok(fencelock::connect(&format!("{}&node_style={style}", h.url(ctx.ns()))).await?)
}

/// Runs a blocking call (waiting for a foreign process) off the runtime's workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, TestError> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// Waits until `inspect` reports `n` waiters behind the holder (foreign clients
/// start slowly: 30 s).
async fn wait_for_waiters(client: &LockClient, n: usize) -> TestResult {
    conformance::wait_for_waiters_within(Duration::from_secs(30), client, NAME, n).await
}

/// fencelock F1 holds; the foreign client X queues behind it (seen as a waiter);
/// F1 leaves; X holds (seen as the holder by `inspect`/`list`, `try_acquire` fails);
/// fencelock F2 queues behind X and holds only after X left. Sections F1, X, F2 are
/// disjoint and in that order, and the tokens (F1's czxid, X's own node's czxid,
/// F2's czxid) strictly increase.
async fn mixed_queue(
    h: Arc<ZkHarness>,
    ctx: Ctx,
    foreign: Foreign,
    style: ZkNodeStyle,
) -> TestResult {
    if !available(foreign) {
        return Ok(());
    }
    let a = client(&h, &ctx, style).await?;
    let b = client(&h, &ctx, style).await?;
    let path = format!("{}/{NAME}", ZkHarness::chroot(ctx.ns()));

    // fencelock first, the foreign client waits.
    let f1 = a.acquire(NAME).await?;
    let f1_start = now_ns();
    let connect = connect_string(&h);
    let mut x = blocking(move || ForeignHolder::start(foreign, &connect, &path, HOLD)).await?;
    wait_for_waiters(&a, 1).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        x.section()?.is_none(),
        "{foreign:?} holds while fencelock holds"
    );
    let f1_token = f1.token();
    let f1_end = now_ns();
    f1.release().await?;
    let (x, held) = blocking(move || {
        let s = x.wait_held(Duration::from_secs(30))?;
        Ok((x, s))
    })
    .await?;

    // The foreign client holds: fencelock sees it, and waits for it.
    let info = a.inspect(NAME).await?.ok_or("inspect: no holder")?;
    assert_eq!(
        info.token.get(),
        held.czxid,
        "inspect token of {foreign:?}: {info:?}"
    );
    assert_ne!(info.lease.get(), 0, "{info:?}");
    assert_eq!(info.waiters, 0, "{info:?}");
    let who = info.holder.clone().unwrap_or_default();
    assert!(
        ["curator", "kazoo", "zookeeper-recipe"]
            .iter()
            .any(|c| who.starts_with(c)),
        "holder text {who:?}"
    );
    let listed = a.list("").await?;
    assert!(
        listed
            .iter()
            .any(|i| i.name.as_str() == NAME && i.token.get() == held.czxid),
        "list: {listed:?}"
    );
    assert!(
        b.try_acquire(NAME).await?.is_none(),
        "try_acquire succeeded while {foreign:?} holds"
    );
    let f2 = within(
        Duration::from_secs(30),
        "fencelock after the foreign holder",
        b.acquire(NAME),
    )
    .await??;
    let f2_start = now_ns();
    let f2_token = f2.token();
    let x_section = blocking(move || x.finish(Duration::from_secs(30))).await?;
    f2.release().await?;
    let x_end = x_section.end_ns.ok_or("no end")?;
    assert!(
        f1_start <= f1_end && f1_end <= x_section.start_ns && x_end <= f2_start,
        "sections overlap: F1 {f1_start}..{f1_end}, {foreign:?} {}..{x_end}, F2 from {f2_start}",
        x_section.start_ns
    );
    assert!(
        f1_token.get() < x_section.czxid && x_section.czxid < f2_token.get(),
        "tokens not increasing: {f1_token}, {foreign:?} {}, {f2_token}",
        x_section.czxid
    );
    assert_eq!(x_section.node, held.node);
    a.close().await?;
    b.close().await?;
    Ok(())
}

/// A fencelock reader (kazoo-style `__rlock__` node) holds; kazoo's `ReadLock` on the
/// same path is granted beside it (shared); a fencelock writer queued behind both
/// holds only after both left, with a higher token than kazoo's reader.
async fn kazoo_readers_share(h: Arc<ZkHarness>, ctx: Ctx) -> TestResult {
    if !available(Foreign::KazooReadLock) {
        return Ok(());
    }
    let a = client(&h, &ctx, ZkNodeStyle::Kazoo).await?;
    let b = client(&h, &ctx, ZkNodeStyle::Kazoo).await?;
    let path = format!("{}/{NAME}", ZkHarness::chroot(ctx.ns()));
    let r1 = a.rw_lock(NAME).await?.read().await?;
    let connect = connect_string(&h);
    let hold = Duration::from_secs(2);
    let (x, shared) = blocking(move || {
        let mut x = ForeignHolder::start(Foreign::KazooReadLock, &connect, &path, hold)?;
        let s = x.wait_held(Duration::from_secs(30))?;
        Ok((x, s))
    })
    .await?;
    assert!(r1.state().is_held(), "fencelock's reader lost its lock");
    let r1_end = now_ns();
    assert!(
        shared.start_ns < r1_end,
        "kazoo's reader did not share with fencelock's"
    );
    let info = a.inspect(NAME).await?.ok_or("inspect: no holder")?;
    assert_eq!(info.holders.len(), 2, "both readers hold: {info:?}");
    let writer = b.rw_lock(NAME).await?;
    let w = tokio::spawn(async move {
        let g = writer.write().await?;
        Ok::<_, fencelock::Error>((g, now_ns()))
    });
    wait_for_waiters(&a, 1).await?;
    r1.release().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!w.is_finished(), "the writer held beside kazoo's reader");
    let kazoo_done = blocking(move || x.finish(Duration::from_secs(30))).await?;
    let (w, w_start) =
        within(Duration::from_secs(30), "the writer after both readers", w).await???;
    let x_end = kazoo_done.end_ns.ok_or("no end")?;
    assert!(x_end <= w_start, "the writer held while kazoo's reader did");
    assert!(
        w.token().get() > kazoo_done.czxid,
        "writer token {} not above kazoo reader's {}",
        w.token(),
        kazoo_done.czxid
    );
    w.release().await?;
    a.close().await?;
    b.close().await?;
    Ok(())
}

/// A client that does not see fencelock's nodes of `style` (the README's "no" cells):
/// kazoo's default `Lock` and its `ReadLock` count only `__lock__` nodes, so they miss
/// the curator style; Curator sorts by the text after the last `lock-` and the
/// WriteLock recipe by the number after the last `-`, so both take a kazoo-style node
/// for one that sorts after their own. fencelock waits for such a client's holder,
/// but the client does not wait for a fencelock holder of that style: both hold at
/// once. This is why the style must match the clients a name is shared with.
async fn one_way_only(
    h: Arc<ZkHarness>,
    ctx: Ctx,
    foreign: Foreign,
    style: ZkNodeStyle,
) -> TestResult {
    if !available(foreign) {
        return Ok(());
    }
    let a = client(&h, &ctx, style).await?;
    let path = format!("{}/{NAME}", ZkHarness::chroot(ctx.ns()));
    let connect = connect_string(&h);

    // ZooKeeper's WriteLock recipe needs the lock directory to exist: fencelock
    // creates it (a container, reaped only once empty for a while).
    a.acquire(NAME).await?.release().await?;

    // The foreign client first: fencelock sees it and waits.
    let (c, p) = (connect.clone(), path.clone());
    let mut x = blocking(move || ForeignHolder::start(foreign, &c, &p, HOLD)).await?;
    let x_held = {
        let (x2, s) = blocking(move || {
            let s = x.wait_held(Duration::from_secs(30))?;
            Ok((x, s))
        })
        .await?;
        x = x2;
        s
    };
    assert!(
        a.try_acquire(NAME).await?.is_none(),
        "fencelock ignored a {foreign:?} holder"
    );
    let guard = a.acquire(NAME).await?;
    let start = now_ns();
    let x_section = blocking(move || x.finish(Duration::from_secs(30))).await?;
    assert!(x_section.end_ns.is_some_and(|end| end <= start));
    assert!(x_held.czxid < guard.token().get());

    // fencelock holds: the foreign client does not see its node.
    let mut y = blocking(move || ForeignHolder::start(foreign, &connect, &path, HOLD)).await?;
    let y_section = blocking(move || {
        y.wait_held(Duration::from_secs(30))?;
        y.finish(Duration::from_secs(30))
    })
    .await?;
    assert!(
        guard.is_held(),
        "the fencelock guard was lost while {foreign:?} held"
    );
    guard.release().await?;
    assert!(
        y_section.start_ns > start,
        "{foreign:?} held at {} while fencelock held since {start} (documented: both hold)",
        y_section.start_ns
    );
    a.close().await?;
    Ok(())
}

/// fencelock's lock directory is a CONTAINER, which the server deletes once it is
/// empty. A kazoo `Lock` object remembers that it created its path: used again after
/// the container was reaped, it fails with `NoNodeError`; a fresh `Lock` object
/// (which runs `ensure_path` again) works. The documented consequence.
async fn reused_kazoo_lock() -> TestResult {
    if !available(Foreign::KazooLock) {
        return Ok(());
    }
    let options = ZkOptions {
        container_check_interval_ms: Some(500),
        ..ZkOptions::default()
    };
    let zk = match blocking(move || ZkEnsemble::start_with(1, options)).await {
        Ok(zk) => zk,
        Err(e) if !servers::ci() => {
            eprintln!("skipping: cannot start ZooKeeper: {e}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let h = Arc::new(ZkHarness::new(zk.connect_string()));
    let ctx = Ctx::new(h.clone() as Arc<dyn Harness>);
    let a = client(&h, &ctx, ZkNodeStyle::Kazoo).await?;
    // fencelock creates the directory (a container) and holds.
    let guard = a.acquire(NAME).await?;
    let path = format!("{}/{NAME}", ZkHarness::chroot(ctx.ns()));
    let connect = zk.connect_string();
    let x = blocking(move || ForeignHolder::start_kazoo_reuse(&connect, &path)).await?;
    // kazoo's first acquisition waits for fencelock's holder.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(x.lines()?.is_empty(), "kazoo held while fencelock held");
    guard.release().await?;
    let lines = blocking(move || {
        let mut x = x;
        x.wait_exit(Duration::from_secs(60))?;
        x.lines()
    })
    .await?;
    assert_eq!(
        lines,
        ["first", "reused NoNodeError", "fresh ok"],
        "kazoo's report"
    );
    a.close().await?;
    ctx.finish().await?;
    drop(zk);
    Ok(())
}
