//! `fencelock elect` and `fencelock observe` against the real servers.

use super::{
    code, ensure, fencelock, output, pid_alive, wait_held, Check, Running, Server, ServerCase,
    Watcher,
};
use std::{
    fs,
    path::Path,
    process::Stdio,
    thread::sleep,
    time::{Duration, Instant},
};

pub(super) const CASES: [(&str, ServerCase); 2] = [
    (
        "elect_runs_while_leader_hands_over_and_observe_prints_each_change",
        elect_and_observe,
    ),
    (
        "elect_kills_the_command_on_loss_and_gives_up_with_the_conflict_code",
        elect_loss_and_wait,
    ),
];

fn spawn_elect(url: &str, ttl: &str, value: &str, name: &str, script: &str) -> Running {
    let child = fencelock()
        .args([
            "--backend",
            url,
            "elect",
            "--ttl",
            ttl,
            "--value",
            value,
            name,
            "--",
            "sh",
            "-c",
            script,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fencelock starts");
    Running(Some(child))
}

fn hold_until(file: &Path) -> String {
    format!("while [ ! -e {} ]; do sleep 0.05; done", file.display())
}

fn wait_exit(p: &mut Running, within: Duration) -> Result<i32, super::Failed> {
    let started = Instant::now();
    loop {
        if let Some(status) = p.try_wait().map_err(|e| e.to_string())? {
            return Ok(status.code().unwrap_or(-1));
        }
        ensure(started.elapsed() < within, "elect did not exit")?;
        sleep(Duration::from_millis(20));
    }
}

fn elect_and_observe(s: &dyn Server, dir: &Path) -> Check {
    let url = s.url();
    let observer = Watcher::start(&url, &["observe", "--json", "sched"])?;
    let text = Watcher::start(&url, &["observe", "sched"])?;
    ensure(observer.next()?["leader"] == false, "no leader at first")?;
    // The plain text form, as `etcdctl elect -l` prints it: one line per change.
    let next_line = || {
        text.lines
            .recv_timeout(Duration::from_secs(15))
            .map_err(|e| super::Failed::from(e.to_string()))
    };
    let line = next_line()?;
    ensure(line == "sched: no leader", line)?;
    let (go_a, go_b, env_a) = (dir.join("go-a"), dir.join("go-b"), dir.join("env-a"));
    let mut a = spawn_elect(
        &url,
        "5",
        "host-a",
        "sched",
        &format!(
            "echo \"$FENCELOCK_TERM $FENCELOCK_TOKEN $FENCELOCK_NAME\" > {}; {}",
            env_a.display(),
            hold_until(&go_a)
        ),
    );
    let first = observer.next()?;
    ensure(
        first["leader"] == true && first["value"] == "host-a",
        format!("{first}"),
    )?;
    let term_a = first["term"].as_u64().ok_or("a term")?;
    let line = next_line()?;
    ensure(line == format!("sched: term {term_a} host-a"), line)?;
    let mut b = spawn_elect(&url, "5", "host-b", "sched", &hold_until(&go_b));
    wait_held(&url, "sched")?;
    // The child's environment carries the term (= the token) and the name.
    let started = Instant::now();
    let env = loop {
        let env = fs::read_to_string(&env_a).unwrap_or_default();
        if !env.is_empty() || started.elapsed() > Duration::from_secs(10) {
            break env;
        }
        sleep(Duration::from_millis(20));
    };
    ensure(
        env.trim() == format!("{term_a} {term_a} sched"),
        format!("child env: {env:?}"),
    )?;
    fs::write(&go_a, "").map_err(|e| e.to_string())?;
    ensure(
        wait_exit(&mut a, Duration::from_secs(15))? == 0,
        "leader a failed",
    )?;
    let second = observer.until(
        |l| l["leader"] == false,
        |l| l["leader"] == true && l["value"] == "host-b",
    )?;
    ensure(
        second["term"].as_u64().is_some_and(|t| t > term_a),
        format!("term did not increase: {second}"),
    )?;
    fs::write(&go_b, "").map_err(|e| e.to_string())?;
    ensure(
        wait_exit(&mut b, Duration::from_secs(15))? == 0,
        "leader b failed",
    )?;
    observer.until(|_| false, |l| l["leader"] == false)?;
    Ok(())
}

fn elect_loss_and_wait(s: &dyn Server, dir: &Path) -> Check {
    let url = s.url();
    let pid = dir.join("leader.pid");
    let mut a = spawn_elect(
        &url,
        "3",
        "host-a",
        "lossy",
        &format!("echo $$ > {}; exec sleep 30", pid.display()),
    );
    wait_held(&url, "lossy")?;
    // Not obtained within -w: the conflict code, and the command never ran.
    let marker = dir.join("ran");
    let out = output(fencelock().args([
        "--backend",
        &url,
        "elect",
        "-w",
        "0.5",
        "-E",
        "9",
        "lossy",
        "--",
        "touch",
        &marker.display().to_string(),
    ]));
    ensure(
        code(&out) == 9,
        format!(
            "code {}: {}",
            code(&out),
            String::from_utf8_lossy(&out.stderr)
        ),
    )?;
    ensure(!marker.exists(), "the command ran without leadership")?;
    ensure(
        String::from_utf8_lossy(&out.stderr).contains("host-a"),
        "the message does not name the leader",
    )?;
    sleep(Duration::from_millis(300));
    s.force_loss(&url, "lossy")?;
    let status = wait_exit(&mut a, Duration::from_secs(15))?;
    let err = a.stderr();
    ensure(status == 75, format!("leader exit {status}: {err}"))?;
    let child = fs::read_to_string(&pid)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .ok_or("no pid")?;
    ensure(!pid_alive(child), "the leader's command still alive")?;
    // Bad input: usage code.
    let out = output(fencelock().args(["--backend", &url, "elect", "", "--", "true"]));
    ensure(code(&out) == 2, format!("empty name: code {}", code(&out)))?;
    let long = "x".repeat(2000);
    let out = output(fencelock().args([
        "--backend",
        &url,
        "elect",
        "--value",
        &long,
        "v",
        "--",
        "true",
    ]));
    ensure(code(&out) == 2, format!("long value: code {}", code(&out)))?;
    Ok(())
}

/// `etcdctl elect NAME VALUE` (Go's `concurrency.Election`) and `fencelock elect`
/// share one queue: fencelock's observer shows the foreign leader's value, and a
/// fencelock campaigner waits until the foreign leader resigns.
pub(super) fn etcdctl_elect_is_observed_and_excludes(
    etcd: &fencelock_integration_tests::servers::EtcdCluster,
    dir: &Path,
) -> Check {
    use fencelock_integration_tests::servers::EtcdCluster;
    let url = etcd.url(&super::uid());
    let prefix = url.rsplit_once('/').map(|p| p.1).unwrap_or_default();
    let (name, etcd_name) = ("sched", format!("/{prefix}/sched"));
    let observer = Watcher::start(&url, &["observe", "--json", name])?;
    ensure(observer.next()?["leader"] == false, "no leader at first")?;
    let foreign = std::process::Command::new(EtcdCluster::etcdctl().map_err(|e| e.to_string())?)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.endpoints().join(","), "elect"])
        .args([etcd_name.as_str(), "from-etcdctl"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("etcdctl: {e}"))?;
    let foreign = Running(Some(foreign));
    let seen = observer.next()?;
    ensure(
        seen["leader"] == true && seen["value"] == "from-etcdctl",
        format!("foreign leader seen as {seen}"),
    )?;
    let ran = dir.join("ran");
    let mut ours = spawn_elect(&url, "5", "ours", name, &format!("touch {}", ran.display()));
    sleep(Duration::from_millis(700));
    ensure(!ran.exists(), "fencelock led while etcdctl did")?;
    // etcdctl resigns on SIGINT.
    let pid = foreign.0.as_ref().map(|c| c.id()).ok_or("no etcdctl")?;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    ensure(
        wait_exit(&mut ours, Duration::from_secs(15))? == 0,
        "our elect failed",
    )?;
    ensure(ran.exists(), "our command never ran")?;
    let next = observer.until(
        |l| l["leader"] == false || l["value"] == "from-etcdctl",
        |l| l["value"] == "ours",
    )?;
    let foreign_term = seen["term"].as_u64().unwrap_or(u64::MAX);
    ensure(
        next["term"].as_u64().is_some_and(|t| t > foreign_term),
        format!("term did not increase: {next}"),
    )?;
    drop(foreign);
    Ok(())
}
