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
