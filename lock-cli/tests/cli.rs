//! The real `fencelock` binary against real etcd and ZooKeeper started by the harness.

use fencelock_integration_tests::{
    foreign::{Foreign, ForeignHolder},
    servers::{require, EtcdCluster, EtcdTls, Flaw, Pki, RedisOptions, RedisServer, ZkEnsemble},
};
use libtest_mimic::{Arguments, Failed, Trial};
use std::{
    fs,
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::Arc,
    thread::sleep,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

type Check = Result<(), Failed>;

#[path = "cli/elect.rs"]
mod elect;

fn ensure(cond: bool, msg: impl Into<String>) -> Check {
    if cond {
        Ok(())
    } else {
        Err(Failed::from(msg.into()))
    }
}

/// The binary under test, with no backend from the environment.
fn fencelock() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fencelock"));
    cmd.env_remove("FENCELOCK_BACKEND");
    cmd
}

fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("the fencelock binary runs")
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A backend under test: how to name a fresh, isolated URL and how to force a
/// holder's lease lost from outside.
trait Server: Send + Sync {
    fn name(&self) -> &'static str;
    fn url(&self) -> String;
    /// Forces the lease of the current holder of `name` at `url` lost.
    fn force_loss(&self, url: &str, name: &str) -> Check;
    /// How long after a holder's death its lock may stay taken (granted TTL + 1 s).
    fn free_bound(&self, ttl: Duration) -> Duration;
}

fn uid() -> String {
    format!("cli{}", &uuid_like()[..10])
}

fn uuid_like() -> String {
    format!("{:x}{:x}", now_nanos(), std::process::id())
        .chars()
        .rev()
        .collect()
}

struct Etcd(EtcdCluster);

impl Server for Etcd {
    fn name(&self) -> &'static str {
        "etcd"
    }
    fn url(&self) -> String {
        self.0.url(&uid())
    }
    fn force_loss(&self, url: &str, name: &str) -> Check {
        let status = status_json(url, name)?;
        let lease = status["lease"]
            .as_str()
            .ok_or("status has no lease")?
            .to_owned();
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &self.0.endpoints().join(","),
                "lease",
                "revoke",
                &lease,
            ])
            .output()
            .map_err(|e| format!("etcdctl: {e}"))?;
        ensure(
            out.status.success(),
            format!(
                "lease revoke failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
    fn free_bound(&self, ttl: Duration) -> Duration {
        ttl + Duration::from_secs(1)
    }
}

struct Zk(ZkEnsemble);

impl Server for Zk {
    fn name(&self) -> &'static str {
        "zk"
    }
    fn url(&self) -> String {
        self.0.url(&format!("/{}", uid()))
    }
    /// Deletes the holder's lock node as an operator would: its guard turns lost.
    fn force_loss(&self, url: &str, name: &str) -> Check {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let client = fencelock::connect(url).await?;
            let zk = client
                .backend::<fencelock::zk::ZkBackend>()
                .ok_or("not a zk client")?;
            zk.delete_holder(&fencelock::LockName::new(name)?).await?;
            client.close().await?;
            Ok::<_, Box<dyn std::error::Error>>(())
        })
        .map_err(|e| Failed::from(e.to_string()))
    }
    fn free_bound(&self, ttl: Duration) -> Duration {
        ttl + Duration::from_secs(1)
    }
}

struct Redis(RedisServer);

impl Server for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }
    fn url(&self) -> String {
        format!("redis://{}?prefix={}:", self.0.address(), uid())
    }
    /// Deletes the holder's entry as an operator's `redis-cli DEL` would.
    fn force_loss(&self, url: &str, name: &str) -> Check {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let client = fencelock::connect(url).await?;
            let redis = client
                .backend::<fencelock::redis::RedisBackend>()
                .ok_or("not a redis client")?;
            redis.break_lock(&fencelock::LockName::new(name)?).await?;
            client.close().await?;
            Ok::<_, Box<dyn std::error::Error>>(())
        })
        .map_err(|e| Failed::from(e.to_string()))
    }
    fn free_bound(&self, ttl: Duration) -> Duration {
        ttl + Duration::from_secs(1)
    }
}

/// With the server unreachable (paused), the holder must kill its command and give
/// up before the session could expire on the server.
fn unreachable_server_kills_command_within_session_timeout(zk: &ZkEnsemble, dir: &Path) -> Check {
    let url = zk.url(&format!("/{}", uid()));
    let pid = dir.join("cut.pid");
    let mut a = spawn_run(
        &url,
        "3",
        "cut",
        &format!("echo $$ > {}; exec sleep 30", pid.display()),
    );
    wait_held(&url, "cut")?;
    let child = fs::read_to_string(&pid)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .ok_or("no pid")?;
    zk.pause(0);
    let paused = Instant::now();
    while pid_alive(child) && paused.elapsed() < Duration::from_secs(10) {
        sleep(Duration::from_millis(10));
    }
    let killed_after = paused.elapsed();
    let status = loop {
        if let Some(status) = a.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if paused.elapsed() > Duration::from_secs(15) {
            break None;
        }
        sleep(Duration::from_millis(20));
    };
    zk.resume(0);
    let Some(status) = status else {
        let _ = a.kill();
        kill_pid_file(&pid);
        return Err("holder kept running with the server unreachable".into());
    };
    ensure(killed_after < Duration::from_secs(3), format!("command killed {killed_after:?} after the server became unreachable, not within the 3 s session timeout"))?;
    ensure(
        status.code() == Some(75),
        format!("exit {:?}", status.code()),
    )?;
    ensure(!pid_alive(child), "command still alive")
}

/// A server blip that ends well before the deadline (the server SIGSTOPped for
/// 0.5 s at TTL 3 s, the session intact) must kill nothing: Suspect means the
/// deadline is at risk, not that one reply was late.
fn short_server_pause_kills_nothing(zk: &ZkEnsemble) -> Check {
    let url = zk.url(&format!("/{}", uid()));
    let mut a = spawn_run(&url, "3", "blip", "sleep 4");
    wait_held(&url, "blip")?;
    zk.pause(0);
    sleep(Duration::from_millis(500));
    zk.resume(0);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = a.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = a.kill();
            return Err("the command did not finish".into());
        }
        sleep(Duration::from_millis(20));
    };
    let err = a.stderr();
    ensure(
        status.code() == Some(0),
        format!(
            "a 0.5 s server pause ended the run with {:?}: {err}",
            status.code()
        ),
    )
}

fn status_json(url: &str, name: &str) -> Result<serde_json::Value, Failed> {
    let out = output(fencelock().args(["--backend", url, "status", "--json", name]));
    ensure(
        out.status.success(),
        format!("status failed: {}", String::from_utf8_lossy(&out.stderr)),
    )?;
    serde_json::from_slice(&out.stdout).map_err(|e| Failed::from(format!("status --json: {e}")))
}

fn wait_held(url: &str, name: &str) -> Result<serde_json::Value, Failed> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        let status = status_json(url, name)?;
        if status["held"] == true {
            return Ok(status);
        }
        sleep(Duration::from_millis(50));
    }
    Err("lock never became held".into())
}

/// A `fencelock run` process; killed and reaped on drop, so no early return leaves
/// one behind.
struct Running(Option<Child>);

impl Running {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("only finish() takes the child")
    }

    fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.child().try_wait()
    }

    fn kill(&mut self) -> std::io::Result<()> {
        self.child().kill()
    }

    fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child().wait()
    }

    fn finish(mut self) -> std::io::Result<Output> {
        self.0
            .take()
            .expect("finish() runs once")
            .wait_with_output()
    }

    fn stderr(&mut self) -> String {
        use std::io::Read;
        let mut text = String::new();
        if let Some(mut e) = self.child().stderr.take() {
            let _ = e.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_run(url: &str, ttl: &str, name: &str, script: &str) -> Running {
    spawn_run_as(url, ttl, &[], name, script)
}

/// `fencelock run` with extra flags (`--read`, `--limit N`, ...).
fn spawn_run_as(url: &str, ttl: &str, flags: &[&str], name: &str, script: &str) -> Running {
    let child = fencelock()
        .args([
            "--backend",
            url,
            "run",
            "--ttl",
            ttl,
            "--holder",
            "cli-test",
        ])
        .args(flags)
        .args([name, "--", "sh", "-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fencelock starts");
    Running(Some(child))
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn kill_pid_file(path: &Path) {
    if let Some(pid) = fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    {
        // SAFETY: the pid is the test's own orphaned child shell, read from its pid file.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

fn serialized_runs(s: &dyn Server, dir: &Path) -> Check {
    let url = s.url();
    let log = dir.join("serial.log");
    let script = format!(
        "echo \"start $(date +%s%N) $FENCELOCK_TOKEN\" >> {0}; sleep 0.3; echo \"end $(date +%s%N) $FENCELOCK_TOKEN\" >> {0}",
        log.display()
    );
    let runs: Vec<Running> = (0..3)
        .map(|_| spawn_run(&url, "5", "serial", &script))
        .collect();
    for run in runs {
        let out = run.finish().expect("wait");
        ensure(
            out.status.success(),
            format!("run failed: {}", String::from_utf8_lossy(&out.stderr)),
        )?;
    }
    let text = fs::read_to_string(&log).map_err(|e| e.to_string())?;
    let mut spans: Vec<(u128, u128, u64)> = Vec::new();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    for start in lines.iter().filter(|l| l[0] == "start") {
        let end = lines
            .iter()
            .find(|l| l[0] == "end" && l[2] == start[2])
            .ok_or("missing end")?;
        let parse = |s: &str| s.parse::<u128>().map_err(|e| e.to_string());
        spans.push((
            parse(start[1])?,
            parse(end[1])?,
            start[2].parse::<u64>().map_err(|e| e.to_string())?,
        ));
    }
    spans.sort();
    ensure(spans.len() == 3, format!("expected 3 runs: {text}"))?;
    for w in spans.windows(2) {
        ensure(w[0].1 <= w[1].0, format!("children overlapped: {text}"))?;
        ensure(w[0].2 < w[1].2, format!("tokens not increasing: {text}"))?;
    }
    Ok(())
}

/// Stops `runs` as an operator would (SIGTERM, forwarded to the command, then
/// release) and waits for them.
fn stop(runs: Vec<Running>) {
    for mut run in runs {
        if let Ok(pid) = i32::try_from(run.child().id()) {
            // SAFETY: the pid is our own child's, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let _ = run.wait();
    }
}

/// Waits until `name` has `n` holders; returns the status.
fn wait_holders(url: &str, name: &str, n: usize) -> Result<serde_json::Value, Failed> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        let status = status_json(url, name)?;
        if status["holders"].as_array().map_or(0, Vec::len) == n {
            return Ok(status);
        }
        sleep(Duration::from_millis(50));
    }
    Err(format!("{name} never had {n} holders").into())
}

fn run_n(url: &str, flags: &[&str], name: &str) -> Output {
    output(
        fencelock()
            .args(["--backend", url, "run", "-n"])
            .args(flags)
            .args([name, "--", "true"]),
    )
}

fn read_runs_share_and_write_runs_exclude(s: &dyn Server, _dir: &Path) -> Check {
    let url = s.url();
    let readers: Vec<Running> = (0..2)
        .map(|_| spawn_run_as(&url, "5", &["--read"], "rw", "sleep 10"))
        .collect();
    let status = wait_holders(&url, "rw", 2)?;
    let modes: Vec<_> = status["holders"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| h["mode"].clone())
        .collect();
    ensure(modes.iter().all(|m| m == "read"), format!("{status}"))?;
    let text = output(fencelock().args(["--backend", &url, "status", "rw"]));
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    ensure(
        text.contains("held by 2 (read)"),
        format!("status text: {text}"),
    )?;
    ensure(
        code(&run_n(&url, &["--read"], "rw")) == 0,
        "a third reader shares",
    )?;
    for flags in [&["--write"][..], &[]] {
        let out = run_n(&url, flags, "rw");
        ensure(
            code(&out) == 1,
            format!("{flags:?} beside readers: exit {}", code(&out)),
        )?;
    }
    stop(readers);
    wait_holders(&url, "rw", 0).map(drop)
}

fn limit_runs_share_up_to_n_and_see_their_slot(s: &dyn Server, dir: &Path) -> Check {
    let url = s.url();
    let slots = dir.join("slots");
    let script = format!(
        "echo \"$FENCELOCK_SLOT $FENCELOCK_TOKEN\" >> {}; sleep 10",
        slots.display()
    );
    let permits: Vec<Running> = (0..2)
        .map(|_| spawn_run_as(&url, "5", &["--limit", "2"], "pool", &script))
        .collect();
    let status = wait_holders(&url, "pool", 2)?;
    ensure(
        status["holders"][0]["mode"] == "permit of 2",
        format!("{status}"),
    )?;
    let out = run_n(&url, &["--limit", "2"], "pool");
    ensure(
        code(&out) == 1,
        format!("a third permit of 2: exit {}", code(&out)),
    )?;
    let out = run_n(&url, &["--limit", "3"], "pool");
    ensure(
        code(&out) == 2,
        format!(
            "a limit disagreement: exit {} ({})",
            code(&out),
            String::from_utf8_lossy(&out.stderr)
        ),
    )?;
    let out = run_n(&url, &[], "pool");
    ensure(code(&out) == 1, "an exclusive run beside permits")?;
    let text = fs::read_to_string(&slots).map_err(|e| e.to_string())?;
    let mut seen: Vec<&str> = text.lines().filter_map(|l| l.split(' ').next()).collect();
    seen.sort_unstable();
    ensure(
        seen == ["0", "1"],
        format!("slots seen by the commands: {text}"),
    )?;
    stop(permits);
    wait_holders(&url, "pool", 0).map(drop)
}

fn nonblock_and_wait(s: &dyn Server, dir: &Path) -> Check {
    let url = s.url();
    let pidfile = dir.join("holder.pid");
    let mut holder = spawn_run(
        &url,
        "5",
        "busy",
        &format!("echo $$ > {}; sleep 6", pidfile.display()),
    );
    wait_held(&url, "busy")?;
    let out = output(fencelock().args(["--backend", &url, "run", "-n", "busy", "--", "true"]));
    ensure(
        code(&out) == 1,
        format!(
            "-n exit {}: {}",
            code(&out),
            String::from_utf8_lossy(&out.stderr)
        ),
    )?;
    ensure(
        String::from_utf8_lossy(&out.stderr).contains("cli-test"),
        "conflict message names the holder",
    )?;
    let out = output(fencelock().args([
        "--backend",
        &url,
        "run",
        "-n",
        "-E",
        "9",
        "busy",
        "--",
        "true",
    ]));
    ensure(code(&out) == 9, "-E sets the conflict code")?;
    let start = Instant::now();
    let out = output(fencelock().args(["--backend", &url, "run", "-w", "1", "busy", "--", "true"]));
    let took = start.elapsed();
    ensure(code(&out) == 1, format!("-w 1 exit {}", code(&out)))?;
    ensure(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        format!("-w 1 took {took:?}"),
    )?;
    let _ = holder.kill();
    let _ = holder.wait();
    kill_pid_file(&pidfile);
    Ok(())
}

fn sigkilled_holder_frees_lock(s: &dyn Server, dir: &Path) -> Check {
    let url = s.url();
    let pidfile = dir.join("orphan.pid");
    let mut holder = spawn_run(
        &url,
        "2",
        "crash",
        &format!("echo $$ > {}; sleep 30", pidfile.display()),
    );
    wait_held(&url, "crash")?;
    holder.kill().map_err(|e| e.to_string())?;
    let killed = Instant::now();
    let _ = holder.wait();
    let out =
        output(fencelock().args(["--backend", &url, "run", "-w", "10", "crash", "--", "true"]));
    let freed = killed.elapsed();
    kill_pid_file(&pidfile);
    ensure(
        out.status.success(),
        format!("next run failed: {}", String::from_utf8_lossy(&out.stderr)),
    )?;
    let bound = s.free_bound(Duration::from_secs(2));
    ensure(
        freed <= bound,
        format!("lock freed {freed:?} after the holder died; bound {bound:?}"),
    )
}

fn lost_lease_kills_child_first(s: &dyn Server, dir: &Path) -> Check {
    let url = s.url();
    let a_pid = dir.join("a.pid");
    let log = dir.join("loss.log");
    let mut a = spawn_run(
        &url,
        "3",
        "lossy",
        &format!("echo $$ > {}; exec sleep 30", a_pid.display()),
    );
    wait_held(&url, "lossy")?;
    // A loss forced on the server (revoke, delete) reaches the old holder and the
    // next waiter at the same moment: no client can order them. What fencelock
    // promises is that the old command is gone within 100 ms of the loss.
    let b_script = format!(
        "for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 $(cat {0}) 2>/dev/null || {{ echo CLEAN >> {1}; exit 0; }}; sleep 0.01; done; echo OVERLAP >> {1}",
        a_pid.display(),
        log.display()
    );
    let b = spawn_run(&url, "3", "lossy", &b_script);
    sleep(Duration::from_millis(300));
    s.force_loss(&url, "lossy")?;
    let started = Instant::now();
    let a_status = loop {
        if let Some(status) = a.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = a.kill();
            return Err("holder did not give up after the loss".into());
        }
        sleep(Duration::from_millis(20));
    };
    let b_out = b.finish().map_err(|e| e.to_string())?;
    let a_err = a.stderr();
    ensure(
        a_status.code() == Some(75),
        format!("holder exit {:?}: {a_err}", a_status.code()),
    )?;
    ensure(
        a_err.contains("terminating the command"),
        format!("no loss message: {a_err}"),
    )?;
    let a_child = fs::read_to_string(&a_pid)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .ok_or("no pid")?;
    ensure(!pid_alive(a_child), "holder's command still alive")?;
    ensure(
        b_out.status.success(),
        format!("waiter failed: {}", String::from_utf8_lossy(&b_out.stderr)),
    )?;
    let text = fs::read_to_string(&log).map_err(|e| e.to_string())?;
    ensure(
        text.trim() == "CLEAN",
        format!("the old command still ran 100 ms after the waiter's started: {text}"),
    )
}

fn status_and_list(s: &dyn Server, dir: &Path) -> Check {
    let url = s.url();
    let pidfile = dir.join("status.pid");
    let mut holder = spawn_run(
        &url,
        "5",
        "jobs/report",
        &format!("echo $$ > {}; sleep 5", pidfile.display()),
    );
    let status = wait_held(&url, "jobs/report")?;
    ensure(status["holder"] == "cli-test", format!("{status}"))?;
    ensure(
        status["token"].as_u64().is_some_and(|t| t > 0),
        format!("{status}"),
    )?;
    ensure(
        status["waiters"] == 0 && status["held_for_ms"].is_u64(),
        format!("{status}"),
    )?;
    let text = output(fencelock().args(["--backend", &url, "status", "jobs/report"]));
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    ensure(
        text.contains("cli-test") && text.contains(&format!("token {}", status["token"])),
        text.clone(),
    )?;
    let list = output(fencelock().args(["--backend", &url, "list", "--json", "jobs/"]));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    ensure(
        lines.len() == 1 && lines[0]["name"] == "jobs/report",
        format!("{lines:?}"),
    )?;
    let free = output(fencelock().args(["--backend", &url, "status", "other"]));
    ensure(
        String::from_utf8_lossy(&free.stdout).contains("free"),
        "free lock shown free",
    )?;
    let _ = holder.kill();
    let _ = holder.wait();
    kill_pid_file(&pidfile);
    Ok(())
}

/// A foreign ZooKeeper client (`client`) and `fencelock run` (nodes of `style`) on
/// one lock, both orders: the foreign holder is shown by `status` and `list`, makes
/// `run -n` give up with the conflict code, and `run` waits for it; a foreign
/// client queued behind a `run` waits for it in turn. Sections are disjoint and the
/// tokens (czxids: `$FENCELOCK_TOKEN`, the foreign node's) increase.
fn foreign_holder_and_run(zk: &ZkEnsemble, dir: &Path, client: Foreign, style: &str) -> Check {
    if !require(client.available(), &format!("{client:?}")) {
        return Ok(());
    }
    let chroot = format!("/{}", uid());
    let url = format!("{}?node_style={style}", zk.url(&chroot));
    let path = format!("{chroot}/fleet");
    let hold = Duration::from_millis(1500);
    let fail = |e: std::io::Error| Failed::from(e.to_string());
    let mut x = ForeignHolder::start(client, &zk.connect_string(), &path, hold).map_err(fail)?;
    let held = x.wait_held(Duration::from_secs(30)).map_err(fail)?;
    let status = status_json(&url, "fleet")?;
    ensure(
        status["held"] == true
            && status["token"].as_u64() == Some(held.czxid)
            && status["holder"].as_str().is_some_and(|h| {
                h.starts_with(if client == Foreign::Curator {
                    "curator"
                } else {
                    "kazoo"
                })
            }),
        format!(
            "status of a {client:?} holder (czxid {}): {status}",
            held.czxid
        ),
    )?;
    let list = output(fencelock().args(["--backend", &url, "list", "--json"]));
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    ensure(
        list.contains("\"fleet\"") && list.contains(&held.czxid.to_string()),
        format!("list: {list}"),
    )?;
    let out = output(fencelock().args(["--backend", &url, "run", "-n", "fleet", "--", "true"]));
    ensure(code(&out) == 1, format!("run -n exit {}", code(&out)))?;
    let log = dir.join("run.log");
    let script = format!(
        "echo \"start $(date +%s%N) $FENCELOCK_TOKEN\" >> {0}; sleep 1.5; echo \"end $(date +%s%N)\" >> {0}",
        log.display()
    );
    let run = spawn_run(&url, "5", "fleet", &script);
    let x = x.finish(Duration::from_secs(30)).map_err(fail)?;
    // The run holds now (or soon): a second foreign client queues behind it.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !fs::read_to_string(&log).is_ok_and(|t| t.starts_with("start")) {
        ensure(Instant::now() < deadline, "run never started")?;
        sleep(Duration::from_millis(20));
    }
    let y =
        ForeignHolder::start(client, &zk.connect_string(), &path, Duration::ZERO).map_err(fail)?;
    let out = run.finish().map_err(|e| e.to_string())?;
    ensure(
        out.status.success(),
        format!("run: {}", String::from_utf8_lossy(&out.stderr)),
    )?;
    let y = y.finish(Duration::from_secs(30)).map_err(fail)?;
    let text = fs::read_to_string(&log).map_err(|e| e.to_string())?;
    let words: Vec<&str> = text.split_whitespace().collect();
    let (start, token, end) = match words.as_slice() {
        ["start", start, token, "end", end] => (
            start.parse::<u128>().map_err(|e| e.to_string())?,
            token.parse::<u64>().map_err(|e| e.to_string())?,
            end.parse::<u128>().map_err(|e| e.to_string())?,
        ),
        _ => return Err(format!("run log {text:?}").into()),
    };
    ensure(
        x.end_ns.is_some_and(|e| e <= start) && end <= y.start_ns,
        format!("sections overlap: {x:?}, run {start}..{end}, {y:?}"),
    )?;
    ensure(
        x.czxid < token && token < y.czxid,
        format!("tokens {} < {token} < {} broken", x.czxid, y.czxid),
    )
}

/// Starts `etcdctl lock <lock> sh -c <script>` (etcd's own recipe); killed on drop.
fn spawn_etcdctl_lock(etcd: &EtcdCluster, lock: &str, script: &str) -> Result<Running, Failed> {
    let child = Command::new(EtcdCluster::etcdctl().map_err(|e| e.to_string())?)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.endpoints().join(","), "lock", lock])
        .args(["--", "sh", "-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("etcdctl: {e}"))?;
    Ok(Running(Some(child)))
}

/// The fields of the first line of `log` starting with `start <who>`, waiting for it.
fn wait_started(log: &Path, who: &str) -> Result<Vec<String>, Failed> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        let text = fs::read_to_string(log).unwrap_or_default();
        if let Some(l) = text
            .lines()
            .find(|l| l.starts_with(&format!("start {who} ")))
        {
            return Ok(l.split(' ').map(str::to_owned).collect());
        }
        sleep(Duration::from_millis(20));
    }
    Err(format!("{who} never started").into())
}

fn wait_waiters(url: &str, name: &str, n: u64) -> Check {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if status_json(url, name)?["waiters"] == n {
            return Ok(());
        }
        sleep(Duration::from_millis(50));
    }
    Err(format!("{name} never had {n} waiters").into())
}

/// `fencelock run` and `etcdctl lock` on one name, both orders in one queue
/// (etcdctl → fencelock → etcdctl): `status`/`list` show the etcdctl holder with
/// its lease, `run -n` sees it, the three critical sections do not overlap and run
/// in queue order, and the documented tokens (`$FENCELOCK_TOKEN`; the create
/// revision of `$ETCD_LOCK_KEY`) strictly increase.
fn fleet_run_and_etcdctl_lock(etcd: &EtcdCluster, dir: &Path) -> Check {
    let url = etcd.url(&uid());
    let prefix = url.rsplit_once('/').map(|p| p.1).unwrap_or_default();
    let (name, etcd_name) = ("jobs/nightly", format!("/{prefix}/jobs/nightly"));
    let log = dir.join("sections.log");
    let go = |who: &str| dir.join(format!("go-{who}"));
    let section = |who: &str, token: &str| {
        format!(
            "echo \"start {who} $(date +%s%N) {token}\" >> {log}; \
             while [ ! -e {go} ]; do sleep 0.02; done; sleep 0.3; \
             echo \"end {who} $(date +%s%N)\" >> {log}",
            log = log.display(),
            go = go(who).display(),
        )
    };
    let etcdctl = EtcdCluster::etcdctl().map_err(|e| e.to_string())?;
    let ctl_token = format!(
        "$({} --endpoints {} get \"$ETCD_LOCK_KEY\" -w json | sed -n 's/.*\"create_revision\":\\([0-9]*\\).*/\\1/p') $ETCD_LOCK_KEY",
        etcdctl.display(),
        etcd.endpoints().join(",")
    );
    let mut first = spawn_etcdctl_lock(etcd, &etcd_name, &section("etcdctl1", &ctl_token))?;
    let line = wait_started(&log, "etcdctl1")?;
    let lease = line[4].rsplit('/').next().unwrap_or_default().to_owned();
    ensure(
        line[4] == format!("{etcd_name}/{lease}"),
        format!("{line:?}"),
    )?;
    let status = status_json(&url, name)?;
    ensure(
        status["held"] == true
            && status["lease"] == lease.as_str()
            && status["token"].as_u64() == line[3].parse().ok(),
        format!("status shows etcdctl's holder {line:?}: {status}"),
    )?;
    let list = output(fencelock().args(["--backend", &url, "list", "--json"]));
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    ensure(
        listed.contains(&format!("\"lease\":\"{lease}\"")) && listed.contains(name),
        format!("list shows etcdctl's holder: {listed}"),
    )?;
    let out = output(fencelock().args(["--backend", &url, "run", "-n", name, "--", "true"]));
    ensure(code(&out) == 1, format!("run -n exit {}", code(&out)))?;
    let mut middle = spawn_run(&url, "5", name, &section("fencelock", "$FENCELOCK_TOKEN"));
    wait_waiters(&url, name, 1)?;
    fs::write(go("etcdctl1"), b"").map_err(|e| e.to_string())?;
    wait_started(&log, "fencelock")?;
    let mut last = spawn_etcdctl_lock(etcd, &etcd_name, &section("etcdctl2", &ctl_token))?;
    wait_waiters(&url, name, 1)?;
    for who in ["fencelock", "etcdctl2"] {
        fs::write(go(who), b"").map_err(|e| e.to_string())?;
    }
    for (what, run) in [
        ("etcdctl1", &mut first),
        ("fencelock", &mut middle),
        ("etcdctl2", &mut last),
    ] {
        let status = run.wait().map_err(|e| e.to_string())?;
        ensure(
            status.success(),
            format!("{what} failed: {status} {}", run.stderr()),
        )?;
    }
    let text = fs::read_to_string(&log).map_err(|e| e.to_string())?;
    let field = |kind: &str, who: &str, i: usize| -> Result<u128, Failed> {
        text.lines()
            .find(|l| l.starts_with(&format!("{kind} {who} ")))
            .and_then(|l| l.split(' ').nth(i))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Failed::from(format!("no {kind} of {who}: {text}")))
    };
    let order = ["etcdctl1", "fencelock", "etcdctl2"];
    for w in order.windows(2) {
        ensure(
            field("end", w[0], 2)? <= field("start", w[1], 2)?,
            format!("{} and {} overlap: {text}", w[0], w[1]),
        )?;
        ensure(
            field("start", w[0], 3)? < field("start", w[1], 3)?,
            format!("tokens of {} and {} do not increase: {text}", w[0], w[1]),
        )?;
    }
    let free = status_json(&url, name)?;
    ensure(free["held"] == false, format!("{free}"))
}

/// A `--watch --json` process of the binary and the lines it prints, as they come.
struct Watcher {
    _process: Running,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Watcher {
    fn start(url: &str, args: &[&str]) -> Result<Watcher, Failed> {
        let mut child = fencelock()
            .args(["--backend", url])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Watcher {
            _process: Running(Some(child)),
            lines,
        })
    }

    /// The next line printed, parsed, within 15 s.
    fn next(&self) -> Result<serde_json::Value, Failed> {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(15))
            .map_err(|e| format!("no line from the watcher: {e}"))?;
        serde_json::from_str(&line).map_err(|e| format!("{line}: {e}").into())
    }

    /// Lines until one passes `done`; each one on the way must pass `ok`.
    fn until(
        &self,
        ok: impl Fn(&serde_json::Value) -> bool,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, Failed> {
        loop {
            let line = self.next()?;
            if done(&line) {
                return Ok(line);
            }
            ensure(ok(&line), format!("unexpected on the way: {line}"))?;
        }
    }
}

/// `status --watch` and `list --watch` print one line per change as a holder takes
/// the lock, a waiter queues, the lock passes on and is released.
fn watch_follows_holders(s: &dyn Server, dir: &Path) -> Check {
    let url = s.url();
    let status = Watcher::start(&url, &["status", "--watch", "--json", "jobs/w"])?;
    let list = Watcher::start(&url, &["list", "--watch", "--json", "jobs/"])?;
    ensure(status.next()?["held"] == false, "free at first")?;
    ensure(
        list.next()?["locks"] == serde_json::json!([]),
        "no locks at first",
    )?;
    let (go_a, go_b) = (dir.join("go-a"), dir.join("go-b"));
    let hold_until =
        |file: &Path| format!("while [ ! -e {} ]; do sleep 0.05; done", file.display());
    let _a = spawn_run(&url, "5", "jobs/w", &hold_until(&go_a));
    let first = status.next()?;
    ensure(
        first["held"] == true && first["holder"] == "cli-test" && first["waiters"] == 0,
        format!("{first}"),
    )?;
    let token_a = first["token"].as_u64().ok_or("a token")?;
    let listed = list.next()?;
    ensure(
        listed["locks"][0]["token"].as_u64() == Some(token_a),
        format!("{listed}"),
    )?;
    let _b = spawn_run(&url, "5", "jobs/w", &hold_until(&go_b));
    let queued = status.next()?;
    ensure(
        queued["token"].as_u64() == Some(token_a) && queued["waiters"] == 1,
        format!("{queued}"),
    )?;
    fs::write(&go_a, "").map_err(|e| e.to_string())?;
    let second = status.until(
        |l| l["held"] == false || l["token"].as_u64() == Some(token_a),
        |l| l["token"].as_u64().is_some_and(|t| t > token_a),
    )?;
    ensure(second["waiters"] == 0, format!("{second}"))?;
    let token_b = second["token"].as_u64();
    fs::write(&go_b, "").map_err(|e| e.to_string())?;
    status.until(|l| l["token"].as_u64() == token_b, |l| l["held"] == false)?;
    list.until(|_| true, |l| l["locks"] == serde_json::json!([]))?;
    Ok(())
}

fn bad_input(unreachable: &str) -> Check {
    let cases: [(&[&str], i32); 7] = [
        (&["--backend", "memory://", "run", "a//b", "--", "true"], 2),
        (&["--backend", "nope", "status", "x"], 2),
        // A scheme no backend serves is a usage error (redis:// is served now).
        (&["--backend", "consul://127.0.0.1:1", "status", "x"], 2),
        (&["--backend", "memory://", "run", "x", "true"], 2),
        (&["--backend", "memory://", "run", "x"], 2),
        (
            &[
                "--backend",
                "memory://",
                "run",
                "--ttl",
                "0",
                "x",
                "--",
                "true",
            ],
            2,
        ),
        (&["run", "x", "--", "true"], 2),
    ];
    for (args, want) in cases {
        let out = output(fencelock().args(args));
        ensure(
            code(&out) == want,
            format!(
                "{args:?}: exit {} (want {want}): {}",
                code(&out),
                String::from_utf8_lossy(&out.stderr)
            ),
        )?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure(
            !err.contains("panicked"),
            format!("{args:?} panicked: {err}"),
        )?;
    }
    // An unreachable Redis is unavailable too, not a usage error.
    let out = output(fencelock().args(["--backend", "redis://127.0.0.1:1", "status", "x"]));
    ensure(
        code(&out) == 69,
        format!(
            "unreachable redis: exit {}: {}",
            code(&out),
            String::from_utf8_lossy(&out.stderr)
        ),
    )?;
    for args in [
        &["status", "x"][..],
        &["run", "-n", "x", "--", "true"],
        &["run", "-w", "1", "x", "--", "true"],
        &["run", "x", "--", "true"],
    ] {
        let start = Instant::now();
        let out = output(fencelock().args(["--backend", unreachable]).args(args));
        ensure(
            code(&out) == 69,
            format!(
                "unreachable, {args:?}: exit {}: {}",
                code(&out),
                String::from_utf8_lossy(&out.stderr)
            ),
        )?;
        ensure(
            start.elapsed() < Duration::from_secs(15),
            format!("unreachable, {args:?} took {:?}", start.elapsed()),
        )?;
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let plain = dir.path().join("not-executable");
    fs::write(&plain, "echo hi\n").map_err(|e| e.to_string())?;
    let plain = plain.display().to_string();
    for (command, want) in [
        ("/nonexistent/fencelock-test-cmd", 127),
        (plain.as_str(), 126),
    ] {
        let out = output(fencelock().args(["--backend", "memory://", "run", "x", "--", command]));
        ensure(
            code(&out) == want,
            format!(
                "{command}: exit {} (want {want}): {}",
                code(&out),
                String::from_utf8_lossy(&out.stderr)
            ),
        )?;
    }
    let out = output(fencelock().args([
        "--backend",
        "memory://",
        "run",
        "x",
        "--",
        "sh",
        "-c",
        "exit 7",
    ]));
    ensure(code(&out) == 7, "exit status of the command passed through")?;
    ensure(
        String::from_utf8_lossy(&out.stderr).contains("cannot coordinate separate processes"),
        "memory warning",
    )
}

/// A scenario run against one server.
type ServerCase = fn(&dyn Server, &Path) -> Check;

/// `fencelock run`, `status --json` and a refused login on etcd with TLS and auth,
/// the password in `FENCELOCK_PASSWORD_FILE` or `FENCELOCK_PASSWORD`: the command
/// sees the URL without the password and no `FENCELOCK_PASSWORD`; no output line
/// holds the password; a wrong password exits 77 with a line naming the refusal.
fn secured_etcd_credentials_stay_secret(dir: &Path) -> Check {
    let pki = Pki::new().map_err(|e| e.to_string())?;
    let tls = EtcdTls {
        server: pki.server(Flaw::None).map_err(|e| e.to_string())?,
        ca: pki.ca().to_owned(),
    };
    let client = pki.client("app", false).map_err(|e| e.to_string())?;
    let mut etcd = EtcdCluster::start_secured(1, tls).map_err(|e| e.to_string())?;
    let password = format!("pw-{}", uuid_like());
    etcd.enable_auth(&format!("root-{password}"))
        .and_then(|()| etcd.add_prefix_user("app", &password, "readwrite", "/cli/"))
        .map_err(|e| e.to_string())?;
    let pwfile = dir.join("password");
    fs::write(&pwfile, format!("{password}\n")).map_err(|e| e.to_string())?;
    let url = format!(
        "etcd://app@{}/cli?ca={}&cert={}&key={}",
        etcd.endpoints().join(","),
        pki.ca().display(),
        client.cert.display(),
        client.key.display()
    );
    let envfile = dir.join("env");
    let mut all = String::new();
    let run = output(
        fencelock()
            .env("FENCELOCK_PASSWORD_FILE", &pwfile)
            .args(["--backend", &url, "run", "job", "--", "sh", "-c"])
            .arg(format!("env > {}", envfile.display())),
    );
    all.push_str(&String::from_utf8_lossy(&run.stderr));
    ensure(code(&run) == 0, format!("run: {}", all))?;
    let env = fs::read_to_string(&envfile).map_err(|e| e.to_string())?;
    ensure(
        env.lines()
            .any(|l| l.starts_with("FENCELOCK_BACKEND=etcd://app@")),
        format!("no FENCELOCK_BACKEND without password in {env}"),
    )?;
    all.push_str(&env);
    let mut holder = fencelock()
        .env("FENCELOCK_PASSWORD", &password)
        .args([
            "--backend",
            &url,
            "run",
            "--holder",
            "cli-test",
            "job",
            "--",
            "sh",
            "-c",
        ])
        .arg(format!("env > {}; sleep 5", envfile.display()))
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let out = output(fencelock().env("FENCELOCK_PASSWORD_FILE", &pwfile).args([
            "--backend",
            &url,
            "status",
            "--json",
            "job",
        ]));
        all.push_str(&String::from_utf8_lossy(&out.stdout));
        all.push_str(&String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        if json["held"] == true || Instant::now() > deadline {
            break json;
        }
        sleep(Duration::from_millis(100));
    };
    ensure(status["holder"] == "cli-test", format!("status: {status}"))?;
    let env = fs::read_to_string(&envfile).map_err(|e| e.to_string())?;
    ensure(
        !env.contains("FENCELOCK_PASSWORD="),
        "the command got FENCELOCK_PASSWORD",
    )?;
    all.push_str(&env);
    let _ = holder.kill();
    if let Ok(out) = holder.wait_with_output() {
        all.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    let started = Instant::now();
    let refused = output(
        fencelock()
            .env("FENCELOCK_PASSWORD", "wrong-password-123")
            .args(["--backend", &url, "status", "--json", "job"]),
    );
    let line = String::from_utf8_lossy(&refused.stderr).into_owned();
    ensure(
        code(&refused) == 77 && line.contains("unauthenticated") && line.contains("password"),
        format!("wrong password: code {} {line}", code(&refused)),
    )?;
    ensure(
        started.elapsed() < Duration::from_secs(4),
        format!("wrong password took {:?}", started.elapsed()),
    )?;
    all.push_str(&line);
    let inline = url.replace("app@", &format!("app:{password}@"));
    let denied =
        output(fencelock().args(["--backend", &inline, "status", "--json", "elsewhere/x"]));
    all.push_str(&String::from_utf8_lossy(&denied.stdout));
    all.push_str(&String::from_utf8_lossy(&denied.stderr));
    ensure(
        !all.contains(&password),
        "the password leaked into the cli output or the command's environment",
    )
}

fn trial(name: String, s: Arc<dyn Server>, f: ServerCase) -> Trial {
    Trial::test(name, move || {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        f(&*s, dir.path())
    })
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = vec![Trial::test(
        "errors::bad_input_gives_usage_or_unavailable_codes",
        || bad_input("etcd://127.0.0.1:1?connect_timeout=2s"),
    )];
    let mut servers: Vec<Arc<dyn Server>> = Vec::new();
    if require(EtcdCluster::available(), "etcd") {
        servers.push(Arc::new(Etcd(EtcdCluster::start(1).expect("etcd starts"))));
    }
    if require(ZkEnsemble::available(), "zookeeper") {
        servers.push(Arc::new(
            Zk(ZkEnsemble::start(1).expect("zookeeper starts")),
        ));
    }
    let cases: [(&str, ServerCase); 7] = [
        (
            "two_runs_are_serialized_with_increasing_tokens",
            serialized_runs,
        ),
        (
            "nonblock_and_wait_give_up_with_the_conflict_code",
            nonblock_and_wait,
        ),
        (
            "sigkilled_holder_frees_the_lock_within_ttl",
            sigkilled_holder_frees_lock,
        ),
        ("status_and_list_show_holder_and_token", status_and_list),
        (
            "status_and_list_watch_follow_acquire_handoff_and_release",
            watch_follows_holders,
        ),
        (
            "read_runs_share_and_write_runs_exclude",
            read_runs_share_and_write_runs_exclude,
        ),
        (
            "limit_runs_share_up_to_n_and_see_their_slot",
            limit_runs_share_up_to_n_and_see_their_slot,
        ),
    ];
    for s in &servers {
        for (name, f) in cases.into_iter().chain(elect::CASES) {
            trials.push(trial(format!("{}::{name}", s.name()), s.clone(), f));
        }
    }
    // Redis has no watch (`status --watch` is unsupported there): the other cases.
    if require(RedisServer::available(), "redis-server") {
        let s: Arc<dyn Server> = Arc::new(Redis(
            RedisServer::start(RedisOptions::default()).expect("redis-server starts"),
        ));
        for (name, f) in &cases[..4] {
            trials.push(trial(format!("redis::{name}"), s.clone(), *f));
        }
        trials.push(trial(
            "redis::lost_lease_kills_the_command_before_the_next_holder_starts".into(),
            s,
            lost_lease_kills_child_first,
        ));
    }
    // Each of these forces a loss on its own server, so a pause cannot touch other tests.
    if require(EtcdCluster::available(), "etcd") {
        let s: Arc<dyn Server> = Arc::new(Etcd(EtcdCluster::start(1).expect("etcd starts")));
        trials.push(trial(
            "etcd::lost_lease_kills_the_command_before_the_next_holder_starts".into(),
            s,
            lost_lease_kills_child_first,
        ));
    }
    if require(EtcdCluster::available(), "etcd")
        && require(EtcdCluster::etcdctl().is_ok(), "etcdctl")
    {
        trials.push(Trial::test(
            "etcd::secured_credentials_never_reach_output_or_the_command",
            || {
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                secured_etcd_credentials_stay_secret(dir.path())
            },
        ));
        let etcd_elect = EtcdCluster::start(1).expect("etcd starts");
        trials.push(Trial::test(
            "etcd::etcdctl_elect_leader_is_observed_and_excludes_fencelock_elect",
            move || {
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                elect::etcdctl_elect_is_observed_and_excludes(&etcd_elect, dir.path())
            },
        ));
        let etcd = EtcdCluster::start(1).expect("etcd starts");
        trials.push(Trial::test(
            "etcd::fleet_run_and_etcdctl_lock_exclude_each_other_in_both_orders",
            move || {
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                fleet_run_and_etcdctl_lock(&etcd, dir.path())
            },
        ));
    }
    if require(ZkEnsemble::available(), "zookeeper") {
        let s: Arc<dyn Server> = Arc::new(Zk(ZkEnsemble::start(1).expect("zookeeper starts")));
        trials.push(trial(
            "zk::deleted_node_kills_the_command_before_the_next_holder_starts".into(),
            s,
            lost_lease_kills_child_first,
        ));
        let blip = ZkEnsemble::start(1).expect("zookeeper starts");
        trials.push(Trial::test(
            "zk::short_server_pause_kills_nothing",
            move || short_server_pause_kills_nothing(&blip),
        ));
        let fleet = Arc::new(ZkEnsemble::start(1).expect("zookeeper starts"));
        for (name, client, style) in [
            ("curator_mutex", Foreign::Curator, "curator"),
            ("kazoo_lock", Foreign::KazooLock, "kazoo"),
        ] {
            let zk = fleet.clone();
            trials.push(Trial::test(
                format!("zk::fleet::{name}_is_seen_by_status_list_and_run"),
                move || {
                    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                    foreign_holder_and_run(&zk, dir.path(), client, style)
                },
            ));
        }
        let zk = ZkEnsemble::start(1).expect("zookeeper starts");
        trials.push(Trial::test(
            "zk::unreachable_server_kills_the_command_within_the_session_timeout",
            move || {
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                unreachable_server_kills_command_within_session_timeout(&zk, dir.path())
            },
        ));
    }
    let conclusion = libtest_mimic::run(&args, trials);
    drop(servers);
    conclusion.exit();
}
