//! Mixed fleets: fencelock and the real `etcdctl lock` (etcd's Go recipe,
//! `concurrency.Mutex`) on the same lock name, in one queue, both orders; and
//! python-etcd3's `Lock` (from PyPI), which README documents as not interoperating:
//! the cases show both holding at once, in both orders.
//!
//! Every participant appends `start <unix ns> <who> <token> [<ETCD_LOCK_REV> <key>]`
//! once it holds and `end <unix ns> <who>` before it lets go, to one log file; the
//! cases check that no two critical sections overlap, that the queue is served in
//! order, and that the documented token (each key's create revision; for etcdctl
//! the create revision of `$ETCD_LOCK_KEY`) strictly increases across clients.

use fencelock::{
    etcd::{EtcdBackend, EtcdHeldLock},
    LockClient, LockGuard, LockName, LockState,
};
use fencelock_integration_tests::{
    conformance::{within, Ctx},
    etcd_harness::EtcdHarness,
    foreign::{self, Foreign, ForeignHolder},
    servers::{self, EtcdCluster},
    TestError, TestResult,
};
use std::{
    fs::OpenOptions,
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// How long each participant holds the lock once it is its turn.
const HOLD: Duration = Duration::from_millis(300);

/// Who takes part in a mixed queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Fencelock,
    Etcdctl,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Fencelock => "fencelock",
            Side::Etcdctl => "etcdctl",
        }
    }
}

/// One critical section read back from the log.
#[derive(Debug)]
struct Section {
    who: String,
    start: u128,
    end: u128,
    token: i64,
    lock_rev: Option<i64>,
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn append(log: &Path, line: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new().create(true).append(true).open(log)?;
    f.write_all(format!("{line}\n").as_bytes())
}

/// An `etcdctl lock` process, killed and reaped on drop (by its own PID).
struct Etcdctl(Child);

impl Etcdctl {
    /// Waits for a clean exit, at most `timeout`.
    async fn finish(&mut self, timeout: Duration) -> TestResult {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait()? {
                if !status.success() {
                    let mut err = String::new();
                    if let Some(mut e) = self.0.stderr.take() {
                        use std::io::Read;
                        let _ = e.read_to_string(&mut err);
                    }
                    return Err(format!("etcdctl lock failed ({status}): {err}").into());
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("etcdctl lock did not finish".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Etcdctl {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `etcdctl lock <lock>` whose command logs its section the documented way:
/// its token is the create revision of `$ETCD_LOCK_KEY`, read with `etcdctl get`.
/// The command holds until the file `go` exists, then [`HOLD`] more.
fn spawn_etcdctl(endpoints: &str, lock: &str, who: &str, log: &Path, go: &Path) -> Etcdctl {
    let bin = EtcdCluster::etcdctl().expect("etcdctl is installed (checked by the case)");
    let etcdctl = bin.display();
    let script = format!(
        "rev=$({etcdctl} --endpoints {endpoints} get \"$ETCD_LOCK_KEY\" -w json \
           | sed -n 's/.*\"create_revision\":\\([0-9]*\\).*/\\1/p'); \
         echo \"start $(date +%s%N) {who} $rev $ETCD_LOCK_REV $ETCD_LOCK_KEY\" >> {log}; \
         while [ ! -e {go} ]; do sleep 0.02; done; sleep {hold}; \
         echo \"end $(date +%s%N) {who}\" >> {log}",
        log = log.display(),
        go = go.display(),
        hold = HOLD.as_secs_f64(),
    );
    let child = Command::new(&bin)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoints, "lock", "--ttl", "5", lock])
        .args(["--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl starts");
    Etcdctl(child)
}

fn read_log(log: &Path) -> Result<(Vec<Section>, String), String> {
    let text = std::fs::read_to_string(log).map_err(|e| e.to_string())?;
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    let num = |s: &str| s.parse::<i64>().map_err(|e| format!("{e} in {text}"));
    let mut out = Vec::new();
    for start in lines.iter().filter(|l| l[0] == "start") {
        let end = lines
            .iter()
            .find(|l| l[0] == "end" && l.get(2) == start.get(2))
            .ok_or_else(|| format!("no end for {start:?}: {text}"))?;
        let nanos = |s: &str| s.parse::<u128>().map_err(|e| format!("{e} in {text}"));
        out.push(Section {
            who: start[2].to_owned(),
            start: nanos(start[1])?,
            end: nanos(end[1])?,
            token: num(start[3])?,
            lock_rev: start.get(4).map(|r| num(r)).transpose()?,
        });
    }
    out.sort_by_key(|s| s.start);
    Ok((out, text))
}

/// Waits until `client` sees `n` waiters behind the holder of `name`.
async fn queue_len(client: &LockClient, name: &str, n: usize) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if client.inspect(name).await?.is_some_and(|i| i.waiters == n) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{name} never had {n} waiters").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the log has the `start` line of `who`; returns its fields.
async fn started(log: &Path, who: &str) -> Result<Vec<String>, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let line = text
            .lines()
            .find(|l| l.starts_with("start ") && l.split(' ').nth(2) == Some(who));
        if let Some(l) = line {
            return Ok(l.split(' ').map(str::to_owned).collect());
        }
        if Instant::now() > deadline {
            return Err(format!("{who} never started: {text}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Logs the start of a fencelock section and checks its key is etcd's recipe's.
fn log_start(log: &Path, who: &str, range: &str, guard: &LockGuard) -> TestResult {
    let held = guard
        .backend_lock::<EtcdHeldLock>()
        .ok_or("not an etcd grant")?;
    let lease = format!("{:x}", guard.lease().id().get());
    assert_eq!(held.key(), format!("{range}{lease}"), "etcd's recipe's key");
    append(
        log,
        &format!("start {} {who} {}", now_nanos(), guard.token()),
    )?;
    Ok(())
}

/// Holds [`HOLD`], logs the end, releases.
async fn finish_section(log: PathBuf, who: String, guard: LockGuard) -> TestResult {
    tokio::time::sleep(HOLD).await;
    append(&log, &format!("end {} {who}", now_nanos()))?;
    guard.release().await?;
    Ok(())
}

/// Whether the case can run: etcdctl is there (under CI it must be).
fn etcdctl_present() -> bool {
    servers::require(EtcdCluster::etcdctl().is_ok(), "etcdctl")
}

/// A queue of three on lock `jobs/report` (a name with `/`, which etcdctl writes as
/// it is): `order[0]` holds, then `order[1]` and `order[2]` queue behind it. While
/// the first holds, `inspect` and `list` show it with its lease. Then the queue runs
/// out, and the log must show three disjoint sections in queue order whose create
/// revisions strictly increase; an etcdctl in the middle shows why `ETCD_LOCK_REV`
/// is not the token (it exceeds the create revision of the holder after it).
pub(crate) async fn mixed_queue(h: Arc<EtcdHarness>, ctx: Ctx, order: [Side; 3]) -> TestResult {
    if !etcdctl_present() {
        return Ok(());
    }
    let dir = servers::temp_dir("fencelock-fleet-")?;
    let log = dir.path().join("sections.log");
    let name = "jobs/report";
    let observer = ctx.client().await?;
    let backend = observer
        .backend::<EtcdBackend>()
        .ok_or("not an etcd client")?;
    let range = backend.lock_range(&LockName::new(name)?);
    let etcd_name = range.trim_end_matches('/').to_owned();
    let endpoints = h.endpoints().join(",");
    let mut etcdctls = Vec::new();
    let mut tasks = Vec::new();
    let mut first_go = None;
    let mut first_guard = None;
    let who = |i: usize| format!("{}{i}", order[i].name());
    for (i, side) in order.into_iter().enumerate() {
        let me = who(i);
        match side {
            Side::Etcdctl => {
                let go = dir.path().join(format!("go-{me}"));
                if i == 0 {
                    first_go = Some(go.clone());
                } else {
                    std::fs::write(&go, b"")?;
                }
                etcdctls.push(spawn_etcdctl(&endpoints, &etcd_name, &me, &log, &go));
            }
            Side::Fencelock if i == 0 => {
                let guard = observer.acquire(name).await?;
                log_start(&log, &me, &range, &guard)?;
                first_guard = Some(guard);
            }
            Side::Fencelock => {
                let client = ctx.client().await?;
                let (log, range, me) = (log.clone(), range.clone(), me.clone());
                tasks.push(tokio::spawn(async move {
                    let guard = client.acquire(name).await?;
                    log_start(&log, &me, &range, &guard)?;
                    finish_section(log, me, guard).await?;
                    client.close().await?;
                    TestResult::Ok(())
                }));
            }
        }
        if i > 0 {
            queue_len(&observer, name, i).await?;
            continue;
        }
        // The first one holds before anyone queues; status and list show it.
        let line = started(&log, &me).await?;
        let info = observer.inspect(name).await?.ok_or("holder not seen")?;
        assert_eq!(info.token.get().to_string(), line[3], "status: token");
        assert_eq!(info.waiters, 0);
        if side == Side::Etcdctl {
            let key = line.get(5).ok_or("no ETCD_LOCK_KEY")?;
            let lease = key.rsplit('/').next().unwrap_or_default();
            assert_eq!(
                key,
                &format!("{range}{lease}"),
                "etcdctl's key in our range"
            );
            assert_eq!(format!("{:x}", info.lease.get()), lease, "status: lease");
            assert_eq!(info.holder, None, "etcdctl stores no holder text");
            let listed = observer.list("jobs/").await?;
            assert!(
                listed
                    .iter()
                    .any(|l| l.name.as_str() == name && l.lease == info.lease),
                "list shows etcdctl's holder: {listed:?}"
            );
            assert!(
                observer.try_acquire(name).await?.is_none(),
                "try_acquire sees etcdctl's holder"
            );
        }
    }
    // Let the first one go; the queue runs out by itself.
    if let Some(go) = first_go {
        std::fs::write(go, b"")?;
    }
    if let Some(guard) = first_guard {
        finish_section(log.clone(), who(0), guard).await?;
    }
    for t in tasks {
        within(Duration::from_secs(15), "fencelock waiter", t).await???;
    }
    for e in &mut etcdctls {
        e.finish(Duration::from_secs(15)).await?;
    }
    let (sections, text) = read_log(&log)?;
    assert_eq!(sections.len(), 3, "{text}");
    let served: Vec<&str> = sections.iter().map(|s| s.who.as_str()).collect();
    assert_eq!(served, [who(0), who(1), who(2)], "queue order: {text}");
    for w in sections.windows(2) {
        assert!(w[0].end <= w[1].start, "sections overlap: {text}");
        assert!(w[0].token < w[1].token, "tokens not increasing: {text}");
    }
    if order == [Side::Fencelock, Side::Etcdctl, Side::Fencelock] {
        let rev = sections[1].lock_rev.ok_or("no ETCD_LOCK_REV")?;
        assert!(
            rev > sections[2].token,
            "ETCD_LOCK_REV is the revision at which etcdctl saw itself owner, past the next holder's create revision: {text}"
        );
    }
    assert!(observer.inspect(name).await?.is_none(), "{text}");
    Ok(())
}

/// The default configuration (no prefix) meets `etcdctl lock N` on the bare name.
pub(crate) async fn default_prefix_meets_etcdctl(h: Arc<EtcdHarness>, ctx: Ctx) -> TestResult {
    if !etcdctl_present() {
        return Ok(());
    }
    let dir = servers::temp_dir("fencelock-fleet-")?;
    let (log, go) = (dir.path().join("log"), dir.path().join("go"));
    // Outside the namespace (no prefix at all): a name no other case uses.
    let name = format!("fleet-{}", ctx.ns());
    let endpoints = h.endpoints().join(",");
    let client = fencelock::connect(&format!("etcd://{endpoints}")).await?;
    let mut etcdctl = spawn_etcdctl(&endpoints, &name, "etcdctl0", &log, &go);
    let line = started(&log, "etcdctl0").await?;
    assert!(client.try_acquire(name.as_str()).await?.is_none());
    let info = client.inspect(name.as_str()).await?.ok_or("not seen")?;
    assert_eq!(info.token.get().to_string(), line[3]);
    assert_eq!(
        line[5],
        format!("{name}/{:x}", info.lease.get()),
        "same key"
    );
    let waiter = tokio::spawn({
        let client = client.clone();
        let name = name.clone();
        async move { client.acquire(name.as_str()).await }
    });
    queue_len(&client, &name, 1).await?;
    std::fs::write(&go, b"")?;
    etcdctl.finish(Duration::from_secs(10)).await?;
    let guard = within(Duration::from_secs(5), "waiter", waiter).await???;
    assert!(guard.token() > info.token);
    guard.release().await?;
    client.close().await?;
    Ok(())
}

/// Two acquisitions of one lock on one lease: etcd's recipe would give both the
/// same key (and both would "hold"); fencelock gives the second its own key beside
/// the first, which queues behind it by create revision.
pub(crate) async fn same_lease_twice_queues(_h: Arc<EtcdHarness>, ctx: Ctx) -> TestResult {
    let client = ctx.client().await?;
    let lease = client.lease().await?;
    let lock = lease.lock("twice")?;
    let first = lock.acquire().await?;
    let second = tokio::spawn({
        let lock = lease.lock("twice")?;
        async move { lock.acquire().await }
    });
    queue_len(&client, "twice", 1).await?;
    assert!(!second.is_finished(), "the second acquisition waits");
    let hex = format!("{:x}", lease.id().get());
    let key = |g: &LockGuard| {
        g.backend_lock::<EtcdHeldLock>()
            .map(|h| h.key().to_owned())
            .unwrap_or_default()
    };
    assert!(key(&first).ends_with(&format!("/{hex}")), "{}", key(&first));
    let token = first.token();
    first.release().await?;
    let second = within(Duration::from_secs(5), "second", second).await???;
    assert!(second.token() > token);
    assert!(
        key(&second).ends_with(&format!("/{hex}-1")),
        "{}",
        key(&second)
    );
    second.release().await?;
    lease.close().await?;
    Ok(())
}

/// Runs `etcdctl <args>` against `h`'s cluster; its stdout.
fn etcdctl(h: &EtcdHarness, args: &[&str]) -> Result<String, String> {
    let bin = EtcdCluster::etcdctl().map_err(|e| e.to_string())?;
    let out = Command::new(bin)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &h.endpoints().join(",")])
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A key as an older fencelock wrote it (`<range><lease hex>-<slot>`, same value
/// format), put by etcdctl on its own lease: with the same prefix it is a contender
/// of the newer layout, shown by `inspect` and `list`, and its lease's end grants
/// the waiter.
pub(crate) async fn old_layout_key_is_a_contender(h: Arc<EtcdHarness>, ctx: Ctx) -> TestResult {
    if !etcdctl_present() {
        return Ok(());
    }
    let client = ctx.client().await?;
    let backend = client.backend::<EtcdBackend>().ok_or("not etcd")?;
    let range = backend.lock_range(&LockName::new("legacy")?);
    let granted = etcdctl(&h, &["lease", "grant", "30"])?;
    let lease = granted.split(' ').nth(1).ok_or("no lease id")?.to_owned();
    let key = format!("{range}{lease}-0");
    let millis = now_nanos() / 1_000_000;
    etcdctl(
        &h,
        &[
            "put",
            &format!("--lease={lease}"),
            &key,
            &format!("{millis}\nold-client"),
        ],
    )?;
    assert!(client.try_acquire("legacy").await?.is_none());
    let info = client
        .inspect("legacy")
        .await?
        .ok_or("old holder not seen")?;
    // etcdctl prints lease ids zero-padded to 16 digits (`%016x`).
    assert_eq!(Ok(info.lease.get()), u64::from_str_radix(&lease, 16));
    assert_eq!(info.holder.as_deref(), Some("old-client"));
    let listed = client.list("leg").await?;
    assert!(
        listed
            .iter()
            .any(|l| l.name.as_str() == "legacy" && l.lease == info.lease),
        "{listed:?}"
    );
    let waiter = tokio::spawn({
        let client = client.clone();
        async move { client.acquire("legacy").await }
    });
    queue_len(&client, "legacy", 1).await?;
    etcdctl(&h, &["lease", "revoke", &lease])?;
    let guard = within(Duration::from_secs(5), "waiter", waiter).await???;
    assert!(guard.token() > info.token);
    guard.release().await?;
    Ok(())
}

/// Whether the python-etcd3 cases can run: `/usr/bin/python3` is there (under CI it
/// must be); the venv with python-etcd3 is made on first use.
fn python_etcd3_present() -> bool {
    servers::require(
        Foreign::Etcd3Lock.available(),
        "/usr/bin/python3 (python-etcd3)",
    )
}

/// Runs a blocking call (waiting for a foreign process) off the runtime's workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, TestError> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// Starts python-etcd3's `Lock(name)` on the first endpoint of `h`, holding `hold`
/// once granted, and waits until it holds.
async fn python_etcd3_holds(
    h: &EtcdHarness,
    name: &str,
    hold: Duration,
) -> Result<(ForeignHolder, foreign::Section), TestError> {
    let endpoint = h.endpoints()[0].clone();
    let name = name.to_owned();
    blocking(move || {
        let mut holder = ForeignHolder::start(Foreign::Etcd3Lock, &endpoint, &name, hold)?;
        let section = holder.wait_held(Duration::from_secs(60))?;
        Ok((holder, section))
    })
    .await
}

/// Waits until the python-etcd3 holder has released and exited; its section's
/// `(start, end)`.
async fn python_etcd3_done(holder: ForeignHolder) -> Result<(u128, u128), TestError> {
    let section = blocking(move || holder.finish(Duration::from_secs(30))).await?;
    Ok((section.start_ns, section.end_ns.ok_or("no end")?))
}

/// Asserts that the section `inner` lies strictly inside `outer`: both held at once.
fn assert_inside(inner: (u128, u128), outer: (u128, u128), what: &str) {
    assert!(
        outer.0 < inner.0 && inner.1 < outer.1,
        "{what}: section {inner:?} lies inside {outer:?}, both held"
    );
}

/// A fencelock client with URL key prefix `prefix` (`""`: none), outside the test
/// namespace: python-etcd3 always writes under `/locks/`.
async fn client_with_prefix(h: &EtcdHarness, prefix: &str) -> fencelock::Result<LockClient> {
    fencelock::connect(&format!("etcd://{}{prefix}", h.endpoints().join(","))).await
}

/// The lock's key of a fencelock grant.
fn etcd_key(guard: &LockGuard) -> Result<String, TestError> {
    let held = guard
        .backend_lock::<EtcdHeldLock>()
        .ok_or("not an etcd grant")?;
    Ok(held.key().to_owned())
}

/// The URL key prefixes under which python-etcd3's `Lock(N)` (key `/locks/N`) and
/// fencelock lock `N` are checked: none (fencelock's range `N/`) and `/locks`
/// (range `/locks/N/`, right beside python-etcd3's key but not containing it).
const PYTHON_ETCD3_PREFIXES: [&str; 2] = ["", "/locks"];

/// README, Mixed fleets: python-etcd3's `Lock` does not interoperate. With no prefix
/// and with `/locks`, in the order given: fencelock holds lock `N` and
/// python-etcd3's `Lock(N)` is granted meanwhile ([`python_etcd3_inside_fencelock`]),
/// or the reverse ([`fencelock_inside_python_etcd3`]); both hold at once.
pub(crate) async fn python_etcd3_and_fencelock_both_hold(
    h: Arc<EtcdHarness>,
    ctx: Ctx,
    fencelock_first: bool,
) -> TestResult {
    if !python_etcd3_present() {
        return Ok(());
    }
    let name = format!("fleet-py-{}", ctx.ns());
    for prefix in PYTHON_ETCD3_PREFIXES {
        let client = client_with_prefix(&h, prefix).await?;
        if fencelock_first {
            python_etcd3_inside_fencelock(&h, &client, &name, prefix).await?;
        } else {
            fencelock_inside_python_etcd3(&h, &client, &name, prefix).await?;
        }
        assert!(client.inspect(name.as_str()).await?.is_none());
        client.close().await?;
    }
    Ok(())
}

/// fencelock holds lock `name` (its key in the range `[prefix/]name/`);
/// python-etcd3's `Lock(name)` is granted meanwhile on `/locks/name`, and its whole
/// section lies inside fencelock's, which never sees it.
async fn python_etcd3_inside_fencelock(
    h: &EtcdHarness,
    client: &LockClient,
    name: &str,
    prefix: &str,
) -> TestResult {
    let guard = client.acquire(name).await?;
    let f_start = now_nanos();
    let range = match prefix {
        "" => format!("{name}/"),
        _ => format!("{prefix}/{name}/"),
    };
    let lease = guard.lease().id().get();
    assert_eq!(etcd_key(&guard)?, format!("{range}{lease:x}"));
    let (holder, held) = python_etcd3_holds(h, name, Duration::from_millis(500)).await?;
    assert_eq!(held.node, format!("/locks/{name}"), "python-etcd3's key");
    assert_eq!(guard.state(), LockState::Held, "fencelock still holds");
    let info = client.inspect(name).await?.ok_or("not seen")?;
    assert_eq!(info.token, guard.token(), "fencelock sees only itself");
    assert_eq!(info.waiters, 0, "python-etcd3's key is no contender");
    let python = python_etcd3_done(holder).await?;
    guard.release().await?;
    let fencelock = (f_start, now_nanos());
    assert_inside(
        python,
        fencelock,
        &format!("prefix {prefix:?}: python-etcd3"),
    );
    Ok(())
}

/// python-etcd3's `Lock(name)` holds; `inspect` sees no holder, and fencelock's
/// `try_acquire(name)` is granted at once, its section inside python-etcd3's.
async fn fencelock_inside_python_etcd3(
    h: &EtcdHarness,
    client: &LockClient,
    name: &str,
    prefix: &str,
) -> TestResult {
    let (holder, held) = python_etcd3_holds(h, name, Duration::from_secs(3)).await?;
    assert!(
        client.inspect(name).await?.is_none(),
        "prefix {prefix:?}: fencelock sees python-etcd3's holder"
    );
    let guard = within(
        Duration::from_secs(2),
        "try_acquire beside python-etcd3",
        client.try_acquire(name),
    )
    .await??
    .ok_or_else(|| format!("prefix {prefix:?}: python-etcd3's Lock excluded fencelock"))?;
    let f_start = now_nanos();
    assert!(
        holder.section()?.is_some_and(|s| s.end_ns.is_none()),
        "python-etcd3 still holds"
    );
    assert!(guard.token().get() > held.czxid);
    guard.release().await?;
    let fencelock = (f_start, now_nanos());
    let python = python_etcd3_done(holder).await?;
    assert_inside(fencelock, python, &format!("prefix {prefix:?}: fencelock"));
    Ok(())
}

/// python-etcd3's `Lock("N/job")` puts `/locks/N/job`, a direct child of the range
/// of fencelock lock `N` under prefix `/locks`: fencelock counts it as an exclusive
/// holder and waits for it, but python-etcd3 looks only at its own key and is
/// granted while fencelock holds `N`. One direction only: still no mutual exclusion.
pub(crate) async fn python_etcd3_name_with_a_slash_excludes_one_way(
    h: Arc<EtcdHarness>,
    ctx: Ctx,
) -> TestResult {
    if !python_etcd3_present() {
        return Ok(());
    }
    let name = format!("fleet-py-{}", ctx.ns());
    let py_name = format!("{name}/job");
    let client = client_with_prefix(&h, "/locks").await?;

    // python-etcd3 first: fencelock sees it and waits until it has released.
    let (holder, held) = python_etcd3_holds(&h, &py_name, Duration::from_millis(1500)).await?;
    assert_eq!(held.node, format!("/locks/{name}/job"));
    assert!(client.try_acquire(name.as_str()).await?.is_none());
    let info = client.inspect(name.as_str()).await?.ok_or("not seen")?;
    assert_eq!(info.token.get(), held.czxid, "python-etcd3's key holds");
    let guard = within(
        Duration::from_secs(10),
        "fencelock after python-etcd3",
        client.acquire(name.as_str()),
    )
    .await??;
    let granted = now_nanos();
    let (_, python_end) = python_etcd3_done(holder).await?;
    assert!(
        python_end < granted,
        "fencelock held before python-etcd3 released"
    );
    assert!(guard.token().get() > held.czxid);

    // fencelock first: python-etcd3 does not see fencelock's key and holds too.
    let (holder, _) = python_etcd3_holds(&h, &py_name, Duration::from_millis(300)).await?;
    assert_eq!(guard.state(), LockState::Held);
    let python = python_etcd3_done(holder).await?;
    guard.release().await?;
    assert_inside(python, (granted, now_nanos()), "python-etcd3 N/job");
    assert!(client.inspect(name.as_str()).await?.is_none());
    client.close().await?;
    Ok(())
}
